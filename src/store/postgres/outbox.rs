//! The outbox on PostgreSQL (see the SQLite twin for its purpose).
//!
//! Writers take change sequences before they commit, so they commit them
//! out of order: a reader paging by change sequence could pass seq 10
//! while the transaction holding seq 9 is still open, and never see 9. The
//! feed pages by `position` instead, which `sequence` gives to committed
//! rows only, in increasing order, one daemon at a time, before each feed
//! read: a row that commits later always gets a later position.

use super::rows::{self, execute};
use super::PgStore;
use crate::domain::*;
use crate::store::prelude::*;
use crate::store::OutboxEntry;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

/// Most rows one feed read positions (bounds its cost after a long time
/// without readers; the backlog is positioned over the next reads).
const SEQUENCE_BATCH: i64 = 10_000;
/// The advisory lock that lets one daemon at a time sequence.
const SEQUENCER_LOCK: i64 = 0x5354_5241_5441_0006;

pub async fn record<C: GenericClient>(
    c: &C,
    scope: &Scope,
    (kind, target, op, version): OutboxEntry<'_>,
    seq: i64,
    at: DateTime<Utc>,
) -> DomainResult<()> {
    execute(
        c,
        "INSERT INTO outbox (seq, org_id, project_id, kind, target_id, op, at, version)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &seq,
            &scope.org,
            &scope.project,
            &kind,
            &target,
            &op,
            &at,
            &version,
        ],
    )
    .await?;
    Ok(())
}

/// The project's changes after feed position `after`, in feed order (their
/// `seq` is the feed position; see `sequence`).
pub async fn list<C: GenericClient>(
    c: &C,
    scope: &Scope,
    after: i64,
    limit: usize,
) -> DomainResult<Vec<Change>> {
    let found = rows::query(
        c,
        "SELECT position, kind, target_id, op, version, at FROM outbox
         WHERE org_id = $1 AND project_id = $2 AND position > $3 ORDER BY position LIMIT $4",
        &[&scope.org, &scope.project, &after, &(limit as i64)],
    )
    .await?;
    Ok(found
        .iter()
        .map(|r| Change {
            seq: r.get(0),
            kind: r.get(1),
            id: r.get(2),
            op: r.get(3),
            version: r.get(4),
            at: rows::time(r.get(5)),
        })
        .collect())
}

#[async_trait]
impl ChangeStore for PgStore {
    async fn list_changes(
        &self,
        scope: &Scope,
        after: i64,
        limit: usize,
    ) -> DomainResult<Vec<Change>> {
        let c = self.client().await?;
        super::tenancy::get_project(&c, &scope.org, &scope.project).await?;
        sequence(&c).await?;
        list(&c, scope, after, limit).await
    }
}

/// Gives feed positions to up to `SEQUENCE_BATCH` committed rows that have
/// none, oldest change first. Run by each feed read before it reads (so
/// nothing runs while nobody reads the feed); an advisory lock lets one
/// daemon at a time assign, and a reader that finds it taken reads what is
/// positioned already: rows positioned later come after its cursor.
async fn sequence<C: GenericClient>(c: &C) -> DomainResult<u64> {
    // One statement, so one round trip and its own transaction: the lock
    // (an init plan, taken before the scan) is held until it commits.
    execute(
        c,
        "WITH leader AS (SELECT pg_try_advisory_xact_lock($2) AS held),
         next AS (
             SELECT seq, nextval('feed_position') AS position
             FROM (SELECT seq FROM outbox
                   WHERE position IS NULL AND (SELECT held FROM leader)
                   ORDER BY seq LIMIT $1) s)
         UPDATE outbox o SET position = next.position FROM next WHERE o.seq = next.seq",
        &[&SEQUENCE_BATCH, &SEQUENCER_LOCK],
    )
    .await
}
