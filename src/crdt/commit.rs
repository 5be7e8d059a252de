//! Group commit for live updates. Every update a client sends (socket,
//! HTTP append, gateway batch) goes through one durable append path per
//! shard of projects: while one group is being committed the next fills
//! up, so one transaction (and one fsync) carries many writers' updates
//! across connections and documents. Relays fan out from what committed,
//! in commit order, each with its sequence number: a document's relays are
//! published in seq order, which lets a connection skip what a catch-up
//! already sent it.

use super::sync::{self, DocHub, Relay};
use crate::domain::{DocAppend, DomainError, DomainResult, Scope};
use crate::store::DynStore;
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::{mpsc, oneshot};

/// The daemon's shards: groups committing at once (on PostgreSQL, each on
/// its own connection; SQLite's single writer takes them in turn). A
/// project always goes to the same shard (a write, even a gateway batch of
/// many documents, is of one project), so each document is stored and
/// relayed by one task: in the order sent, relays in seq order.
pub const SHARDS: usize = 8;

/// Writes waiting for a shard before writers wait to hand theirs over
/// (each holds at most one request's updates).
const QUEUE: usize = 1024;

/// A group stops growing past this many updates or bytes (the first write
/// always goes in), which bounds a transaction and its memory.
const GROUP_UPDATES: usize = 4096;
const GROUP_BYTES: usize = 8 << 20;

/// A durable append path, cheap to clone.
#[derive(Clone)]
pub struct Committer {
    shards: Arc<[mpsc::Sender<Pending>]>,
}

/// One write: all of its appends are stored or none is.
struct Pending {
    appends: Vec<DocAppend>,
    /// The connection it came from (0: none), not sent its own relays.
    from: u64,
    reply: oneshot::Sender<DomainResult<Vec<(i64, i64)>>>,
}

impl Pending {
    fn updates(&self) -> usize {
        self.appends.iter().map(|a| a.updates.len()).sum()
    }

    fn bytes(&self) -> usize {
        let rows = self.appends.iter().flat_map(|a| &a.updates);
        rows.map(Vec::len).sum()
    }
}

impl Committer {
    /// Starts `shards` tasks (on the current runtime); they end when the
    /// last clone is dropped.
    pub fn start(store: DynStore, hub: Arc<DocHub>, shards: usize) -> Self {
        let shards = (0..shards.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(QUEUE);
                tokio::spawn(run_shard(store.clone(), hub.clone(), rx));
                tx
            })
            .collect();
        Committer { shards }
    }

    /// Stores `appends` (all or none) and relays them once durable; answers
    /// each append's (first, last) sequence numbers. The write is handed
    /// over at once: dropping the returned future does not withdraw it.
    pub async fn append(
        &self,
        appends: Vec<DocAppend>,
        from: u64,
    ) -> DomainResult<Vec<(i64, i64)>> {
        self.submit(appends, from).await?.await
    }

    /// Hands a write over and returns at once with its outcome to come: a
    /// connection may keep several writes in flight, answered in the order
    /// submitted.
    pub async fn submit(&self, appends: Vec<DocAppend>, from: u64) -> DomainResult<Submitted> {
        let first = appends
            .first()
            .ok_or_else(|| DomainError::BadRequest("no updates given".into()))?;
        if appends.iter().any(|a| a.scope != first.scope) {
            return Err(DomainError::internal("a write spans projects"));
        }
        let shard = &self.shards[shard_of(&first.scope, self.shards.len())];
        let (reply, outcome) = oneshot::channel();
        let pending = Pending {
            appends,
            from,
            reply,
        };
        shard.send(pending).await.map_err(|_| stopped())?;
        Ok(Submitted(outcome))
    }
}

/// The outcome of a submitted write: each append's (first, last) once
/// durable, or why it was refused.
pub struct Submitted(oneshot::Receiver<DomainResult<Vec<(i64, i64)>>>);

impl Future for Submitted {
    type Output = DomainResult<Vec<(i64, i64)>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or_else(|_| Err(stopped())))
    }
}

fn stopped() -> DomainError {
    DomainError::Unavailable("the daemon is stopping".into())
}

fn shard_of(scope: &Scope, shards: usize) -> usize {
    let mut h = DefaultHasher::new();
    scope.hash(&mut h);
    (h.finish() % shards as u64) as usize
}

async fn run_shard(store: DynStore, hub: Arc<DocHub>, mut queue: mpsc::Receiver<Pending>) {
    while let Some(first) = queue.recv().await {
        let (mut updates, mut bytes) = (first.updates(), first.bytes());
        let mut group = vec![first];
        while updates < GROUP_UPDATES && bytes < GROUP_BYTES {
            let Ok(next) = queue.try_recv() else { break };
            updates += next.updates();
            bytes += next.bytes();
            group.push(next);
        }
        commit(&store, &hub, group).await;
    }
}

/// Commits a group in one transaction. If one of its writes refused it
/// (a document hidden or gone, a project deleted), each write alone, so a
/// bad write fails only itself; any other failure (storage faults, an
/// ambiguous commit) answers the whole group, retrying nothing.
async fn commit(store: &DynStore, hub: &DocHub, group: Vec<Pending>) {
    let all: Vec<DocAppend> = group.iter().flat_map(|p| p.appends.clone()).collect();
    let e = match store.append_batch(all).await {
        Ok(seqs) => {
            let mut seqs = seqs.into_iter();
            for pending in group {
                let mine = seqs.by_ref().take(pending.appends.len()).collect();
                answer(hub, pending, Ok(mine));
            }
            return;
        }
        Err(e) => e,
    };
    if group.len() == 1 || !refused_by_a_write(&e) {
        if !refused_by_a_write(&e) {
            tracing::warn!(error = %e, writes = group.len(), "a group commit failed");
        }
        for pending in group {
            answer(hub, pending, Err(the_same(&e)));
        }
        return;
    }
    // A connection's writes depend on its earlier ones: once one is
    // refused, its later writes in the group are not stored either.
    let mut refused = std::collections::HashSet::new();
    for pending in group {
        let outcome = match pending.from != 0 && refused.contains(&pending.from) {
            true => Err(DomainError::Conflict(
                "an earlier update of this connection was refused".into(),
            )),
            false => store.append_batch(pending.appends.clone()).await,
        };
        if outcome.is_err() {
            refused.insert(pending.from);
        }
        answer(hub, pending, outcome);
    }
}

/// The group's failure, for each of its writers: what a client may retry
/// on stays so, the rest is internal (logged once, above).
fn the_same(e: &DomainError) -> DomainError {
    match e {
        DomainError::DiskFull => DomainError::DiskFull,
        DomainError::Contended(m) => DomainError::Contended(m.clone()),
        DomainError::Unavailable(m) => DomainError::Unavailable(m.clone()),
        DomainError::NotFound(m) => DomainError::NotFound(m.clone()),
        e => DomainError::internal(e),
    }
}

/// Whether an error is one write's refusal rather than a fault of the
/// store (which retrying each write alone would only repeat).
fn refused_by_a_write(e: &DomainError) -> bool {
    matches!(
        e,
        DomainError::NotFound(_)
            | DomainError::Gone(_)
            | DomainError::BadRequest(_)
            | DomainError::Unprocessable(_)
    )
}

/// Relays a stored write to the documents' other connections (before its
/// writer hears, so its acknowledgement never overtakes the relay), then
/// answers it.
fn answer(hub: &DocHub, pending: Pending, outcome: DomainResult<Vec<(i64, i64)>>) {
    if let Ok(seqs) = &outcome {
        let mut stored = 0;
        for (append, (first, _)) in pending.appends.iter().zip(seqs) {
            hub.publish_all(&append.scope, &append.doc, || {
                let seqs = *first..;
                let relays = seqs.zip(&append.updates).map(|(seq, update)| Relay {
                    from: pending.from,
                    seq: Some(seq),
                    message: Arc::new(sync::update(update.clone())),
                });
                relays.collect()
            });
            stored += append.updates.len() as u64;
        }
        super::UPDATES_STORED.fetch_add(stored, Relaxed);
    }
    // The writer may have gone (its connection closed): the write stands.
    let _ = pending.reply.send(outcome);
}
