//! The Hocuspocus route (`GET P/hocuspocus`) spoken over a real socket with
//! tokio-tungstenite, on both backends: authentication per document (good,
//! bad, another org's key, a read-only key), several documents on one
//! socket, the sync status sent only once an update is readable from the
//! store, relays to and from the y-websocket route, CLOSE, the document
//! limit, and garbage that closes only its own socket.

use axum::http::StatusCode;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use strata::crdt::hocuspocus as hp;
use tokio_tungstenite::tungstenite::Message as Ws;
use yrs::encoding::read::{Cursor, Read};
use yrs::sync::{Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, Text, Transact, Update};

const ADMIN: &str = "test-admin-key-0123456789";
const P: &str = "/v1/orgs/acme/projects/app";

/// A daemon on a loopback socket with orgs `acme` (project `app`) and
/// `evil` (project `x`), and keys of each.
struct Env {
    daemon: strata::server::Daemon,
    addr: std::net::SocketAddr,
    write: String,
    read: String,
    evil: String,
}

async fn env(config: strata::config::Config) -> Env {
    let daemon = strata::server::build(config, ADMIN).await.unwrap();
    let r = &daemon.router;
    for (path, body) in [
        ("/v1/orgs", json!({"id": "acme", "name": "A"})),
        ("/v1/orgs/acme/projects", json!({"id": "app", "name": "A"})),
        ("/v1/orgs", json!({"id": "evil", "name": "E"})),
        ("/v1/orgs/evil/projects", json!({"id": "x", "name": "X"})),
    ] {
        let (status, body) = crate::support::admin(r, ADMIN, "POST", path, body).await;
        assert_eq!(status, StatusCode::CREATED, "{path}: {body}");
    }
    let key = |org: &'static str, scope: &'static str| async move {
        let (status, body) = crate::support::admin(
            r,
            ADMIN,
            "POST",
            &format!("/v1/orgs/{org}/keys"),
            json!({"name": scope, "scopes": [scope]}),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        body["data"]["key"].as_str().unwrap().to_owned()
    };
    let (write, read, evil) = (
        key("acme", "write").await,
        key("acme", "read").await,
        key("evil", "admin").await,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = daemon.router.clone();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap();
    });
    Env {
        daemon,
        addr,
        write,
        read,
        evil,
    }
}

impl Env {
    async fn socket(&self, project_path: &str) -> Client {
        let url = format!("ws://{}{project_path}/hocuspocus", self.addr);
        let (ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        Client { ws }
    }

    /// The document's text as the store serves it over HTTP (None: 404).
    async fn stored_text(&self, doc: &str) -> Option<String> {
        use tower::ServiceExt;
        let req = axum::http::Request::get(format!("{P}/docs/{doc}"))
            .header("authorization", format!("Bearer {ADMIN}"))
            .header("accept", "application/octet-stream")
            .body(axum::body::Body::empty())
            .unwrap();
        let res = self.daemon.router.clone().oneshot(req).await.unwrap();
        if res.status() == StatusCode::NOT_FOUND {
            return None;
        }
        assert_eq!(res.status(), StatusCode::OK);
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        Some(text_of(&bytes))
    }
}

/// What the server sent, decoded as the provider reads it.
#[derive(Debug, PartialEq)]
enum Server {
    Authenticated(String, String),
    Denied(String, String),
    Status(String, bool),
    Sync(String, SyncMessage),
    Awareness(String, Vec<u8>),
    Close(String, String),
}

fn parse(bytes: &[u8]) -> Server {
    let mut c = Cursor::new(bytes);
    let name = c.read_string().unwrap().to_owned();
    let at = c.next;
    match c.read_var::<u32>().unwrap() {
        0 => match Message::decode_v1(&bytes[at..]).unwrap() {
            Message::Sync(m) => Server::Sync(name, m),
            other => panic!("{other:?}"),
        },
        1 => Server::Awareness(name, bytes[at..].to_vec()),
        2 => match c.read_var::<u32>().unwrap() {
            1 => Server::Denied(name, c.read_string().unwrap().into()),
            2 => Server::Authenticated(name, c.read_string().unwrap().into()),
            other => panic!("auth subtype {other}"),
        },
        7 => Server::Close(name, c.read_string().unwrap().into()),
        8 => Server::Status(name, c.read_var::<u32>().unwrap() == 1),
        other => panic!("message type {other}"),
    }
}

struct Client {
    ws: YStream,
}

impl Client {
    async fn send(&mut self, bytes: Vec<u8>) {
        self.ws.send(Ws::Binary(bytes.into())).await.unwrap();
    }

    async fn next(&mut self) -> Server {
        loop {
            match tokio::time::timeout(std::time::Duration::from_secs(10), self.ws.next()).await {
                Ok(Some(Ok(Ws::Binary(b)))) => return parse(&b),
                Ok(Some(Ok(Ws::Ping(_) | Ws::Pong(_)))) => continue,
                other => panic!("no message: {other:?}"),
            }
        }
    }

    async fn auth(&mut self, name: &str, key: &str) -> Server {
        self.send(hp::auth_token(name, key, "4.8.0")).await;
        self.next().await
    }

    async fn sync(&mut self, name: &str, message: SyncMessage) {
        self.send(hp::wrap(name, &Message::Sync(message).encode_v1()))
            .await;
    }

    /// Sync step 1 from an empty replica: the server's step 2, then its step 1.
    async fn step1(&mut self, name: &str) -> Vec<u8> {
        self.sync(name, SyncMessage::SyncStep1(Default::default()))
            .await;
        let Server::Sync(n, SyncMessage::SyncStep2(state)) = self.next().await else {
            panic!("no step 2")
        };
        assert_eq!(n, name);
        match self.next().await {
            Server::Sync(n, SyncMessage::SyncStep1(_)) => assert_eq!(n, name),
            other => panic!("{other:?}"),
        }
        state
    }

    /// Expects the server to close the socket, and returns the close code.
    async fn closed(&mut self) -> Option<u16> {
        loop {
            match tokio::time::timeout(std::time::Duration::from_secs(10), self.ws.next()).await {
                Ok(Some(Ok(Ws::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
                Ok(Some(Ok(_))) => continue,
                Ok(None | Some(Err(_))) => return None,
                Err(_) => panic!("the socket stayed open"),
            }
        }
    }
}

type YStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next binary message on a y-websocket socket.
async fn y_next(yws: &mut YStream) -> Vec<u8> {
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(10), yws.next()).await {
            Ok(Some(Ok(Ws::Binary(b)))) => return b.to_vec(),
            Ok(Some(Ok(_))) => continue,
            other => panic!("no message: {other:?}"),
        }
    }
}

fn text_update(doc: &Doc, s: &str) -> Vec<u8> {
    let t = doc.get_or_insert_text("t");
    let mut txn = doc.transact_mut();
    let len = t.len(&txn);
    t.insert(&mut txn, len, s);
    txn.encode_update_v1()
}

fn text_of(update: &[u8]) -> String {
    let doc = Doc::new();
    let t = doc.get_or_insert_text("t");
    doc.transact_mut()
        .apply_update(Update::decode_v1(update).unwrap())
        .unwrap();
    let txn = doc.transact();
    t.get_string(&txn)
}

fn authenticated(name: &str, scope: &str) -> Server {
    Server::Authenticated(name.into(), scope.into())
}

/// Before its authentication a document's messages are dropped; a bad key
/// and a key of another org are refused, another org's answer the same as
/// for a project that does not exist; a good key opens the document.
async fn authentication_per_document(config: strata::config::Config) {
    let env = env(config).await;
    let mut c = env.socket(P).await;
    let early = text_update(&Doc::with_client_id(1), "too early");
    c.sync("d1", SyncMessage::Update(early)).await;
    c.sync("d1", SyncMessage::SyncStep1(Default::default()))
        .await;
    assert_eq!(
        c.auth("d1", "sk_0123456789abcdef_wrong").await,
        Server::Denied("d1".into(), "unauthorized".into()),
        "nothing answered the messages before it"
    );
    assert_eq!(
        c.auth("d1", "").await,
        Server::Denied("d1".into(), "unauthorized".into())
    );
    let foreign = c.auth("d1", &env.evil).await;
    assert_eq!(foreign, Server::Denied("d1".into(), "not_found".into()));
    let mut elsewhere = env.socket("/v1/orgs/acme/projects/nope").await;
    assert_eq!(elsewhere.auth("d1", &env.write).await, foreign);
    // Refused: still nothing is answered or stored for it.
    let refused = text_update(&Doc::with_client_id(2), "refused");
    c.sync("d1", SyncMessage::Update(refused)).await;
    assert_eq!(
        c.auth("d1", &env.write).await,
        authenticated("d1", "read-write")
    );
    assert_eq!(env.stored_text("d1").await, None);
    assert_eq!(
        c.auth("d\u{1}", &env.write).await,
        Server::Denied("d\u{1}".into(), "bad_request".into())
    );
    // A key in the upgrade's header is checked as on every route.
    let url = format!("ws://{}{P}/hocuspocus", env.addr);
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)
            .unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", env.evil).parse().unwrap(),
    );
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert_eq!(res.status(), StatusCode::NOT_FOUND)
        }
        other => panic!("upgraded with another org's key: {other:?}"),
    }
}

/// Two documents on one socket; each update's sync status comes once the
/// store serves it; a second socket on one of them gets the relay; CLOSE
/// ends one document's session and leaves the other.
async fn two_documents_on_one_socket(config: strata::config::Config) {
    let env = env(config).await;
    let mut c = env.socket(P).await;
    for name in ["one", "two"] {
        assert_eq!(
            c.auth(name, &env.write).await,
            authenticated(name, "read-write")
        );
        assert_eq!(c.step1(name).await, vec![0, 0], "a new document is empty");
    }
    let mut other = env.socket(P).await;
    assert_eq!(
        other.auth("one", &env.write).await,
        authenticated("one", "read-write")
    );
    other.step1("one").await;

    let counted = || strata::crdt::UPDATES_STORED.load(std::sync::atomic::Ordering::Relaxed);
    let before = counted();
    for (name, client) in [("one", 1), ("two", 2)] {
        let update = text_update(&Doc::with_client_id(client), &format!("text of {name}"));
        c.sync(name, SyncMessage::Update(update)).await;
        assert_eq!(c.next().await, Server::Status(name.into(), true));
        // Acknowledged means stored: readable at once.
        assert_eq!(
            env.stored_text(name).await.unwrap(),
            format!("text of {name}")
        );
    }
    assert!(counted() >= before + 2, "/metrics counts them");
    match other.next().await {
        Server::Sync(n, SyncMessage::Update(u)) => {
            assert_eq!(n, "one");
            assert_eq!(text_of(&u), "text of one");
        }
        unexpected => panic!("{unexpected:?}"),
    }
    // A reconnecting replica gets both texts from the store.
    let state = c.step1("two").await;
    assert_eq!(text_of(&state), "text of two");

    c.send(hp::wrap("one", &[7])).await;
    assert_eq!(
        c.next().await,
        Server::Close("one".into(), "provider_initiated".into())
    );
    let dropped = text_update(&Doc::with_client_id(3), " after close");
    c.sync("one", SyncMessage::Update(dropped)).await;
    let still = text_update(&Doc::with_client_id(4), " still open");
    c.sync("two", SyncMessage::Update(still)).await;
    assert_eq!(
        c.next().await,
        Server::Status("two".into(), true),
        "nothing for one"
    );
    assert_eq!(env.stored_text("one").await.unwrap(), "text of one");
    assert_eq!(
        env.stored_text("two").await.unwrap(),
        "text of two still open"
    );
}

/// Updates and awareness cross between a Hocuspocus socket and a
/// y-websocket one on the same document, both ways; awareness also comes
/// back to its Hocuspocus sender, as the Hocuspocus server does.
async fn relays_to_and_from_y_websocket(config: strata::config::Config) {
    let env = env(config).await;
    let mut c = env.socket(P).await;
    assert_eq!(
        c.auth("shared", &env.write).await,
        authenticated("shared", "read-write")
    );
    c.step1("shared").await;
    let url = format!("ws://{}{P}/docs/shared/ws?token={}", env.addr, env.write);
    let (mut yws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    // The y-websocket route opens with its step 1.
    let hello = Message::decode_v1(&y_next(&mut yws).await).unwrap();
    assert!(matches!(hello, Message::Sync(SyncMessage::SyncStep1(_))));

    let from_hp = text_update(&Doc::with_client_id(7), "hocuspocus");
    c.sync("shared", SyncMessage::Update(from_hp)).await;
    assert_eq!(c.next().await, Server::Status("shared".into(), true));
    match Message::decode_v1(&y_next(&mut yws).await).unwrap() {
        Message::Sync(SyncMessage::Update(u)) => assert_eq!(text_of(&u), "hocuspocus"),
        other => panic!("{other:?}"),
    }
    let from_y = text_update(&Doc::with_client_id(8), "y-websocket");
    let message = Message::Sync(SyncMessage::Update(from_y)).encode_v1();
    yws.send(Ws::Binary(message.into())).await.unwrap();
    match c.next().await {
        Server::Sync(n, SyncMessage::Update(u)) => {
            assert_eq!(n, "shared");
            assert_eq!(text_of(&u), "y-websocket");
        }
        other => panic!("{other:?}"),
    }
    // Awareness of one client (id 5, clock 1, state {}).
    let awareness = vec![1u8, 6, 1, 5, 1, 2, b'{', b'}'];
    c.send(hp::wrap("shared", &awareness)).await;
    assert_eq!(
        c.next().await,
        Server::Awareness("shared".into(), awareness.clone())
    );
    assert_eq!(y_next(&mut yws).await, awareness);
    yws.send(Ws::Binary(awareness.clone().into()))
        .await
        .unwrap();
    assert_eq!(
        c.next().await,
        Server::Awareness("shared".into(), awareness)
    );
}

/// A read-only key syncs and receives relays but stores nothing: its
/// updates get sync status false, its step 2 true only when it holds
/// nothing the store lacks.
async fn read_only_keys_cannot_write(config: strata::config::Config) {
    let env = env(config).await;
    let mut writer = env.socket(P).await;
    assert_eq!(
        writer.auth("ro", &env.write).await,
        authenticated("ro", "read-write")
    );
    let author = Doc::with_client_id(11);
    let first = text_update(&author, "written");
    writer.sync("ro", SyncMessage::Update(first.clone())).await;
    assert_eq!(writer.next().await, Server::Status("ro".into(), true));

    let mut reader = env.socket(P).await;
    assert_eq!(
        reader.auth("ro", &env.read).await,
        authenticated("ro", "readonly")
    );
    assert_eq!(text_of(&reader.step1("ro").await), "written");
    // What the store has already: acknowledged; the empty update too.
    reader.sync("ro", SyncMessage::SyncStep2(first)).await;
    assert_eq!(reader.next().await, Server::Status("ro".into(), true));
    reader.sync("ro", SyncMessage::SyncStep2(vec![0, 0])).await;
    assert_eq!(reader.next().await, Server::Status("ro".into(), true));
    // Anything new: refused, as a step 2 or as an update.
    let mine = text_update(&Doc::with_client_id(12), " and mine");
    reader
        .sync("ro", SyncMessage::SyncStep2(mine.clone()))
        .await;
    assert_eq!(reader.next().await, Server::Status("ro".into(), false));
    reader.sync("ro", SyncMessage::Update(mine)).await;
    assert_eq!(reader.next().await, Server::Status("ro".into(), false));
    let deletion = {
        let t = author.get_or_insert_text("t");
        let mut txn = author.transact_mut();
        t.remove_range(&mut txn, 0, 3);
        txn.encode_update_v1()
    };
    reader
        .sync("ro", SyncMessage::Update(deletion.clone()))
        .await;
    assert_eq!(reader.next().await, Server::Status("ro".into(), false));
    reader
        .sync("ro", SyncMessage::SyncStep2(deletion.clone()))
        .await;
    assert_eq!(
        reader.next().await,
        Server::Status("ro".into(), false),
        "a new deletion"
    );
    assert_eq!(env.stored_text("ro").await.unwrap(), "written");
    // The writer's edits reach the reader.
    writer
        .sync("ro", SyncMessage::Update(deletion.clone()))
        .await;
    assert_eq!(writer.next().await, Server::Status("ro".into(), true));
    assert_eq!(
        reader.next().await,
        Server::Sync("ro".into(), SyncMessage::Update(deletion))
    );
    assert_eq!(env.stored_text("ro").await.unwrap(), "tten");
}

/// Garbage and invalid Yjs close the socket that sent them (1007), store
/// nothing, and the daemon serves the next socket.
async fn garbage_closes_only_its_socket(config: strata::config::Config) {
    let env = env(config).await;
    let mut bystander = env.socket(P).await;
    assert_eq!(
        bystander.auth("g", &env.write).await,
        authenticated("g", "read-write")
    );
    let garbage: Vec<Vec<u8>> = vec![
        vec![0xff; 12],
        vec![200, 1, 2],
        hp::wrap("g", &[0, 2, 3, 1, 2, 3]),
        hp::wrap("g", &[9]),
        hp::wrap("g", &[2, 1, 0]),
    ];
    for bytes in garbage {
        let mut c = env.socket(P).await;
        assert_eq!(
            c.auth("g", &env.write).await,
            authenticated("g", "read-write")
        );
        c.send(bytes.clone()).await;
        assert_eq!(c.closed().await, Some(1007), "{bytes:?}");
    }
    assert_eq!(env.stored_text("g").await, None);
    let update = text_update(&Doc::with_client_id(21), "alive");
    bystander.sync("g", SyncMessage::Update(update)).await;
    assert_eq!(bystander.next().await, Server::Status("g".into(), true));
    assert_eq!(env.stored_text("g").await.unwrap(), "alive");
}

/// A socket holds at most 256 documents; closing one makes room.
async fn documents_per_socket_are_bounded(config: strata::config::Config) {
    let env = env(config).await;
    let mut c = env.socket(P).await;
    for i in 0..256 {
        let name = format!("doc{i}");
        assert_eq!(
            c.auth(&name, &env.write).await,
            authenticated(&name, "read-write")
        );
    }
    assert_eq!(
        c.auth("one too many", &env.write).await,
        Server::Denied("one too many".into(), "too_many_documents".into())
    );
    c.send(hp::wrap("doc0", &[7])).await;
    assert!(matches!(c.next().await, Server::Close(..)));
    assert_eq!(
        c.auth("one too many", &env.write).await,
        authenticated("one too many", "read-write")
    );
}

on_both_configs!(
    authentication_per_document,
    two_documents_on_one_socket,
    relays_to_and_from_y_websocket,
    read_only_keys_cannot_write,
    garbage_closes_only_its_socket,
    documents_per_socket_are_bounded,
);

/// A socket that stops reading while its document moves on is not closed
/// (the y-websocket route closes on the same lag): once its relays overflow
/// the hub, it is caught up with the whole state from the store, converges,
/// and keeps receiving. Its receive buffer is kept small, so 2,000 relays of
/// 16 KiB cannot all wait in the kernel (Linux's default ceiling on a send
/// buffer is 4 MiB: 256 of them), the socket's queue (256) and the hub
/// (1,024).
#[tokio::test]
async fn a_socket_that_falls_behind_is_caught_up_from_the_store() {
    const UPDATES: usize = 2000;
    const CHUNK: usize = 16 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let env = env(strata::config::Config::embedded(dir.path())).await;
    let tcp = tokio::net::TcpSocket::new_v4().unwrap();
    tcp.set_recv_buffer_size(8 * 1024).unwrap();
    let stream = tcp.connect(env.addr).await.unwrap();
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(None);
    let (ws, _) = tokio_tungstenite::client_async_with_config(
        format!("ws://{}{P}/hocuspocus", env.addr),
        tokio_tungstenite::MaybeTlsStream::Plain(stream),
        Some(config),
    )
    .await
    .unwrap();
    let mut c = Client { ws };
    assert_eq!(
        c.auth("slow", &env.write).await,
        authenticated("slow", "read-write")
    );
    c.step1("slow").await;

    // Each from a client of its own: yrs squashes one client's consecutive
    // inserts into one string, re-measured at every commit.
    let chunk = "x".repeat(CHUNK);
    for i in 0..UPDATES {
        let update = text_update(&Doc::with_client_id(1000 + i as u64), &chunk);
        let (status, body) = crate::support::request(
            &env.daemon.router,
            &env.write,
            "POST",
            &format!("{P}/docs/slow/updates"),
            "application/octet-stream",
            update,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let replica = Doc::new();
    let text = replica.get_or_insert_text("t");
    let mut received = 0;
    while (text.len(&replica.transact()) as usize) < UPDATES * CHUNK {
        match c.next().await {
            Server::Sync(name, SyncMessage::Update(u)) => {
                assert_eq!(name, "slow");
                received += 1;
                replica
                    .transact_mut()
                    .apply_update(Update::decode_v1(&u).unwrap())
                    .unwrap();
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(
        received < UPDATES,
        "{received} messages for {UPDATES} updates: the socket never fell behind"
    );
    assert_eq!(
        env.stored_text("slow").await.unwrap().len(),
        UPDATES * CHUNK
    );
    // Still open, and relays flow again.
    let last = text_update(&Doc::with_client_id(999), "!");
    crate::support::request(
        &env.daemon.router,
        &env.write,
        "POST",
        &format!("{P}/docs/slow/updates"),
        "application/octet-stream",
        last.clone(),
    )
    .await;
    loop {
        match c.next().await {
            Server::Sync(_, SyncMessage::Update(u)) if u == last => break,
            Server::Sync(_, SyncMessage::Update(_)) => continue,
            other => panic!("{other:?}"),
        }
    }
}

/// Without an upgrade the route answers 400 in the error shape.
#[tokio::test]
async fn a_plain_get_is_a_bad_request() {
    let dir = tempfile::tempdir().unwrap();
    let env = env(strata::config::Config::embedded(dir.path())).await;
    let (status, body) = crate::support::admin(
        &env.daemon.router,
        &env.write,
        "GET",
        &format!("{P}/hocuspocus"),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("bad_request"), "{body}");
}

/// The real `@hocuspocus/provider` (ops/interop, from npm): two providers
/// on two documents share one socket, their edits converge through
/// Strata, every change is acknowledged (no unsynced changes left), and
/// a new socket reads the texts back from the store.
#[tokio::test]
async fn the_hocuspocus_provider_works_against_strata() {
    let interop = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ops/interop");
    if !interop.join("node_modules/@hocuspocus/provider").exists() {
        let why = "ops/interop/node_modules/@hocuspocus/provider is missing";
        assert!(
            std::env::var_os("STRATA_TEST_REQUIRE_STACK").is_none_or(|v| v != "1"),
            "{why}, and STRATA_TEST_REQUIRE_STACK=1 says it must be there"
        );
        eprintln!("skipped: {why}; run ops/test.sh");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let env = env(strata::config::Config::embedded(dir.path())).await;
    let base = format!("http://{}{P}", env.addr);
    let output = tokio::process::Command::new("node")
        .arg("hocuspocus.mjs")
        .arg(&base)
        .arg(&env.write)
        .arg(&env.read)
        .current_dir(&interop)
        .output()
        .await
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "hocuspocus interop failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("hocuspocus: all checks passed"), "{stdout}");
    // What the providers wrote is in the store.
    assert_eq!(env.stored_text("hp-a").await.unwrap(), "from a, from b");
    assert_eq!(env.stored_text("hp-b").await.unwrap(), "second document");
}
