//! The audit trail: one row per write, inside the write's transaction.

use super::sql_err;
use super::SqliteStore;
use crate::clock;
use crate::domain::export::AuditRecord;
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
    if place.caller.replay {
        return Ok(());
    }
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

/// Every org's events after id `after`, made at or after `since` when
/// given, by id (backups: `Snapshot::audit`).
pub fn all_after(
    conn: &Connection,
    after: i64,
    since: Option<&str>,
    limit: usize,
) -> DomainResult<Vec<AuditRecord>> {
    conn.prepare_cached(
        "SELECT id, org_id, at, actor, action, target, project_id, ip, user_agent, details
         FROM audit_events WHERE id > ?1 AND (?2 IS NULL OR at >= ?2) ORDER BY id LIMIT ?3",
    )
    .and_then(|mut st| {
        st.query_map(params![after, since, limit as i64], |r| {
            let details: String = r.get(9)?;
            Ok(AuditRecord {
                org: r.get(1)?,
                event: AuditEvent {
                    id: r.get::<_, i64>(0)?.to_string(),
                    at: r.get(2)?,
                    actor: r.get(3)?,
                    action: r.get(4)?,
                    target: r.get(5)?,
                    project: r.get(6)?,
                    ip: r.get(7)?,
                    user_agent: r.get(8)?,
                    details: serde_json::from_str(&details).unwrap_or(Value::Null),
                },
            })
        })?
        .collect()
    })
    .map_err(sql_err)
}

/// Stores events with their ids unless stored (a restore); how many were.
pub fn insert_all(conn: &Connection, events: &[AuditRecord]) -> DomainResult<u64> {
    let mut st = conn
        .prepare_cached(
            "INSERT INTO audit_events
                 (id, org_id, project_id, at, actor, action, target, ip, user_agent, details)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT (id) DO NOTHING",
        )
        .map_err(sql_err)?;
    let mut stored = 0;
    for r in events {
        let e = &r.event;
        let id: i64 = e.id.parse().map_err(|_| {
            DomainError::BadRequest(format!("audit event id {:?} is not a number", e.id))
        })?;
        stored += st
            .execute(params![
                id,
                r.org,
                e.project,
                e.at,
                e.actor,
                e.action,
                e.target,
                e.ip,
                e.user_agent,
                e.details.to_string()
            ])
            .map_err(sql_err)? as u64;
    }
    Ok(stored)
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
