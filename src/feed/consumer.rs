//! What a consumer of the change feed is: something derived from the data
//! (a search index, embeddings) kept up to date from the outbox.

pub use crate::domain::FeedChange;
use async_trait::async_trait;

/// A consumer of the change feed. The runner (`feed::run`) hands it batches
/// in feed order, at least once: after a failure, a restart or a change of
/// leader a batch may come again, so every effect must be idempotent (an
/// upsert of the current state, a delete of something already gone).
///
/// A consumer reads the current state of what changed (one change of an
/// entity that changed three times can carry the newest state for all
/// three). `apply` returns `Err` only for failures worth retrying (a
/// service that does not answer): the runner retries the same batch with
/// backoff and does not move the cursor. A change that can never be
/// applied (a document the service refuses) is logged and skipped, so one
/// bad row never stops the feed.
#[async_trait]
pub trait Consumer: Send + Sync + 'static {
    /// Stable name: the key of its durable cursor and of its leadership.
    fn name(&self) -> &'static str;
    /// Applies a batch of changes (in feed order).
    async fn apply(&self, changes: &[FeedChange]) -> anyhow::Result<()>;
    /// Brings everything derived up to date from the current data, all
    /// projects. The runner calls it when the consumer is new to a feed that
    /// has already been pruned, or fell behind what the outbox retains:
    /// the changes it missed are gone, so it starts from the data itself.
    async fn rebuild(&self) -> anyhow::Result<()>;
}
