//! yrs on bytes that passed `check.rs`: decoding, merging and rebuilding
//! updates. Depends on std, yrs and `check.rs` alone, so the fuzz targets
//! (`fuzz/`) build these very files with yrs in the loop.

use yrs::updates::decoder::Decode;
use yrs::{Doc, ReadTxn, StateVector, Transact, Update};

/// yrs refused the bytes (an error or a panic), in its words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoldError(pub String);

impl std::fmt::Display for FoldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub type FoldResult<T> = Result<T, FoldError>;

/// Runs yrs code so that a panic becomes an error, never a dead daemon.
pub fn guarded<T>(what: &str, f: impl FnOnce() -> FoldResult<T>) -> FoldResult<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(FoldError(format!("{what} panicked"))))
}

fn fault(e: impl std::fmt::Display) -> FoldError {
    FoldError(e.to_string())
}

/// True when yrs decodes `bytes` as exactly one update, nothing left over.
pub fn decodes(bytes: &[u8]) -> bool {
    use yrs::encoding::read::Read;
    guarded("decode", || {
        let mut decoder = yrs::updates::decoder::DecoderV1::from(bytes);
        Update::decode(&mut decoder).map_err(fault)?;
        match decoder.read_u8() {
            Err(_) => Ok(()),
            Ok(_) => Err(FoldError("bytes after the update".into())),
        }
    })
    .is_ok()
}

/// True when yrs decodes `bytes` as a state vector.
pub fn decodes_state_vector(bytes: &[u8]) -> bool {
    guarded("decode", || StateVector::decode_v1(bytes).map_err(fault)).is_ok()
}

/// Updates merged per round.
const MERGE_FAN_IN: usize = 32;

/// Many updates as one. yrs's merge re-sorts all its inputs for every struct
/// it emits, so one merge of n updates costs about n² log n: a 100,000-update
/// log took minutes. Merging in rounds of `MERGE_FAN_IN` keeps each merge
/// small; merging is associative, so the result is the same update.
pub fn merge(mut parts: Vec<Vec<u8>>) -> FoldResult<Vec<u8>> {
    match parts.len() {
        0 => return Ok(vec![0, 0]),
        1 => return Ok(parts.pop().expect("one part")),
        _ => {}
    }
    loop {
        let mut merged = Vec::with_capacity(parts.len().div_ceil(MERGE_FAN_IN));
        for chunk in parts.chunks(MERGE_FAN_IN) {
            let one = guarded("merge", || {
                yrs::merge_updates_v1(chunk.iter().map(Vec::as_slice)).map_err(fault)
            })?;
            merged.push(one);
        }
        if merged.len() <= 1 {
            return Ok(merged.pop().unwrap_or_default());
        }
        parts = merged;
    }
}

/// The state of many updates, garbage-collected, as one update. A state
/// with sub-documents stays merged but not collected: rebuilding it in a
/// `Doc` would leak (see `check::Shape`).
pub fn gc_state(parts: Vec<Vec<u8>>) -> FoldResult<Vec<u8>> {
    if parts.is_empty() {
        return Ok(vec![0, 0]);
    }
    let merged = merge(parts)?;
    match super::check::update_shape(&merged) {
        Ok(shape) if !shape.subdocs => {}
        _ => return Ok(merged),
    }
    guarded("rebuild", || {
        let doc = Doc::new();
        {
            let mut txn = doc.transact_mut();
            txn.apply_update(Update::decode_v1(&merged).map_err(fault)?)
                .map_err(fault)?;
        }
        let txn = doc.transact();
        Ok(txn.encode_state_as_update_v1(&StateVector::default()))
    })
}

/// What `state` lacks relative to a state vector.
pub fn diff(state: &[u8], state_vector: &[u8]) -> FoldResult<Vec<u8>> {
    guarded("diff", || {
        yrs::diff_updates_v1(state, state_vector).map_err(fault)
    })
}

/// The state vector of a state (an update covering everything).
pub fn state_vector_of(state: &[u8]) -> FoldResult<Vec<u8>> {
    guarded("state vector", || {
        yrs::encode_state_vector_from_update_v1(state).map_err(fault)
    })
}
