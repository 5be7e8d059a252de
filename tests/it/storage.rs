//! Storage hygiene on SQLite: a new store hands the pages it frees back to
//! the file system (incremental vacuum, run by the daily job), and the
//! write-ahead log is cut back after a checkpoint, so a store whose
//! documents are compacted and pruned shrinks on disk.

use strata::domain::{Caller, Scope};
use strata::store::Maintenance;

fn text_update(doc: &yrs::Doc, s: &str) -> Vec<u8> {
    use yrs::{Text, Transact};
    let t = doc.get_or_insert_text("t");
    let mut txn = doc.transact_mut();
    let len = t.len(&txn);
    t.insert(&mut txn, len, s);
    txn.encode_update_v1()
}

fn size(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

#[tokio::test]
async fn a_store_whose_documents_are_pruned_shrinks_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::support::sqlite_store(dir.path()).await;
    let db = dir.path().join("strata.db");
    let wal = dir.path().join("strata.db-wal");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let mode: i64 = conn
        .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        mode, 2,
        "a new store keeps its free pages' list (incremental)"
    );
    drop(conn);

    let caller = Caller::new("test");
    store.create_org(&caller, "acme", "Acme").await.unwrap();
    store
        .create_project(&caller, "acme", "app", "app")
        .await
        .unwrap();
    let scope = Scope::new("acme", "app");
    // 1,000 edits of 8 KB (each from a client of its own): a log of
    // about 8 MB.
    let line = "x".repeat(8000);
    for _ in 0..10 {
        let edits = (0..100)
            .map(|_| text_update(&yrs::Doc::new(), &line))
            .collect();
        store
            .append_updates(&scope, "board", edits, None)
            .await
            .unwrap();
    }
    store.maintain(Maintenance::Frequent).await.unwrap();
    let grown = size(&db);
    assert!(grown > 8 << 20, "the log is in the file: {grown} bytes");

    // Compacted with no retention: the snapshot (8 MB of text, in the
    // blob store) covers every update and the log is pruned.
    let blobs = strata::blob::open(&format!("file://{}", dir.path().join("blobs").display()))
        .await
        .unwrap();
    let config = strata::crdt::CrdtConfig {
        retention: std::time::Duration::ZERO,
        inline_max_bytes: 0,
        ..Default::default()
    };
    strata::crdt::compact::compact(
        store.as_ref(),
        blobs.as_ref(),
        &config,
        &caller,
        &scope,
        "board",
        &|_| Ok(()),
    )
    .await
    .unwrap();
    store.maintain(Maintenance::Frequent).await.unwrap();
    let said = store.maintain(Maintenance::Daily).await.unwrap();
    assert!(said.contains("handed back"), "{said}");
    store.maintain(Maintenance::Frequent).await.unwrap();
    let shrunk = size(&db);
    assert!(
        shrunk < grown / 4,
        "the freed pages went back: {grown} bytes, then {shrunk}"
    );
    let wal_bytes = size(&wal);
    assert!(
        wal_bytes <= strata::store::sqlite::WAL_LIMIT_BYTES as u64,
        "the log is cut back after a checkpoint: {wal_bytes} bytes"
    );
    store.close().await;
}
