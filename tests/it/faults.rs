//! Faults tried on purpose. kill -9 under concurrent writes, on both
//! backends: the built daemon takes writes from eight clients at once and
//! is killed with SIGKILL mid-stream; started again on the same store, it
//! holds every write it acknowledged (a 201), as the README promises.
//! PostgreSQL stopped mid-load (immediate shutdown, as a crash or failover)
//! and started again: requests answer 503 with the JSON error while it is
//! down, the daemon reconnects by itself, and nothing acknowledged is lost.
//! The blob store down during compaction: no update is deleted, and the
//! next run (the hourly job's) compacts the document.

use crate::backup::Failing;
use serde_json::{json, Value};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(crate) const ADMIN: &str = "test-admin-key-0123456789";
const P: &str = "/v1/orgs/acme/projects/app";
const WRITERS: usize = 8;

/// The built daemon, running.
pub(crate) struct Daemon {
    pub(crate) child: tokio::process::Child,
    pub(crate) base: String,
}

async fn start(dir: &std::path::Path, port: u16, database_url: Option<&str>) -> Daemon {
    start_with(dir, port, database_url, &[]).await
}

/// Starts the built daemon on `dir` (and PostgreSQL when a URL is given),
/// with `settings` besides, and waits until it is ready.
pub(crate) async fn start_with(
    dir: &std::path::Path,
    port: u16,
    database_url: Option<&str>,
    settings: &[(&str, &str)],
) -> Daemon {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_strata"));
    command
        .arg("serve")
        .env_clear()
        .envs(settings.iter().copied())
        .env("STRATA_DATA_DIR", dir)
        .env("STRATA_LISTEN", format!("127.0.0.1:{port}"))
        .env("STRATA_ADMIN_KEY", ADMIN)
        .env("STRATA_RATE_LIMIT", "100000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    if let Some(url) = database_url {
        command
            .env("STRATA_DATABASE_URL", url)
            .env("STRATA_AGE", "off");
    }
    let child = command.spawn().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    crate::support::eventually(Duration::from_secs(60), || async {
        client
            .get(format!("{base}/health/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    Daemon { child, base }
}

async fn post(client: &reqwest::Client, url: String, body: Value) -> reqwest::Result<u16> {
    let r = client
        .post(url)
        .bearer_auth(ADMIN)
        .json(&body)
        .timeout(Duration::from_secs(10))
        .send()
        .await?;
    Ok(r.status().as_u16())
}

/// Org `acme` and its project `app`.
async fn org_and_project(client: &reqwest::Client, base: &str) {
    let org = json!({"id": "acme", "name": "Acme"});
    let created = post(client, format!("{base}/v1/orgs"), org).await.unwrap();
    assert_eq!(created, 201);
    let project = json!({"id": "app", "name": "app"});
    let url = format!("{base}/v1/orgs/acme/projects");
    assert_eq!(post(client, url, project).await.unwrap(), 201);
}

/// Creates entity `id` of the project: its status and body, or the error
/// of a request left unanswered.
async fn create(client: &reqwest::Client, base: &str, id: &str) -> reqwest::Result<(u16, Value)> {
    let body = json!({"id": id, "type": "t", "properties": {"id": id}});
    let r = client
        .post(format!("{base}{P}/entities"))
        .bearer_auth(ADMIN)
        .json(&body)
        .timeout(Duration::from_secs(20))
        .send()
        .await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

/// Every entity id the project holds, page by page.
async fn stored_ids(client: &reqwest::Client, base: &str) -> std::collections::HashSet<String> {
    let mut ids = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}{P}/entities?limit=1000");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = client
            .get(url)
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for e in page["data"].as_array().unwrap() {
            ids.insert(e["id"].as_str().unwrap().to_owned());
        }
        match page["pagination"]["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return ids,
        }
    }
}

async fn acknowledged_writes_survive_kill_9(database_url: Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut daemon = start(dir.path(), port, database_url.as_deref()).await;
    let client = reqwest::Client::new();
    let base = daemon.base.clone();
    org_and_project(&client, &base).await;

    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (client, base, acknowledged) = (client.clone(), base.clone(), acknowledged.clone());
            tokio::spawn(async move {
                for n in 0.. {
                    let id = format!("w{w}-{n:06}");
                    match create(&client, &base, &id).await {
                        Ok((201, _)) => acknowledged.lock().unwrap().push(id),
                        Ok((status, body)) => panic!("a write answered {status} {body}"),
                        // The daemon is gone: an unanswered write may or may
                        // not be stored, and was not acknowledged.
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    // Writes go on for a while, then the process is killed (SIGKILL).
    crate::support::eventually(Duration::from_secs(60), || async {
        acknowledged.lock().unwrap().len() >= 400
    })
    .await;
    daemon.child.kill().await.unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();

    let daemon = start(dir.path(), port, database_url.as_deref()).await;
    let stored = stored_ids(&client, &daemon.base).await;
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !stored.contains(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost after kill -9: {:?}",
        lost.len(),
        acknowledged.len(),
        &lost[..lost.len().min(10)]
    );
    assert!(stored.len() >= acknowledged.len());
}

#[tokio::test]
async fn sqlite_keeps_every_acknowledged_write_through_kill_9() {
    acknowledged_writes_survive_kill_9(None).await;
}

#[tokio::test]
async fn postgres_keeps_every_acknowledged_write_through_kill_9() {
    if crate::support::skip_without(crate::support::PG) {
        return;
    }
    let url = crate::support::fresh_pg_database().await;
    acknowledged_writes_survive_kill_9(Some(url)).await;
}

#[tokio::test]
async fn a_postgres_restart_mid_load_is_503_then_the_daemon_recovers() {
    use crate::pgbackrest::{free_port, initdb, postgres_dir, Cluster};
    if crate::support::skip_without(crate::support::PG) {
        return;
    }
    // A PostgreSQL 15 cluster of its own: the shared one serves other tests.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        tmp.path(),
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
    )
    .unwrap();
    let data = postgres_dir(&tmp.path().join("pg")).join("data");
    let sockets = postgres_dir(&tmp.path().join("sockets"));
    let log = postgres_dir(&tmp.path().join("log")).join("pg.log");
    initdb(&data);
    let pg_port = free_port();
    let cluster = Cluster::start(&data, pg_port, &sockets, &log);
    cluster.sql("CREATE DATABASE strata");
    let url = format!("postgres://postgres@127.0.0.1:{pg_port}/strata");

    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path(), free_port(), Some(&url)).await;
    let (client, base) = (reqwest::Client::new(), daemon.base.clone());
    org_and_project(&client, &base).await;
    let mut acknowledged = Vec::new();
    let mut n = 0;
    let mut write = |client: &reqwest::Client| {
        n += 1;
        let (client, base, id) = (client.clone(), base.clone(), format!("e{n:06}"));
        async move {
            let (status, body) = create(&client, &base, &id).await.unwrap();
            (id, status, body)
        }
    };
    for _ in 0..50 {
        let (id, status, body) = write(&client).await;
        assert_eq!(status, 201, "{body}");
        acknowledged.push(id);
    }

    // Down, while eight clients write: an immediate shutdown, as a crash
    // would leave it. Statements in flight lose their connection; every
    // answer is a 201 (acknowledged) or a 503 with the JSON error.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (client, base, stop) = (client.clone(), base.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut acked, mut unavailable) = (Vec::new(), 0);
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let id = format!("c{w}-{n:06}");
                    let (status, body) = create(&client, &base, &id).await.unwrap();
                    match status {
                        201 => acked.push(id),
                        503 => {
                            assert_eq!(body["error"]["code"], "unavailable", "{body}");
                            unavailable += 1;
                        }
                        other => panic!("while the database goes down: {other} {body}"),
                    }
                }
                (acked, unavailable)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(cluster);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut unavailable = 0;
    for w in writers {
        let (acked, down) = w.await.unwrap();
        acknowledged.extend(acked);
        unavailable += down;
    }
    assert!(unavailable > 0, "no write met the database down");

    // Back: the daemon reconnects by itself.
    let _cluster = Cluster::start(&data, pg_port, &sockets, &log);
    let mut back = false;
    for _ in 0..100 {
        let (id, status, body) = write(&client).await;
        match status {
            201 => {
                acknowledged.push(id);
                back = true;
                break;
            }
            503 => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("while the database comes back: {other} {body}"),
        }
    }
    assert!(back, "the daemon did not recover once PostgreSQL was back");
    for _ in 0..20 {
        let (id, status, body) = write(&client).await;
        assert_eq!(status, 201, "{body}");
        acknowledged.push(id);
    }
    let stored = stored_ids(&client, &base).await;
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !stored.contains(*id))
        .collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    drop(daemon);
}

#[tokio::test]
async fn a_blob_store_down_during_compaction_deletes_no_update() {
    use std::sync::atomic::Ordering;
    use strata::domain::{Caller, Scope};
    let dir = tempfile::tempdir().unwrap();
    let store = crate::support::sqlite_store(dir.path()).await;
    let caller = Caller::new("test");
    store.create_org(&caller, "acme", "Acme").await.unwrap();
    store
        .create_project(&caller, "acme", "app", "app")
        .await
        .unwrap();
    let scope = Scope::new("acme", "app");
    let doc = yrs::Doc::new();
    let edits: Vec<Vec<u8>> = (0..20)
        .map(|i| {
            use yrs::{Text, Transact};
            let t = doc.get_or_insert_text("t");
            let mut txn = doc.transact_mut();
            let len = t.len(&txn);
            t.insert(&mut txn, len, &format!("edit {i}; "));
            txn.encode_update_v1()
        })
        .collect();
    store
        .append_updates(&scope, "board", edits, None)
        .await
        .unwrap();
    let before = store.doc_log(&scope, "board", None).await.unwrap();

    // Snapshots go to the blob store (none inline) and the log would be
    // pruned at once (no retention): only a recorded snapshot may prune it.
    let config = strata::crdt::CrdtConfig {
        inline_max_bytes: 0,
        retention: Duration::ZERO,
        ..Default::default()
    };
    let blobs = Failing {
        inner: strata::blob::DirBlobStore::new(dir.path().join("blobs").to_str().unwrap()).unwrap(),
        allowed: 0.into(),
    };
    let down = strata::crdt::compact::compact_all(store.as_ref(), &blobs, &config)
        .await
        .unwrap();
    assert_eq!((down.documents, down.failed), (0, 1), "{down}");
    let after = store.doc_log(&scope, "board", None).await.unwrap();
    assert_eq!(after, before, "nothing was deleted or recorded");
    assert!(store
        .list_snapshots(&scope, "board")
        .await
        .unwrap()
        .is_empty());

    // Back: the next run compacts it and prunes what the snapshot covers.
    blobs.allowed.store(10, Ordering::SeqCst);
    let back = strata::crdt::compact::compact_all(store.as_ref(), &blobs, &config)
        .await
        .unwrap();
    assert_eq!((back.documents, back.failed), (1, 0), "{back}");
    let compacted = store.doc_log(&scope, "board", None).await.unwrap();
    assert!(compacted.snapshot.is_some() && compacted.updates.is_empty());
    assert_eq!(compacted.last_seq, 20);
    store.close().await;
}
