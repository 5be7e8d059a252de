//! Yjs documents (yrs): validating updates, rebuilding state from the log,
//! and compaction into snapshots. Storage goes through the `Store` trait and
//! snapshot bytes above a threshold through the `BlobStore`.

pub mod check;
pub mod compact;
pub mod sync;

use crate::blob::BlobStore;
use crate::domain::*;
use yrs::updates::decoder::Decode;
use yrs::{StateVector, Update};

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

/// Decoding a hostile buffer must never take the daemon down.
fn guarded<T>(f: impl FnOnce() -> Option<T>) -> Option<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .ok()
        .flatten()
}

/// Accepts a buffer only if it decodes as exactly one Yjs update (v1), with
/// no bytes left over.
pub fn validate_update(bytes: &[u8]) -> DomainResult<()> {
    use yrs::encoding::read::Read;
    if bytes.is_empty() {
        return Err(DomainError::BadRequest(
            "an update must not be empty".into(),
        ));
    }
    let whole = guarded(|| {
        let mut decoder = yrs::updates::decoder::DecoderV1::from(bytes);
        Update::decode(&mut decoder).ok()?;
        Some(decoder.read_u8().is_err())
    });
    match whole {
        Some(true) => Ok(()),
        _ => Err(DomainError::BadRequest(
            "the body is not a valid Yjs update (v1)".into(),
        )),
    }
}

pub fn decode_state_vector(bytes: &[u8]) -> DomainResult<StateVector> {
    guarded(|| StateVector::decode_v1(bytes).ok()).ok_or_else(|| {
        DomainError::BadRequest("state_vector is not a valid Yjs state vector".into())
    })
}

fn yrs_fault(e: impl std::fmt::Display) -> DomainError {
    DomainError::internal(format!("stored Yjs data does not merge: {e}"))
}

/// The bytes of a snapshot, checked against its recorded checksum.
pub async fn snapshot_bytes(
    blobs: &dyn BlobStore,
    snapshot: &DocSnapshot,
) -> DomainResult<Vec<u8>> {
    match &snapshot.data {
        SnapshotData::Inline(bytes) => Ok(bytes.clone()),
        SnapshotData::Blob(key) => blobs
            .get_verified(key, &snapshot.sha256)
            .await
            .map_err(|e| DomainError::internal(format!("snapshot {key}: {e}"))),
    }
}

/// The whole state of a log as one update (snapshot merged with the tail).
pub async fn state(blobs: &dyn BlobStore, log: &DocLog) -> DomainResult<Vec<u8>> {
    let mut parts = Vec::with_capacity(log.updates.len() + 1);
    if let Some(s) = &log.snapshot {
        parts.push(snapshot_bytes(blobs, s).await?);
    }
    parts.extend(log.updates.iter().map(|u| u.bytes.clone()));
    if parts.len() == 1 {
        return Ok(parts.pop().expect("one part"));
    }
    merge(parts)
}

/// Updates merged per round.
const MERGE_FAN_IN: usize = 32;

/// Many updates as one. yrs's merge re-sorts all its inputs for every struct
/// it emits, so one merge of n updates costs about n² log n: a 100,000-update
/// log took minutes. Merging in rounds of `MERGE_FAN_IN` keeps each merge
/// small; merging is associative, so the result is the same update.
pub fn merge(mut parts: Vec<Vec<u8>>) -> DomainResult<Vec<u8>> {
    loop {
        let mut merged = Vec::with_capacity(parts.len().div_ceil(MERGE_FAN_IN));
        for chunk in parts.chunks(MERGE_FAN_IN) {
            let one = guarded(|| Some(yrs::merge_updates_v1(chunk.iter().map(Vec::as_slice))))
                .ok_or_else(|| yrs_fault("merge panicked"))?
                .map_err(yrs_fault)?;
            merged.push(one);
        }
        if merged.len() <= 1 {
            return Ok(merged.pop().unwrap_or_default());
        }
        parts = merged;
    }
}

/// What `state` lacks relative to a client's state vector.
pub fn diff(state: &[u8], state_vector: &[u8]) -> DomainResult<Vec<u8>> {
    decode_state_vector(state_vector)?;
    guarded(|| Some(yrs::diff_updates_v1(state, state_vector)))
        .ok_or_else(|| yrs_fault("diff panicked"))?
        .map_err(yrs_fault)
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
