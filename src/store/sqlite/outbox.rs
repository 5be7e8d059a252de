//! The outbox: one row per change, in the change's own transaction, for the
//! derived indexes (search, embeddings) to consume.

use super::sql_err;
use crate::clock;
use crate::domain::{DomainResult, Scope};
use rusqlite::{params, Connection};

pub fn record(
    conn: &Connection,
    scope: &Scope,
    kind: &str,
    target: &str,
    op: &str,
    seq: i64,
) -> DomainResult<()> {
    conn.prepare_cached(
        "INSERT INTO outbox (seq, org_id, project_id, kind, target_id, op, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut st| {
        st.execute(params![
            seq,
            scope.org,
            scope.project,
            kind,
            target,
            op,
            clock::now()
        ])
    })
    .map_err(sql_err)?;
    Ok(())
}
