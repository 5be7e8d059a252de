//! The write transaction: BEGIN, the project's share lock and the first
//! op's first statement travel together, one round trip for all three.
//! tokio-postgres sends requests in the order their futures are first
//! polled, and the server runs them in that order.
//!
//! A transaction that fails anywhere, COMMIT included, never reaches the
//! pool open: it is rolled back, or its connection is closed. Collisions
//! with concurrent writers roll the whole transaction back, so `retrying`
//! runs it again from the start, a few times, before giving up.

use super::rows::pg_err;
use super::tenancy;
use crate::domain::{DomainResult, Scope};
use crate::store::{WRITES_CONTENDED, WRITE_RETRIES};
use deadpool_postgres::Object;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;

pub struct WriteTx {
    client: Option<Object>,
    open: bool,
}

impl WriteTx {
    pub fn new(client: Object) -> Self {
        WriteTx {
            client: Some(client),
            // From the start: a ROLLBACK without a BEGIN is only a warning.
            open: true,
        }
    }

    pub fn client(&self) -> &Object {
        self.client.as_ref().expect("present until dropped")
    }

    /// Begins, takes the project's share lock (its pk is returned) and runs
    /// `first` — the first op, whose statements queue behind the lock. A
    /// missing project is reported before anything `first` found.
    pub async fn begin<T>(
        &self,
        scope: &Scope,
        first: impl Future<Output = T>,
    ) -> DomainResult<(i64, T)> {
        let c = self.client();
        // Prepared ahead (once per connection), so that the lock is sent
        // in this very poll, before anything `first` sends.
        let lock = tenancy::prepare_lock_project(c).await?;
        let (begun, pk, first) = futures_util::join!(
            c.batch_execute("BEGIN"),
            tenancy::lock_project_with(c, &lock, scope),
            first
        );
        begun.map_err(pg_err)?;
        Ok((pk?, first))
    }

    pub async fn commit(mut self) -> DomainResult<()> {
        self.open = false;
        let committed = self.client().batch_execute("COMMIT").await;
        settle(
            committed,
            self.client.take().expect("present until dropped"),
        )
    }
}

/// The answer to the COMMIT (or ROLLBACK) that ended a transaction on
/// `client`. After a failed one the connection's state is not trusted: it
/// is closed rather than returned to the pool.
pub fn settle(ended: Result<(), tokio_postgres::Error>, client: Object) -> DomainResult<()> {
    ended.map_err(|e| {
        drop(Object::take(client));
        pg_err(e)
    })
}

impl Drop for WriteTx {
    /// Not committed (an error, or the request was dropped): roll back
    /// before the connection goes back to the pool.
    fn drop(&mut self) {
        let Some(client) = self.client.take().filter(|_| self.open) else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(e) = client.batch_execute("ROLLBACK").await {
                        // State unknown: close it rather than pool it.
                        tracing::debug!(error = %e, "rollback failed; the connection is closed");
                        drop(Object::take(client));
                    }
                });
            }
            // No runtime (shutting down): close the connection rather than
            // return it to the pool inside a transaction.
            Err(_) => drop(Object::take(client)),
        }
    }
}

/// Attempts of one transaction before a collision is reported (503).
const ATTEMPTS: u32 = 8;

/// Runs `attempt` until it succeeds, fails for a reason other than a
/// collision with concurrent writers, or has been tried `ATTEMPTS` times.
/// Waits grow 4, 8, 16... ms, each with random jitter, so that the
/// transactions that collided do not collide again in step.
pub async fn retrying<T, F, Fut>(mut attempt: F) -> DomainResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = DomainResult<T>>,
{
    let mut tries = 1;
    loop {
        match attempt().await {
            Err(e) if e.is_contended() && tries < ATTEMPTS => {
                tracing::debug!(error = %e, tries, "write collided; retrying");
                WRITE_RETRIES.fetch_add(1, Ordering::Relaxed);
                let ceiling = 4u64 << tries;
                let wait = ceiling / 2 + rand::random::<u64>() % ceiling;
                tokio::time::sleep(Duration::from_millis(wait)).await;
                tries += 1;
            }
            Err(e) if e.is_contended() => {
                tracing::warn!(error = %e, tries, "write collided on every attempt; answering 503");
                WRITES_CONTENDED.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
            result => return result,
        }
    }
}
