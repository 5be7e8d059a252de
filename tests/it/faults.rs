//! Faults tried on purpose. kill -9 under concurrent writes, on both
//! backends: the built daemon takes writes from eight clients at once and
//! is killed with SIGKILL mid-stream; started again on the same store, it
//! holds every write it acknowledged (a 201), as the README promises.

use serde_json::{json, Value};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ADMIN: &str = "test-admin-key-0123456789";
const P: &str = "/v1/orgs/acme/projects/app";
const WRITERS: usize = 8;

struct Daemon {
    child: tokio::process::Child,
    base: String,
}

async fn start(dir: &std::path::Path, port: u16, database_url: Option<&str>) -> Daemon {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_strata"));
    command
        .arg("serve")
        .env_clear()
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
    let org = json!({"id": "acme", "name": "Acme"});
    assert_eq!(
        post(&client, format!("{base}/v1/orgs"), org).await.unwrap(),
        201
    );
    let project = json!({"id": "app", "name": "app"});
    let url = format!("{base}/v1/orgs/acme/projects");
    assert_eq!(post(&client, url, project).await.unwrap(), 201);

    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (client, base, acknowledged) = (client.clone(), base.clone(), acknowledged.clone());
            tokio::spawn(async move {
                for n in 0.. {
                    let id = format!("w{w}-{n:06}");
                    let body = json!({"id": id, "type": "t", "properties": {"n": n}});
                    match post(&client, format!("{base}{P}/entities"), body).await {
                        Ok(201) => acknowledged.lock().unwrap().push(id),
                        Ok(status) => panic!("a write answered {status}"),
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
