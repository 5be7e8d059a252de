//! The lock protocol that keeps `relationships.live` true exactly when a
//! relationship is not deleted and both its ends are live, whatever several
//! daemons interleave (ARCHITECTURE.md, "Concurrent writers").
//!
//! Every write locks what its decision depends on before deciding, in one
//! global order: the project row (shared), then entity rows by id, then
//! relationship rows by id, then the AGE vertices and edges of those rows.
//! - An entity's liveness changes (delete, restore, purge) under its row
//!   locked exclusively; a restore also share-locks the other ends of the
//!   relationships it may revive, all entity rows in id order.
//! - A relationship is created, revived, patched or deleted only while both
//!   its ends are share-locked, so no end can change liveness meanwhile.
//! - AGE statements run after the table rows they mirror are locked, so
//!   AGE's own vertex and edge locks never meet a concurrent writer.
//!
//! Ops of one batch run in the order given, so two batches can still lock
//! in opposite orders: the server detects the deadlock and the write is
//! retried (`tx::retrying`).

use super::rows::{execute, query};
use crate::domain::*;
use deadpool_postgres::GenericClient;

/// Locks `exclusive` for update and each of `shared` for share, all in id
/// order: the shared ids before it, it, then the shared ids after it.
pub async fn entities<C: GenericClient>(
    c: &C,
    scope: &Scope,
    exclusive: &str,
    shared: &[String],
) -> DomainResult<()> {
    let (before, after): (Vec<&String>, Vec<&String>) = shared
        .iter()
        .filter(|id| id.as_str() != exclusive)
        .partition(|id| id.as_str() < exclusive);
    share(c, scope, &before).await?;
    execute(
        c,
        "SELECT 1 FROM entities WHERE org_id = $1 AND project_id = $2 AND id = $3 FOR UPDATE",
        &[&scope.org, &scope.project, &exclusive],
    )
    .await?;
    share(c, scope, &after).await
}

/// Share-locks `ids` in id order (a sort below the lock: rows are locked
/// as they leave it).
async fn share<C: GenericClient>(c: &C, scope: &Scope, ids: &[&String]) -> DomainResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    execute(
        c,
        "SELECT 1 FROM entities WHERE org_id = $1 AND project_id = $2 AND id = ANY($3)
         ORDER BY id FOR SHARE",
        &[&scope.org, &scope.project, &ids],
    )
    .await?;
    Ok(())
}

/// Share-locks both ends of relationship `id` (whatever their state).
pub async fn ends_of<C: GenericClient>(c: &C, scope: &Scope, id: &str) -> DomainResult<()> {
    execute(
        c,
        "SELECT 1 FROM entities e
         WHERE e.org_id = $1 AND e.project_id = $2
           AND e.id IN (SELECT r.from_id FROM relationships r
                        WHERE r.org_id = $1 AND r.project_id = $2 AND r.id = $3
                        UNION ALL
                        SELECT r.to_id FROM relationships r
                        WHERE r.org_id = $1 AND r.project_id = $2 AND r.id = $3)
         ORDER BY e.id FOR SHARE OF e",
        &[&scope.org, &scope.project, &id],
    )
    .await?;
    Ok(())
}

/// Locks, in id order, the relationships touching `entity` that are not
/// deleted (their rows and edges are what its liveness change rewrites).
pub async fn relationships_touching<C: GenericClient>(
    c: &C,
    scope: &Scope,
    entity: &str,
) -> DomainResult<()> {
    execute(
        c,
        "SELECT 1 FROM relationships
         WHERE org_id = $1 AND project_id = $2 AND (from_id = $3 OR to_id = $3)
           AND deleted_at IS NULL
         ORDER BY id FOR UPDATE",
        &[&scope.org, &scope.project, &entity],
    )
    .await?;
    Ok(())
}

/// The other ends of the hidden, undeleted relationships touching
/// `entity`: what a restore of it must share-lock before reviving them.
pub async fn revivable_ends<C: GenericClient>(
    c: &C,
    scope: &Scope,
    entity: &str,
) -> DomainResult<Vec<String>> {
    Ok(query(
        c,
        "SELECT DISTINCT CASE WHEN from_id = $3 THEN to_id ELSE from_id END
         FROM relationships
         WHERE org_id = $1 AND project_id = $2 AND (from_id = $3 OR to_id = $3)
           AND NOT live AND deleted_at IS NULL",
        &[&scope.org, &scope.project, &entity],
    )
    .await?
    .iter()
    .map(|r| r.get(0))
    .collect())
}
