//! yrs on bytes that passed `check.rs`: decoding, merging and rebuilding
//! updates. Depends on std, yrs and `check.rs` alone, so the fuzz targets
//! (`fuzz/`) build these very files with yrs in the loop.

use yrs::updates::decoder::Decode;
use yrs::{StateVector, Update};

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

/// True when yrs decodes `bytes` as exactly one update, nothing left over,
/// and what it would write back for it passes the check too. yrs can misread
/// bytes that are well formed on the wire (and then write invalid UTF-8 or
/// unreadable structs); such an update is refused at the door rather than
/// met later inside a merge.
pub fn decodes(bytes: &[u8]) -> bool {
    use yrs::encoding::read::Read;
    use yrs::updates::encoder::Encode;
    guarded("decode", || {
        let mut decoder = yrs::updates::decoder::DecoderV1::from(bytes);
        let update = Update::decode(&mut decoder).map_err(fault)?;
        if decoder.read_u8().is_ok() {
            return Err(FoldError("bytes after the update".into()));
        }
        readable(&update.encode_v1())
    })
    .is_ok()
}

/// What yrs wrote must pass the check and decode again: yrs never hands
/// the daemon bytes it could not read back.
fn readable(bytes: &[u8]) -> FoldResult<()> {
    read_written(bytes).map(drop)
}

/// Decodes bytes yrs wrote, after the check: yrs can write what its own
/// decoder misreads (a string cut inside a character, which it decodes
/// without validating UTF-8: undefined behaviour).
fn read_written(bytes: &[u8]) -> FoldResult<Update> {
    super::check::update(bytes)
        .map_err(|e| FoldError(format!("yrs wrote an invalid update: {e}")))?;
    guarded("decode", || Update::decode_v1(bytes).map_err(fault))
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
/// small; merging is associative, so the result is the same update. The
/// result is checked like any input before the daemon keeps or sends it.
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
            let state = merged.pop().unwrap_or_default();
            readable(&state)?;
            return Ok(state);
        }
        parts = merged;
    }
}

/// A snapshot of many updates: their merge. Not garbage-collected, since
/// collecting means rebuilding the state in a `Doc`, and that path is where
/// yrs went wrong under the fuzzer and the convergence test: it leaks a
/// `Doc` holding sub-documents (a reference cycle), re-encodes pending
/// updates with invalid UTF-8 (undefined behaviour in 0.27), and in 0.28
/// such a snapshot loses concurrent edits merged after it. A merge keeps
/// deleted content, so snapshots are larger; it is correct and bounded.
pub fn snapshot(parts: Vec<Vec<u8>>) -> FoldResult<Vec<u8>> {
    merge(parts)
}

/// What `state` lacks relative to a state vector.
pub fn diff(state: &[u8], state_vector: &[u8]) -> FoldResult<Vec<u8>> {
    let diff = guarded("diff", || {
        yrs::diff_updates_v1(state, state_vector).map_err(fault)
    })?;
    readable(&diff)?;
    Ok(diff)
}

/// The state vector of a state (an update covering everything).
pub fn state_vector_of(state: &[u8]) -> FoldResult<Vec<u8>> {
    guarded("state vector", || {
        yrs::encode_state_vector_from_update_v1(state).map_err(fault)
    })
}

/// True when `update` holds nothing `state` lacks: no struct beyond the
/// state's state vector and no deletion outside its delete set (both have
/// passed the check). A deletion the state holds only as a collected
/// struct counts as new: when unsure, the answer is no.
pub fn adds_nothing(state: &[u8], update: &[u8]) -> FoldResult<bool> {
    use yrs::updates::encoder::Encode;
    guarded("compare", || {
        let state = Update::decode_v1(state).map_err(fault)?;
        let beyond =
            yrs::diff_updates_v1(update, &state.state_vector().encode_v1()).map_err(fault)?;
        let beyond = read_written(&beyond)?;
        if !beyond.state_vector_lower().is_empty() {
            return Ok(false);
        }
        let update = Update::decode_v1(update).map_err(fault)?;
        let mut deletions = update.delete_set().clone();
        deletions.diff_with(state.delete_set());
        Ok(deletions.is_empty())
    })
}
