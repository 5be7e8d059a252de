//! Cross-daemon cache coherence: daemons NOTIFY what they changed, and one
//! LISTEN connection per daemon evicts those entries from the local caches.
//! The entity cache is used only while that connection is up: if it drops,
//! notices may be lost, so the cache is cleared and bypassed until it is back.
//!
//! Entity notices go out after commit, batched by one task per daemon: a
//! NOTIFY in the write's own transaction takes PostgreSQL's global notify
//! lock from pre-commit until the commit record is flushed, which serialised
//! every write (~600/s). The price is a window between commit and notice in
//! which a killed daemon loses its notices; cache entries expire after
//! `postgres::CACHE_TTL` so such a loss is bounded. Key revocations and
//! deletes of whole projects or orgs are rare and security-relevant: they
//! still NOTIFY inside their transaction.
//!
//! Both tasks run on the store's `Lifecycle`: when `Store::close` cancels
//! it, the notifier sends what is queued (one last batch) and ends, and the
//! listener drops its connection.

use super::rows::execute;
use super::tls::MakeRustls;
use crate::domain::{DomainResult, Scope};
use crate::lifecycle::Lifecycle;
use crate::store::ChangeSink;
use deadpool_postgres::GenericClient;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio_postgres::AsyncMessage;
use tokio_util::task::AbortOnDropHandle;

const CHANNEL: &str = "strata_changes";
/// PostgreSQL refuses payloads of 8000 bytes or more.
const MAX_PAYLOAD: usize = 7_900;
/// Beyond this many unsent notices (database unreachable), send one `All`.
const MAX_PENDING: usize = 100_000;

/// One payload holds one notice (in-transaction sends) or a batch.
#[derive(Deserialize)]
#[serde(untagged)]
enum Payload {
    One(Notice),
    Many(Vec<Notice>),
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
enum Notice {
    Entity {
        o: String,
        p: String,
        i: String,
        s: i64,
    },
    Key {
        i: String,
    },
    All,
}

async fn send<C: GenericClient>(c: &C, notice: &Notice) -> DomainResult<()> {
    let payload = serde_json::to_string(notice).expect("notices serialise");
    execute(c, "SELECT pg_notify($1, $2)", &[&CHANNEL, &payload]).await?;
    Ok(())
}

/// Sends entity notices after commit, in batches, through the pool.
#[derive(Clone)]
pub struct Notifier {
    queue: mpsc::UnboundedSender<Notice>,
}

impl Notifier {
    pub fn start(pool: deadpool_postgres::Pool, tasks: &Lifecycle) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        tasks.spawn(send_batches(pool, rx, tasks.clone()));
        Notifier { queue }
    }

    /// The entity changed at change `seq` (a commit that happened, or may have).
    pub fn entity_changed(&self, scope: &Scope, id: &str, seq: i64) {
        let notice = Notice::Entity {
            o: scope.org.clone(),
            p: scope.project.clone(),
            i: id.to_owned(),
            s: seq,
        };
        let _ = self.queue.send(notice);
    }
}

/// Drains the queue: whatever arrived while the previous batch was being
/// sent goes out in the next one, one statement per batch. Once `tasks` is
/// cancelled it stops waiting, sends what is queued and ends (one attempt:
/// other daemons' cache entries expire anyway).
async fn send_batches(
    pool: deadpool_postgres::Pool,
    mut rx: mpsc::UnboundedReceiver<Notice>,
    tasks: Lifecycle,
) {
    let mut pending = Vec::new();
    loop {
        let stopping = tasks.is_cancelled();
        if pending.is_empty() && !stopping {
            tokio::select! {
                biased;
                _ = tasks.cancelled() => {}
                n = rx.recv() => match n {
                    Some(n) => pending.push(n),
                    None => return,
                },
            }
        }
        while let Ok(n) = rx.try_recv() {
            pending.push(n);
        }
        if pending.is_empty() {
            if stopping {
                return;
            }
            continue;
        }
        if pending.len() > MAX_PENDING {
            pending = vec![Notice::All];
        }
        match send_batch(&pool, &pending).await {
            Ok(()) => pending.clear(),
            Err(e) if stopping => {
                tracing::warn!(error = %e, unsent = pending.len(), "could not send the last change notices");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, unsent = pending.len(), "could not send change notices; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = tasks.cancelled() => {}
                }
            }
        }
    }
}

async fn send_batch(pool: &deadpool_postgres::Pool, notices: &[Notice]) -> anyhow::Result<()> {
    let client = pool.get().await?;
    // Losing a notice on a server crash is harmless (listeners reconnect and
    // clear), so this commit need not wait for the WAL flush.
    let sql = "SELECT set_config('synchronous_commit', 'off', true),
                      (SELECT count(pg_notify($1, p)) FROM unnest($2::text[]) AS p)";
    let st = client.prepare_cached(sql).await?;
    client.execute(&st, &[&CHANNEL, &payloads(notices)]).await?;
    Ok(())
}

/// JSON arrays of notices, each under the payload limit.
fn payloads(notices: &[Notice]) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::from("[");
    for n in notices {
        let one = serde_json::to_string(n).expect("notices serialise");
        if current.len() > 1 && current.len() + one.len() + 1 > MAX_PAYLOAD {
            current.push(']');
            out.push(std::mem::replace(&mut current, String::from("[")));
        }
        if current.len() > 1 {
            current.push(',');
        }
        current.push_str(&one);
    }
    current.push(']');
    out.push(current);
    out
}

pub async fn key_revoked<C: GenericClient>(c: &C, id: &str) -> DomainResult<()> {
    send(c, &Notice::Key { i: id.to_owned() }).await
}

pub async fn everything_changed<C: GenericClient>(c: &C) -> DomainResult<()> {
    send(c, &Notice::All).await
}

/// The listening side, one per daemon.
pub struct Feed {
    /// None without a listener.
    live: Option<Arc<AtomicBool>>,
    keys: Option<broadcast::Sender<String>>,
    sink: Sink,
}

/// Where the listener reports other daemons' entity changes: the cache
/// above the store, once it watches (`Store::watch_changes`).
#[derive(Clone, Default)]
struct Sink(Arc<OnceLock<Arc<dyn ChangeSink>>>);

impl Sink {
    fn entity_changed(&self, scope: &Scope, id: &str, seq: i64) {
        if let Some(sink) = self.0.get() {
            sink.entity_changed(scope, id, seq);
        }
    }

    fn everything_changed(&self) {
        if let Some(sink) = self.0.get() {
            sink.everything_changed();
        }
    }
}

impl Feed {
    /// No listener: a cache above the store stays off (correct, just slower).
    pub fn disabled() -> Self {
        Feed {
            live: None,
            keys: None,
            sink: Sink::default(),
        }
    }

    pub fn start(pg: tokio_postgres::Config, tls: MakeRustls, tasks: &Lifecycle) -> Self {
        let live = Arc::new(AtomicBool::new(false));
        let (keys, _) = broadcast::channel(1024);
        let sink = Sink::default();
        let (task_live, task_keys, task_sink) = (live.clone(), keys.clone(), sink.clone());
        let life = tasks.clone();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    listened = listen(&pg, &tls, &task_sink, &task_live, &task_keys) => {
                        if let Err(e) = listened {
                            // With its causes: tokio-postgres's own text of a
                            // failed handshake omits why (the certificate).
                            let error = anyhow::Error::new(e);
                            tracing::warn!(error = %format!("{error:#}"), "change listener lost; entity cache off until it is back");
                        }
                    }
                    _ = life.cancelled() => {}
                }
                task_live.store(false, Ordering::SeqCst);
                task_sink.everything_changed();
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = life.cancelled() => return,
                }
            }
        });
        Feed {
            live: Some(live),
            keys: Some(keys),
            sink,
        }
    }

    /// Up while notices are being heard (None without a listener).
    pub fn live_flag(&self) -> Option<Arc<AtomicBool>> {
        self.live.clone()
    }

    /// Reports other daemons' entity changes to `sink` from now on (the
    /// first sink stays: one cache per store).
    pub fn watch(&self, sink: Arc<dyn ChangeSink>) {
        let _ = self.sink.0.set(sink);
    }

    pub fn key_revocations(&self) -> Option<broadcast::Receiver<String>> {
        self.keys.as_ref().map(|k| k.subscribe())
    }
}

async fn listen(
    pg: &tokio_postgres::Config,
    tls: &MakeRustls,
    cache: &Sink,
    live: &AtomicBool,
    keys: &broadcast::Sender<String>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = pg.connect(tls.clone()).await?;
    let (tx, mut notices) = tokio::sync::mpsc::unbounded_channel();
    // Aborted (closing the connection) however this function ends.
    let _pump = AbortOnDropHandle::new(tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_owned()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "change listener connection failed");
                    break;
                }
            }
        }
    }));
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    // Anything cached before LISTEN took effect may have missed a notice.
    cache.everything_changed();
    live.store(true, Ordering::Release);
    while let Some(payload) = notices.recv().await {
        let notices = match serde_json::from_str::<Payload>(&payload) {
            Ok(Payload::One(n)) => vec![n],
            Ok(Payload::Many(ns)) => ns,
            Err(e) => {
                tracing::warn!(error = %e, "unreadable change notice");
                continue;
            }
        };
        for notice in notices {
            match notice {
                Notice::Entity { o, p, i, s } => cache.entity_changed(&Scope::new(o, p), &i, s),
                Notice::Key { i } => {
                    let _ = keys.send(i);
                }
                Notice::All => cache.everything_changed(),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(i: usize) -> Notice {
        Notice::Entity {
            o: "org".into(),
            p: "project".into(),
            i: format!("{i:0>200}"),
            s: i as i64,
        }
    }

    #[test]
    fn batches_split_under_the_payload_limit_and_read_back_whole() {
        let notices: Vec<Notice> = (0..500).map(entity).collect();
        let out = payloads(&notices);
        assert!(out.len() > 1);
        let mut seen = Vec::new();
        for p in &out {
            assert!(p.len() < 8000, "{}", p.len());
            match serde_json::from_str::<Payload>(p).unwrap() {
                Payload::Many(ns) => seen.extend(ns),
                Payload::One(_) => panic!("a batch reads back as a batch"),
            }
        }
        let seqs: Vec<i64> = seen
            .iter()
            .map(|n| match n {
                Notice::Entity { s, .. } => *s,
                _ => -1,
            })
            .collect();
        assert_eq!(seqs, (0..500).collect::<Vec<i64>>());
    }

    #[test]
    fn a_single_notice_still_reads() {
        let one = serde_json::to_string(&Notice::Key { i: "k".into() }).unwrap();
        assert!(matches!(
            serde_json::from_str::<Payload>(&one).unwrap(),
            Payload::One(Notice::Key { .. })
        ));
    }
}
