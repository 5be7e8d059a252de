//! The outbox: one row per change, in the change's own transaction. It is
//! the project's public change feed (`ChangeStore`) and what derived
//! indexes will consume.

use super::{sql_err, SqliteStore};
use crate::clock;
use crate::domain::*;
use crate::store::prelude::*;
use crate::store::OutboxEntry;
use async_trait::async_trait;
use rusqlite::{params, Connection};

pub fn record(
    conn: &Connection,
    scope: &Scope,
    (kind, target, op, version): OutboxEntry,
    seq: i64,
) -> DomainResult<()> {
    conn.prepare_cached(
        "INSERT INTO outbox (seq, org_id, project_id, kind, target_id, op, at, version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut st| {
        st.execute(params![
            seq,
            scope.org,
            scope.project,
            kind,
            target,
            op,
            clock::now(),
            version
        ])
    })
    .map_err(sql_err)?;
    Ok(())
}

/// The project's changes after `after`, in change-sequence order. Here
/// that is commit order: the one writer thread takes sequences and commits
/// them group by group, so no reader can pass a change that commits later
/// (PostgreSQL needs its feed positions for that, see its outbox.rs).
pub fn list(
    conn: &Connection,
    scope: &Scope,
    after: i64,
    limit: usize,
) -> DomainResult<Vec<Change>> {
    conn.prepare_cached(
        "SELECT seq, kind, target_id, op, version, at FROM outbox
         WHERE org_id = ?1 AND project_id = ?2 AND seq > ?3 ORDER BY seq LIMIT ?4",
    )
    .and_then(|mut st| {
        st.query_map(
            params![scope.org, scope.project, after, limit as i64],
            |r| {
                Ok(Change {
                    seq: r.get(0)?,
                    kind: r.get(1)?,
                    id: r.get(2)?,
                    op: r.get(3)?,
                    version: r.get(4)?,
                    at: r.get(5)?,
                })
            },
        )?
        .collect()
    })
    .map_err(sql_err)
}

#[async_trait]
impl ChangeStore for SqliteStore {
    async fn list_changes(
        &self,
        scope: &Scope,
        after: i64,
        limit: usize,
    ) -> DomainResult<Vec<Change>> {
        let s = scope.clone();
        self.read(move |conn| {
            super::tenancy::get_project(conn, &s.org, &s.project)?;
            list(conn, &s, after, limit)
        })
        .await
    }
}
