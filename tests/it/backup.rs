//! Logical backups on both backends: a full backup restores to the same
//! rows (on the same backend and across), an incremental chain restores
//! exactly at each link, a backup taken while writes go on is one moment,
//! damage is found by `verify` and refused by `restore`, and a blob store
//! that fails mid-backup leaves no manifest.

use crate::support::admin;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::sync::Arc;
use strata::backup::manifest::Kind;
use strata::backup::{Backups, State};
use strata::blob::BlobStore;
use strata::config::Config;
use strata::domain::{Caller, DomainResult, Scope, WriteOp};
use strata::store::DynStore;

const ADMIN: &str = "test-admin-key-0123456789";

on_both_configs!(
    a_full_backup_restores_to_the_same_rows,
    an_incremental_chain_restores_exactly_at_each_link,
    a_backup_taken_during_writes_is_one_moment,
    damage_is_found_by_verify_and_refused_by_restore,
    a_point_in_time_restore_gives_the_rows_of_that_time,
);

fn caller() -> Caller {
    Caller::new("test")
}

fn obj(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().unwrap().clone()
}

async fn write(store: &DynStore, project: &str, ops: Vec<WriteOp>) {
    let scope = Scope::new("acme", project);
    store.write(&scope, &caller(), ops).await.unwrap();
}

fn create(id: &str, props: Value) -> WriteOp {
    WriteOp::CreateEntity {
        id: id.into(),
        entity_type: "node".into(),
        properties: obj(props),
    }
}

fn patch(id: &str, props: Value) -> WriteOp {
    WriteOp::PatchEntity {
        id: id.into(),
        patch: props,
        entity_type: None,
        expected_version: None,
    }
}

fn delete(id: &str) -> WriteOp {
    WriteOp::DeleteEntity {
        id: id.into(),
        expected_version: None,
    }
}

fn unlink(id: &str) -> WriteOp {
    WriteOp::DeleteRelationship {
        id: id.into(),
        expected_version: None,
    }
}

fn purge(id: &str) -> WriteOp {
    WriteOp::PurgeEntity { id: id.into() }
}

fn link(id: &str, from: &str, to: &str) -> WriteOp {
    WriteOp::CreateRelationship {
        id: id.into(),
        rel_type: "links".into(),
        from: from.into(),
        to: to.into(),
        properties: obj(json!({"w": 1})),
    }
}

/// Org `acme` with projects `app` (entities with histories past the
/// snapshot spacing, a deleted one, relationships, one deleted) and `b`.
async fn seed(store: &DynStore) {
    store.create_org(&caller(), "acme", "Acme").await.unwrap();
    for p in ["app", "b"] {
        store.create_project(&caller(), "acme", p, p).await.unwrap();
    }
    write(
        store,
        "app",
        (0..600)
            .map(|i| create(&format!("n{i:04}"), json!({"n": i})))
            .collect(),
    )
    .await;
    for v in 0..20 {
        write(
            store,
            "app",
            vec![patch("n0001", json!({"v": v, "tags": ["a", v]}))],
        )
        .await;
    }
    write(
        store,
        "app",
        vec![link("r1", "n0001", "n0002"), link("r2", "n0002", "n0003")],
    )
    .await;
    write(store, "app", vec![delete("n0003")]).await;
    write(store, "app", vec![unlink("r1")]).await;
    write(store, "b", vec![create("only", json!({"x": "y"}))]).await;
}

async fn backups(store: &DynStore, config: &Config) -> Backups {
    let documents = strata::blob::open(&config.blob_url).await.unwrap();
    let blobs = strata::blob::open(config.backup_url()).await.unwrap();
    Backups::new(store.clone(), documents, blobs, config)
}

fn dir_blobs(dir: &std::path::Path) -> Arc<dyn BlobStore> {
    Arc::new(strata::blob::DirBlobStore::new(dir.to_str().unwrap()).unwrap())
}

/// A Yjs update that appends `s` to text `t` of `doc`.
fn text_update(doc: &yrs::Doc, s: &str) -> Vec<u8> {
    use yrs::{GetString, Text, Transact};
    let t = doc.get_or_insert_text("t");
    let mut txn = doc.transact_mut();
    let len = t.get_string(&txn).len() as u32;
    t.insert(&mut txn, len, s);
    txn.encode_update_v1()
}

/// Yjs documents in project `app`: `board`, compacted into a snapshot kept
/// in the blob store (the updates it covers pruned) and edited after; and
/// `notes`, owned by entity n0001, never compacted.
async fn seed_docs(store: &DynStore, docs: &Arc<dyn BlobStore>) {
    let scope = Scope::new("acme", "app");
    let board = yrs::Doc::new();
    let edits = (0..5)
        .map(|i| text_update(&board, &format!("a{i}")))
        .collect();
    store
        .append_updates(&scope, "board", edits, Some("gw-1".into()))
        .await
        .unwrap();
    let config = strata::crdt::CrdtConfig {
        inline_max_bytes: 0,
        retention: std::time::Duration::ZERO,
        ..Default::default()
    };
    let compacted = strata::crdt::compact::compact(
        store.as_ref(),
        docs.as_ref(),
        &config,
        &caller(),
        &scope,
        "board",
        &|_| Ok(()),
    )
    .await
    .unwrap();
    assert!(compacted.location.starts_with("blob:"), "{compacted:?}");
    let edit = vec![text_update(&board, "b")];
    store
        .append_updates(&scope, "board", edit, None)
        .await
        .unwrap();
    store
        .put_doc(&scope, &caller(), "notes", Some("n0001".into()))
        .await
        .unwrap();
    let notes = yrs::Doc::new();
    let edits = vec![text_update(&notes, "x"), text_update(&notes, "y")];
    store
        .append_updates(&scope, "notes", edits, None)
        .await
        .unwrap();
}

/// Every row of the store, as the export writes them (document snapshots
/// kept as blobs read from `docs`).
async fn rows(store: &DynStore, docs: &Arc<dyn BlobStore>) -> Vec<Value> {
    let snapshot: Arc<dyn strata::store::Snapshot> = store.snapshot().await.unwrap().into();
    let parts = strata::export::parts(snapshot.as_ref(), None)
        .await
        .unwrap();
    let mut lines = Box::pin(strata::export::lines(snapshot, docs.clone(), parts));
    let mut out = Vec::new();
    while let Some(page) = lines.next().await {
        let page = page.unwrap();
        for line in page.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            out.push(serde_json::from_slice(line).unwrap());
        }
    }
    out
}

/// The store's audit trail, every org's events by id.
async fn trail(store: &DynStore) -> Vec<Value> {
    let snapshot = store.snapshot().await.unwrap();
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = snapshot.audit(after, None, 500).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.event.id.parse().unwrap();
        out.extend(page.into_iter().map(|e| serde_json::to_value(e).unwrap()));
    }
    out
}

fn same(a: &[Value], b: &[Value], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: as many rows");
    if let Some(i) = (0..a.len()).find(|&i| a[i] != b[i]) {
        panic!("{what}: row {i} differs: {} and {}", a[i], b[i]);
    }
}

/// Writes, until stopped, batches that patch `a-counter` to n and create
/// entity `z<n>` together, n = 0, 1, ...
struct Writer {
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<i64>,
}

impl Writer {
    fn start(store: &DynStore) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (store, flag) = (store.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut n = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let ops = vec![
                    patch("a-counter", json!({"n": n})),
                    create(&format!("z{n:06}"), json!({})),
                ];
                write(&store, "app", ops).await;
                n += 1;
            }
            n
        });
        Writer { stop, task }
    }

    /// Stops it; how many batches it wrote.
    async fn stop(self) -> i64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// The rows fell among the writer's batches and are of one moment: the
/// counter and the `z` entities agree.
fn one_moment(rows: &[Value], written: i64) {
    let counter = rows
        .iter()
        .find(|r| r["kind"] == "entity" && r["id"] == "a-counter")
        .unwrap()["properties"]["n"]
        .as_i64()
        .unwrap();
    let zs = rows
        .iter()
        .filter(|r| r["kind"] == "entity" && r["id"].as_str().unwrap().starts_with('z'))
        .count() as i64;
    assert!(
        counter >= 0 && counter < written,
        "the rows fell among the writes: {counter} of {written}"
    );
    assert_eq!(
        zs,
        counter + 1,
        "the counter and the entities are of one moment"
    );
}

/// Empty stores to restore into: SQLite, and PostgreSQL when there is one.
async fn targets(dir: &std::path::Path) -> Vec<(&'static str, DynStore)> {
    let mut out = vec![(
        "SQLite",
        crate::support::sqlite_store(&dir.join("target")).await,
    )];
    if !crate::support::skip_without(crate::support::PG) {
        let url = crate::support::fresh_pg_database().await;
        out.push(("PostgreSQL", crate::support::pg_store(dir, &url).await));
    }
    out
}

async fn a_full_backup_restores_to_the_same_rows(config: Config) {
    let d = strata::server::build(config.clone(), ADMIN).await.unwrap();
    let docs = d.blobs.clone();
    seed(&d.store).await;
    seed_docs(&d.store, &docs).await;
    let live = rows(&d.store, &docs).await;
    // A key (its hash travels in backups, never in exports) and a revoked one.
    let mut key_ids = Vec::new();
    for name in ["ci", "old"] {
        let body = json!({"name": name, "scopes": ["read"]});
        let (status, text) = admin(&d.router, ADMIN, "POST", "/v1/orgs/acme/keys", body).await;
        assert_eq!(status, 201, "{text}");
        let created: Value = serde_json::from_str(&text).unwrap();
        key_ids.push(created["data"]["id"].as_str().unwrap().to_owned());
    }
    d.store
        .revoke_key(&caller(), "acme", &key_ids[1])
        .await
        .unwrap();
    let kept = d.store.find_key(&key_ids[0]).await.unwrap().unwrap();
    let source_trail = trail(&d.store).await;

    // Through the API: started (202), then complete.
    let (status, text) = admin(
        &d.router,
        ADMIN,
        "POST",
        "/v1/admin/backups",
        json!({"type": "full"}),
    )
    .await;
    assert_eq!(status, 202, "{text}");
    let started: Value = serde_json::from_str(&text).unwrap();
    let id = started["data"]["id"].as_str().unwrap().to_owned();
    let info = loop {
        let uri = format!("/v1/admin/backups/{id}");
        let (status, text) = admin(&d.router, ADMIN, "GET", &uri, Value::Null).await;
        assert_eq!(status, 200, "{text}");
        let info: Value = serde_json::from_str(&text).unwrap();
        if info["data"]["state"] != "running" {
            break info["data"].clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(info["state"], "complete", "{info}");
    assert_eq!(info["type"], "full");
    assert!(info["bytes"].as_u64().unwrap() > 0);
    let uri = format!("/v1/admin/backups/{id}/verify");
    let (status, text) = admin(&d.router, ADMIN, "POST", &uri, Value::Null).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["data"]["ok"],
        true,
        "{text}"
    );
    let (status, text) = admin(&d.router, ADMIN, "GET", "/v1/admin/backups", Value::Null).await;
    assert_eq!(status, 200);
    assert!(text.contains(&id));
    let (status, _) = admin(
        &d.router,
        ADMIN,
        "GET",
        "/v1/admin/backups/nope",
        Value::Null,
    )
    .await;
    assert_eq!(status, 404);
    // Outcomes in /metrics (counters of this test process).
    let (_, text) = admin(&d.router, ADMIN, "GET", "/metrics", Value::Null).await;
    let completed = text
        .lines()
        .find_map(|l| l.strip_prefix("strata_backups_completed_total "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(completed.parse::<u64>().unwrap() >= 1, "{completed}");
    assert!(text.contains("strata_backup_last_success_timestamp_seconds "));

    let dir = tempfile::tempdir().unwrap();
    let service = backups(&d.store, &config).await;
    for (name, target) in targets(dir.path()).await {
        let report = service.restore(&id, &target, None).await.unwrap();
        assert_eq!(report.backups, vec![id.clone()]);
        same(
            &rows(&target, &docs).await,
            &live,
            &format!("restored into {name}"),
        );
        // The trail as it was, ids and all; the restore added nothing to it.
        let restored = trail(&target).await;
        assert!(restored.len() > 600, "{}", restored.len());
        same(&restored, &source_trail, &format!("trail in {name}"));
        // The live key is back with its hash (so its secret still works);
        // the revoked one is not.
        let restored = target.find_key(&key_ids[0]).await.unwrap().unwrap();
        assert_eq!(restored.secret_hash, kept.secret_hash);
        assert_eq!(restored.info, kept.info);
        assert!(target.find_key(&key_ids[1]).await.unwrap().is_none());
        // A store with rows in it is no target.
        let again = service.restore(&id, &target, None).await.unwrap_err();
        assert!(format!("{again:#}").contains("not empty"), "{again:#}");
        target.close().await;
    }
}

async fn an_incremental_chain_restores_exactly_at_each_link(config: Config) {
    let d = strata::server::build(config.clone(), ADMIN).await.unwrap();
    let docs = d.blobs.clone();
    let store = &d.store;
    seed(store).await;
    seed_docs(store, &docs).await;
    let service = backups(store, &config).await;
    // With no backup yet, an incremental one is a full one.
    let full = service.take(Kind::Incr).await.unwrap();
    assert_eq!(
        (full.kind, full.state),
        (Kind::Full, State::Complete),
        "{full:?}"
    );

    // Changes of every kind: patches past a snapshot, a new entity, a
    // deletion, a purge (its relationships go with it), a new and a patched
    // relationship, a new project, and a project deleted and made again.
    for v in 0..20 {
        write(store, "app", vec![patch("n0002", json!({"w": v}))]).await;
    }
    write(
        store,
        "app",
        vec![
            create("fresh", json!({"new": true})),
            link("r3", "fresh", "n0004"),
        ],
    )
    .await;
    write(store, "app", vec![delete("n0005")]).await;
    write(store, "app", vec![purge("n0002")]).await;
    store
        .create_project(&caller(), "acme", "c", "c")
        .await
        .unwrap();
    write(store, "c", vec![create("c1", json!({}))]).await;
    store.delete_project(&caller(), "acme", "b").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    store
        .create_project(&caller(), "acme", "b", "b again")
        .await
        .unwrap();
    write(store, "b", vec![create("other", json!({}))]).await;
    store.create_key(&caller(), stored_key("k1")).await.unwrap();
    // Documents: one edited, one deleted, one new.
    let app = Scope::new("acme", "app");
    let edit = |s: &str| vec![text_update(&yrs::Doc::new(), s)];
    store
        .append_updates(&app, "board", edit("c"), None)
        .await
        .unwrap();
    store.delete_doc(&app, &caller(), "notes").await.unwrap();
    store
        .append_updates(&app, "sketch", edit("s"), None)
        .await
        .unwrap();
    let first = service.take(Kind::Incr).await.unwrap();
    assert_eq!(
        (first.kind, first.state),
        (Kind::Incr, State::Complete),
        "{first:?}"
    );
    assert_eq!(first.parent.as_deref(), Some(full.id.as_str()));
    let at_first = rows(store, &docs).await;
    let trail_first = trail(store).await;

    // A purged id made again, and a deleted entity restored.
    write(store, "app", vec![create("n0002", json!({"reborn": 1}))]).await;
    write(
        store,
        "app",
        vec![WriteOp::RestoreEntity { id: "n0005".into() }],
    )
    .await;
    store.revoke_key(&caller(), "acme", "k1").await.unwrap();
    let second = service.take(Kind::Incr).await.unwrap();
    assert_eq!(second.parent.as_deref(), Some(first.id.as_str()));
    let at_second = rows(store, &docs).await;
    let trail_second = trail(store).await;
    assert!(
        second.bytes < full.bytes,
        "an incremental backup holds only what changed"
    );

    let dir = tempfile::tempdir().unwrap();
    for (id, expected, expected_trail, what) in [
        (&first.id, &at_first, &trail_first, "first"),
        (&second.id, &at_second, &trail_second, "second"),
    ] {
        assert!(service.verify(id).await.unwrap().ok);
        for (name, target) in targets(&dir.path().join(what)).await {
            service.restore(id, &target, None).await.unwrap();
            let k1 = target.find_key("k1").await.unwrap().unwrap();
            assert_eq!(
                k1.info.revoked_at.is_some(),
                what == "second",
                "{what}: {k1:?}"
            );
            same(
                &rows(&target, &docs).await,
                expected,
                &format!("{what} link into {name}"),
            );
            same(
                &trail(&target).await,
                expected_trail,
                &format!("{what} link's trail in {name}"),
            );
            target.close().await;
        }
    }
}

async fn a_backup_taken_during_writes_is_one_moment(config: Config) {
    let d = strata::server::build(config.clone(), ADMIN).await.unwrap();
    let docs = d.blobs.clone();
    let store = d.store.clone();
    store.create_org(&caller(), "acme", "Acme").await.unwrap();
    store
        .create_project(&caller(), "acme", "app", "app")
        .await
        .unwrap();
    // More than two export pages before the entities the writer adds, and a
    // counter read first: a backup read page by page in separate
    // transactions would hold an older counter than entities.
    write(&store, "app", vec![create("a-counter", json!({"n": -1}))]).await;
    write(
        &store,
        "app",
        (0..1200)
            .map(|i| create(&format!("m{i:04}"), json!({})))
            .collect(),
    )
    .await;
    let writer = Writer::start(&store);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let service = backups(&store, &config).await;
    let taken = service.take(Kind::Full).await.unwrap();
    let written = writer.stop().await;
    assert_eq!(taken.state, State::Complete, "{taken:?}");

    let dir = tempfile::tempdir().unwrap();
    let target = crate::support::sqlite_store(dir.path()).await;
    service.restore(&taken.id, &target, None).await.unwrap();
    let restored = rows(&target, &docs).await;
    one_moment(&restored, written);
    target.close().await;
}

async fn damage_is_found_by_verify_and_refused_by_restore(config: Config) {
    let d = strata::server::build(config.clone(), ADMIN).await.unwrap();
    let docs = d.blobs.clone();
    seed(&d.store).await;
    seed_docs(&d.store, &docs).await;
    let service = backups(&d.store, &config).await;
    let full = service.take(Kind::Full).await.unwrap();
    write(
        &d.store,
        "app",
        vec![patch("n0007", json!({"later": true}))],
    )
    .await;
    let incr = service.take(Kind::Incr).await.unwrap();
    let root = std::path::PathBuf::from(config.backup_url().strip_prefix("file://").unwrap());
    let dir = root.join("backups").join(&full.id);
    let chunk = dir.join("chunk-00000.ndjson.zst");
    let good = std::fs::read(&chunk).unwrap();
    let restore_into_fresh = |id: String| {
        let (service, docs) = (service.clone(), docs.clone());
        async move {
            let dir = tempfile::tempdir().unwrap();
            let target = crate::support::sqlite_store(dir.path()).await;
            let out = service.restore(&id, &target, None).await;
            let empty = rows(&target, &docs).await.is_empty();
            target.close().await;
            (out, empty)
        }
    };

    // A flipped byte in a chunk: the checksum no longer matches.
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::fs::write(&chunk, &bad).unwrap();
    let found = service.verify(&incr.id).await.unwrap();
    assert!(
        !found.ok && found.problems[0].contains("checksum"),
        "{found:?}"
    );
    let (out, empty) = restore_into_fresh(incr.id.clone()).await;
    assert!(
        out.is_err() && empty,
        "a damaged chain restores nothing: {out:?}"
    );
    // Cut short.
    std::fs::write(&chunk, &good[..good.len() / 2]).unwrap();
    assert!(!service.verify(&full.id).await.unwrap().ok);
    std::fs::write(&chunk, &good).unwrap();
    assert!(service.verify(&incr.id).await.unwrap().ok);

    // A manifest changed by hand no longer matches its checksum.
    let manifest = dir.join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let changed = text.replacen("\"lines\": ", "\"lines\": 1", 1);
    std::fs::write(&manifest, &changed).unwrap();
    let found = service.verify(&full.id).await.unwrap();
    assert!(
        !found.ok && found.problems[0].contains("checksum"),
        "{found:?}"
    );
    // A missing parent breaks the chain.
    std::fs::remove_file(&manifest).unwrap();
    let found = service.verify(&incr.id).await.unwrap();
    assert!(!found.ok, "{found:?}");
    let (out, empty) = restore_into_fresh(incr.id.clone()).await;
    assert!(out.is_err() && empty, "{out:?}");
}

/// A write key of org `acme` (its secret hash made up).
fn stored_key(id: &str) -> strata::domain::StoredKey {
    strata::domain::StoredKey {
        info: strata::domain::ApiKeyInfo {
            id: id.into(),
            org: "acme".into(),
            name: id.into(),
            scopes: vec![strata::domain::KeyScope::Write],
            projects: None,
            created_at: strata::clock::now(),
            created_by: "test".into(),
            revoked_at: None,
        },
        secret_hash: "ab".repeat(32),
    }
}

/// A blob store that refuses writes after `allowed` of them.
pub(crate) struct Failing {
    pub(crate) inner: strata::blob::DirBlobStore,
    pub(crate) allowed: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl strata::blob::BlobStore for Failing {
    async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
    ) -> Result<strata::blob::BlobInfo, strata::blob::BlobError> {
        use std::sync::atomic::Ordering;
        if self
            .allowed
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_err()
        {
            return Err(strata::blob::BlobError::Backend(
                "the store went away".into(),
            ));
        }
        self.inner.put(key, bytes).await
    }
    async fn get(&self, key: &str) -> Result<Vec<u8>, strata::blob::BlobError> {
        self.inner.get(key).await
    }
    async fn delete(&self, key: &str) -> Result<(), strata::blob::BlobError> {
        self.inner.delete(key).await
    }
    async fn exists(&self, key: &str) -> Result<bool, strata::blob::BlobError> {
        self.inner.exists(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, strata::blob::BlobError> {
        self.inner.list(prefix).await
    }
    fn describe(&self) -> String {
        "failing".into()
    }
}

/// The blob store failing mid-backup: the backup is failed, no manifest is
/// written, and the next one succeeds.
#[tokio::test]
async fn a_blob_store_failing_mid_backup_leaves_no_manifest() -> DomainResult<()> {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::embedded(dir.path());
    let store = crate::support::sqlite_store(dir.path()).await;
    seed(&store).await;
    let blobs = Arc::new(Failing {
        inner: strata::blob::DirBlobStore::new(dir.path().join("bk").to_str().unwrap()).unwrap(),
        allowed: 1.into(),
    });
    let service = Backups::new(store.clone(), blobs.clone(), blobs.clone(), &config);
    // The chunk is written; the manifest is refused.
    let failed = service.take(Kind::Full).await?;
    assert_eq!(failed.state, State::Failed, "{failed:?}");
    assert!(failed.error.as_deref().unwrap().contains("went away"));
    let listed = service.list().await?;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, State::Failed);
    assert!(service.manifests().await.unwrap().is_empty(), "no manifest");

    blobs
        .allowed
        .store(100, std::sync::atomic::Ordering::SeqCst);
    let next = service.take(Kind::Full).await?;
    assert_eq!(next.state, State::Complete);
    assert!(service.verify(&next.id).await?.ok);
    store.close().await;
    Ok(())
}

/// Retention follows parent links, not the order of ids, and deletes no
/// chain while a manifest does not read (a read that failed once must not
/// cost a backup).
#[tokio::test]
async fn expiry_follows_parents_and_spares_what_does_not_read() -> DomainResult<()> {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::embedded(dir.path());
    config.backup.keep_full = 1;
    let store = crate::support::sqlite_store(dir.path()).await;
    seed(&store).await;
    let bk = dir.path().join("bk");
    let blobs = dir_blobs(&bk);
    let service = Backups::new(store.clone(), blobs.clone(), blobs.clone(), &config);
    let old = service.take(Kind::Full).await?;
    let newer = service.take(Kind::Full).await?;
    // While the newer one's manifest does not answer, the next
    // incremental backup continues the old one.
    let manifest = bk.join(strata::backup::manifest::manifest_key(&newer.id));
    let aside = bk.join("aside.json");
    std::fs::rename(&manifest, &aside).unwrap();
    write(&store, "app", vec![patch("n0009", json!({"more": 1}))]).await;
    let incr = service.take(Kind::Incr).await?;
    assert_eq!(incr.parent.as_deref(), Some(old.id.as_str()));

    std::fs::write(&manifest, b"{").unwrap();
    let expired = service.expire().await.unwrap();
    assert!(expired.backups.is_empty(), "{expired}");
    assert!(expired.orphans.is_empty(), "{expired}");

    // The old chain holds the newest backup: the newer full one goes.
    std::fs::rename(&aside, &manifest).unwrap();
    let expired = service.expire().await.unwrap();
    assert_eq!(
        expired.backups,
        std::slice::from_ref(&newer.id),
        "{expired}"
    );
    assert!(service.verify(&incr.id).await?.ok);
    Ok(())
}

/// Scheduled backups are jobs (`/v1/admin/jobs`); each full one expires
/// the chains past `keep_full`, newest kept.
#[tokio::test]
async fn scheduled_full_backups_keep_the_newest_chains() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::embedded(dir.path());
    config.backup.full_schedule = Some("0 0 3 * * *".into());
    config.backup.incr_schedule = Some("0 0 * * * *".into());
    config.backup.keep_full = 2;
    let d = strata::server::build(config.clone(), ADMIN).await.unwrap();
    let docs = d.blobs.clone();
    seed(&d.store).await;
    seed_docs(&d.store, &docs).await;
    let run = |job: &'static str| {
        let router = d.router.clone();
        async move {
            let uri = format!("/v1/admin/jobs/{job}/run");
            let (status, text) = admin(&router, ADMIN, "POST", &uri, Value::Null).await;
            assert_eq!(status, 200, "{text}");
            let run: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(run["data"]["ok"], true, "{run}");
            run["data"]["outcome"].as_str().unwrap().to_owned()
        }
    };
    for _ in 0..3 {
        run("backup_full").await;
        write(&d.store, "app", vec![patch("n0009", json!({"more": 1}))]).await;
        let outcome = run("backup_incr").await;
        assert!(outcome.contains("(incr) complete"), "{outcome}");
    }
    let service = backups(&d.store, &config).await;
    let kinds: Vec<Kind> = service
        .manifests()
        .await
        .unwrap()
        .iter()
        .map(|m| m.kind)
        .collect();
    assert_eq!(
        kinds,
        [Kind::Full, Kind::Incr, Kind::Full, Kind::Incr],
        "two chains kept"
    );
    // The feed is kept from the newest backup on for the next incremental one.
    let newest = service.manifests().await.unwrap().pop().unwrap();
    assert_eq!(
        d.store.feed_cursor("backups").await.unwrap(),
        Some(newest.last_seq)
    );
}

/// `strata migrate-store`: SQLite to PostgreSQL and back, each copy checked
/// by per-kind counts and checksums, and the rows the same at the end.
#[tokio::test]
async fn a_store_migrates_between_backends_and_back() {
    if crate::support::skip_without(crate::support::PG) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sqlite = crate::support::sqlite_store(&dir.path().join("a")).await;
    seed(&sqlite).await;
    let docs = dir_blobs(&dir.path().join("blobs"));
    seed_docs(&sqlite, &docs).await;
    let key = strata::domain::StoredKey {
        info: strata::domain::ApiKeyInfo {
            id: "k1".into(),
            org: "acme".into(),
            name: "k1".into(),
            scopes: vec![strata::domain::KeyScope::Read],
            projects: Some(vec!["app".into()]),
            created_at: strata::clock::now(),
            created_by: "test".into(),
            revoked_at: None,
        },
        secret_hash: "cd".repeat(32),
    };
    sqlite.create_key(&caller(), key).await.unwrap();
    let url = crate::support::fresh_pg_database().await;
    let pg = crate::support::pg_store(dir.path(), &url).await;
    let there = strata::migrate_store::run(&sqlite, docs.clone(), &pg)
        .await
        .unwrap();
    assert_eq!(there.tallies["doc"].rows, 2);
    assert_eq!(there.tallies["doc_snapshot"].rows, 1);
    assert_eq!(there.tallies["doc_update"].rows, 3);
    assert!(
        there.tallies["audit"].rows > 600,
        "{:?}",
        there.tallies["audit"]
    );
    assert_eq!(there.tallies["key"].rows, 1);
    same(
        &trail(&pg).await,
        &trail(&sqlite).await,
        "the trail in PostgreSQL",
    );
    assert_eq!(there.tallies["entity"].rows, 601);
    assert_eq!(there.tallies["version"].rows, 622);
    assert_eq!(there.tallies["relationship"].rows, 2);
    let back = crate::support::sqlite_store(&dir.path().join("b")).await;
    let again = strata::migrate_store::run(&pg, docs.clone(), &back)
        .await
        .unwrap();
    assert_eq!(again.tallies, there.tallies);
    same(
        &rows(&back, &docs).await,
        &rows(&sqlite, &docs).await,
        "SQLite → PostgreSQL → SQLite",
    );
    // Only into an empty store.
    let refused = strata::migrate_store::run(&sqlite, docs.clone(), &back)
        .await
        .unwrap_err();
    assert!(format!("{refused:#}").contains("not empty"));
    for s in [sqlite, pg, back] {
        s.close().await;
    }
}

/// `--to`: a restore gives the state at a time between writes, rebuilt from
/// version history: entities cut back to their versions then, rows made
/// later left out, relationships deleted later live again. A purge is an
/// erasure, so an entity purged before the backup is not brought back.
async fn a_point_in_time_restore_gives_the_rows_of_that_time(config: Config) {
    let d = strata::server::build(config.clone(), ADMIN).await.unwrap();
    let docs = d.blobs.clone();
    let store = &d.store;
    seed(store).await;
    seed_docs(store, &docs).await;
    let pause = || tokio::time::sleep(std::time::Duration::from_millis(5));
    write(
        store,
        "app",
        vec![
            patch("n0001", json!({"phase": "a"})),
            link("r5", "n0010", "n0011"),
        ],
    )
    .await;
    let at_t = rows(store, &docs).await;
    pause().await;
    let t = strata::clock::now();
    pause().await;
    for v in 0..18 {
        write(
            store,
            "app",
            vec![patch("n0001", json!({"phase": "b", "v": v}))],
        )
        .await;
    }
    write(
        store,
        "app",
        vec![create("late", json!({})), link("r9", "n0005", "n0006")],
    )
    .await;
    let late_edit = vec![text_update(&yrs::Doc::new(), "late")];
    let app = Scope::new("acme", "app");
    store
        .append_updates(&app, "board", late_edit, None)
        .await
        .unwrap();
    store
        .append_updates(
            &app,
            "after",
            vec![text_update(&yrs::Doc::new(), "z")],
            None,
        )
        .await
        .unwrap();
    write(store, "app", vec![delete("n0004")]).await;
    write(store, "app", vec![unlink("r5")]).await;
    write(store, "app", vec![purge("n0007")]).await;
    store
        .create_project(&caller(), "acme", "later", "later")
        .await
        .unwrap();
    for id in ["k-before", "k-after"] {
        store.create_key(&caller(), stored_key(id)).await.unwrap();
    }
    let service = backups(store, &config).await;
    let full = service.take(Kind::Full).await.unwrap();
    let at_full = rows(store, &docs).await;
    // Revoked before t2: a restore to t2 must not bring it back to life,
    // though the full backup lists it and the incremental one (begun after
    // t2) is the one that knows.
    store
        .revoke_key(&caller(), "acme", "k-before")
        .await
        .unwrap();
    pause().await;
    let t2 = strata::clock::now();
    pause().await;
    store
        .revoke_key(&caller(), "acme", "k-after")
        .await
        .unwrap();
    write(
        store,
        "app",
        vec![
            patch("n0001", json!({"phase": "c"})),
            create("later2", json!({})),
        ],
    )
    .await;
    // Gone after t2: a restore to t2 keeps it (the incremental backup no
    // longer lists it, but its audit events do not place the deletion by
    // then); a restore of the latest state does not.
    store
        .delete_project(&caller(), "acme", "later")
        .await
        .unwrap();
    let incr = service.take(Kind::Incr).await.unwrap();
    assert_eq!(incr.kind, Kind::Incr);

    // Relationships keep no history: r5, deleted after the time, comes back
    // live with its row as the backup has it (a version and update time of
    // its deletion), so those two are left out of the comparison.
    let past = |rows: &[Value]| -> Vec<Value> {
        rows.iter()
            .filter(|r| r["id"] != "n0007" && r["entity"] != "n0007")
            .map(|r| {
                let mut r = r.clone();
                if r["kind"] == "relationship" && r["id"] == "r5" {
                    let o = r.as_object_mut().unwrap();
                    o.remove("version");
                    o.remove("updated_at");
                }
                r
            })
            .collect()
    };
    let dir = tempfile::tempdir().unwrap();
    for (n, (id, to, expected)) in [
        (&full.id, &t, past(&at_t)),
        (&incr.id, &t, past(&at_t)),
        (&incr.id, &t2, past(&at_full)),
    ]
    .into_iter()
    .enumerate()
    {
        let target = crate::support::sqlite_store(&dir.path().join(n.to_string())).await;
        let report = service.restore(id, &target, Some(to)).await.unwrap();
        let restored = rows(&target, &docs).await;
        if n == 0 {
            let r5 = restored.iter().find(|r| r["id"] == "r5").unwrap();
            assert!(r5.get("deleted_at").is_none(), "live at the time: {r5}");
        }
        same(
            &past(&restored),
            &expected,
            &format!("restore {n} of {id} to {to}"),
        );
        if n == 2 {
            let live = |id: &'static str| {
                let target = &target;
                async move {
                    target
                        .find_key(id)
                        .await
                        .unwrap()
                        .unwrap()
                        .info
                        .revoked_at
                        .is_none()
                }
            };
            assert!(!live("k-before").await, "revoked by t2");
            assert!(live("k-after").await, "revoked after t2");
        }
        if n == 1 {
            assert_eq!(
                report.backups,
                vec![full.id.clone()],
                "the chain up to the first backup after the time"
            );
        }
        target.close().await;
    }
    let dir = tempfile::tempdir().unwrap();
    let target = crate::support::sqlite_store(dir.path()).await;
    let report = service.restore(&incr.id, &target, None).await.unwrap();
    assert_eq!(report.deleted_projects, 1, "{report:?}");
    assert!(target.get_project("acme", "later").await.is_err());
    for id in ["k-before", "k-after"] {
        let key = target.find_key(id).await.unwrap().unwrap();
        assert!(key.info.revoked_at.is_some(), "{id}");
    }
    target.close().await;

    // A time after the backup is beyond it.
    let dir = tempfile::tempdir().unwrap();
    let target = crate::support::sqlite_store(dir.path()).await;
    let later = strata::clock::now();
    let refused = service
        .restore(&full.id, &target, Some(&later))
        .await
        .unwrap_err();
    assert!(format!("{refused:#}").contains("before"), "{refused:#}");
    target.close().await;
}

/// `strata backup create --physical`: SQLite's online backup API copies the
/// file while writes go on; the copy opens as a store, passes its integrity
/// check, and is of one moment.
#[tokio::test]
async fn a_physical_copy_of_sqlite_is_one_moment_while_writes_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::embedded(dir.path());
    let d = strata::server::build(config.clone(), ADMIN).await.unwrap();
    let docs = d.blobs.clone();
    let store = d.store.clone();
    store.create_org(&caller(), "acme", "Acme").await.unwrap();
    store
        .create_project(&caller(), "acme", "app", "app")
        .await
        .unwrap();
    write(&store, "app", vec![create("a-counter", json!({"n": -1}))]).await;
    let writer = Writer::start(&store);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let source = std::path::PathBuf::from(config.database_url.strip_prefix("sqlite://").unwrap());
    let out = dir.path().join("copy").join("strata.db");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let copied = {
        let out = out.clone();
        tokio::task::spawn_blocking(move || strata::backup::physical::copy_sqlite(&source, &out))
            .await
            .unwrap()
            .unwrap()
    };
    let written = writer.stop().await;
    assert!(copied > 0);

    let copy = strata::store::open(
        &format!("sqlite://{}", out.display()),
        &config.store_settings(),
    )
    .await
    .unwrap();
    let restored = rows(&copy, &docs).await;
    one_moment(&restored, written);
    copy.close().await;
    // A copy never overwrites a file.
    let source = std::path::PathBuf::from(config.database_url.strip_prefix("sqlite://").unwrap());
    assert!(strata::backup::physical::copy_sqlite(&source, &out).is_err());
}

/// With `STRATA_BACKUP_KEY` set, chunks are sealed (ChaCha20-Poly1305): no
/// plaintext in the backup store, and only that key opens them; verify and
/// restore say which key is wanted.
#[tokio::test]
async fn an_encrypted_backup_opens_only_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::embedded(dir.path());
    config.backup.key = Some("ab".repeat(32));
    let store = crate::support::sqlite_store(&dir.path().join("source")).await;
    seed(&store).await;
    let docs = strata::blob::open(&config.blob_url).await.unwrap();
    seed_docs(&store, &docs).await;
    let service = backups(&store, &config).await;
    let full = service.take(Kind::Full).await.unwrap();
    assert_eq!(full.state, State::Complete, "{full:?}");
    let root = std::path::PathBuf::from(config.backup_url().strip_prefix("file://").unwrap());
    let chunk = std::fs::read(
        root.join("backups")
            .join(&full.id)
            .join("chunk-00000.ndjson.zst"),
    )
    .unwrap();
    assert!(
        zstd::decode_all(&chunk[..]).is_err(),
        "not a plain zstd frame"
    );
    assert!(!chunk.windows(5).any(|w| w == b"n0001"));
    assert!(service.verify(&full.id).await.unwrap().ok);
    let target = crate::support::sqlite_store(&dir.path().join("target")).await;
    service.restore(&full.id, &target, None).await.unwrap();
    same(
        &rows(&target, &docs).await,
        &rows(&store, &docs).await,
        "restored with the key",
    );
    target.close().await;

    for (key, says) in [
        (None, "set STRATA_BACKUP_KEY"),
        (Some("cd".repeat(32)), "encrypted with key"),
    ] {
        let mut other = config.clone();
        other.backup.key = key;
        let found = backups(&store, &other)
            .await
            .verify(&full.id)
            .await
            .unwrap();
        assert!(!found.ok && found.problems[0].contains(says), "{found:?}");
    }
    // A chain is opened with one key: after a change of key, the next
    // incremental backup is a full one.
    let mut rekeyed = config.clone();
    rekeyed.backup.key = Some("cd".repeat(32));
    let next = backups(&store, &rekeyed)
        .await
        .take(Kind::Incr)
        .await
        .unwrap();
    assert_eq!((next.kind, next.state), (Kind::Full, State::Complete));

    // Whoever can write to the bucket, without the key, can compute a
    // manifest's checksum again, but not its tag: a manifest with a chunk
    // dropped is refused.
    let path = root.join("backups").join(&full.id).join("manifest.json");
    let mut m: strata::backup::manifest::Manifest =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert!(m.tag.is_some(), "{m:?}");
    m.chunks.pop();
    m.checksum = m.compute_checksum();
    std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let found = service.verify(&full.id).await.unwrap();
    assert!(!found.ok && found.problems[0].contains("tag"), "{found:?}");
    let target = crate::support::sqlite_store(&dir.path().join("target2")).await;
    assert!(service.restore(&full.id, &target, None).await.is_err());
    assert!(rows(&target, &docs).await.is_empty());
    target.close().await;
    store.close().await;
}
