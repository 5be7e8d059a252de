//! The document log's rules: which document is visible, the sequence numbers
//! an append takes, what a log read answers (or why it cannot), how a
//! snapshot is stored and recorded, what `prune` may delete, which blob keys
//! end up unreferenced, and what each document write audits. The backends
//! load (and lock) the few rows these decide from, and persist the answer.

use super::audit::{of_admin, AuditFact};
use crate::domain::{
    DocAppend, DocInfo, DocLog, DocSnapshot, DocUpdate, DomainError, DomainResult, Scope,
    SnapshotData,
};
use serde_json::json;
use std::ops::RangeInclusive;

/// A document that does not exist, or is hidden (see [`visible`]).
pub fn not_found(doc: &str) -> DomainError {
    DomainError::not_found(format!("document {doc}"))
}

/// The entity whose liveness decides whether a loaded document is visible.
pub fn owner(d: Option<&DocInfo>) -> Option<&str> {
    d.and_then(|d| d.entity_id.as_deref())
}

/// A document is visible when it exists and its owning entity, if it has
/// one, is live: deleting the entity hides its documents. `owner_live` is
/// the liveness of [`owner`], `None` when none was checked; an owned
/// document is visible only when its owner was found live.
pub fn visible(doc: &str, d: Option<DocInfo>, owner_live: Option<bool>) -> DomainResult<DocInfo> {
    let d = d.ok_or_else(|| not_found(doc))?;
    if d.entity_id.is_some() && owner_live != Some(true) {
        return Err(not_found(doc));
    }
    Ok(d)
}

/// A document that exists, visible or not (compaction records and prunes
/// the documents of deleted entities too).
pub fn existing(doc: &str, d: Option<DocInfo>) -> DomainResult<DocInfo> {
    d.ok_or_else(|| not_found(doc))
}

/// A document may be linked only to a live entity of its project.
pub fn linkable(entity: &str, entity_live: bool) -> DomainResult<()> {
    if entity_live {
        Ok(())
    } else {
        Err(DomainError::Unprocessable(format!(
            "entity {entity} does not exist in this project"
        )))
    }
}

/// The sequence numbers of `count` updates appended to a log whose last is
/// `last_seq`: dense and increasing. Empty (`last_seq + 1 ..= last_seq`)
/// when there is nothing to append; its ends are what an append answers.
pub fn append_seqs(last_seq: i64, count: usize) -> RangeInclusive<i64> {
    last_seq + 1..=last_seq + count as i64
}

/// Appends to one document, consecutive in [`append_runs`]' order: stored
/// as one append of all their rows, then each answered with its share.
#[derive(Debug)]
pub struct AppendRun<'a> {
    pub scope: &'a Scope,
    pub doc: &'a str,
    /// Each row's bytes and origin, in append order.
    pub rows: Vec<(&'a [u8], Option<&'a str>)>,
    /// (index in the appends given, how many rows it has), in row order.
    members: Vec<(usize, usize)>,
}

impl AppendRun<'_> {
    /// Gives each member its (first, last), the run's rows having taken
    /// `seqs` (see [`append_seqs`]).
    pub fn answer(&self, seqs: RangeInclusive<i64>, answers: &mut [(i64, i64)]) {
        let mut next = *seqs.start();
        for &(index, count) in &self.members {
            answers[index] = append_seqs(next - 1, count).into_inner();
            next += count as i64;
        }
    }
}

/// The runs a group of appends is stored as: documents in (org, project,
/// id) order, so concurrent groups lock them in one order and wait for
/// each other instead of deadlocking; one document's appends keep the
/// order given, and become one run.
pub fn append_runs(appends: &[DocAppend]) -> Vec<AppendRun<'_>> {
    let mut order: Vec<usize> = (0..appends.len()).collect();
    fn key(a: &DocAppend) -> (&str, &str, &str) {
        (&a.scope.org, &a.scope.project, &a.doc)
    }
    order.sort_by(|x, y| key(&appends[*x]).cmp(&key(&appends[*y])));
    let mut runs: Vec<AppendRun> = Vec::new();
    for i in order {
        let a = &appends[i];
        let rows = a
            .updates
            .iter()
            .map(|u| (u.as_slice(), a.origin.as_deref()));
        match runs.last_mut() {
            Some(run) if run.scope == &a.scope && run.doc == a.doc => {
                run.rows.extend(rows);
                run.members.push((i, a.updates.len()));
            }
            _ => runs.push(AppendRun {
                scope: &a.scope,
                doc: &a.doc,
                rows: rows.collect(),
                members: vec![(i, a.updates.len())],
            }),
        }
    }
    runs
}

/// Where a log read starts: after `snapshot`, the newest snapshot whose
/// state is entirely at or before `as_of` (the newest of all without one).
/// The updates after it must all be retained: if some were pruned, a past
/// state is gone, and the present one missing them is a fault.
pub fn log_start(
    doc: &str,
    d: &DocInfo,
    snapshot: Option<&DocSnapshot>,
    as_of: Option<&str>,
) -> DomainResult<i64> {
    let base = snapshot.map_or(0, |s| s.covers_seq);
    if d.pruned_through <= base {
        return Ok(base);
    }
    if as_of.is_some() {
        return Err(DomainError::Gone(format!(
            "the retained history of document {doc} no longer reaches that time"
        )));
    }
    Err(DomainError::internal(format!(
        "document {doc} lost updates after its snapshot"
    )))
}

/// The log from the snapshot [`log_start`] accepted and the updates after
/// it (up to `as_of`), in order. A time before the document's first update
/// has no state to answer with.
pub fn log(
    doc: &str,
    snapshot: Option<DocSnapshot>,
    updates: Vec<DocUpdate>,
    as_of: Option<&str>,
) -> DomainResult<DocLog> {
    if as_of.is_some() && snapshot.is_none() && updates.is_empty() {
        return Err(DomainError::not_found(format!(
            "document {doc} at that time"
        )));
    }
    let base = snapshot.as_ref().map_or(0, |s| s.covers_seq);
    let last_seq = updates.last().map_or(base, |u| u.seq);
    Ok(DocLog {
        snapshot,
        updates,
        last_seq,
    })
}

/// How a snapshot's bytes are stored: `(inline, blob_key)`, one of them set.
pub fn snapshot_columns(data: &SnapshotData) -> (Option<&[u8]>, Option<&str>) {
    match data {
        SnapshotData::Inline(bytes) => (Some(bytes), None),
        SnapshotData::Blob(key) => (None, Some(key)),
    }
}

/// A snapshot's bytes from its stored columns: inline bytes when present,
/// else the blob key.
pub fn snapshot_data(inline: Option<Vec<u8>>, blob_key: Option<String>) -> SnapshotData {
    match inline {
        Some(bytes) => SnapshotData::Inline(bytes),
        None => SnapshotData::Blob(blob_key.unwrap_or_default()),
    }
}

/// A document linked to an entity (or unlinked: `None`).
pub fn linked(doc: &str, entity_id: Option<&str>) -> AuditFact {
    of_admin("doc.link", doc, json!({ "entity_id": entity_id }))
}

/// A document deleted.
pub fn deleted(doc: &str) -> AuditFact {
    of_admin("doc.delete", doc, json!({}))
}

/// Recording a snapshot is idempotent: a snapshot is keyed by what it
/// covers (`covers_seq`), a second record of the same one stores nothing
/// (`rows_inserted` 0) and audits nothing.
pub fn recorded(doc: &str, s: &DocSnapshot, rows_inserted: u64) -> Option<AuditFact> {
    let details = || {
        json!({
            "covers_seq": s.covers_seq,
            "bytes": s.size,
            "blob": snapshot_columns(&s.data).1,
        })
    };
    (rows_inserted > 0).then(|| of_admin("doc.compact", doc, details()))
}

/// What `prune` decides from: one snapshot's key and age. `T` is a stored
/// time, compared as the backend stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotAge<T> {
    pub covers_seq: i64,
    pub created_at: T,
}

/// What `prune` deletes of one document.
#[derive(Debug, Clone, PartialEq)]
pub struct Prune<T> {
    /// Updates may go when the newest snapshot covers them (seq ≤ this)
    /// and they are older than `updates_before`; the log loses a prefix
    /// only, through the newest update that may go (the backend asks for
    /// it: the log is not loaded).
    pub updates_through: i64,
    pub updates_before: T,
    /// The snapshots that go (by `covers_seq`): older than the cut-off,
    /// never the newest.
    pub snapshots: Vec<i64>,
}

/// Decides a prune from the document's snapshots (any order). Nothing goes
/// before a first snapshot.
pub fn prune<T: PartialOrd>(
    snapshots: &[SnapshotAge<T>],
    updates_before: T,
    snapshots_before: &T,
) -> Option<Prune<T>> {
    let newest = snapshots.iter().map(|s| s.covers_seq).max()?;
    Some(Prune {
        updates_through: newest,
        updates_before,
        snapshots: snapshots
            .iter()
            .filter(|s| s.covers_seq < newest && s.created_at < *snapshots_before)
            .map(|s| s.covers_seq)
            .collect(),
    })
}

/// The blob keys that removed snapshot rows leave unreferenced (a key names
/// one snapshot, so no other row holds it): the caller deletes those blobs.
pub fn unreferenced_blobs(removed: impl IntoIterator<Item = Option<String>>) -> Vec<String> {
    removed.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_run_per_document_in_order_and_share_the_seqs() {
        let append = |project: &str, doc: &str, rows: usize, origin: &str| DocAppend {
            scope: Scope::new("o", project),
            doc: doc.into(),
            updates: vec![vec![rows as u8]; rows],
            origin: Some(origin.into()),
        };
        let appends = vec![
            append("p", "b", 2, "ws:1"),
            append("p", "a", 1, "ws:2"),
            append("p", "b", 0, "ws:3"),
            append("p", "b", 1, "ws:4"),
            append("q", "a", 1, "ws:5"),
        ];
        let runs = append_runs(&appends);
        let docs: Vec<_> = runs.iter().map(|r| (&*r.scope.project, r.doc)).collect();
        assert_eq!(docs, [("p", "a"), ("p", "b"), ("q", "a")]);
        let origins: Vec<_> = runs[1].rows.iter().map(|(_, o)| o.unwrap()).collect();
        assert_eq!(
            origins,
            ["ws:1", "ws:1", "ws:4"],
            "one document's rows keep their order"
        );
        let mut answers = vec![(0, 0); appends.len()];
        runs[1].answer(append_seqs(10, 3), &mut answers);
        assert_eq!(answers[0], (11, 12));
        assert_eq!(
            answers[2],
            (13, 12),
            "an empty append answers an empty range"
        );
        assert_eq!(answers[3], (13, 13));
    }

    fn doc(entity: Option<&str>, pruned_through: i64) -> DocInfo {
        DocInfo {
            id: "d".into(),
            entity_id: entity.map(str::to_owned),
            created_at: "t0".into(),
            last_seq: 9,
            pruned_through,
        }
    }

    fn snap(covers_seq: i64) -> DocSnapshot {
        DocSnapshot {
            covers_seq,
            covers_at: "t".into(),
            created_at: "t".into(),
            size: 3,
            sha256: "h".into(),
            data: SnapshotData::Blob(format!("k{covers_seq}")),
        }
    }

    fn update(seq: i64) -> DocUpdate {
        DocUpdate {
            seq,
            bytes: vec![1],
            origin: None,
            at: "t".into(),
        }
    }

    fn code(r: DomainResult<impl std::fmt::Debug>) -> &'static str {
        r.unwrap_err().code()
    }

    #[test]
    fn a_document_is_hidden_while_its_entity_is_not_live() {
        assert_eq!(code(visible("d", None, None)), "not_found");
        assert!(visible("d", Some(doc(None, 0)), None).is_ok());
        assert!(visible("d", Some(doc(Some("e"), 0)), Some(true)).is_ok());
        assert_eq!(
            code(visible("d", Some(doc(Some("e"), 0)), Some(false))),
            "not_found"
        );
        // An owner nobody checked does not make a document visible.
        assert_eq!(
            code(visible("d", Some(doc(Some("e"), 0)), None)),
            "not_found"
        );
        assert_eq!(owner(Some(&doc(Some("e"), 0))), Some("e"));
        assert_eq!(owner(Some(&doc(None, 0))), None);
        assert_eq!(owner(None), None);
        assert!(existing("d", Some(doc(Some("e"), 0))).is_ok());
        assert_eq!(code(existing("d", None)), "not_found");
    }

    #[test]
    fn only_a_live_entity_can_own_a_document() {
        assert!(linkable("e", true).is_ok());
        assert_eq!(code(linkable("e", false)), "unprocessable");
    }

    #[test]
    fn appends_take_the_next_dense_seqs() {
        assert_eq!(append_seqs(4, 3), 5..=7);
        let none = append_seqs(4, 0);
        assert!(none.is_empty());
        assert_eq!((*none.start(), *none.end()), (5, 4));
    }

    #[test]
    fn a_log_starts_after_its_snapshot_unless_updates_after_it_were_pruned() {
        assert_eq!(log_start("d", &doc(None, 0), None, None).unwrap(), 0);
        assert_eq!(
            log_start("d", &doc(None, 5), Some(&snap(5)), None).unwrap(),
            5
        );
        assert_eq!(
            log_start("d", &doc(None, 3), Some(&snap(5)), Some("t")).unwrap(),
            5
        );
        // A past state whose updates were pruned is gone.
        assert_eq!(
            code(log_start("d", &doc(None, 5), Some(&snap(3)), Some("t"))),
            "gone"
        );
        assert_eq!(code(log_start("d", &doc(None, 5), None, Some("t"))), "gone");
        // The present state missing updates is a fault, not a client error.
        assert_eq!(
            code(log_start("d", &doc(None, 5), Some(&snap(3)), None)),
            "internal"
        );
    }

    #[test]
    fn a_log_ends_at_its_last_update_or_snapshot() {
        let l = log("d", Some(snap(5)), vec![update(6), update(7)], None).unwrap();
        assert_eq!((l.last_seq, l.updates.len()), (7, 2));
        assert_eq!(
            log("d", Some(snap(5)), vec![], Some("t")).unwrap().last_seq,
            5
        );
        assert_eq!(log("d", None, vec![], None).unwrap().last_seq, 0);
        // Before the first update there is no state.
        assert_eq!(code(log("d", None, vec![], Some("t"))), "not_found");
        assert_eq!(
            log("d", None, vec![update(1)], Some("t")).unwrap().last_seq,
            1
        );
    }

    #[test]
    fn snapshot_bytes_are_inline_or_a_blob_key() {
        let inline = SnapshotData::Inline(vec![1, 2]);
        assert_eq!(snapshot_columns(&inline), (Some(&[1u8, 2][..]), None));
        let blob = SnapshotData::Blob("k".into());
        assert_eq!(snapshot_columns(&blob), (None, Some("k")));
        assert_eq!(snapshot_data(Some(vec![1, 2]), None), inline);
        assert_eq!(snapshot_data(None, Some("k".into())), blob);
        assert_eq!(snapshot_data(None, None), SnapshotData::Blob(String::new()));
    }

    #[test]
    fn recording_the_same_snapshot_again_audits_nothing() {
        let a = recorded("d", &snap(5), 1).unwrap();
        assert_eq!(a.action, "doc.compact");
        assert_eq!(
            a.details,
            json!({"covers_seq": 5, "bytes": 3, "blob": "k5"})
        );
        let mut inline = snap(5);
        inline.data = SnapshotData::Inline(vec![1]);
        assert_eq!(
            recorded("d", &inline, 1).unwrap().details["blob"],
            serde_json::Value::Null
        );
        assert_eq!(recorded("d", &snap(5), 0), None);
        assert_eq!(linked("d", Some("e")).details, json!({"entity_id": "e"}));
        assert_eq!(linked("d", None).details, json!({"entity_id": null}));
        assert_eq!(deleted("d").action, "doc.delete");
    }

    fn age(covers_seq: i64, created_at: &'static str) -> SnapshotAge<&'static str> {
        SnapshotAge {
            covers_seq,
            created_at,
        }
    }

    #[test]
    fn prune_keeps_the_newest_snapshot_and_recent_ones() {
        assert_eq!(prune::<&str>(&[], "u", &"s"), None);
        let p = prune(
            &[age(3, "a"), age(9, "a"), age(6, "c"), age(1, "b")],
            "u",
            &"c",
        )
        .unwrap();
        // 9 is the newest (old as it is); 6 is not old enough.
        assert_eq!(p.snapshots, vec![3, 1]);
        assert_eq!((p.updates_through, p.updates_before), (9, "u"));
        let only = prune(&[age(4, "a")], "u", &"z").unwrap();
        assert_eq!((only.updates_through, only.snapshots), (4, vec![]));
    }

    #[test]
    fn removed_snapshots_free_their_blob_keys_only() {
        let keys = unreferenced_blobs([Some("a".to_owned()), None, Some("b".to_owned())]);
        assert_eq!(keys, vec!["a", "b"]);
    }
}
