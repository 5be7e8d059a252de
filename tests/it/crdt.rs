//! The Yjs document log: random concurrent edits persisted in random batches
//! with compaction at random points always load back to the merge of all
//! clients; compaction survives a crash between any two of its steps; and
//! the HTTP contract (append, load, diff, tail, as_of, link, delete).

use crate::support;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use strata::blob::BlobStore;
use strata::crdt::compact::{self, Step};
use strata::crdt::{self as crdt_mod, CrdtConfig};
use strata::domain::*;
use strata::store::DynStore;
use yrs::types::ToJson;
use yrs::updates::decoder::Decode;
use yrs::{Array, Doc, GetString, Map, ReadTxn, Text, Transact, Update};

fn caller() -> Caller {
    Caller::new("tester")
}

struct Env {
    store: DynStore,
    blobs: Arc<dyn BlobStore>,
    _dir: tempfile::TempDir,
}

#[derive(Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

async fn env(backend: Backend) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = match backend {
        Backend::Sqlite => support::sqlite_store(dir.path()).await,
        Backend::Postgres => {
            support::pg_store(dir.path(), &support::fresh_pg_database().await).await
        }
    };
    // Server mode keeps snapshots in S3; embedded mode in a directory.
    let blobs = match backend {
        Backend::Sqlite => {
            strata::blob::open(&format!("file://{}", dir.path().join("blobs").display()))
                .await
                .unwrap()
        }
        Backend::Postgres => support::s3_blobs(),
    };
    store.create_org(&caller(), "acme", "Acme").await.unwrap();
    store
        .create_project(&caller(), "acme", "app", "App")
        .await
        .unwrap();
    Env {
        store,
        blobs,
        _dir: dir,
    }
}

/// Compacts one document now, without fault injection.
async fn compact_now(
    env: &Env,
    doc: &str,
    config: &CrdtConfig,
) -> DomainResult<compact::Compacted> {
    compact::compact(
        env.store.as_ref(),
        env.blobs.as_ref(),
        config,
        &caller(),
        &scope(),
        doc,
        &|_| Ok(()),
    )
    .await
}

fn scope() -> Scope {
    Scope::new("acme", "app")
}

/// A config that compacts aggressively: tiny inline limit (blobs get used),
/// no retention (compacted updates are pruned at once).
fn eager() -> CrdtConfig {
    CrdtConfig {
        inline_max_bytes: 256,
        retention: std::time::Duration::ZERO,
        keep_snapshots: std::time::Duration::ZERO,
        ..CrdtConfig::default()
    }
}

/// One random edit on a client: map set/remove, array insert/remove, text
/// insert/delete. Returns the update it produced.
fn random_edit(doc: &Doc, rng: &mut StdRng, client: u32) -> Vec<u8> {
    let map = doc.get_or_insert_map("m");
    let array = doc.get_or_insert_array("a");
    let text = doc.get_or_insert_text("t");
    let mut txn = doc.transact_mut();
    match rng.random_range(0..6) {
        0 => {
            map.insert(
                &mut txn,
                format!("k{}", rng.random_range(0..5)),
                format!("v{client}-{}", rng.random::<u16>()),
            );
        }
        1 => {
            map.remove(&mut txn, &format!("k{}", rng.random_range(0..5)));
        }
        2 => {
            let at = rng.random_range(0..=array.len(&txn));
            array.insert(&mut txn, at, rng.random::<i32>() as i64);
        }
        3 if array.len(&txn) > 0 => {
            let at = rng.random_range(0..array.len(&txn));
            array.remove(&mut txn, at);
        }
        4 => {
            let len = text.get_string(&txn).chars().count() as u32;
            let at = rng.random_range(0..=len);
            text.insert(&mut txn, at, &format!("[{client}]"));
        }
        _ => {
            let len = text.get_string(&txn).chars().count() as u32;
            if len > 2 {
                let at = rng.random_range(0..len - 1);
                text.remove_range(&mut txn, at, 2);
            } else {
                text.insert(&mut txn, 0, "x");
            }
        }
    }
    txn.encode_update_v1()
}

/// The visible content of a document, for comparison.
fn content(update: &[u8]) -> String {
    let doc = Doc::new();
    let map = doc.get_or_insert_map("m");
    let array = doc.get_or_insert_array("a");
    let text = doc.get_or_insert_text("t");
    doc.transact_mut()
        .apply_update(Update::decode_v1(update).unwrap())
        .unwrap();
    let txn = doc.transact();
    // Map entries in key order, so equal maps print equally.
    let entries: std::collections::BTreeMap<String, String> = match map.to_json(&txn) {
        yrs::Any::Map(m) => m
            .iter()
            .map(|(k, v)| (k.clone(), format!("{v:?}")))
            .collect(),
        _ => Default::default(),
    };
    format!(
        "{entries:?}|{:?}|{}",
        array.to_json(&txn),
        text.get_string(&txn)
    )
}

fn merged_content(clients: &[Doc]) -> String {
    // Every client's full state merged: what all replicas converge to.
    let states: Vec<Vec<u8>> = clients
        .iter()
        .map(|d| {
            d.transact()
                .encode_state_as_update_v1(&yrs::StateVector::default())
        })
        .collect();
    content(&yrs::merge_updates_v1(states.iter().map(Vec::as_slice)).unwrap())
}

async fn loaded_content(env: &Env, doc: &str) -> (String, i64) {
    let log = env.store.doc_log(&scope(), doc, None).await.unwrap();
    let state = crdt_mod::state(env.store.as_ref(), env.blobs.as_ref(), &scope(), doc, &log)
        .await
        .unwrap();
    (content(&state), log.last_seq)
}

async fn random_edits_batches_and_compactions_always_load_the_merge(backend: Backend) {
    let env = env(backend).await;
    for seed in 0..12u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let doc_id = format!("doc{seed}");
        let clients: Vec<Doc> = (0..rng.random_range(2..5))
            .map(|i| Doc::with_client_id(100 + i))
            .collect();
        let mut pending: Vec<Vec<u8>> = Vec::new();
        let mut persisted = 0;
        for _ in 0..rng.random_range(20..120) {
            let c = rng.random_range(0..clients.len());
            let update = random_edit(&clients[c], &mut rng, c as u32);
            // Clients exchange updates now and then (concurrent edits otherwise).
            if rng.random_bool(0.3) {
                let other = rng.random_range(0..clients.len());
                clients[other]
                    .transact_mut()
                    .apply_update(Update::decode_v1(&update).unwrap())
                    .unwrap();
            }
            pending.push(update);
            if rng.random_bool(0.25) {
                let batch = std::mem::take(&mut pending);
                persisted += batch.len();
                env.store
                    .append_updates(&scope(), &doc_id, batch, Some("gw".into()))
                    .await
                    .unwrap();
            }
            if persisted > 0 && rng.random_bool(0.08) {
                let config = if rng.random_bool(0.5) {
                    eager()
                } else {
                    CrdtConfig::default()
                };
                compact_now(&env, &doc_id, &config).await.unwrap();
            }
        }
        if !pending.is_empty() {
            persisted += pending.len();
            env.store
                .append_updates(&scope(), &doc_id, pending, None)
                .await
                .unwrap();
        }
        let (loaded, last_seq) = loaded_content(&env, &doc_id).await;
        assert_eq!(last_seq, persisted as i64, "seed {seed}");
        assert_eq!(loaded, merged_content(&clients), "seed {seed}");
        // And once more after a final compaction.
        compact_now(&env, &doc_id, &eager()).await.unwrap();
        assert_eq!(
            loaded_content(&env, &doc_id).await.0,
            merged_content(&clients),
            "seed {seed} compacted"
        );
    }
}

async fn a_crash_between_any_two_compaction_steps_loses_nothing(backend: Backend) {
    let env = env(backend).await;
    for (i, crash_at) in [Step::Encoded, Step::Stored, Step::Recorded, Step::Pruned]
        .into_iter()
        .enumerate()
    {
        let doc_id = format!("crash{i}");
        let client = Doc::with_client_id(7);
        let mut rng = StdRng::seed_from_u64(i as u64);
        for round in 0..3 {
            let updates: Vec<Vec<u8>> =
                (0..40).map(|_| random_edit(&client, &mut rng, 7)).collect();
            env.store
                .append_updates(&scope(), &doc_id, updates, None)
                .await
                .unwrap();
            let crash = |step: Step| {
                if step == crash_at {
                    Err(DomainError::Unavailable(format!(
                        "injected crash after {step:?}"
                    )))
                } else {
                    Ok(())
                }
            };
            let result = compact::compact(
                env.store.as_ref(),
                env.blobs.as_ref(),
                &eager(),
                &caller(),
                &scope(),
                &doc_id,
                &crash,
            )
            .await;
            assert!(result.is_err(), "the crash was injected");
            let want = merged_content(std::slice::from_ref(&client));
            assert_eq!(
                loaded_content(&env, &doc_id).await.0,
                want,
                "after a crash at {crash_at:?}, round {round}"
            );
            // The rerun finishes and changes nothing visible.
            compact_now(&env, &doc_id, &eager()).await.unwrap();
            assert_eq!(
                loaded_content(&env, &doc_id).await.0,
                want,
                "after the rerun, round {round}"
            );
            let snapshots = env.store.list_snapshots(&scope(), &doc_id).await.unwrap();
            assert_eq!(
                snapshots[0].covers_seq,
                40 * (round + 1),
                "the newest snapshot covers the log"
            );
        }
        let tail = env
            .store
            .list_doc_updates(&scope(), &doc_id, 0, 1000)
            .await
            .unwrap();
        assert!(
            tail.is_empty(),
            "with no retention the covered log is pruned: {} left",
            tail.len()
        );
    }
}

async fn large_snapshots_go_to_the_blob_store_with_a_checksum(backend: Backend) {
    let env = env(backend).await;
    let client = Doc::with_client_id(1);
    let text = client.get_or_insert_text("t");
    let updates: Vec<Vec<u8>> = (0..50)
        .map(|i| {
            let mut txn = client.transact_mut();
            text.insert(&mut txn, 0, &"x".repeat(100 + i));
            txn.encode_update_v1()
        })
        .collect();
    env.store
        .append_updates(&scope(), "big", updates, None)
        .await
        .unwrap();
    let done = compact_now(&env, "big", &eager()).await.unwrap();
    assert!(
        done.location.starts_with("blob:crdt/acme/app/big/"),
        "{}",
        done.location
    );
    let snapshots = env.store.list_snapshots(&scope(), "big").await.unwrap();
    let SnapshotData::Blob(key) = &snapshots[0].data else {
        panic!("expected a blob snapshot");
    };
    assert!(key.ends_with(&format!("{:020}.ysnap", 50)));
    assert_eq!(snapshots[0].sha256.len(), 64);
    assert_eq!(
        loaded_content(&env, "big").await.0,
        merged_content(std::slice::from_ref(&client))
    );
}

async fn as_of_reads_the_past_and_410s_once_history_is_gone(backend: Backend) {
    let env = env(backend).await;
    let client = Doc::with_client_id(3);
    let mut rng = StdRng::seed_from_u64(3);
    let first: Vec<Vec<u8>> = (0..5).map(|_| random_edit(&client, &mut rng, 3)).collect();
    env.store
        .append_updates(&scope(), "h", first, None)
        .await
        .unwrap();
    let then_content = merged_content(std::slice::from_ref(&client));
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let then = strata::clock::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let more: Vec<Vec<u8>> = (0..5).map(|_| random_edit(&client, &mut rng, 3)).collect();
    env.store
        .append_updates(&scope(), "h", more, None)
        .await
        .unwrap();

    let log = env.store.doc_log(&scope(), "h", Some(&then)).await.unwrap();
    assert_eq!(log.last_seq, 5);
    let state = crdt_mod::state(env.store.as_ref(), env.blobs.as_ref(), &scope(), "h", &log)
        .await
        .unwrap();
    assert_eq!(content(&state), then_content);

    // Compact with nothing retained and no old snapshot kept: `then` is gone.
    compact_now(&env, "h", &eager()).await.unwrap();
    let gone = env.store.doc_log(&scope(), "h", Some(&then)).await;
    assert!(matches!(gone, Err(DomainError::Gone(_))), "{gone:?}");
    let before_doc = env
        .store
        .doc_log(&scope(), "h", Some("2000-01-01T00:00:00Z"))
        .await;
    assert!(
        matches!(
            before_doc,
            Err(DomainError::NotFound(_)) | Err(DomainError::Gone(_))
        ),
        "{before_doc:?}"
    );
}

/// Applies one entity write in the test project; its outcome.
async fn write_one(env: &Env, op: WriteOp) -> WriteOutcome {
    let mut done = env
        .store
        .write(&scope(), &caller(), vec![op])
        .await
        .unwrap();
    done.remove(0)
}

/// Deletes an entity of the test project.
async fn delete_entity(env: &Env, id: &str) {
    let id = id.into();
    write_one(
        env,
        WriteOp::DeleteEntity {
            id,
            expected_version: None,
        },
    )
    .await;
}

/// A document linked to a new entity of its own.
async fn owned_doc(env: &Env, entity: &str, doc: &str) {
    let create = WriteOp::CreateEntity {
        id: entity.into(),
        entity_type: "whiteboard".into(),
        properties: Properties::new(),
    };
    write_one(env, create).await;
    env.store
        .put_doc(&scope(), &caller(), doc, Some(entity.into()))
        .await
        .unwrap();
}

async fn documents_follow_their_entity(backend: Backend) {
    let env = env(backend).await;
    owned_doc(&env, "board", "board-doc").await;
    let client = Doc::with_client_id(9);
    let mut rng = StdRng::seed_from_u64(9);
    let updates: Vec<Vec<u8>> = (0..30).map(|_| random_edit(&client, &mut rng, 9)).collect();
    env.store
        .append_updates(&scope(), "board-doc", updates, None)
        .await
        .unwrap();
    compact_now(&env, "board-doc", &eager()).await.unwrap();

    delete_entity(&env, "board").await;
    assert!(matches!(
        env.store.get_doc(&scope(), "board-doc").await,
        Err(DomainError::NotFound(_))
    ));
    write_one(&env, WriteOp::RestoreEntity { id: "board".into() }).await;
    assert!(env.store.get_doc(&scope(), "board-doc").await.is_ok());

    let blob_keys: Vec<String> = env.blobs.list("crdt/acme/app/board-doc/").await.unwrap();
    let purge = WriteOp::PurgeEntity { id: "board".into() };
    let WriteOutcome::Purged { blobs, .. } = &write_one(&env, purge).await else {
        panic!("expected a purge");
    };
    assert_eq!(blobs, &blob_keys, "the purge names the document's blobs");
    assert!(matches!(
        env.store.get_doc(&scope(), "board-doc").await,
        Err(DomainError::NotFound(_))
    ));
}

/// Many writers' updates through the group commit at once: each writer's
/// updates keep their order, the document's seqs stay dense, every update is
/// relayed once durable in seq order, and a refused write (a document
/// hidden by its deleted entity) fails alone, not the group it shared.
async fn the_group_commit_orders_relays_and_refuses_only_the_bad_write(backend: Backend) {
    use strata::crdt::commit::Committer;
    use strata::crdt::sync::DocHub;
    // Fewer updates than a room's relay queue holds, so none lags.
    const WRITERS: u64 = 8;
    const EACH: usize = 30;
    let env = env(backend).await;
    owned_doc(&env, "gone", "hidden").await;
    delete_entity(&env, "gone").await;

    let hub = Arc::new(DocHub::default());
    let mut relays = hub.subscribe(&scope(), "shared");
    // One shard: every write queued meanwhile joins the next group.
    let commits = Committer::start(env.store.clone(), hub.clone(), 1);
    let append = |doc: &str, update: Vec<u8>, writer: u64| DocAppend {
        scope: scope(),
        doc: doc.into(),
        updates: vec![update],
        origin: Some(format!("w{writer}")),
    };
    // Every writer hands all its updates over before any is awaited, as a
    // socket keeps several in flight; the bad write goes in among them.
    let clients: Vec<Doc> = (1..=WRITERS).map(Doc::with_client_id).collect();
    let mut rng = StdRng::seed_from_u64(7);
    let mut submitted = Vec::new();
    for n in 0..EACH {
        for (w, client) in (1..=WRITERS).zip(&clients) {
            let update = random_edit(client, &mut rng, w as u32);
            submitted.push((
                w,
                commits
                    .submit(vec![append("shared", update, w)], w)
                    .await
                    .unwrap(),
            ));
        }
        if n == EACH / 2 {
            let bad = commits
                .submit(vec![append("hidden", vec![0, 0], 99)], 99)
                .await
                .unwrap();
            submitted.push((99, bad));
        }
    }
    let mut last_of = std::collections::HashMap::new();
    for (w, outcome) in submitted {
        match (w, outcome.await) {
            (99, outcome) => assert!(
                matches!(outcome, Err(DomainError::NotFound(_))),
                "{outcome:?}"
            ),
            (w, Ok(seqs)) => {
                let (first, last) = seqs[0];
                assert_eq!(first, last);
                let before = last_of.insert(w, last).unwrap_or(0);
                assert!(last > before, "writer {w}'s updates keep their order");
            }
            (w, Err(e)) => panic!("writer {w}'s write was refused: {e}"),
        }
    }
    let total = WRITERS as i64 * EACH as i64;
    let mut seen = Vec::new();
    while let Ok(relay) = relays.try_recv() {
        seen.push(relay.seq.unwrap());
    }
    assert_eq!(
        seen,
        (1..=total).collect::<Vec<_>>(),
        "every update relayed, in seq order"
    );
    let (content_now, last) = loaded_content(&env, "shared").await;
    assert_eq!(last, total);
    assert_eq!(content_now, merged_content(&clients));
    let stored = env
        .store
        .list_doc_updates(&scope(), "shared", 0, 1000)
        .await
        .unwrap();
    assert!(stored
        .iter()
        .all(|u| u.origin.as_deref().is_some_and(|o| o.starts_with('w'))));
}

/// A connection that fell behind is sent what the log holds after its
/// position, as one update; past a gap in the log (pruned by a compaction)
/// or with no position, the whole state.
async fn a_catch_up_sends_what_the_log_holds_after_a_position(backend: Backend) {
    use strata::crdt::catch_up::catch_up;
    let env = env(backend).await;
    let (mine, theirs) = (Doc::with_client_id(1), Doc::with_client_id(2));
    let type_into = |doc: &Doc, s: &str| {
        let text = doc.get_or_insert_text("t");
        let mut txn = doc.transact_mut();
        let at = text.len(&txn);
        text.insert(&mut txn, at, s);
        txn.encode_update_v1()
    };
    let mut updates = Vec::new();
    for i in 0..6 {
        let (doc, origin) = if i % 2 == 0 {
            (&mine, "ws:1")
        } else {
            (&theirs, "ws:2")
        };
        let update = type_into(doc, &format!("{i}"));
        updates.push(update.clone());
        env.store
            .append_updates(&scope(), "d", vec![update], Some(origin.into()))
            .await
            .unwrap();
    }
    let apply = |doc: &Doc, update: &[u8]| {
        let update = Update::decode_v1(update).unwrap();
        doc.transact_mut().apply_update(update).unwrap();
    };
    let text_of = |doc: &Doc| {
        let text = doc.get_or_insert_text("t");
        let txn = doc.transact();
        text.get_string(&txn)
    };
    let whole_of = |update: &[u8]| {
        let doc = Doc::new();
        apply(&doc, update);
        text_of(&doc)
    };
    let (store, blobs) = (env.store.as_ref(), env.blobs.as_ref());
    // The client of ws:1 has seqs 1 and 2 and its own 3 and 5: it lacks 4
    // and 6, and gets 3 to 6 (its own come along: Yjs skips them).
    let replica = Doc::new();
    for seq in [1, 2, 3, 5] {
        apply(&replica, &updates[seq - 1]);
    }
    let caught = catch_up(store, blobs, &scope(), "d", Some(2))
        .await
        .unwrap();
    assert_eq!(caught.through, 6);
    apply(&replica, &caught.update.unwrap());
    assert_eq!(text_of(&replica).len(), 6, "it has every update");
    let nothing = catch_up(store, blobs, &scope(), "d", Some(6))
        .await
        .unwrap();
    assert!(nothing.update.is_none() && nothing.through == 6);
    let whole = catch_up(store, blobs, &scope(), "d", None).await.unwrap();
    assert_eq!(whole_of(&whole.update.unwrap()), text_of(&replica));
    assert_eq!(whole.through, 6);
    // Compacted and pruned: seqs 1-6 are gone from the log.
    compact_now(&env, "d", &eager()).await.unwrap();
    let update = type_into(&theirs, "6");
    env.store
        .append_updates(&scope(), "d", vec![update], Some("ws:2".into()))
        .await
        .unwrap();
    let past_gap = catch_up(store, blobs, &scope(), "d", Some(2))
        .await
        .unwrap();
    assert_eq!(past_gap.through, 7);
    assert_eq!(
        whole_of(&past_gap.update.unwrap()).len(),
        7,
        "the whole state"
    );
    let after_gap = catch_up(store, blobs, &scope(), "d", Some(6))
        .await
        .unwrap();
    apply(&replica, &after_gap.update.unwrap());
    assert_eq!(text_of(&replica).len(), 7);
}

/// The inputs of the hostile-input issue: each once crashed or starved the
/// daemon (yrs 0.24 segfaulted, overflowed its stack, or reserved gigabytes).
fn hostile_updates() -> Vec<(&'static str, Vec<u8>)> {
    let mut nested = b"\x01\x01\x4f\x00\x08\x01\x05notes\x01".to_vec();
    for _ in 0..10_000 {
        nested.extend_from_slice(b"\x75\x01");
    }
    nested.push(0);
    vec![
        (
            "a string that ends inside a UTF-8 character",
            b"\x01\x01\xb8\x8c\xb0\xf6\xd4\xb2\xfb\x05\x00\x04\x01\x05notes\x05hell\xf0\x00"
                .to_vec(),
        ),
        (
            "an invalid UTF-8 byte inside a string",
            b"\x01\x01\xb8\x8c\xb0\xf6\xd4\xb2\xfb\x05\x00\x04\x01\x05notes\x05h\x80llo\x00"
                .to_vec(),
        ),
        ("10,000 nested arrays", nested),
        (
            "a client count of 2^32 - 1",
            b"\xff\xff\xff\xff\x0f\x00".to_vec(),
        ),
        (
            "a client count of 2^32 that wraps to 0",
            b"\x80\x80\x80\x80\x10\x00".to_vec(),
        ),
    ]
}

#[test]
fn hostile_updates_are_refused_by_the_check() {
    for (what, bytes) in hostile_updates() {
        assert!(crdt_mod::validate_update(&bytes).is_err(), "{what}");
    }
}

/// Updates stored before the check existed (the store itself does not
/// validate) are moved to quarantine by the first load or compaction that
/// meets them; the rest of the document loads and compacts.
async fn stored_updates_that_fail_the_check_are_quarantined_not_merged(backend: Backend) {
    let env = env(backend).await;
    let bad = hostile_updates()[1].1.clone();
    for (doc, compact_first) in [("q-load", false), ("q-compact", true)] {
        let client = Doc::with_client_id(7);
        let t = client.get_or_insert_text("t");
        let edit = |s: &str| {
            let mut txn = client.transact_mut();
            let len = t.get_string(&txn).len() as u32;
            t.insert(&mut txn, len, s);
            txn.encode_update_v1()
        };
        let (first, second) = (edit("hello "), edit("world"));
        env.store
            .append_updates(&scope(), doc, vec![first, bad.clone(), second], None)
            .await
            .unwrap();
        let before = crdt_mod::QUARANTINED_UPDATES.load(std::sync::atomic::Ordering::Relaxed);
        if compact_first {
            let done = compact_now(&env, doc, &CrdtConfig::default())
                .await
                .unwrap();
            assert_eq!(done.quarantined, 1, "{doc}");
            assert_eq!(done.snapshot_seq, 3);
        }
        let (content, last) = loaded_content(&env, doc).await;
        assert!(content.ends_with("|hello world"), "{doc}: {content}");
        assert_eq!(last, 3);
        let after = crdt_mod::QUARANTINED_UPDATES.load(std::sync::atomic::Ordering::Relaxed);
        assert!(after > before, "{doc}: counted for /metrics");
        let seqs: Vec<i64> = env
            .store
            .list_doc_updates(&scope(), doc, 0, 10)
            .await
            .unwrap()
            .iter()
            .map(|u| u.seq)
            .collect();
        assert_eq!(seqs, [1, 3], "{doc}: the bad update left the log");
        // Nothing left to quarantine: a compaction now folds the rest.
        let again = compact_now(&env, doc, &CrdtConfig::default())
            .await
            .unwrap();
        assert_eq!(again.quarantined, 0);
        assert!(loaded_content(&env, doc).await.0.ends_with("|hello world"));
    }
}

/// Every store-level case runs on both backends.
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $case() {
                super::$case(super::Backend::Sqlite).await
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $case() {
                if super::support::skip_without(super::support::PG_AND_S3) {
                    return;
                }
                super::$case(super::Backend::Postgres).await
            })*
        }
    };
}

on_both_backends!(
    random_edits_batches_and_compactions_always_load_the_merge,
    a_crash_between_any_two_compaction_steps_loses_nothing,
    large_snapshots_go_to_the_blob_store_with_a_checksum,
    as_of_reads_the_past_and_410s_once_history_is_gone,
    documents_follow_their_entity,
    stored_updates_that_fail_the_check_are_quarantined_not_merged,
    the_group_commit_orders_relays_and_refuses_only_the_bad_write,
    a_catch_up_sends_what_the_log_holds_after_a_position,
);

#[test]
fn garbage_is_never_a_valid_update() {
    let doc = Doc::new();
    let t = doc.get_or_insert_text("t");
    let update = {
        let mut txn = doc.transact_mut();
        t.insert(&mut txn, 0, "hello");
        txn.encode_update_v1()
    };
    assert!(crdt_mod::validate_update(&update).is_ok());
    assert!(crdt_mod::validate_update(&[]).is_err());
    for cut in 1..update.len() - 1 {
        // Truncations must be refused or at least never panic.
        let _ = crdt_mod::validate_update(&update[..cut]);
    }
    assert!(crdt_mod::validate_update(&update[..update.len() / 2]).is_err());
}

mod http {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use base64::Engine;
    use futures_util::{SinkExt, StreamExt};
    use http_body_util::BodyExt;
    use serde_json::{json, Value};
    use tokio_tungstenite::tungstenite::Message as Ws;
    use tower::ServiceExt;
    use yrs::sync::{Message, SyncMessage};
    use yrs::updates::encoder::Encode;

    const ADMIN: &str = "test-admin-key-0123456789";
    const P: &str = "/v1/orgs/acme/projects/app";

    async fn daemon(dir: &std::path::Path) -> strata::server::Daemon {
        daemon_with(dir, strata::crdt::CrdtConfig::default()).await
    }

    async fn daemon_with(
        dir: &std::path::Path,
        crdt: strata::crdt::CrdtConfig,
    ) -> strata::server::Daemon {
        let mut config = strata::config::Config::embedded(dir);
        config.crdt = crdt;
        config.crdt.max_update_bytes = 64 * 1024;
        let d = strata::server::build(config, ADMIN).await.unwrap();
        for (path, body) in [
            ("/v1/orgs", json!({"id": "acme", "name": "A"})),
            ("/v1/orgs/acme/projects", json!({"id": "app", "name": "A"})),
        ] {
            let (status, _, _) = call(
                &d.router,
                "POST",
                path,
                "application/json",
                body.to_string().into_bytes(),
            )
            .await;
            assert_eq!(status, StatusCode::CREATED);
        }
        d
    }

    async fn call(
        router: &axum::Router,
        method: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {ADMIN}"))
            .header("content-type", content_type)
            .header("accept", "application/octet-stream")
            .body(Body::from(body))
            .unwrap();
        let res = router.clone().oneshot(req).await.unwrap();
        let (status, headers) = (res.status(), res.headers().clone());
        (
            status,
            headers,
            res.into_body().collect().await.unwrap().to_bytes().to_vec(),
        )
    }

    fn json_of(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap_or(Value::Null)
    }

    fn text_update(doc: &Doc, s: &str) -> Vec<u8> {
        let t = doc.get_or_insert_text("t");
        let mut txn = doc.transact_mut();
        let len = t.get_string(&txn).len() as u32;
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

    #[tokio::test]
    async fn append_load_diff_tail_compact_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let d = daemon(dir.path()).await;
        let r = &d.router;
        let client = Doc::with_client_id(1);
        let u1 = text_update(&client, "hello ");
        let (status, _, body) = call(
            r,
            "POST",
            &format!("{P}/docs/d1/updates"),
            "application/octet-stream",
            u1.clone(),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(
            json_of(&body)["data"],
            json!({"doc": "d1", "first_seq": 1, "last_seq": 1})
        );
        let sv_after_1 = client.transact().state_vector().encode_v1();
        let u2 = text_update(&client, "world");
        let u3 = text_update(&client, "!");
        let b64 = |u: &[u8]| base64::engine::general_purpose::STANDARD.encode(u);
        let body = json!({"updates": [b64(&u2), b64(&u3)]})
            .to_string()
            .into_bytes();
        let (status, _, body) = call(
            r,
            "POST",
            &format!("{P}/docs/d1/updates"),
            "application/json",
            body,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(
            json_of(&body)["data"],
            json!({"doc": "d1", "first_seq": 2, "last_seq": 3})
        );

        let (status, headers, state) = call(r, "GET", &format!("{P}/docs/d1"), "", vec![]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["x-strata-seq"], "3");
        assert_eq!(text_of(&state), "hello world!");
        let sv = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&sv_after_1);
        let (_, _, diff) = call(
            r,
            "GET",
            &format!("{P}/docs/d1?state_vector={sv}"),
            "",
            vec![],
        )
        .await;
        let base = Doc::with_client_id(50);
        base.transact_mut()
            .apply_update(Update::decode_v1(&u1).unwrap())
            .unwrap();
        base.transact_mut()
            .apply_update(Update::decode_v1(&diff).unwrap())
            .unwrap();
        assert_eq!(
            base.get_or_insert_text("t").get_string(&base.transact()),
            "hello world!"
        );
        assert!(
            diff.len() < state.len(),
            "the diff leaves out what the client has"
        );

        let (_, _, body) = call(
            r,
            "GET",
            &format!("{P}/docs/d1/updates?after=1&limit=1"),
            "",
            vec![],
        )
        .await;
        let tail = json_of(&body);
        assert_eq!(tail["data"][0]["seq"], 2);
        assert_eq!(tail["pagination"]["next_cursor"], "2");

        let (status, _, body) = call(r, "POST", &format!("{P}/docs/d1/compact"), "", vec![]).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        assert_eq!(json_of(&body)["data"]["snapshot_seq"], 3);
        let (_, _, body) = call(r, "GET", &format!("{P}/docs/d1/snapshots"), "", vec![]).await;
        assert_eq!(json_of(&body)["data"][0]["covers_seq"], 3);
        let (_, headers, state) = call(r, "GET", &format!("{P}/docs/d1"), "", vec![]).await;
        assert_eq!(
            (
                headers["x-strata-seq"].to_str().unwrap(),
                text_of(&state).as_str()
            ),
            ("3", "hello world!")
        );

        let (status, _, _) = call(r, "DELETE", &format!("{P}/docs/d1"), "", vec![]).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _, _) = call(r, "GET", &format!("{P}/docs/d1"), "", vec![]).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn bad_updates_get_4xx_and_store_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let d = daemon(dir.path()).await;
        let r = &d.router;
        let good = text_update(&Doc::with_client_id(1), "ok");
        let path = format!("{P}/docs/d2/updates");
        for (ct, body, want) in [
            ("application/octet-stream", vec![], StatusCode::BAD_REQUEST),
            (
                "application/octet-stream",
                b"garbage garbage garbage".to_vec(),
                StatusCode::BAD_REQUEST,
            ),
            (
                "application/octet-stream",
                good[..good.len() / 2].to_vec(),
                StatusCode::BAD_REQUEST,
            ),
            (
                "application/octet-stream",
                vec![7u8; 100 * 1024],
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            (
                "application/json",
                br#"{"updates": []}"#.to_vec(),
                StatusCode::BAD_REQUEST,
            ),
            (
                "application/json",
                br#"{"updates": ["%%%"]}"#.to_vec(),
                StatusCode::BAD_REQUEST,
            ),
            (
                "application/json",
                br#"{"updates": "x"}"#.to_vec(),
                StatusCode::BAD_REQUEST,
            ),
        ] {
            let shown = format!("{ct} {:?}", &body[..body.len().min(24)]);
            let (status, _, reply) = call(r, "POST", &path, ct, body).await;
            assert_eq!(status, want, "{shown}: {}", String::from_utf8_lossy(&reply));
            assert!(json_of(&reply)["error"]["code"].is_string());
        }
        // A batch with one bad update stores none of them.
        let b64 = base64::engine::general_purpose::STANDARD.encode(&good);
        let body = json!({"updates": [b64, "AAAA"]}).to_string().into_bytes();
        let (status, _, _) = call(r, "POST", &path, "application/json", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _, _) = call(r, "GET", &format!("{P}/docs/d2"), "", vec![]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "nothing was stored");
        let (status, _, _) = call(r, "GET", "/health/live", "", vec![]).await;
        assert_eq!(status, StatusCode::OK);
    }

    /// Each hostile update over HTTP, as a body and in the JSON form: 400,
    /// nothing stored, and the daemon answers the next request.
    #[tokio::test]
    async fn hostile_updates_over_http_are_400_and_store_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let d = daemon(dir.path()).await;
        let r = &d.router;
        let b64 = |u: &[u8]| base64::engine::general_purpose::STANDARD.encode(u);
        for (what, bytes) in super::hostile_updates() {
            let path = format!("{P}/docs/d1/updates");
            let json = json!({"updates": [b64(&bytes)]}).to_string().into_bytes();
            for (ct, body) in [
                ("application/octet-stream", bytes),
                ("application/json", json),
            ] {
                let (status, _, reply) = call(r, "POST", &path, ct, body).await;
                assert_eq!(status, StatusCode::BAD_REQUEST, "{what} ({ct})");
                assert_eq!(json_of(&reply)["error"]["code"], "bad_request", "{what}");
            }
            let (status, _, _) = call(r, "GET", &format!("{P}/docs/d1"), "", vec![]).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{what}: nothing was stored");
        }
        // State vectors that claim 2^32 - 1 clients (one of them is what
        // "__main__" decodes to) are refused before the document is read.
        let good = text_update(&Doc::with_client_id(1), "x");
        let (status, _, _) = call(
            r,
            "POST",
            &format!("{P}/docs/d1/updates"),
            "application/octet-stream",
            good,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        let bomb = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b"\xff\xff\xff\xff\x0f");
        for sv in ["__main__", bomb.as_str()] {
            let (status, _, reply) = call(
                r,
                "GET",
                &format!("{P}/docs/d1?state_vector={sv}"),
                "",
                vec![],
            )
            .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{sv}");
            assert_eq!(json_of(&reply)["error"]["code"], "bad_request");
        }
        let (status, _, _) = call(r, "GET", "/health/live", "", vec![]).await;
        assert_eq!(status, StatusCode::OK);
    }

    /// Each hostile update over the socket closes that connection with 1007
    /// and a reason; nothing is stored and the daemon serves on.
    #[tokio::test]
    async fn hostile_updates_over_the_socket_close_it_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let d = daemon(dir.path()).await;
        let addr = listen(&d.router).await;
        let url = format!("ws://{addr}{P}/docs/hostile/ws?token={ADMIN}");
        for (what, bytes) in super::hostile_updates() {
            let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
            next_binary(&mut ws).await; // sync step 1 from the server
            let message = Message::Sync(SyncMessage::Update(bytes)).encode_v1();
            ws.send(Ws::Binary(message.into())).await.unwrap();
            let frame = next_close(&mut ws, what).await;
            assert_eq!(u16::from(frame.code), 1007, "{what}");
            assert!(
                frame.reason.contains("y-websocket"),
                "{what}: {}",
                frame.reason
            );
        }
        let (status, _, _) = call(&d.router, "GET", &format!("{P}/docs/hostile"), "", vec![]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "nothing was stored");
    }

    /// Serves the router on a loopback socket for WebSocket clients.
    async fn listen(router: &axum::Router) -> std::net::SocketAddr {
        let router = router.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await
            .unwrap();
        });
        addr
    }

    /// The close frame the server sends next (other messages skipped);
    /// `what` names the case in a failure.
    async fn next_close<S>(
        ws: &mut S,
        what: &str,
    ) -> tokio_tungstenite::tungstenite::protocol::CloseFrame
    where
        S: futures_util::Stream<Item = Result<Ws, tokio_tungstenite::tungstenite::Error>> + Unpin,
    {
        loop {
            match tokio::time::timeout(std::time::Duration::from_secs(10), ws.next()).await {
                Ok(Some(Ok(Ws::Close(frame)))) => {
                    return frame.unwrap_or_else(|| panic!("{what}: a close without a reason"))
                }
                Ok(Some(Ok(_))) => continue,
                other => panic!("{what}: no close frame: {other:?}"),
            }
        }
    }

    async fn next_binary<S>(ws: &mut S) -> Vec<u8>
    where
        S: futures_util::Stream<Item = Result<Ws, tokio_tungstenite::tungstenite::Error>> + Unpin,
    {
        loop {
            match tokio::time::timeout(std::time::Duration::from_secs(10), ws.next()).await {
                Ok(Some(Ok(Ws::Binary(b)))) => return b.to_vec(),
                Ok(Some(Ok(_))) => continue,
                other => panic!("no message: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn websocket_sync_persists_and_relays() {
        let dir = tempfile::tempdir().unwrap();
        let d = daemon(dir.path()).await;
        let addr = listen(&d.router).await;
        let url = format!("ws://{addr}{P}/docs/live/ws?token={ADMIN}");
        let (mut a, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        let (mut b, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        // The server opens with sync step 1.
        for ws in [&mut a, &mut b] {
            let hello = Message::decode_v1(&next_binary(ws).await).unwrap();
            assert!(matches!(hello, Message::Sync(SyncMessage::SyncStep1(_))));
        }
        // Client a asks for what it lacks: an empty step 2 for a new document.
        let sv = Message::Sync(SyncMessage::SyncStep1(yrs::StateVector::default())).encode_v1();
        a.send(Ws::Binary(sv.into())).await.unwrap();
        assert!(matches!(
            Message::decode_v1(&next_binary(&mut a).await).unwrap(),
            Message::Sync(SyncMessage::SyncStep2(_))
        ));
        // a edits: b receives the update, and it is in the log.
        let update = text_update(&Doc::with_client_id(4), "from a");
        let msg = Message::Sync(SyncMessage::Update(update.clone())).encode_v1();
        a.send(Ws::Binary(msg.into())).await.unwrap();
        match Message::decode_v1(&next_binary(&mut b).await).unwrap() {
            Message::Sync(SyncMessage::Update(u)) => assert_eq!(text_of(&u), "from a"),
            other => panic!("unexpected {other:?}"),
        }
        let (_, headers, state) =
            call(&d.router, "GET", &format!("{P}/docs/live"), "", vec![]).await;
        assert_eq!(headers["x-strata-seq"], "1");
        assert_eq!(text_of(&state), "from a");
        // Awareness is relayed as is; garbage closes only the sender.
        let awareness = vec![1u8, 1, 0];
        a.send(Ws::Binary(awareness.clone().into())).await.unwrap();
        assert_eq!(next_binary(&mut b).await, awareness);
        a.send(Ws::Binary(vec![0, 2, 200, 1, 2].into()))
            .await
            .unwrap();
        let closed = tokio::time::timeout(std::time::Duration::from_secs(10), a.next())
            .await
            .unwrap();
        assert!(
            matches!(closed, Some(Ok(Ws::Close(_))) | None | Some(Err(_))),
            "{closed:?}"
        );
        // b still works: an update through HTTP reaches it.
        let u2 = text_update(&Doc::with_client_id(5), "via http");
        let (status, _, _) = call(
            &d.router,
            "POST",
            &format!("{P}/docs/live/updates"),
            "application/octet-stream",
            u2,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        match Message::decode_v1(&next_binary(&mut b).await).unwrap() {
            Message::Sync(SyncMessage::Update(u)) => assert_eq!(text_of(&u), "via http"),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Durable acknowledgements on the y-websocket route: only after a
    /// client asks (`[100, 1]`), each of its updates is answered with
    /// `[100, seq]` once stored; a malformed request closes with 1007.
    #[tokio::test]
    async fn durable_acknowledgements_come_when_asked_once_stored() {
        let dir = tempfile::tempdir().unwrap();
        let d = daemon(dir.path()).await;
        let addr = listen(&d.router).await;
        let url = format!("ws://{addr}{P}/docs/acked/ws?token={ADMIN}");
        let (mut a, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        next_binary(&mut a).await; // sync step 1
        let doc = Doc::with_client_id(11);
        let send_update = |text: &str| {
            let update = text_update(&doc, text);
            Ws::Binary(
                Message::Sync(SyncMessage::Update(update))
                    .encode_v1()
                    .into(),
            )
        };
        // Not asked: no acknowledgement (the next one seen is for seq 2).
        a.send(send_update("one ")).await.unwrap();
        a.send(Ws::Binary(vec![100, 1].into())).await.unwrap();
        a.send(send_update("two")).await.unwrap();
        assert_eq!(next_binary(&mut a).await, vec![100, 2]);
        let (_, headers, state) =
            call(&d.router, "GET", &format!("{P}/docs/acked"), "", vec![]).await;
        assert_eq!(headers["x-strata-seq"], "2", "acknowledged means stored");
        assert_eq!(text_of(&state), "one two");
        a.send(Ws::Binary(vec![100, 0].into())).await.unwrap();
        a.send(send_update("!")).await.unwrap();
        a.send(Ws::Binary(vec![100, 1].into())).await.unwrap();
        a.send(send_update("?")).await.unwrap();
        assert_eq!(next_binary(&mut a).await, vec![100, 4]);
        a.send(Ws::Binary(vec![100, 7].into())).await.unwrap();
        let closed = next_close(&mut a, "an unknown ack setting").await;
        assert_eq!(u16::from(closed.code), 1007);
    }

    const UPDATES: usize = 3000;
    const CHARS: usize = 4000;

    /// A WebSocket on `doc` with a small receive buffer, so the server's
    /// sends block early when it does not read.
    async fn small_buffer_socket(
        addr: std::net::SocketAddr,
        doc: &str,
    ) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(addr).await.unwrap();
        let url = format!("ws://{addr}{P}/docs/{doc}/ws?token={ADMIN}");
        tokio_tungstenite::client_async(url, stream)
            .await
            .unwrap()
            .0
    }

    /// UPDATES updates of CHARS characters each (12 MB), posted over HTTP
    /// in requests of 100, each from its own client.
    async fn post_big_updates(d: &strata::server::Daemon, doc: &str) {
        let line = "x".repeat(CHARS);
        for chunk in 0..UPDATES / 100 {
            let updates: Vec<String> = (0..100)
                .map(|i| {
                    let client = (chunk * 100 + i + 100) as u64;
                    let u = text_update(&Doc::with_client_id(client), &line);
                    base64::engine::general_purpose::STANDARD.encode(u)
                })
                .collect();
            let body = json!({ "updates": updates }).to_string().into_bytes();
            let uri = format!("{P}/docs/{doc}/updates");
            let (status, _, _) = call(&d.router, "POST", &uri, "application/json", body).await;
            assert_eq!(status, StatusCode::CREATED);
        }
    }

    /// Deleting a document, or purging the entity that owns it, closes its
    /// sockets (1000, saying why): made again under its id, its sequence
    /// numbers start over, which their positions in the log would take for
    /// updates already sent.
    #[tokio::test]
    async fn deleting_a_document_closes_its_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let d = daemon(dir.path()).await;
        let addr = listen(&d.router).await;
        let entity = json!({"id": "sheet", "type": "whiteboard", "properties": {}});
        let link = json!({"entity_id": "sheet"});
        let setup = [
            ("POST", format!("{P}/entities"), entity),
            ("PUT", format!("{P}/docs/owned"), link),
            ("PUT", format!("{P}/docs/doomed"), json!({})),
        ];
        for (method, uri, body) in setup {
            let body = body.to_string().into_bytes();
            let (status, _, _) = call(&d.router, method, &uri, "application/json", body).await;
            assert!(status.is_success(), "{method} {uri}: {status}");
        }
        for (doc, delete) in [
            ("doomed", format!("{P}/docs/doomed")),
            ("owned", format!("{P}/entities/sheet?purge=true")),
        ] {
            let url = format!("ws://{addr}{P}/docs/{doc}/ws?token={ADMIN}");
            let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
            next_binary(&mut ws).await; // sync step 1
            let (status, _, _) = call(&d.router, "DELETE", &delete, "", vec![]).await;
            assert_eq!(status, StatusCode::NO_CONTENT);
            let frame = next_close(&mut ws, doc).await;
            assert_eq!(u16::from(frame.code), 1000);
            assert_eq!(frame.reason.as_str(), "the document was deleted");
        }
    }

    /// A client that stops reading altogether is closed once a send to it
    /// has waited `stalled_reader`, instead of holding its connection (and
    /// what is queued for it) forever; the updates are all stored.
    #[tokio::test]
    async fn a_client_that_stops_reading_is_closed() {
        let dir = tempfile::tempdir().unwrap();
        let crdt = strata::crdt::CrdtConfig {
            stalled_reader: std::time::Duration::from_millis(300),
            ..Default::default()
        };
        let d = daemon_with(dir.path(), crdt).await;
        let addr = listen(&d.router).await;
        let mut b = small_buffer_socket(addr, "stalled").await;
        next_binary(&mut b).await; // sync step 1
        post_big_updates(&d, "stalled").await;
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        // What it was sent before the server gave up, then the end.
        let (mut received, mut ended) = (0, false);
        while let Ok(next) =
            tokio::time::timeout(std::time::Duration::from_secs(30), b.next()).await
        {
            match next {
                Some(Ok(Ws::Binary(bytes))) => received += bytes.len(),
                Some(Ok(Ws::Close(frame))) => panic!("a close frame could not be sent: {frame:?}"),
                Some(Ok(_)) => continue,
                None | Some(Err(_)) => {
                    ended = true;
                    break;
                }
            }
        }
        assert!(ended, "the server closed the connection");
        assert!(
            received < UPDATES * CHARS,
            "it closed before sending everything"
        );
        let (status, _, state) =
            call(&d.router, "GET", &format!("{P}/docs/stalled"), "", vec![]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(text_of(&state).len(), UPDATES * CHARS);
    }

    /// A connection that stops reading while thousands of updates are
    /// relayed falls behind its queue; it is caught up from the store (a
    /// sync step 2 with the state) instead of being disconnected, and ends
    /// with every update.
    #[tokio::test]
    async fn a_reader_that_falls_behind_is_caught_up_not_disconnected() {
        let dir = tempfile::tempdir().unwrap();
        let d = daemon(dir.path()).await;
        let addr = listen(&d.router).await;
        let mut b = small_buffer_socket(addr, "lagging").await;
        next_binary(&mut b).await; // sync step 1
        post_big_updates(&d, "lagging").await;
        let mirror = Doc::new();
        let mut caught_up = false;
        loop {
            let message =
                match tokio::time::timeout(std::time::Duration::from_secs(30), b.next()).await {
                    Ok(Some(Ok(Ws::Binary(bytes)))) => Message::decode_v1(&bytes).unwrap(),
                    Ok(Some(Ok(Ws::Close(frame)))) => panic!("disconnected: {frame:?}"),
                    Ok(Some(Ok(_))) => continue,
                    other => panic!("the stream ended: {other:?}"),
                };
            let update = match message {
                Message::Sync(SyncMessage::Update(u)) => u,
                Message::Sync(SyncMessage::SyncStep2(u)) => {
                    caught_up = true;
                    u
                }
                _ => continue,
            };
            mirror
                .transact_mut()
                .apply_update(Update::decode_v1(&update).unwrap())
                .unwrap();
            let t = mirror.get_or_insert_text("t");
            if t.len(&mirror.transact()) as usize == UPDATES * CHARS {
                break;
            }
        }
        assert!(
            caught_up,
            "the reader fell behind and was caught up from the store"
        );
    }
}
