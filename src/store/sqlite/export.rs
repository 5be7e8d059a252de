//! The store as of one moment (`Snapshot`), for exports and backups: a
//! read-only connection of its own holding one read transaction. In WAL
//! mode that view stays fixed while the writer commits on.

use super::rows::{self, ENTITY_COLS, REL_COLS};
use super::tenancy::{org_row, project_row};
use super::{audit, docs, project_exists, sql_err, SqliteStore};
use crate::domain::export::{AuditRecord, EntityExport, RelationshipRecord, VersionRecord};
use crate::domain::*;
use crate::store::prelude::*;
use crate::store::Which;
use async_trait::async_trait;
use rusqlite::{Connection, Row};
use std::sync::{Arc, Mutex};

fn version(row: &Row) -> rusqlite::Result<VersionRecord> {
    let op: String = row.get(2)?;
    let patch: String = row.get(8)?;
    let snapshot: Option<String> = row.get(9)?;
    Ok(VersionRecord {
        entity: row.get(0)?,
        version: row.get(1)?,
        op: VersionOp::parse(&op).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                2,
                rusqlite::types::Type::Text,
                format!("unknown version op {op:?}").into(),
            )
        })?,
        parent: row.get(3)?,
        entity_type: row.get(4)?,
        deleted: row.get(5)?,
        actor: row.get(6)?,
        at: row.get(7)?,
        patch: serde_json::from_str(&patch).unwrap_or_default(),
        snapshot: snapshot.and_then(|s| serde_json::from_str(&s).ok()),
        chain: row.get(10)?,
    })
}

/// The filter of a `Which` on `column` and its bound parameters (after the
/// scope's two): rows after an id, or of listed ids (a JSON array, read by
/// `json_each`).
fn which_filter(column: &str, which: &Which) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    match which {
        Which::After(after, _) => (format!("{column} > ?3"), vec![Value::Text(after.clone())]),
        Which::Ids(ids) => (
            format!("{column} IN (SELECT value FROM json_each(?3))"),
            vec![Value::Text(
                serde_json::to_string(ids).expect("ids serialise"),
            )],
        ),
    }
}

/// The order of a `Which`'s rows, and the page's bound.
fn which_tail(column: &str, which: &Which) -> String {
    match which {
        Which::After(_, limit) => format!("ORDER BY {column} LIMIT {limit}"),
        Which::Ids(_) => format!("ORDER BY {column}"),
    }
}

fn entities(conn: &Connection, scope: &Scope, which: &Which) -> DomainResult<Vec<EntityExport>> {
    project_exists(conn, scope)?;
    let (filter, args) = which_filter("id", which);
    let tail = which_tail("id", which);
    let sql = format!(
        "SELECT {ENTITY_COLS} FROM entities
         WHERE org_id = ?1 AND project_id = ?2 AND {filter} {tail}"
    );
    let args = scoped(scope, args);
    let mut page: Vec<EntityExport> = conn
        .prepare_cached(&sql)
        .and_then(|mut st| {
            st.query_map(rusqlite::params_from_iter(&args), rows::entity)?
                .map(|e| {
                    e.map(|entity| EntityExport {
                        entity,
                        versions: Vec::new(),
                    })
                })
                .collect()
        })
        .map_err(sql_err)?;
    let (Some(first), Some(last)) = (page.first(), page.last()) else {
        return Ok(page);
    };
    let (filter, args) = match which {
        Which::After(..) => (
            "entity_id BETWEEN ?3 AND ?4".to_owned(),
            scoped(
                scope,
                vec![
                    first.entity.id.clone().into(),
                    last.entity.id.clone().into(),
                ],
            ),
        ),
        Which::Ids(_) => {
            let (filter, args) = which_filter("entity_id", which);
            (filter, scoped(scope, args))
        }
    };
    let sql = format!(
        "SELECT entity_id, version, op, parent_version, type, deleted, actor, at, patch,
                snapshot, chain
         FROM entity_versions WHERE org_id = ?1 AND project_id = ?2 AND {filter}
         ORDER BY entity_id, version"
    );
    let mut st = conn.prepare_cached(&sql).map_err(sql_err)?;
    let versions = st
        .query_map(rusqlite::params_from_iter(&args), version)
        .map_err(sql_err)?;
    // Both lists are in id order: walk them together.
    let mut at = 0;
    for v in versions {
        let v = v.map_err(sql_err)?;
        while at < page.len() && page[at].entity.id < v.entity {
            at += 1;
        }
        if let Some(e) = page.get_mut(at).filter(|e| e.entity.id == v.entity) {
            e.versions.push(v);
        }
    }
    Ok(page)
}

/// The scope's two parameters, then `args`.
fn scoped(scope: &Scope, args: Vec<rusqlite::types::Value>) -> Vec<rusqlite::types::Value> {
    let mut all = vec![scope.org.clone().into(), scope.project.clone().into()];
    all.extend(args);
    all
}

fn relationships(
    conn: &Connection,
    scope: &Scope,
    which: &Which,
) -> DomainResult<Vec<RelationshipRecord>> {
    project_exists(conn, scope)?;
    let (filter, args) = which_filter("id", which);
    let tail = which_tail("id", which);
    let sql = format!(
        "SELECT {REL_COLS}, deleted_at FROM relationships
         WHERE org_id = ?1 AND project_id = ?2 AND {filter} {tail}"
    );
    let args = scoped(scope, args);
    conn.prepare_cached(&sql)
        .and_then(|mut st| {
            st.query_map(rusqlite::params_from_iter(&args), |row| {
                Ok(RelationshipRecord {
                    relationship: rows::relationship(row)?,
                    deleted_at: row.get(10)?,
                })
            })?
            .collect()
        })
        .map_err(sql_err)
}

fn docs(conn: &Connection, scope: &Scope, which: &Which) -> DomainResult<Vec<DocInfo>> {
    project_exists(conn, scope)?;
    let (filter, args) = which_filter("id", which);
    let tail = which_tail("id", which);
    let sql = format!(
        "SELECT id, entity_id, created_at, last_seq, pruned_through FROM crdt_docs
         WHERE org_id = ?1 AND project_id = ?2 AND {filter} {tail}"
    );
    let args = scoped(scope, args);
    conn.prepare_cached(&sql)
        .and_then(|mut st| {
            st.query_map(rusqlite::params_from_iter(&args), docs::info)?
                .collect()
        })
        .map_err(sql_err)
}

fn doc_snapshots(conn: &Connection, scope: &Scope, doc: &str) -> DomainResult<Vec<DocSnapshot>> {
    let sql = format!(
        "SELECT {} FROM crdt_snapshots WHERE org_id = ?1 AND project_id = ?2 AND doc_id = ?3
         ORDER BY covers_seq",
        docs::SNAPSHOT_COLS
    );
    conn.prepare_cached(&sql)
        .and_then(|mut st| {
            st.query_map(
                rusqlite::params![scope.org, scope.project, doc],
                docs::snapshot,
            )?
            .collect()
        })
        .map_err(sql_err)
}

fn docs_changed(conn: &Connection, scope: &Scope, since: &str) -> DomainResult<Vec<String>> {
    conn.prepare_cached(
        "SELECT id FROM crdt_docs
         WHERE org_id = ?1 AND project_id = ?2 AND (changed_at IS NULL OR changed_at >= ?3)
         ORDER BY id",
    )
    .and_then(|mut st| {
        st.query_map(rusqlite::params![scope.org, scope.project, since], |r| {
            r.get(0)
        })?
        .collect()
    })
    .map_err(sql_err)
}

/// A snapshot's connection; each read runs on a blocking thread.
struct SqliteSnapshot {
    conn: Arc<Mutex<Connection>>,
    seq: i64,
}

impl SqliteSnapshot {
    async fn read<T, F>(&self, f: F) -> DomainResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> DomainResult<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || f(&conn.lock().expect("snapshot connection lock")))
            .await
            .map_err(DomainError::internal)?
    }
}

#[async_trait]
impl Snapshot for SqliteSnapshot {
    fn seq(&self) -> i64 {
        self.seq
    }

    async fn orgs(&self) -> DomainResult<Vec<Org>> {
        self.read(|conn| {
            conn.prepare("SELECT id, name, created_at FROM orgs ORDER BY id")
                .and_then(|mut st| st.query_map([], org_row)?.collect())
                .map_err(sql_err)
        })
        .await
    }

    async fn projects(&self, org: &str) -> DomainResult<Vec<Project>> {
        let org = org.to_owned();
        self.read(move |conn| {
            conn.prepare(
                "SELECT org_id, id, name, created_at FROM projects WHERE org_id = ?1 ORDER BY id",
            )
            .and_then(|mut st| st.query_map([org], project_row)?.collect())
            .map_err(sql_err)
        })
        .await
    }

    async fn entities(&self, scope: &Scope, which: &Which) -> DomainResult<Vec<EntityExport>> {
        let (s, which) = (scope.clone(), which.clone());
        self.read(move |conn| entities(conn, &s, &which)).await
    }

    async fn relationships(
        &self,
        scope: &Scope,
        which: &Which,
    ) -> DomainResult<Vec<RelationshipRecord>> {
        let (s, which) = (scope.clone(), which.clone());
        self.read(move |conn| relationships(conn, &s, &which)).await
    }

    async fn docs(&self, scope: &Scope, which: &Which) -> DomainResult<Vec<DocInfo>> {
        let (s, which) = (scope.clone(), which.clone());
        self.read(move |conn| docs(conn, &s, &which)).await
    }

    async fn doc_snapshots(&self, scope: &Scope, doc: &str) -> DomainResult<Vec<DocSnapshot>> {
        let (s, doc) = (scope.clone(), doc.to_owned());
        self.read(move |conn| doc_snapshots(conn, &s, &doc)).await
    }

    async fn doc_updates(
        &self,
        scope: &Scope,
        doc: &str,
        after: i64,
        limit: usize,
    ) -> DomainResult<Vec<DocUpdate>> {
        let (s, doc) = (scope.clone(), doc.to_owned());
        self.read(move |conn| docs::updates_between(conn, &s, &doc, after, None, limit as i64))
            .await
    }

    async fn docs_changed(&self, scope: &Scope, since: &str) -> DomainResult<Vec<String>> {
        let (s, since) = (scope.clone(), since.to_owned());
        self.read(move |conn| docs_changed(conn, &s, &since)).await
    }

    async fn audit(
        &self,
        after: i64,
        since: Option<&str>,
        limit: usize,
    ) -> DomainResult<Vec<AuditRecord>> {
        let since = since.map(str::to_owned);
        self.read(move |conn| audit::all_after(conn, after, since.as_deref(), limit))
            .await
    }
}

#[async_trait]
impl ExportStore for SqliteStore {
    async fn snapshot(&self) -> DomainResult<Box<dyn Snapshot>> {
        let (path, config) = (self.path.clone(), self.config.clone());
        let (conn, seq) = tokio::task::spawn_blocking(move || {
            let conn = super::connect(&path, &config, true)?;
            // The first read fixes the transaction's view of the file.
            conn.execute_batch("BEGIN")?;
            let seq = conn.query_row("SELECT value FROM change_seq", [], |r| r.get(0))?;
            Ok::<_, rusqlite::Error>((conn, seq))
        })
        .await
        .map_err(DomainError::internal)?
        .map_err(sql_err)?;
        Ok(Box::new(SqliteSnapshot {
            conn: Arc::new(Mutex::new(conn)),
            seq,
        }))
    }
}
