//! The lifetime of a daemon's background work: one cancellation token that
//! says "stop", and one task tracker that knows what is still running.
//!
//! Every task that lives as long as the daemon (WebSocket sessions, job
//! runs, the key revocation listener) runs on a [`Lifecycle`] and returns
//! soon after [`Lifecycle::cancelled`] resolves. [`Lifecycle::stop`] cancels
//! and waits, bounded, so a shutdown ends even if a task does not. A store
//! keeps a `Lifecycle` of its own for its tasks (PostgreSQL's change
//! notifier and listener): they must outlive the daemon's tasks, whose
//! writes still send change notices, and stop in `Store::close`.

use std::future::Future;
use std::time::Duration;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tokio_util::task::task_tracker::TaskTrackerToken;
use tokio_util::task::TaskTracker;

/// A cancellation token and the tasks it stops; cheap to clone (handles).
#[derive(Clone, Default)]
pub struct Lifecycle {
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Lifecycle {
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns a task that `stop` waits for. It must watch `cancelled()`.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(task);
    }

    /// Counts work that someone else spawns (a WebSocket session, spawned
    /// by axum after the upgrade) from now until the guard is dropped.
    pub fn hold(&self) -> TaskTrackerToken {
        self.tracker.token()
    }

    /// Resolves once stopping has begun.
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.token.cancelled()
    }

    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Cancels, then waits up to `grace` for every task to end. Returns
    /// false, with a log line, when some had to be abandoned (they are
    /// dropped with the runtime).
    pub async fn stop(&self, what: &'static str, grace: Duration) -> bool {
        self.token.cancel();
        self.tracker.close();
        match tokio::time::timeout(grace, self.tracker.wait()).await {
            Ok(()) => true,
            Err(_) => {
                tracing::warn!(
                    what,
                    abandoned = self.tracker.len(),
                    grace_ms = grace.as_millis() as u64,
                    "tasks still running after the shutdown grace period; abandoning them"
                );
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stop_waits_for_tasks_that_watch_the_token() {
        let life = Lifecycle::new();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = life.clone();
        life.spawn(async move {
            task.cancelled().await;
            let _ = tx.send("finished");
        });
        assert!(life.stop("test", Duration::from_secs(5)).await);
        assert_eq!(rx.await.unwrap(), "finished");
    }

    #[tokio::test]
    async fn stop_gives_up_on_a_task_that_ignores_it() {
        let life = Lifecycle::new();
        let held = life.hold();
        assert!(!life.stop("test", Duration::from_millis(50)).await);
        drop(held);
        assert!(life.stop("test", Duration::from_millis(50)).await);
    }
}
