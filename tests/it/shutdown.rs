//! A daemon stopped under load keeps every write it acknowledged: several
//! HTTP writers create entities and a y-websocket client pushes Yjs updates
//! while the daemon, served on a loopback socket, is told to stop; the stop
//! returns, WebSocket clients get a close frame (1001), and a store opened
//! again on the same data finds every write that was answered 2xx and every
//! update another client saw relayed (relayed only once durable). And a
//! SQLite store closed with writes queued commits or refuses each of them.

use crate::support;

use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use strata::config::Config;
use strata::domain::{Caller, DomainError, EntityRead, Scope, WriteOp};
use strata::store::DynStore;
use tokio_tungstenite::tungstenite::Message as Ws;
use yrs::sync::{Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, Text, Transact};

const ADMIN: &str = "test-admin-key-0123456789";
const P: &str = "/v1/orgs/acme/projects/app";
const WRITERS: usize = 6;

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<bytes::Bytes>>;

async fn post(client: &HttpClient, addr: std::net::SocketAddr, path: &str, body: String) -> u16 {
    let req = hyper::Request::post(format!("http://{addr}{path}"))
        .header("authorization", format!("Bearer {ADMIN}"))
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from(body)))
        .unwrap();
    match client.request(req).await {
        Ok(response) => {
            let status = response.status().as_u16();
            // Read the whole answer: a 2xx counts once it has arrived.
            match response.into_body().collect().await {
                Ok(_) => status,
                Err(_) => 0,
            }
        }
        Err(_) => 0,
    }
}

/// One Yjs update inserting `text`, from a client of its own.
fn update(client_id: u64, text: &str) -> Vec<u8> {
    let doc = Doc::with_client_id(client_id);
    let t = doc.get_or_insert_text("t");
    let mut txn = doc.transact_mut();
    t.insert(&mut txn, 0, text);
    txn.encode_update_v1()
}

/// The close code a WebSocket client saw, reading until the socket ends;
/// every relayed update goes into `relayed`.
async fn read_until_close<S>(mut ws: S, relayed: Arc<Mutex<Vec<Vec<u8>>>>) -> Option<u16>
where
    S: futures_util::Stream<Item = Result<Ws, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    while let Some(message) = ws.next().await {
        match message {
            Ok(Ws::Binary(b)) => {
                if let Ok(Message::Sync(SyncMessage::Update(u))) = Message::decode_v1(&b) {
                    relayed.lock().unwrap().push(u);
                }
            }
            Ok(Ws::Close(frame)) => return frame.map(|f| u16::from(f.code)),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

/// What a task returned; it must end soon, the daemon being gone.
async fn ends<T>(what: &str, task: tokio::task::JoinHandle<T>) -> T {
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .unwrap_or_else(|_| panic!("{what} did not end after the shutdown"))
        .unwrap()
}

async fn stopped_under_load_keeps_acknowledged_writes(
    config: Config,
    reopen: impl std::future::Future<Output = DynStore>,
) {
    let daemon = strata::server::build(config, ADMIN).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(strata::server::run(listener, daemon, async {
        let _ = stopped.await;
    }));
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    for (path, body) in [
        ("/v1/orgs", json!({"id": "acme", "name": "A"})),
        ("/v1/orgs/acme/projects", json!({"id": "app", "name": "A"})),
    ] {
        assert_eq!(post(&client, addr, path, body.to_string()).await, 201);
    }

    // WebSocket load: a pusher and an observer on one document.
    let url = format!("ws://{addr}{P}/docs/live/ws?token={ADMIN}");
    let (pusher, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let (observer, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let relayed = Arc::new(Mutex::new(Vec::new()));
    let observer = tokio::spawn(read_until_close(observer, relayed.clone()));
    let (mut push, pushed_in) = pusher.split();
    let pusher_closed = tokio::spawn(read_until_close(pushed_in, Arc::default()));
    let pushing = tokio::spawn(async move {
        for i in 0u64.. {
            let message =
                Message::Sync(SyncMessage::Update(update(1000 + i, &format!("u{i};")))).encode_v1();
            if push.send(Ws::Binary(message.into())).await.is_err() {
                return i;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        unreachable!()
    });

    // HTTP load: concurrent writers, each remembering what was answered 2xx.
    let stopping = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let client = client.clone();
        let stopping = stopping.clone();
        writers.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut failed_before_stop = Vec::new();
            for n in 0usize.. {
                let id = format!("w{w}-{n}");
                let body = json!({"id": id, "type": "item", "properties": {"n": n}});
                let status = post(&client, addr, &format!("{P}/entities"), body.to_string()).await;
                match status {
                    200..=299 => acknowledged.push(id),
                    _ if stopping.load(Ordering::SeqCst) => break,
                    other => failed_before_stop.push(other),
                }
            }
            (acknowledged, failed_before_stop)
        }));
    }

    // Stop mid-load, once both kinds of write are flowing.
    let started = std::time::Instant::now();
    while relayed.lock().unwrap().len() < 20 && started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stopping.store(true, Ordering::SeqCst);
    stop.send(()).unwrap();
    let stopped_in = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("the shutdown returns")
        .unwrap()
        .unwrap();
    let took = stopped_in.elapsed();

    let mut acknowledged = Vec::new();
    for writer in writers {
        let (ids, failed) = ends("a writer", writer).await;
        assert!(failed.is_empty(), "answers before the stop: {failed:?}");
        acknowledged.extend(ids);
    }
    let observer_close = ends("the observer's socket", observer).await;
    let pusher_close = ends("the pusher's socket", pusher_closed).await;
    let pushed = ends("the pusher", pushing).await;
    assert_eq!(
        observer_close,
        Some(1001),
        "the observer saw a going-away close"
    );
    assert_eq!(
        pusher_close,
        Some(1001),
        "the pusher saw a going-away close"
    );
    let relayed = relayed.lock().unwrap().clone();
    println!(
        "stopped in {took:?}: {} entity writes and {} of {pushed} pushed updates acknowledged",
        acknowledged.len(),
        relayed.len()
    );
    assert!(acknowledged.len() >= WRITERS, "the writers were writing");
    assert!(relayed.len() >= 20, "updates were flowing");

    let store = reopen.await;
    let scope = Scope::new("acme", "app");
    for id in &acknowledged {
        store
            .get_entity(&scope, id, &EntityRead::default())
            .await
            .unwrap_or_else(|e| panic!("acknowledged entity {id} is missing: {e}"));
    }
    let mut stored = HashSet::new();
    let mut after = 0;
    loop {
        let page = store
            .list_doc_updates(&scope, "live", after, 1000)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        stored.extend(page.into_iter().map(|u| u.bytes));
    }
    for (i, u) in relayed.iter().enumerate() {
        assert!(stored.contains(u), "relayed update {i} is missing");
    }
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_daemon_stopped_under_load_keeps_acknowledged_writes() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::embedded(dir.path());
    let db = dir.path().join("strata.db");
    let reopen = async {
        // The writer and readers closed their connections: the last one to
        // close folded the write-ahead log back and removed it.
        let wal = db.with_extension("db-wal");
        assert!(!wal.exists(), "{} is left behind", wal.display());
        support::sqlite_store(dir.path()).await
    };
    stopped_under_load_keeps_acknowledged_writes(config, reopen).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_daemon_stopped_under_load_keeps_acknowledged_writes() {
    if support::skip_without(support::PG) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = support::fresh_pg_database().await;
    let config = support::pg_config(dir.path(), &url);
    let reopen = support::pg_store(dir.path(), &url);
    stopped_under_load_keeps_acknowledged_writes(config, reopen).await;
}

/// `Store::close` with writes queued on the SQLite writer: each is answered
/// Ok and found after reopening, or answered `unavailable`; a write after
/// the close is `unavailable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn closing_a_sqlite_store_commits_or_refuses_each_queued_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = support::sqlite_store(dir.path()).await;
    let caller = Caller::new("tester");
    let scope = Scope::new("acme", "app");
    store.create_org(&caller, "acme", "A").await.unwrap();
    store
        .create_project(&caller, "acme", "app", "A")
        .await
        .unwrap();
    let create = |id: &str| WriteOp::CreateEntity {
        id: id.to_owned(),
        entity_type: "item".into(),
        properties: Default::default(),
    };
    let mut writes = Vec::new();
    for i in 0..400 {
        let (writer, scope, caller) = (store.clone(), scope.clone(), caller.clone());
        let op = create(&format!("e{i}"));
        writes.push(tokio::spawn(async move {
            (i, writer.write(&scope, &caller, vec![op]).await)
        }));
        if i == 200 {
            let closer = store.clone();
            writes.push(tokio::spawn(async move {
                closer.close().await;
                (usize::MAX, Ok(Vec::new()))
            }));
        }
    }
    let (mut committed, mut refused) = (Vec::new(), 0);
    for write in writes {
        match write.await.unwrap() {
            (usize::MAX, _) => {}
            (i, Ok(_)) => committed.push(i),
            (_, Err(DomainError::Unavailable(_))) => refused += 1,
            (i, Err(e)) => panic!("write {i}: {e}"),
        }
    }
    println!("{} committed, {refused} refused", committed.len());
    assert!(!committed.is_empty());
    let after = store.write(&scope, &caller, vec![create("late")]).await;
    assert!(
        matches!(after, Err(DomainError::Unavailable(_))),
        "{after:?}"
    );
    drop(store);
    let store = support::sqlite_store(dir.path()).await;
    for i in committed {
        store
            .get_entity(&scope, &format!("e{i}"), &EntityRead::default())
            .await
            .unwrap_or_else(|e| panic!("committed e{i} is missing: {e}"));
    }
    store.close().await;
}
