//! Entity embeddings on SQLite: one row per entity. A search ranks the
//! project's vectors held in memory as 8-bit codes (`search::vector_memory`)
//! and scores the best candidates exactly from their stored f32 vectors; a
//! project whose vectors do not fit the memory budget is scanned exactly.
//!
//! The sets in memory change only on the writer thread, inside the write
//! that changes the rows, so they follow the table in commit order; a set
//! is loaded there too, the first time its project is searched. A write
//! whose commit fails drops the project's sets (loaded again when needed).

use super::{sql_err, SqliteStore};
use crate::domain::*;
use crate::search::vector_memory::{candidate_count, VectorSet};
use crate::search::vectors::{dot, encode, TopK};
use crate::store::prelude::*;
use async_trait::async_trait;
use rusqlite::{params, Connection};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

/// One project's set of one model: org, project, model.
type SetKey = (String, String, String);

/// The vector sets in memory, within a budget of bytes.
pub struct VectorSets {
    budget: usize,
    /// `None`: the set was too large for the budget; scanned from the table.
    sets: Mutex<HashMap<SetKey, Option<Arc<RwLock<VectorSet>>>>>,
}

impl VectorSets {
    pub fn new(budget_bytes: usize) -> Self {
        VectorSets {
            budget: budget_bytes,
            sets: Mutex::default(),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<SetKey, Option<Arc<RwLock<VectorSet>>>>> {
        self.sets.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, key: &SetKey) -> Option<Option<Arc<RwLock<VectorSet>>>> {
        self.map().get(key).cloned()
    }

    /// The loaded sets of a project, each with its model.
    fn of_project(&self, scope: &Scope) -> Vec<(String, Arc<RwLock<VectorSet>>)> {
        self.map()
            .iter()
            .filter(|((o, p, _), _)| *o == scope.org && *p == scope.project)
            .filter_map(|((_, _, m), set)| set.clone().map(|s| (m.clone(), s)))
            .collect()
    }

    /// Forgets every set of a project (`Some`) or of an org (`None`).
    pub fn forget(&self, org: &str, project: Option<&str>) {
        self.map()
            .retain(|(o, p, _), _| o != org || project.is_some_and(|id| id != p));
    }

    fn used(&self) -> usize {
        self.map()
            .values()
            .flatten()
            .map(|s| s.read().unwrap_or_else(|p| p.into_inner()).bytes())
            .sum()
    }
}

/// Reads a project's vectors of `model` into a set, or None past `budget`.
fn load(
    conn: &Connection,
    scope: &Scope,
    model: &str,
    dims: usize,
    budget: usize,
) -> DomainResult<Option<VectorSet>> {
    let mut st = conn
        .prepare_cached(
            "SELECT entity_id, type, version, vector FROM entity_vectors
             WHERE org_id = ?1 AND project_id = ?2 AND model = ?3",
        )
        .map_err(sql_err)?;
    let mut rows = st
        .query(params![scope.org, scope.project, model])
        .map_err(sql_err)?;
    let mut set = VectorSet::new(dims);
    let mut vector = vec![0f32; dims];
    while let Some(row) = rows.next().map_err(sql_err)? {
        let bytes = row
            .get_ref(3)
            .and_then(|v| Ok(v.as_blob()?))
            .map_err(sql_err)?;
        if bytes.len() != dims * 4 {
            continue;
        }
        for (x, b) in vector.iter_mut().zip(bytes.chunks_exact(4)) {
            *x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        let id: String = row.get(0).map_err(sql_err)?;
        let ty: String = row.get(1).map_err(sql_err)?;
        set.put(&id, &ty, row.get(2).map_err(sql_err)?, &vector);
        if set.len().is_multiple_of(1024) && set.bytes() > budget {
            return Ok(None);
        }
    }
    Ok((set.bytes() <= budget).then_some(set))
}

/// Exact scores of the named entities' vectors, best `limit` first.
fn rank_exactly(
    conn: &Connection,
    scope: &Scope,
    model: &str,
    query: &[f32],
    ids: &[String],
    limit: usize,
) -> DomainResult<Vec<VectorHit>> {
    let mut st = conn
        .prepare_cached(
            "SELECT vector FROM entity_vectors
             WHERE org_id = ?1 AND project_id = ?2 AND entity_id = ?3 AND model = ?4",
        )
        .map_err(sql_err)?;
    let mut top = TopK::new(limit);
    for id in ids {
        let mut rows = st
            .query(params![scope.org, scope.project, id, model])
            .map_err(sql_err)?;
        if let Some(row) = rows.next().map_err(sql_err)? {
            let stored = row
                .get_ref(0)
                .and_then(|v| Ok(v.as_blob()?))
                .map_err(sql_err)?;
            if let Some(score) = dot(query, stored) {
                top.push(id.clone(), score);
            }
        }
    }
    Ok(top.into_sorted())
}

/// The exact scan of every vector of the project (sets over the budget).
fn scan(
    conn: &Connection,
    scope: &Scope,
    model: &str,
    query: &[f32],
    entity_type: Option<&str>,
    limit: usize,
) -> DomainResult<Vec<VectorHit>> {
    let mut st = conn
        .prepare_cached(
            "SELECT entity_id, vector FROM entity_vectors
             WHERE org_id = ?1 AND project_id = ?2 AND model = ?3
               AND (?4 IS NULL OR type = ?4)",
        )
        .map_err(sql_err)?;
    let mut rows = st
        .query(params![scope.org, scope.project, model, entity_type])
        .map_err(sql_err)?;
    let mut top = TopK::new(limit);
    while let Some(row) = rows.next().map_err(sql_err)? {
        let stored = row
            .get_ref(1)
            .and_then(|v| Ok(v.as_blob()?))
            .map_err(sql_err)?;
        if let Some(score) = dot(query, stored).filter(|s| top.admits(*s)) {
            top.push(row.get(0).map_err(sql_err)?, score);
        }
    }
    Ok(top.into_sorted())
}

impl SqliteStore {
    /// The project's set of `model`, loaded on the writer thread the first
    /// time (None: over the budget).
    async fn vector_set(
        &self,
        scope: &Scope,
        model: &str,
        dims: usize,
    ) -> DomainResult<Option<Arc<RwLock<VectorSet>>>> {
        let key = (scope.org.clone(), scope.project.clone(), model.to_owned());
        if let Some(known) = self.vector_sets.get(&key) {
            return Ok(known);
        }
        let (s, sets) = (scope.clone(), self.vector_sets.clone());
        self.writer
            .write(move |conn, _| {
                if let Some(known) = sets.get(&key) {
                    return Ok(known);
                }
                let room = sets.budget.saturating_sub(sets.used());
                let set = load(conn, &s, &key.2, dims, room)?.map(|s| Arc::new(RwLock::new(s)));
                sets.map().insert(key, set.clone());
                Ok(set)
            })
            .await
    }
}

#[async_trait]
impl VectorStore for SqliteStore {
    async fn put_vectors(
        &self,
        scope: &Scope,
        model: &str,
        vectors: Vec<EntityVector>,
    ) -> DomainResult<()> {
        let (s, model, sets) = (scope.clone(), model.to_owned(), self.vector_sets.clone());
        let written = self
            .writer
            .write(move |conn, _| {
                let mut st = conn
                    .prepare_cached(
                        "INSERT INTO entity_vectors
                             (org_id, project_id, entity_id, type, version, model, vector)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                         ON CONFLICT (org_id, project_id, entity_id) DO UPDATE
                         SET type = excluded.type, version = excluded.version,
                             model = excluded.model, vector = excluded.vector
                         WHERE excluded.version >= entity_vectors.version
                            OR excluded.model <> entity_vectors.model
                         RETURNING entity_id",
                    )
                    .map_err(sql_err)?;
                let loaded = sets.of_project(&s);
                for v in &vectors {
                    let mut rows = st
                        .query(params![
                            s.org,
                            s.project,
                            v.id,
                            v.entity_type,
                            v.version,
                            model,
                            encode(&v.vector)
                        ])
                        .map_err(sql_err)?;
                    if rows.next().map_err(sql_err)?.is_none() {
                        continue; // a newer version's vector is stored
                    }
                    for (m, set) in &loaded {
                        let mut set = set.write().unwrap_or_else(|p| p.into_inner());
                        if *m == model {
                            set.put(&v.id, &v.entity_type, v.version, &v.vector);
                        } else {
                            set.remove(&v.id); // the row now holds another model's
                        }
                    }
                }
                Ok(())
            })
            .await;
        if written.is_err() {
            self.vector_sets.forget(&scope.org, Some(&scope.project));
        }
        written
    }

    async fn delete_vectors(&self, scope: &Scope, ids: &[String]) -> DomainResult<()> {
        let (s, ids, sets) = (scope.clone(), ids.to_vec(), self.vector_sets.clone());
        let deleted = self
            .writer
            .write(move |conn, _| {
                let mut st = conn
                    .prepare_cached(
                        "DELETE FROM entity_vectors
                         WHERE org_id = ?1 AND project_id = ?2 AND entity_id = ?3",
                    )
                    .map_err(sql_err)?;
                let loaded = sets.of_project(&s);
                for id in &ids {
                    st.execute(params![s.org, s.project, id]).map_err(sql_err)?;
                    for (_, set) in &loaded {
                        set.write().unwrap_or_else(|p| p.into_inner()).remove(id);
                    }
                }
                Ok(())
            })
            .await;
        if deleted.is_err() {
            self.vector_sets.forget(&scope.org, Some(&scope.project));
        }
        deleted
    }

    async fn search_vectors(
        &self,
        scope: &Scope,
        model: &str,
        query: &[f32],
        entity_type: Option<&str>,
        limit: usize,
    ) -> DomainResult<Vec<VectorHit>> {
        let set = self.vector_set(scope, model, query.len()).await?;
        let (s, model, query) = (scope.clone(), model.to_owned(), query.to_vec());
        let entity_type = entity_type.map(str::to_owned);
        self.read(move |conn| match set {
            Some(set) => {
                let ids = set.read().unwrap_or_else(|p| p.into_inner()).candidates(
                    &query,
                    entity_type.as_deref(),
                    candidate_count(limit),
                );
                rank_exactly(conn, &s, &model, &query, &ids, limit)
            }
            None => scan(conn, &s, &model, &query, entity_type.as_deref(), limit),
        })
        .await
    }
}
