//! The audit trail: one row per change, inside the change's transaction.

use super::rows::{self, execute, query};
use super::PgStore;
use crate::domain::export::AuditRecord;
use crate::domain::*;
use crate::store::cursor;
use crate::store::prelude::*;
use crate::store::AuditPlace;
use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use serde_json::Value;

pub async fn record<C: GenericClient>(
    c: &C,
    place: &AuditPlace<'_>,
    action: &str,
    target: &str,
    details: Value,
) -> DomainResult<()> {
    if place.caller.replay {
        return Ok(());
    }
    execute(
        c,
        "INSERT INTO audit_events (org_id, project_id, at, actor, action, target, ip, user_agent, details)
         VALUES ($1, $2, now(), $3, $4, $5, $6, $7, $8)",
        &[
            &place.org,
            &place.project,
            &place.caller.key_id,
            &action,
            &target,
            &place.caller.ip,
            &place.caller.user_agent,
            &details,
        ],
    )
    .await?;
    Ok(())
}

/// Every org's events after id `after`, made at or after `since` when
/// given, by id (backups: `Snapshot::audit`).
pub async fn all_after<C: GenericClient>(
    c: &C,
    after: i64,
    since: Option<&str>,
    limit: usize,
) -> DomainResult<Vec<AuditRecord>> {
    let since = since.map(rows::parse_time).transpose()?;
    let found = query(
        c,
        "SELECT id, org_id, at, actor, action, target, project_id, ip, user_agent, details
         FROM audit_events WHERE id > $1 AND ($2::timestamptz IS NULL OR at >= $2)
         ORDER BY id LIMIT $3",
        &[&after, &since, &(limit as i64)],
    )
    .await?;
    Ok(found
        .iter()
        .map(|r| AuditRecord {
            org: r.get(1),
            event: AuditEvent {
                id: r.get::<_, i64>(0).to_string(),
                at: rows::time(r.get(2)),
                actor: r.get(3),
                action: r.get(4),
                target: r.get(5),
                project: r.get(6),
                ip: r.get(7),
                user_agent: r.get(8),
                details: r.get(9),
            },
        })
        .collect())
}

/// Stores events with their ids unless stored (a restore), then numbers
/// new events after the largest id; how many were stored.
pub async fn insert_all<C: GenericClient>(c: &C, events: &[AuditRecord]) -> DomainResult<u64> {
    let mut stored = 0;
    for r in events {
        let e = &r.event;
        let id: i64 = e.id.parse().map_err(|_| {
            DomainError::BadRequest(format!("audit event id {:?} is not a number", e.id))
        })?;
        stored += execute(
            c,
            "INSERT INTO audit_events
                 (id, org_id, project_id, at, actor, action, target, ip, user_agent, details)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING",
            &[
                &id,
                &r.org,
                &e.project,
                &rows::parse_time(&e.at)?,
                &e.actor,
                &e.action,
                &e.target,
                &e.ip,
                &e.user_agent,
                &e.details,
            ],
        )
        .await?;
    }
    execute(
        c,
        "SELECT setval(pg_get_serial_sequence('audit_events', 'id'),
                       GREATEST((SELECT max(id) FROM audit_events), 1))",
        &[],
    )
    .await?;
    Ok(stored)
}

pub async fn list<C: GenericClient>(
    c: &C,
    org_id: &str,
    filter: &AuditFilter,
    page: &PageRequest,
) -> DomainResult<Page<AuditEvent>> {
    let before = cursor::before_event(page)?;
    let limit = page.limit as i64 + 1;
    let found = query(
        c,
        "SELECT id, at, actor, action, target, project_id, ip, user_agent, details FROM audit_events
         WHERE org_id = $1 AND id < $2 AND ($3::text IS NULL OR action = $3)
           AND ($4::text IS NULL OR target = $4)
         ORDER BY id DESC LIMIT $5",
        &[&org_id, &before, &filter.action, &filter.target, &limit],
    )
    .await?;
    let items: Vec<(i64, AuditEvent)> = found
        .iter()
        .map(|r| {
            let id: i64 = r.get(0);
            (
                id,
                AuditEvent {
                    id: id.to_string(),
                    at: rows::time(r.get(1)),
                    actor: r.get(2),
                    action: r.get(3),
                    target: r.get(4),
                    project: r.get(5),
                    ip: r.get(6),
                    user_agent: r.get(7),
                    details: r.get(8),
                },
            )
        })
        .collect();
    // The numeric id rides along only for the cursor.
    let page = cursor::page_after(items, page.limit, |(id, _)| cursor::AuditCursor {
        before: *id,
    });
    Ok(Page {
        items: page.items.into_iter().map(|(_, e)| e).collect(),
        next_cursor: page.next_cursor,
    })
}

#[async_trait]
impl AuditStore for PgStore {
    async fn list_audit(
        &self,
        org: &str,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> DomainResult<Page<AuditEvent>> {
        let c = self.client().await?;
        super::tenancy::get_org(&c, org).await?;
        list(&c, org, filter, page).await
    }
}
