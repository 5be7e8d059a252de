//! Cross-daemon cache coherence: every write NOTIFYs what it changed (in its
//! transaction, so the notice goes out exactly when it commits), and one
//! LISTEN connection per daemon evicts those entries from the local caches.
//! The entity cache is used only while that connection is up: if it drops,
//! notices may be lost, so the cache is cleared and bypassed until it is back.

use super::rows::execute;
use crate::domain::{DomainResult, Scope};
use crate::store::cache::EntityCache;
use deadpool_postgres::GenericClient;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_postgres::{AsyncMessage, NoTls};

const CHANNEL: &str = "strata_changes";

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

pub async fn entity_changed<C: GenericClient>(
    c: &C,
    scope: &Scope,
    id: &str,
    seq: i64,
) -> DomainResult<()> {
    let notice = Notice::Entity {
        o: scope.org.clone(),
        p: scope.project.clone(),
        i: id.to_owned(),
        s: seq,
    };
    send(c, &notice).await
}

pub async fn key_revoked<C: GenericClient>(c: &C, id: &str) -> DomainResult<()> {
    send(c, &Notice::Key { i: id.to_owned() }).await
}

pub async fn everything_changed<C: GenericClient>(c: &C) -> DomainResult<()> {
    send(c, &Notice::All).await
}

/// A session-level advisory lock held on its own pooled connection; released
/// on drop (and by PostgreSQL if the daemon dies).
pub struct AdvisoryLease {
    client: Option<deadpool_postgres::Object>,
    key: String,
}

impl AdvisoryLease {
    pub fn new(client: deadpool_postgres::Object, key: String) -> Self {
        AdvisoryLease {
            client: Some(client),
            key,
        }
    }
}

impl Drop for AdvisoryLease {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let key = std::mem::take(&mut self.key);
            tokio::spawn(async move {
                let unlock = "SELECT pg_advisory_unlock(hashtextextended($1, 0))";
                if let Err(e) = client.execute(unlock, &[&key]).await {
                    tracing::warn!(error = %e, "could not release a document lease");
                }
            });
        }
    }
}

/// The listening side, one per daemon.
pub struct Feed {
    live: Arc<AtomicBool>,
    keys: Option<broadcast::Sender<String>>,
}

impl Feed {
    /// No listener: the entity cache stays off (correct, just slower).
    pub fn disabled() -> Self {
        Feed {
            live: Arc::new(AtomicBool::new(false)),
            keys: None,
        }
    }

    pub fn start(pg: tokio_postgres::Config, cache: Arc<EntityCache>) -> Self {
        let live = Arc::new(AtomicBool::new(false));
        let (keys, _) = broadcast::channel(1024);
        let task_live = live.clone();
        let task_keys = keys.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = listen(&pg, &cache, &task_live, &task_keys).await {
                    tracing::warn!(error = %e, "change listener lost; entity cache off until it is back");
                }
                task_live.store(false, Ordering::SeqCst);
                cache.clear();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        Feed {
            live,
            keys: Some(keys),
        }
    }

    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    pub fn key_revocations(&self) -> Option<broadcast::Receiver<String>> {
        self.keys.as_ref().map(|k| k.subscribe())
    }
}

async fn listen(
    pg: &tokio_postgres::Config,
    cache: &EntityCache,
    live: &AtomicBool,
    keys: &broadcast::Sender<String>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = pg.connect(NoTls).await?;
    let (tx, mut notices) = tokio::sync::mpsc::unbounded_channel();
    let pump = tokio::spawn(async move {
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
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    // Anything cached before LISTEN took effect may have missed a notice.
    cache.clear();
    live.store(true, Ordering::Release);
    while let Some(payload) = notices.recv().await {
        match serde_json::from_str::<Notice>(&payload) {
            Ok(Notice::Entity { o, p, i, s }) => cache.tombstone(&Scope::new(o, p), &i, s),
            Ok(Notice::Key { i }) => {
                let _ = keys.send(i);
            }
            Ok(Notice::All) => cache.clear(),
            Err(e) => tracing::warn!(error = %e, "unreadable change notice"),
        }
    }
    pump.abort();
    Ok(())
}
