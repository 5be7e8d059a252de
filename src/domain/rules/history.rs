//! Version history rules shared by the backends: what a version row stores
//! (a merge-patch delta, and a full snapshot at least every
//! `SNAPSHOT_EVERY` versions along a parent chain), and how a version is
//! rebuilt from its chain.

use crate::domain::patch::{apply_merge_patch, diff};
use crate::domain::{DomainError, DomainResult, Properties};
use serde_json::Value;

/// A version is rebuilt from one snapshot and fewer than this many deltas.
pub const SNAPSHOT_EVERY: i64 = 16;

/// What to store for a new version.
pub struct VersionRow {
    /// Merge patch from the parent (the full properties when inexpressible).
    pub patch: Value,
    pub snapshot: Option<Value>,
    /// Deltas since the nearest snapshot on the parent chain.
    pub chain: i64,
}

/// `parent_chain` is the parent's `chain`, `None` for a first version.
pub fn version_row(parent_chain: Option<i64>, parent: &Properties, new: &Properties) -> VersionRow {
    let delta = diff(parent, new);
    let chain = parent_chain.map_or(0, |c| c + 1);
    match delta {
        Some(patch) if parent_chain.is_some() && chain < SNAPSHOT_EVERY => VersionRow {
            patch,
            snapshot: None,
            chain,
        },
        delta => {
            let full = Value::Object(new.clone());
            VersionRow {
                patch: delta.unwrap_or_else(|| full.clone()),
                snapshot: Some(full),
                chain: 0,
            }
        }
    }
}

/// One stored version row, as read back while walking a chain.
pub struct ChainLink {
    pub parent: Option<i64>,
    pub patch: Value,
    pub snapshot: Option<Value>,
}

/// Rebuilds a version's properties. `load` fetches one version row; the walk
/// goes up the parent chain to a snapshot, then applies the deltas down.
pub fn rebuild(
    version: i64,
    mut load: impl FnMut(i64) -> DomainResult<Option<ChainLink>>,
) -> DomainResult<Option<Properties>> {
    let mut patches = Vec::new();
    let mut next = Some(version);
    while let Some(v) = next {
        let Some(link) = load(v)? else {
            return Ok(None);
        };
        if let Some(mut state) = link.snapshot {
            for p in patches.iter().rev() {
                apply_merge_patch(&mut state, p);
            }
            return match state {
                Value::Object(props) => Ok(Some(props)),
                _ => Err(DomainError::internal("a snapshot is not an object")),
            };
        }
        if patches.len() as i64 > SNAPSHOT_EVERY {
            break;
        }
        patches.push(link.patch);
        next = link.parent;
    }
    Err(DomainError::internal(format!(
        "version {version} has no snapshot within {SNAPSHOT_EVERY} deltas"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    fn props(v: Value) -> Properties {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn long_chains_rebuild_exactly_from_periodic_snapshots() {
        let mut rows: HashMap<i64, (Option<i64>, VersionRow)> = HashMap::new();
        let mut states = vec![props(json!({}))];
        for v in 1..=50i64 {
            let parent = (v > 1).then(|| v - 1);
            let new = props(
                json!({ "n": v, "keep": "x", "odd": if v % 2 == 1 { json!(v) } else { json!(null) } }),
            );
            let new: Properties = new.into_iter().filter(|(_, x)| !x.is_null()).collect();
            let parent_chain = parent.map(|p| rows[&p].1.chain);
            let row = version_row(parent_chain, &states[(v - 1) as usize], &new);
            assert!(row.chain < SNAPSHOT_EVERY);
            rows.insert(v, (parent, row));
            states.push(new);
        }
        for v in 1..=50i64 {
            let rebuilt = rebuild(v, |n| {
                Ok(rows.get(&n).map(|(parent, r)| ChainLink {
                    parent: *parent,
                    patch: r.patch.clone(),
                    snapshot: r.snapshot.clone(),
                }))
            })
            .unwrap()
            .unwrap();
            assert_eq!(rebuilt, states[v as usize], "version {v}");
        }
    }
}
