//! Yjs documents (yrs): validating updates, rebuilding state from the log,
//! and compaction into snapshots. Storage goes through the `Store` trait and
//! snapshot bytes above a threshold through the `BlobStore`.

pub mod batch;
pub mod catch_up;
pub mod check;
pub mod commit;
pub mod compact;
pub mod fold;
pub mod hocuspocus;
pub mod sync;

use crate::blob::BlobStore;
use crate::domain::*;
use crate::store::Store;
use std::sync::atomic::{AtomicU64, Ordering};

/// Limits and windows of the CRDT log.
#[derive(Debug, Clone)]
pub struct CrdtConfig {
    /// Largest single update (413 above).
    pub max_update_bytes: usize,
    /// Snapshots up to this size stay in the database; larger go to blobs.
    pub inline_max_bytes: usize,
    /// Updates younger than this stay in the log even when compacted.
    pub retention: std::time::Duration,
    /// Older snapshots are kept this long (for `as_of` reads).
    pub keep_snapshots: std::time::Duration,
    /// A live connection whose client takes no message for this long (its
    /// socket buffers full all along) has stopped reading, and is closed.
    pub stalled_reader: std::time::Duration,
}

impl Default for CrdtConfig {
    fn default() -> Self {
        CrdtConfig {
            max_update_bytes: 1 << 20,
            inline_max_bytes: 1 << 20,
            retention: std::time::Duration::from_secs(24 * 3600),
            keep_snapshots: std::time::Duration::from_secs(7 * 24 * 3600),
            stalled_reader: std::time::Duration::from_secs(30),
        }
    }
}

/// Yjs updates this process stored from clients, over HTTP or a socket
/// (for `/metrics`).
pub static UPDATES_STORED: AtomicU64 = AtomicU64::new(0);

/// Stored updates moved to quarantine by this process (for `/metrics`).
pub static QUARANTINED_UPDATES: AtomicU64 = AtomicU64::new(0);

fn refused(what: &str, e: impl std::fmt::Display) -> DomainError {
    DomainError::BadRequest(format!("the body is not a valid {what}: {e}"))
}

/// Accepts a buffer only if it passes the bounded check and then decodes in
/// yrs as exactly one Yjs update (v1), with no bytes left over.
pub fn validate_update(bytes: &[u8]) -> DomainResult<()> {
    check::update(bytes).map_err(|e| refused("Yjs update (v1)", e))?;
    if fold::decodes(bytes) {
        Ok(())
    } else {
        Err(refused("Yjs update (v1)", "yrs cannot decode it"))
    }
}

/// Accepts a state vector that passes the check and decodes in yrs.
pub fn validate_state_vector(bytes: &[u8]) -> DomainResult<()> {
    let bad = || DomainError::BadRequest("state_vector is not a valid Yjs state vector".into());
    check::state_vector(bytes).map_err(|_| bad())?;
    if !fold::decodes_state_vector(bytes) {
        return Err(bad());
    }
    Ok(())
}

fn yrs_fault(e: impl std::fmt::Display) -> DomainError {
    DomainError::internal(format!("stored Yjs data does not merge: {e}"))
}

/// The bytes of a snapshot, checked against its recorded checksum.
pub async fn snapshot_bytes(
    blobs: &dyn BlobStore,
    snapshot: &DocSnapshot,
) -> DomainResult<Vec<u8>> {
    let bytes = stored_snapshot(blobs, snapshot).await?;
    check_snapshot(snapshot.covers_seq, &bytes)?;
    Ok(bytes)
}

/// The bytes of a snapshot as stored (a blob's checksum verified), before
/// `check_snapshot`.
async fn stored_snapshot(blobs: &dyn BlobStore, snapshot: &DocSnapshot) -> DomainResult<Vec<u8>> {
    match &snapshot.data {
        SnapshotData::Inline(bytes) => Ok(bytes.clone()),
        SnapshotData::Blob(key) => blobs
            .get_verified(key, &snapshot.sha256)
            .await
            .map_err(|e| DomainError::internal(format!("snapshot {}: {e}", key))),
    }
}

/// Snapshots are written by yrs, but they are read back from storage.
fn check_snapshot(covers_seq: i64, bytes: &[u8]) -> DomainResult<()> {
    check::update(bytes)
        .map_err(|e| DomainError::internal(format!("snapshot {covers_seq} fails the check: {e}")))
}

/// Folds a document's log into one update with `fold` (a merge for a read,
/// a snapshot for compaction). Only the snapshot and stored updates that
/// pass the check reach yrs; the others (stored before the check existed)
/// are moved to quarantine. If yrs still refuses the log, the updates it
/// cannot decode are quarantined too and the fold runs again.
///
/// All the CPU work (checking every stored byte, yrs decoding and merging)
/// runs in one `spawn_blocking` task, so a long log never holds an async
/// worker; only the blob read and the quarantine calls stay async.
pub async fn fold_log(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    scope: &Scope,
    doc: &str,
    log: &DocLog,
    fold: fn(Vec<Vec<u8>>) -> DomainResult<Vec<u8>>,
) -> DomainResult<Folded> {
    let snapshot = match &log.snapshot {
        Some(s) => Some((s.covers_seq, stored_snapshot(blobs, s).await?)),
        None => None,
    };
    let updates: Vec<(i64, Vec<u8>)> = log
        .updates
        .iter()
        .map(|u| (u.seq, u.bytes.clone()))
        .collect();
    let outcome = run_blocking(move || Ok(fold_checked(snapshot, updates, fold))).await?;
    let mut quarantined = quarantine(store, scope, doc, outcome.refused).await?;
    quarantined += quarantine(store, scope, doc, outcome.undecodable).await?;
    Ok(Folded {
        state: outcome.state?,
        quarantined,
    })
}

/// What `fold_checked` did: the fold's result, the updates the check
/// refused and those yrs could not decode (each with its reason).
struct Outcome {
    state: DomainResult<Vec<u8>>,
    refused: Vec<(i64, String)>,
    undecodable: Vec<(i64, String)>,
}

/// The blocking half of `fold_log`.
fn fold_checked(
    snapshot: Option<(i64, Vec<u8>)>,
    updates: Vec<(i64, Vec<u8>)>,
    fold: fn(Vec<Vec<u8>>) -> DomainResult<Vec<u8>>,
) -> Outcome {
    let mut outcome = Outcome {
        state: Ok(Vec::new()),
        refused: Vec::new(),
        undecodable: Vec::new(),
    };
    let snapshot = match snapshot {
        Some((covers_seq, bytes)) => match check_snapshot(covers_seq, &bytes) {
            Ok(()) => Some(bytes),
            Err(e) => {
                outcome.state = Err(e);
                return outcome;
            }
        },
        None => None,
    };
    let mut kept = Vec::with_capacity(updates.len());
    for (seq, bytes) in updates {
        match check::update(&bytes) {
            Ok(()) => kept.push((seq, bytes)),
            Err(e) => outcome.refused.push((seq, e.to_string())),
        }
    }
    let parts = |kept: &[(i64, Vec<u8>)]| -> Vec<Vec<u8>> {
        snapshot
            .iter()
            .cloned()
            .chain(kept.iter().map(|(_, b)| b.clone()))
            .collect()
    };
    let error = match fold(parts(&kept)) {
        Ok(state) => {
            outcome.state = Ok(state);
            return outcome;
        }
        Err(e) => e,
    };
    kept.retain(|(seq, bytes)| {
        let decodes = fold::decodes(bytes);
        if !decodes {
            outcome
                .undecodable
                .push((*seq, "yrs cannot decode it".to_string()));
        }
        decodes
    });
    outcome.state = if outcome.undecodable.is_empty() {
        Err(error)
    } else {
        fold(parts(&kept))
    };
    outcome
}

/// A folded log, and how many of its updates went to quarantine.
pub struct Folded {
    pub state: Vec<u8>,
    pub quarantined: usize,
}

pub(crate) async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> DomainResult<T> + Send + 'static,
) -> DomainResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(DomainError::internal)?
}

/// Moves refused updates out of the log: one store call per distinct reason.
async fn quarantine(
    store: &dyn Store,
    scope: &Scope,
    doc: &str,
    bad: Vec<(i64, String)>,
) -> DomainResult<usize> {
    let mut by_reason: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    for (seq, reason) in bad {
        by_reason.entry(reason).or_default().push(seq);
    }
    let mut total = 0;
    for (reason, seqs) in by_reason {
        let moved = store.quarantine_updates(scope, doc, &seqs, &reason).await?;
        QUARANTINED_UPDATES.fetch_add(moved as u64, Ordering::Relaxed);
        total += moved;
        tracing::warn!(
            org = scope.org,
            project = scope.project,
            doc,
            ?seqs,
            reason,
            "quarantined stored Yjs updates"
        );
    }
    Ok(total)
}

/// The whole state of a log as one update (snapshot merged with the tail).
pub async fn state(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    scope: &Scope,
    doc: &str,
    log: &DocLog,
) -> DomainResult<Vec<u8>> {
    Ok(fold_log(store, blobs, scope, doc, log, merge).await?.state)
}

/// Many updates as one (see `fold::merge`).
pub fn merge(parts: Vec<Vec<u8>>) -> DomainResult<Vec<u8>> {
    fold::merge(parts).map_err(yrs_fault)
}

/// What `state` lacks relative to a client's state vector, which has
/// passed `validate_state_vector` (callers check it before loading state).
/// What `state` holds beyond `state_vector` (checked first by the caller).
/// Off the async runtime: a large document's diff takes milliseconds.
pub async fn diff(state: Vec<u8>, state_vector: Vec<u8>) -> DomainResult<Vec<u8>> {
    run_blocking(move || fold::diff(&state, &state_vector).map_err(yrs_fault)).await
}

/// Whether `update` adds nothing to `state` (`fold::adds_nothing`): both
/// checked first. Off the async runtime, as a merge.
pub async fn adds_nothing(state: Vec<u8>, update: Vec<u8>) -> DomainResult<bool> {
    run_blocking(move || fold::adds_nothing(&state, &update).map_err(yrs_fault)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::{Doc, GetString, Text, Transact};

    fn edit(doc: &Doc, text: &str) -> Vec<u8> {
        let t = doc.get_or_insert_text("t");
        let mut txn = doc.transact_mut();
        let len = t.get_string(&txn).len() as u32;
        t.insert(&mut txn, len, text);
        txn.encode_update_v1()
    }

    #[test]
    fn adds_nothing_tells_held_content_from_new() {
        let doc = Doc::with_client_id(1);
        let first = edit(&doc, "hello");
        assert!(fold::adds_nothing(&first, &first).unwrap());
        assert!(fold::adds_nothing(&first, &[0, 0]).unwrap());
        let second = edit(&doc, " world");
        assert!(!fold::adds_nothing(&first, &second).unwrap());
        let deletion = {
            let t = doc.get_or_insert_text("t");
            let mut txn = doc.transact_mut();
            t.remove_range(&mut txn, 0, 2);
            txn.encode_update_v1()
        };
        assert!(!fold::adds_nothing(&first, &deletion).unwrap());
        let all = merge(vec![first.clone(), second, deletion.clone()]).unwrap();
        assert!(fold::adds_nothing(&all, &deletion).unwrap());
        assert!(fold::adds_nothing(&all, &first).unwrap());
    }

    #[test]
    fn garbage_truncated_and_empty_updates_are_refused() {
        let doc = Doc::new();
        let good = edit(&doc, "hello");
        assert!(validate_update(&good).is_ok());
        assert!(validate_update(&[]).is_err());
        assert!(validate_update(&good[..good.len() / 2]).is_err());
        assert!(validate_update(b"not a yjs update at all").is_err());
        for seed in 0..200u32 {
            let junk: Vec<u8> = (0..(seed % 40 + 1))
                .map(|i| (seed.wrapping_mul(2654435761).wrapping_add(i * 97) >> 3) as u8)
                .collect();
            let _ = validate_update(&junk); // must not panic
        }
    }
}
