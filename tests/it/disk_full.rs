//! Disk full on the SQLite volume, tried on purpose: the daemon's data
//! directory is a small tmpfs of the test's own, filled to the last byte by
//! a ballast file. Writes then answer 503 with the JSON error and change
//! nothing, reads go on; once the ballast is deleted writes go on, and the
//! file passes SQLite's integrity check holding every acknowledged write.

use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};

const ADMIN: &str = "test-admin-key-0123456789";
const P: &str = "/v1/orgs/acme/projects/app";

/// A tmpfs mounted for the test, unmounted when dropped.
struct Volume(PathBuf);

impl Volume {
    /// None (after saying why) where mounting is not allowed; under
    /// `STRATA_TEST_REQUIRE_STACK=1` (ops/test.sh, run as root) that fails.
    fn mount(dir: &Path, megabytes: u32) -> Option<Volume> {
        let size = format!("size={megabytes}m");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &size, "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        if mounted {
            return Some(Volume(dir.to_owned()));
        }
        let why = "mounting a tmpfs needs root (CAP_SYS_ADMIN)";
        if std::env::var_os("STRATA_TEST_REQUIRE_STACK").is_some() {
            panic!("{why}, and STRATA_TEST_REQUIRE_STACK=1 says every test must run");
        }
        eprintln!("skipped: {why}");
        None
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the volume: a file grown until the file system refuses a byte.
fn fill(path: &Path) {
    let mut ballast = std::fs::File::create(path).unwrap();
    for chunk in [1 << 20, 4096, 1] {
        let bytes = vec![0u8; chunk];
        while ballast.write_all(&bytes).is_ok() {}
    }
    let _ = ballast.sync_all();
}

async fn call(router: &axum::Router, method: &str, uri: &str, body: Value) -> (u16, Value) {
    let (status, text) = crate::support::admin(router, ADMIN, method, uri, body).await;
    (
        status.as_u16(),
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

async fn create(router: &axum::Router, id: &str) -> (u16, Value) {
    let body = json!({"id": id, "type": "note", "properties": {"text": "x".repeat(2000)}});
    call(router, "POST", &format!("{P}/entities"), body).await
}

#[tokio::test]
async fn a_full_disk_refuses_writes_with_503_keeps_reads_and_recovers() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("volume");
    std::fs::create_dir(&data).unwrap();
    let Some(volume) = Volume::mount(&data, 48) else {
        return;
    };
    let config = strata::config::Config::embedded(&data);
    let daemon = strata::server::build(config, ADMIN).await.unwrap();
    let router = daemon.router.clone();
    let org = json!({"id": "acme", "name": "Acme"});
    assert_eq!(call(&router, "POST", "/v1/orgs", org).await.0, 201);
    let project = json!({"id": "app", "name": "app"});
    let uri = "/v1/orgs/acme/projects";
    assert_eq!(call(&router, "POST", uri, project).await.0, 201);
    let mut acknowledged = Vec::new();
    for n in 0..50 {
        let id = format!("before-{n}");
        assert_eq!(create(&router, &id).await.0, 201);
        acknowledged.push(id);
    }

    // No byte left: writes are refused with the contract's error (the
    // write-ahead log may still have room for a few, which are kept).
    let ballast = data.join("ballast");
    fill(&ballast);
    let mut refused = None;
    for n in 0..500 {
        let id = format!("full-{n}");
        match create(&router, &id).await {
            (201, _) => acknowledged.push(id),
            (status, body) => {
                refused = Some((status, body));
                break;
            }
        }
    }
    let (status, body) = refused.expect("a write is refused once the disk is full");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("disk") && m.contains("full")),
        "{body}"
    );
    // Reads go on.
    let (status, entity) = call(
        &router,
        "GET",
        &format!("{P}/entities/before-7"),
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{entity}");
    assert_eq!(entity["data"]["properties"]["text"], "x".repeat(2000));
    let (status, page) = call(
        &router,
        "GET",
        &format!("{P}/entities?limit=5"),
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{page}");

    // Space returns: writes go on.
    std::fs::remove_file(&ballast).unwrap();
    for n in 0..50 {
        let id = format!("after-{n}");
        let (status, body) = create(&router, &id).await;
        assert_eq!(status, 201, "{body}");
        acknowledged.push(id);
    }
    for id in &acknowledged {
        let (status, _) = call(&router, "GET", &format!("{P}/entities/{id}"), Value::Null).await;
        assert_eq!(status, 200, "{id} was acknowledged");
    }
    daemon.shutdown().await;

    let conn = rusqlite::Connection::open(data.join("strata.db")).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let stored: i64 = conn
        .query_row("SELECT count(*) FROM entities", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored as usize, acknowledged.len());
    drop(conn);
    drop(volume);
}
