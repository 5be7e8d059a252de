//! Runs each consumer of the change feed: one leader per consumer across
//! every daemon sharing the store, batches in feed order from a durable
//! cursor, retries with backoff, and the outbox pruned behind the slowest
//! consumer.

use super::status::FeedStatus;
use super::Consumer;
use crate::domain::{DomainResult, FeedChange};
use crate::lifecycle::Lifecycle;
use crate::store::{DynStore, Lease};
use std::sync::Arc;
use std::time::Duration;

/// How the runner paces itself.
#[derive(Debug, Clone)]
pub struct FeedSettings {
    /// Most changes handed to a consumer at once.
    pub batch: usize,
    /// How long a caught-up consumer waits before reading again.
    pub poll: Duration,
    /// How long changes stay in the outbox for public feed readers after
    /// every consumer has passed them.
    pub retention: Duration,
    /// How long a daemon that is not a consumer's leader waits before
    /// trying to become it.
    pub follow: Duration,
}

impl Default for FeedSettings {
    fn default() -> Self {
        FeedSettings {
            batch: 500,
            poll: Duration::from_millis(100),
            retention: Duration::from_secs(3600),
            follow: Duration::from_secs(2),
        }
    }
}

/// Most changes one prune statement deletes.
pub const PRUNE_BATCH: usize = 10_000;

/// First and longest wait between retries of a failing step.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Starts one task per consumer on the lifecycle; they end when it is
/// cancelled (a batch cut short is applied again by the next leader).
pub fn start(
    store: DynStore,
    consumers: &[Arc<dyn Consumer>],
    settings: &FeedSettings,
    status: &Arc<FeedStatus>,
    lifecycle: &Lifecycle,
) {
    for consumer in consumers {
        let runner = Runner {
            store: store.clone(),
            consumer: consumer.clone(),
            settings: settings.clone(),
            status: status.clone(),
            lifecycle: lifecycle.clone(),
        };
        lifecycle.spawn(async move { runner.run().await });
    }
}

/// How long a consumer's cursor holds the feed without moving: a consumer
/// no daemon runs any more (an embedding model replaced, Meilisearch
/// removed) would otherwise keep every change from then on. Changes wait
/// for live consumers in seconds; one that comes back after this finds
/// its cursor behind the horizon and rebuilds from the data.
pub const STALE_CURSOR: Duration = Duration::from_secs(7 * 24 * 3600);

/// Deletes what every consumer has passed and public readers no longer
/// need, up to `rounds` batches; returns how many changes went.
pub async fn prune(
    store: &DynStore,
    retention: Duration,
    batch: usize,
    rounds: usize,
) -> DomainResult<u64> {
    let ago = |d: Duration| {
        let t = chrono::Utc::now() - chrono::Duration::from_std(d).unwrap_or_default();
        crate::clock::format(t)
    };
    let (before, stale) = (ago(retention), ago(STALE_CURSOR));
    let mut total = 0;
    for _ in 0..rounds {
        let gone = store.prune_feed(&before, &stale, batch).await?;
        total += gone;
        if gone < batch as u64 {
            break;
        }
    }
    Ok(total)
}

struct Runner {
    store: DynStore,
    consumer: Arc<dyn Consumer>,
    settings: FeedSettings,
    status: Arc<FeedStatus>,
    lifecycle: Lifecycle,
}

/// Why a leader stopped leading.
enum Stop {
    Shutdown,
    LeaseLost,
}

impl Runner {
    fn name(&self) -> &'static str {
        self.consumer.name()
    }

    /// Follows until this daemon holds the consumer's lease, then leads
    /// until shutdown (or until the lease is lost, then follows again).
    async fn run(&self) {
        while !self.lifecycle.is_cancelled() {
            match self.store.lease_consumer(self.name()).await {
                Ok(Some(lease)) => {
                    self.status.set_leader(self.name(), true);
                    let stop = self.lead(&lease).await;
                    self.status.set_leader(self.name(), false);
                    match stop {
                        Stop::Shutdown => return,
                        Stop::LeaseLost => {
                            tracing::warn!(consumer = self.name(), "lost the consumer's lease")
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(consumer = self.name(), error = %e, "cannot take the consumer's lease")
                }
            }
            if !self.pause(self.settings.follow).await {
                return;
            }
        }
    }

    async fn lead(&self, lease: &Lease) -> Stop {
        let Some(mut cursor) = self.starting_cursor(lease).await else {
            return self.stop_reason(lease);
        };
        loop {
            if self.lifecycle.is_cancelled() || lease.is_lost() {
                return self.stop_reason(lease);
            }
            let batch = match self
                .retrying("read the feed", lease, || {
                    self.store.read_feed(cursor, self.settings.batch)
                })
                .await
            {
                Some(batch) => batch,
                None => return self.stop_reason(lease),
            };
            let Some(last) = batch.last().map(|c| c.change.seq) else {
                self.status.caught_up(self.name(), cursor);
                if !self.pause(self.settings.poll).await {
                    return Stop::Shutdown;
                }
                continue;
            };
            self.status
                .pending(self.name(), cursor, &batch[0].change.at);
            if !self.apply(&batch, lease).await {
                return self.stop_reason(lease);
            }
            cursor = last;
            if self
                .retrying("save the cursor", lease, || {
                    self.store.save_feed_cursor(self.name(), cursor)
                })
                .await
                .is_none()
            {
                return self.stop_reason(lease);
            }
            self.status.applied(self.name(), cursor, batch.len());
            // Behind this consumer the outbox may now be prunable; a full
            // batch means more is waiting, so pruning waits for a lull.
            if batch.len() < self.settings.batch {
                if let Err(e) = prune(&self.store, self.settings.retention, PRUNE_BATCH, 10).await {
                    tracing::warn!(error = %e, "could not prune the outbox");
                }
            }
        }
    }

    /// Where the consumer goes on from: its cursor, or (new to a pruned
    /// feed, or behind what it retains) the head after a rebuild from the
    /// data. None on shutdown or a lost lease.
    async fn starting_cursor(&self, lease: &Lease) -> Option<i64> {
        let saved = self
            .retrying("read the cursor", lease, || {
                self.store.feed_cursor(self.name())
            })
            .await?;
        if saved.is_none() {
            // Registered first, so no prune passes it from here on.
            self.retrying("register the consumer", lease, || {
                self.store.save_feed_cursor(self.name(), 0)
            })
            .await?;
        }
        let bounds = self
            .retrying("read the feed's bounds", lease, || self.store.feed_bounds())
            .await?;
        let cursor = saved.unwrap_or(0);
        if cursor >= bounds.horizon {
            return Some(cursor);
        }
        tracing::info!(
            consumer = self.name(),
            cursor,
            horizon = bounds.horizon,
            "the changes this consumer needs were pruned: rebuilding from the data"
        );
        // The head is taken before the rebuild: changes after it are read
        // from the feed, those before are in the data the rebuild reads.
        let mut backoff = BACKOFF_FIRST;
        loop {
            match self.consumer.rebuild().await {
                Ok(()) => break,
                Err(e) => {
                    self.status.failed(self.name(), &e.to_string());
                    tracing::warn!(consumer = self.name(), error = %e, "rebuild failed; retrying");
                    if lease.is_lost() || !self.pause(backoff).await {
                        return None;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
        self.retrying("save the cursor", lease, || {
            self.store.save_feed_cursor(self.name(), bounds.head)
        })
        .await?;
        Some(bounds.head)
    }

    /// Applies a batch until it succeeds; false on shutdown or a lost lease.
    async fn apply(&self, batch: &[FeedChange], lease: &Lease) -> bool {
        let mut backoff = BACKOFF_FIRST;
        loop {
            match self.consumer.apply(batch).await {
                Ok(()) => return true,
                Err(e) => {
                    self.status.failed(self.name(), &format!("{e:#}"));
                    tracing::warn!(consumer = self.name(), error = %format!("{e:#}"), retry_in = ?backoff, "consumer failed; retrying the batch");
                }
            }
            if lease.is_lost() || !self.pause(backoff).await {
                return false;
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Runs a store step until it succeeds; None on shutdown or a lost lease.
    async fn retrying<T, F, Fut>(&self, what: &str, lease: &Lease, step: F) -> Option<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = DomainResult<T>>,
    {
        let mut backoff = BACKOFF_FIRST;
        loop {
            match step().await {
                Ok(v) => return Some(v),
                Err(e) => {
                    self.status.failed(self.name(), &e.to_string());
                    tracing::warn!(consumer = self.name(), error = %e, "could not {what}; retrying");
                }
            }
            if lease.is_lost() || !self.pause(backoff).await {
                return None;
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Waits `d`; false when the daemon stops meanwhile.
    async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => !self.lifecycle.is_cancelled(),
            _ = self.lifecycle.cancelled() => false,
        }
    }

    fn stop_reason(&self, lease: &Lease) -> Stop {
        if lease.is_lost() && !self.lifecycle.is_cancelled() {
            Stop::LeaseLost
        } else {
            Stop::Shutdown
        }
    }
}
