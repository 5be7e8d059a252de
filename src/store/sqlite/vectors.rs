//! Entity embeddings on SQLite: one row per entity, searched by an exact
//! scan of the project's vectors (`search::vectors`).

use super::{sql_err, SqliteStore};
use crate::domain::*;
use crate::search::vectors::{dot, encode, TopK};
use crate::store::prelude::*;
use async_trait::async_trait;
use rusqlite::params;

#[async_trait]
impl VectorStore for SqliteStore {
    async fn put_vectors(
        &self,
        scope: &Scope,
        model: &str,
        vectors: Vec<EntityVector>,
    ) -> DomainResult<()> {
        let (s, model) = (scope.clone(), model.to_owned());
        self.writer
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
                            OR excluded.model <> entity_vectors.model",
                    )
                    .map_err(sql_err)?;
                for v in &vectors {
                    st.execute(params![
                        s.org,
                        s.project,
                        v.id,
                        v.entity_type,
                        v.version,
                        model,
                        encode(&v.vector)
                    ])
                    .map_err(sql_err)?;
                }
                Ok(())
            })
            .await
    }

    async fn delete_vectors(&self, scope: &Scope, ids: &[String]) -> DomainResult<()> {
        let (s, ids) = (scope.clone(), ids.to_vec());
        self.writer
            .write(move |conn, _| {
                let mut st = conn
                    .prepare_cached(
                        "DELETE FROM entity_vectors
                         WHERE org_id = ?1 AND project_id = ?2 AND entity_id = ?3",
                    )
                    .map_err(sql_err)?;
                for id in &ids {
                    st.execute(params![s.org, s.project, id]).map_err(sql_err)?;
                }
                Ok(())
            })
            .await
    }

    async fn search_vectors(
        &self,
        scope: &Scope,
        model: &str,
        query: &[f32],
        entity_type: Option<&str>,
        limit: usize,
    ) -> DomainResult<Vec<VectorHit>> {
        let (s, model, query) = (scope.clone(), model.to_owned(), query.to_vec());
        let entity_type = entity_type.map(str::to_owned);
        self.read(move |conn| {
            let mut st = conn
                .prepare_cached(
                    "SELECT entity_id, vector FROM entity_vectors
                     WHERE org_id = ?1 AND project_id = ?2 AND model = ?3
                       AND (?4 IS NULL OR type = ?4)",
                )
                .map_err(sql_err)?;
            let mut rows = st
                .query(params![s.org, s.project, model, entity_type])
                .map_err(sql_err)?;
            let mut top = TopK::new(limit);
            while let Some(row) = rows.next().map_err(sql_err)? {
                let stored = row
                    .get_ref(1)
                    .and_then(|v| Ok(v.as_blob()?))
                    .map_err(sql_err)?;
                if let Some(score) = dot(&query, stored).filter(|s| top.admits(*s)) {
                    top.push(row.get(0).map_err(sql_err)?, score);
                }
            }
            Ok(top.into_sorted())
        })
        .await
    }
}
