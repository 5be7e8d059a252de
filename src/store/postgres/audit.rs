//! The audit trail: one row per change, inside the change's transaction.

use super::rows::{self, execute, query};
use super::PgStore;
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
