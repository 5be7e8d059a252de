//! Yjs documents (yrs): validating updates, rebuilding state from the log,
//! and compaction into snapshots. Storage goes through the `Store` trait and
//! snapshot bytes above a threshold through the `BlobStore`.

pub mod check;
pub mod compact;
pub mod fold;
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
}

impl Default for CrdtConfig {
    fn default() -> Self {
        CrdtConfig {
            max_update_bytes: 1 << 20,
            inline_max_bytes: 1 << 20,
            retention: std::time::Duration::from_secs(24 * 3600),
            keep_snapshots: std::time::Duration::from_secs(7 * 24 * 3600),
        }
    }
}

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
    let bytes = match &snapshot.data {
        SnapshotData::Inline(bytes) => bytes.clone(),
        SnapshotData::Blob(key) => blobs
            .get_verified(key, &snapshot.sha256)
            .await
            .map_err(|e| DomainError::internal(format!("snapshot {}: {e}", key)))?,
    };
    // Snapshots are written by yrs, but they are read back from storage.
    check::update(&bytes).map_err(|e| {
        DomainError::internal(format!(
            "snapshot {} fails the check: {e}",
            snapshot.covers_seq
        ))
    })?;
    Ok(bytes)
}

/// Folds a document's log into one update with `fold` (a merge for a read,
/// a snapshot for compaction), off the async runtime. Only the snapshot and
/// stored updates that pass the check reach yrs; the others (stored before
/// the check existed) are moved to quarantine. If yrs still refuses the log,
/// the updates it cannot decode are quarantined too and the fold runs again.
pub async fn fold_log(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    scope: &Scope,
    doc: &str,
    log: &DocLog,
    fold: fn(Vec<Vec<u8>>) -> DomainResult<Vec<u8>>,
) -> DomainResult<Folded> {
    let snapshot = match &log.snapshot {
        Some(s) => Some(snapshot_bytes(blobs, s).await?),
        None => None,
    };
    let mut bad = Vec::new();
    let mut updates = Vec::with_capacity(log.updates.len());
    for u in &log.updates {
        match check::update(&u.bytes) {
            Ok(()) => updates.push((u.seq, u.bytes.clone())),
            Err(e) => bad.push((u.seq, e.to_string())),
        }
    }
    let mut quarantined = quarantine(store, scope, doc, bad).await?;
    let parts = |updates: &[(i64, Vec<u8>)]| -> Vec<Vec<u8>> {
        snapshot
            .iter()
            .cloned()
            .chain(updates.iter().map(|(_, b)| b.clone()))
            .collect()
    };
    let first = parts(&updates);
    let error = match run_blocking(move || fold(first)).await {
        Ok(state) => return Ok(Folded { state, quarantined }),
        Err(e) => e,
    };
    let undecodable: Vec<(i64, String)> = updates
        .iter()
        .filter(|(_, bytes)| !fold::decodes(bytes))
        .map(|(seq, _)| (*seq, "yrs cannot decode it".to_string()))
        .collect();
    if undecodable.is_empty() {
        return Err(error);
    }
    updates.retain(|(seq, _)| !undecodable.iter().any(|(s, _)| s == seq));
    quarantined += quarantine(store, scope, doc, undecodable).await?;
    let second = parts(&updates);
    let state = run_blocking(move || fold(second)).await?;
    Ok(Folded { state, quarantined })
}

/// A folded log, and how many of its updates went to quarantine.
pub struct Folded {
    pub state: Vec<u8>,
    pub quarantined: usize,
}

async fn run_blocking<T: Send + 'static>(
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
pub fn diff(state: &[u8], state_vector: &[u8]) -> DomainResult<Vec<u8>> {
    fold::diff(state, state_vector).map_err(yrs_fault)
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
