//! The audit trail: one row per write, inside the write's transaction.

use super::sql_err;
use super::SqliteStore;
use crate::clock;
use crate::domain::*;
use crate::store::cursor;
use crate::store::prelude::*;
use crate::store::AuditPlace;
use async_trait::async_trait;
use rusqlite::{params, Connection};
use serde_json::Value;

pub fn record(
    conn: &Connection,
    place: &AuditPlace,
    action: &str,
    target: &str,
    details: Value,
) -> DomainResult<()> {
    conn.prepare_cached(
        "INSERT INTO audit_events (org_id, project_id, at, actor, action, target, ip, user_agent, details)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .and_then(|mut st| {
        st.execute(params![
            place.org,
            place.project,
            clock::now(),
            place.caller.key_id,
            action,
            target,
            place.caller.ip,
            place.caller.user_agent,
            details.to_string(),
        ])
    })
    .map_err(sql_err)?;
    Ok(())
}

/// Newest first, filtered by action and target.
pub fn list(
    conn: &Connection,
    org: &str,
    filter: &AuditFilter,
    page: &PageRequest,
) -> DomainResult<Page<AuditEvent>> {
    let before = cursor::before_event(page)?;
    let mut st = conn
        .prepare_cached(
            "SELECT id, at, actor, action, target, project_id, ip, user_agent, details
             FROM audit_events
             WHERE org_id = ?1 AND id < ?2 AND (?3 IS NULL OR action = ?3) AND (?4 IS NULL OR target = ?4)
             ORDER BY id DESC LIMIT ?5",
        )
        .map_err(sql_err)?;
    let rows: Vec<(i64, AuditEvent)> = st
        .query_map(
            params![
                org,
                before,
                filter.action,
                filter.target,
                page.limit as i64 + 1
            ],
            |r| {
                let id: i64 = r.get(0)?;
                let details: String = r.get(8)?;
                Ok((
                    id,
                    AuditEvent {
                        id: id.to_string(),
                        at: r.get(1)?,
                        actor: r.get(2)?,
                        action: r.get(3)?,
                        target: r.get(4)?,
                        project: r.get(5)?,
                        ip: r.get(6)?,
                        user_agent: r.get(7)?,
                        details: serde_json::from_str(&details).unwrap_or(Value::Null),
                    },
                ))
            },
        )
        .and_then(|rows| rows.collect())
        .map_err(sql_err)?;
    // The numeric id rides along only for the cursor.
    let page = cursor::page_after(rows, page.limit, |(id, _)| cursor::AuditCursor {
        before: *id,
    });
    Ok(Page {
        items: page.items.into_iter().map(|(_, e)| e).collect(),
        next_cursor: page.next_cursor,
    })
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn list_audit(
        &self,
        org: &str,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> DomainResult<Page<AuditEvent>> {
        let (org, filter, page) = (org.to_owned(), filter.clone(), page.clone());
        self.read(move |conn| {
            super::tenancy::get_org(conn, &org)?;
            list(conn, &org, &filter, &page)
        })
        .await
    }
}
