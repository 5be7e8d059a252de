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
use crate::store::{passed_horizon, FeedBounds, Lease, OutboxEntry};
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
        let changes = list(&c, scope, after, limit).await?;
        // Read after the page: a prune that removed part of it shows here.
        passed_horizon(after, horizon(&c).await?)?;
        Ok(changes)
    }

    async fn read_feed(&self, after: i64, limit: usize) -> DomainResult<Vec<FeedChange>> {
        let c = self.client().await?;
        sequence(&c).await?;
        let found = rows::query(
            &c,
            "SELECT position, kind, target_id, op, version, at, org_id, project_id FROM outbox
             WHERE position > $1 ORDER BY position LIMIT $2",
            &[&after, &(limit as i64)],
        )
        .await?;
        Ok(found
            .iter()
            .map(|r| FeedChange {
                change: Change {
                    seq: r.get(0),
                    kind: r.get(1),
                    id: r.get(2),
                    op: r.get(3),
                    version: r.get(4),
                    at: rows::time(r.get(5)),
                },
                scope: Scope::new(r.get::<_, String>(6), r.get::<_, String>(7)),
            })
            .collect())
    }

    async fn feed_bounds(&self) -> DomainResult<FeedBounds> {
        let c = self.client().await?;
        // Caught up: a full batch means more may wait (after a bulk import),
        // and a head short of them would end a backup's window early.
        while sequence(&c).await? == SEQUENCE_BATCH as u64 {}
        let row = rows::query_one(
            &c,
            "SELECT (SELECT position FROM feed_horizon), (SELECT max(position) FROM outbox)",
            &[],
        )
        .await?;
        let horizon: i64 = row.get(0);
        let head: Option<i64> = row.get(1);
        Ok(FeedBounds {
            horizon,
            head: head.unwrap_or(0).max(horizon),
        })
    }

    async fn feed_cursor(&self, consumer: &str) -> DomainResult<Option<i64>> {
        let c = self.client().await?;
        let row = rows::query_opt(
            &c,
            "SELECT position FROM feed_cursors WHERE consumer = $1",
            &[&consumer],
        )
        .await?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn save_feed_cursor(&self, consumer: &str, position: i64) -> DomainResult<()> {
        let c = self.client().await?;
        execute(
            &c,
            "INSERT INTO feed_cursors (consumer, position, updated_at) VALUES ($1, $2, now())
             ON CONFLICT (consumer) DO UPDATE
             SET position = GREATEST(feed_cursors.position, EXCLUDED.position),
                 updated_at = EXCLUDED.updated_at",
            &[&consumer, &position],
        )
        .await?;
        Ok(())
    }

    async fn prune_feed(&self, before: &str, stale: &str, limit: usize) -> DomainResult<u64> {
        let c = self.client().await?;
        // Only positioned changes are pruned: position them first.
        sequence(&c).await?;
        let row = rows::query_one(
            &c,
            "WITH passed AS (SELECT coalesce(min(position), 9223372036854775807) AS upto
                             FROM feed_cursors WHERE updated_at >= $3::text::timestamptz),
                  oldest AS (SELECT seq FROM outbox
                             WHERE position IS NOT NULL AND position <= (SELECT upto FROM passed)
                             ORDER BY position LIMIT $2),
                  gone AS (DELETE FROM outbox o USING oldest
                           WHERE o.seq = oldest.seq AND o.at < $1::text::timestamptz
                           RETURNING o.position),
                  moved AS (UPDATE feed_horizon
                            SET position = GREATEST(position, (SELECT max(position) FROM gone))
                            WHERE EXISTS (SELECT 1 FROM gone))
             SELECT count(*) FROM gone",
            &[&before.to_owned(), &(limit as i64), &stale.to_owned()],
        )
        .await?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    async fn lease_consumer(&self, consumer: &str) -> DomainResult<Option<Lease>> {
        self.try_lease(crate::store::lease_key::consumer(consumer))
            .await
    }
}

async fn horizon<C: GenericClient>(c: &C) -> DomainResult<i64> {
    let row = rows::query_one(c, "SELECT position FROM feed_horizon", &[]).await?;
    Ok(row.get(0))
}

/// Gives feed positions to up to `SEQUENCE_BATCH` committed rows that have
/// none, oldest change first. Run by each feed read before it reads (so
/// nothing runs while nobody reads the feed); an advisory lock lets one
/// daemon at a time assign, and a reader that finds it taken reads what is
/// positioned already: rows positioned later come after its cursor. The
/// statement's snapshot is older than the lock: rows another daemon
/// positioned in between look unpositioned to it, so the update keeps
/// (`position IS NULL`, checked again on the row it would change) the
/// position they got, rather than give them a second, later one.
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
         UPDATE outbox o SET position = next.position FROM next
         WHERE o.seq = next.seq AND o.position IS NULL",
        &[&SEQUENCE_BATCH, &SEQUENCER_LOCK],
    )
    .await
}
