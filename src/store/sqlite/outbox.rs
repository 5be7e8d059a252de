//! The outbox: one row per change, in the change's own transaction. It is
//! the project's public change feed (`ChangeStore`) and what derived
//! indexes will consume.

use super::{sql_err, SqliteStore};
use crate::clock;
use crate::domain::*;
use crate::store::prelude::*;
use crate::store::{passed_horizon, FeedBounds, Lease, OutboxEntry};
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

/// Every project's changes after `after`, in change-sequence order.
fn read_feed(conn: &Connection, after: i64, limit: usize) -> DomainResult<Vec<FeedChange>> {
    conn.prepare_cached(
        "SELECT seq, kind, target_id, op, version, at, org_id, project_id FROM outbox
         WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )
    .and_then(|mut st| {
        st.query_map(params![after, limit as i64], |r| {
            Ok(FeedChange {
                change: Change {
                    seq: r.get(0)?,
                    kind: r.get(1)?,
                    id: r.get(2)?,
                    op: r.get(3)?,
                    version: r.get(4)?,
                    at: r.get(5)?,
                },
                scope: Scope::new(r.get::<_, String>(6)?, r.get::<_, String>(7)?),
            })
        })?
        .collect()
    })
    .map_err(sql_err)
}

fn horizon(conn: &Connection) -> DomainResult<i64> {
    conn.prepare_cached("SELECT position FROM feed_horizon")
        .and_then(|mut st| st.query_row([], |r| r.get(0)))
        .map_err(sql_err)
}

/// Deletes up to `limit` of the oldest changes every consumer moved since
/// `stale` has passed, of those made before `before`, and moves the horizon
/// past them.
fn prune(conn: &Connection, before: &str, stale: &str, limit: usize) -> DomainResult<u64> {
    let gone: Option<(i64, i64)> = conn
        .prepare_cached(
            "WITH passed AS (SELECT coalesce(min(position), 9223372036854775807) AS upto
                             FROM feed_cursors WHERE updated_at >= ?3),
                  oldest AS (SELECT seq FROM outbox WHERE seq <= (SELECT upto FROM passed)
                             ORDER BY seq LIMIT ?2)
             SELECT count(*), max(seq) FROM outbox
             WHERE seq IN (SELECT seq FROM oldest) AND at < ?1",
        )
        .and_then(|mut st| {
            st.query_row(params![before, limit as i64, stale], |r| {
                Ok(r.get::<_, Option<i64>>(1)?
                    .map(|m| (r.get(0).unwrap_or(0), m)))
            })
        })
        .map_err(sql_err)?;
    let Some((count, newest)) = gone else {
        return Ok(0);
    };
    conn.prepare_cached("DELETE FROM outbox WHERE seq <= ?1 AND at < ?2")
        .and_then(|mut st| st.execute(params![newest, before]))
        .map_err(sql_err)?;
    conn.prepare_cached("UPDATE feed_horizon SET position = max(position, ?1)")
        .and_then(|mut st| st.execute([newest]))
        .map_err(sql_err)?;
    Ok(count as u64)
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
            let changes = list(conn, &s, after, limit)?;
            // Read after the page: a prune that removed part of it shows here.
            passed_horizon(after, horizon(conn)?)?;
            Ok(changes)
        })
        .await
    }

    async fn read_feed(&self, after: i64, limit: usize) -> DomainResult<Vec<FeedChange>> {
        self.read(move |conn| read_feed(conn, after, limit)).await
    }

    async fn feed_bounds(&self) -> DomainResult<FeedBounds> {
        self.read(|conn| {
            let head: Option<i64> = conn
                .query_row("SELECT max(seq) FROM outbox", [], |r| r.get(0))
                .map_err(sql_err)?;
            let horizon = horizon(conn)?;
            Ok(FeedBounds {
                horizon,
                head: head.unwrap_or(0).max(horizon),
            })
        })
        .await
    }

    async fn feed_cursor(&self, consumer: &str) -> DomainResult<Option<i64>> {
        let consumer = consumer.to_owned();
        self.read(move |conn| {
            use rusqlite::OptionalExtension;
            conn.query_row(
                "SELECT position FROM feed_cursors WHERE consumer = ?1",
                [consumer],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql_err)
        })
        .await
    }

    async fn save_feed_cursor(&self, consumer: &str, position: i64) -> DomainResult<()> {
        let consumer = consumer.to_owned();
        self.writer
            .write(move |conn, _| {
                conn.prepare_cached(
                    "INSERT INTO feed_cursors (consumer, position, updated_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (consumer) DO UPDATE
                     SET position = max(position, excluded.position), updated_at = excluded.updated_at",
                )
                .and_then(|mut st| st.execute(params![consumer, position, clock::now()]))
                .map_err(sql_err)?;
                Ok(())
            })
            .await
    }

    async fn prune_feed(&self, before: &str, stale: &str, limit: usize) -> DomainResult<u64> {
        let (before, stale) = (before.to_owned(), stale.to_owned());
        self.writer
            .write(move |conn, _| prune(conn, &before, &stale, limit))
            .await
    }

    async fn lease_consumer(&self, consumer: &str) -> DomainResult<Option<Lease>> {
        let key = crate::store::lease_key::consumer(consumer);
        Ok(super::lease::LocalLease::take(&self.leases, key).map(Lease::new))
    }
}
