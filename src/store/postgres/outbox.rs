//! The outbox on PostgreSQL (see the SQLite twin for its purpose).

use super::rows::execute;
use crate::domain::{DomainResult, Scope};
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

pub async fn record<C: GenericClient>(
    c: &C,
    scope: &Scope,
    kind: &str,
    target: &str,
    op: &str,
    seq: i64,
    at: DateTime<Utc>,
) -> DomainResult<()> {
    execute(
        c,
        "INSERT INTO outbox (seq, org_id, project_id, kind, target_id, op, at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[&seq, &scope.org, &scope.project, &kind, &target, &op, &at],
    )
    .await?;
    Ok(())
}
