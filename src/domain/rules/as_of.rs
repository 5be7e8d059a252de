//! Rows as they were at a past time `t` (a point-in-time restore): an
//! entity is cut back to its last version made at or before `t` and rebuilt
//! from its history; a relationship keeps its row (relationships keep no
//! history) but is absent if made after `t` and not deleted if deleted
//! after it; a document keeps the snapshots and updates made by `t`. Times
//! are the stored form (fixed width), so they compare as strings.

use super::history::{self, ChainLink};
use crate::domain::export::{DocExport, EntityExport, RelationshipRecord};
use crate::domain::DomainResult;
use std::collections::HashMap;

/// The entity as it was at `t`: None if it was made after `t`.
pub fn entity(mut e: EntityExport, t: &str) -> DomainResult<Option<EntityExport>> {
    let kept = e.versions.iter().take_while(|v| v.at.as_str() <= t).count();
    if kept == 0 {
        return Ok(None);
    }
    if kept == e.versions.len() {
        return Ok(Some(e));
    }
    e.versions.truncate(kept);
    let by_version: HashMap<i64, &_> = e.versions.iter().map(|v| (v.version, v)).collect();
    let last = e.versions.last().expect("kept > 0");
    let properties = history::rebuild(last.version, |n| {
        Ok(by_version.get(&n).map(|v| ChainLink {
            parent: v.parent,
            patch: v.patch.clone(),
            snapshot: v.snapshot.clone(),
        }))
    })?
    .unwrap_or_default();
    let entity = &mut e.entity;
    entity.properties = properties;
    entity.version = last.version;
    entity.entity_type = last.entity_type.clone();
    entity.updated_at = last.at.clone();
    entity.updated_by = last.actor.clone();
    entity.deleted_at = last.deleted.then(|| last.at.clone());
    Ok(Some(e))
}

/// The relationship as it was at `t`, as far as its row tells: None if it
/// was made after `t`; not deleted if it was deleted after `t`.
pub fn relationship(mut r: RelationshipRecord, t: &str) -> Option<RelationshipRecord> {
    if r.relationship.created_at.as_str() > t {
        return None;
    }
    if r.deleted_at.as_deref().is_some_and(|d| d > t) {
        r.deleted_at = None;
    }
    Some(r)
}

/// The document as it was at `t`: None if it was made after `t`. Its state
/// is the newest snapshot made by then and the updates after it; when
/// updates after that snapshot were pruned (a later snapshot, made after
/// `t`, covered them), the state at `t` is gone, and the snapshot's own
/// (older) state is what remains.
pub fn doc(mut d: DocExport, t: &str) -> Option<DocExport> {
    if d.doc.created_at.as_str() > t {
        return None;
    }
    d.snapshots.retain(|s| s.covers_at.as_str() <= t);
    d.updates.retain(|u| u.at.as_str() <= t);
    let base = d.snapshots.iter().map(|s| s.covers_seq).max().unwrap_or(0);
    if d.doc.pruned_through > base {
        d.updates.retain(|u| u.seq <= base);
        d.doc.pruned_through = base;
    }
    let newest = d.updates.iter().map(|u| u.seq).max().unwrap_or(0);
    d.doc.last_seq = base.max(newest);
    Some(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::export::VersionRecord;
    use crate::domain::{Entity, VersionOp};
    use serde_json::{json, Value};

    fn version(n: i64, at: &str, patch: Value, snapshot: bool, deleted: bool) -> VersionRecord {
        VersionRecord {
            entity: "e".into(),
            version: n,
            parent: (n > 1).then_some(n - 1),
            op: if n == 1 {
                VersionOp::Create
            } else {
                VersionOp::Update
            },
            entity_type: if n < 3 { "a".into() } else { "b".into() },
            deleted,
            actor: format!("actor{n}"),
            at: at.into(),
            snapshot: snapshot.then(|| patch.clone()),
            patch,
            chain: if snapshot { 0 } else { n - 1 },
        }
    }

    #[test]
    fn an_entity_is_cut_back_to_its_version_at_the_time() {
        let e = EntityExport {
            entity: Entity {
                id: "e".into(),
                entity_type: "b".into(),
                properties: json!({"x": 1, "y": 2, "z": 3}).as_object().unwrap().clone(),
                version: 3,
                created_at: "2026-01-01".into(),
                updated_at: "2026-01-03".into(),
                created_by: "actor1".into(),
                updated_by: "actor3".into(),
                deleted_at: Some("2026-01-03".into()),
                change_seq: 0,
            },
            versions: vec![
                version(1, "2026-01-01", json!({"x": 1}), true, false),
                version(2, "2026-01-02", json!({"y": 2}), false, false),
                version(3, "2026-01-03", json!({"z": 3}), false, true),
            ],
        };
        assert!(entity(e.clone(), "2025-12-31").unwrap().is_none());
        let at2 = entity(e.clone(), "2026-01-02x").unwrap().unwrap();
        assert_eq!(at2.entity.version, 2);
        assert_eq!(
            Value::Object(at2.entity.properties.clone()),
            json!({"x": 1, "y": 2})
        );
        assert_eq!(at2.entity.entity_type, "a");
        assert_eq!(
            (at2.entity.updated_by.as_str(), at2.entity.deleted_at),
            ("actor2", None)
        );
        assert_eq!(at2.versions.len(), 2);
        assert_eq!(
            entity(e.clone(), "2027").unwrap().unwrap(),
            e,
            "after its last version: as it is"
        );
    }

    fn doc_export() -> DocExport {
        use crate::domain::export::{DocSnapshotRecord, DocUpdateRecord};
        use crate::domain::DocInfo;
        let update = |seq: i64, at: &str| DocUpdateRecord {
            doc: "d".into(),
            seq,
            update: vec![seq as u8],
            origin: None,
            at: at.into(),
        };
        let snapshot = |covers_seq: i64, at: &str| DocSnapshotRecord {
            doc: "d".into(),
            covers_seq,
            covers_at: at.into(),
            created_at: at.into(),
            sha256: String::new(),
            state: vec![],
        };
        DocExport {
            doc: DocInfo {
                id: "d".into(),
                entity_id: None,
                created_at: "2026-01-01".into(),
                last_seq: 6,
                pruned_through: 2,
            },
            // Snapshot 2 at day 2; snapshot 4 at day 4 (it let 3..4 be
            // pruned, were they older than the retention).
            snapshots: vec![snapshot(2, "2026-01-02"), snapshot(4, "2026-01-04")],
            updates: vec![
                update(3, "2026-01-03"),
                update(4, "2026-01-04"),
                update(5, "2026-01-05"),
                update(6, "2026-01-06"),
            ],
        }
    }

    #[test]
    fn a_document_keeps_what_was_made_by_the_time() {
        let d = doc_export();
        assert!(doc(d.clone(), "2025-12-31").is_none(), "made later");
        let at3 = doc(d.clone(), "2026-01-03x").unwrap();
        assert_eq!(at3.snapshots.len(), 1);
        assert_eq!(at3.updates.iter().map(|u| u.seq).collect::<Vec<_>>(), [3]);
        assert_eq!((at3.doc.last_seq, at3.doc.pruned_through), (3, 2));
        assert_eq!(doc(d.clone(), "2027").unwrap(), d, "after it all: as it is");
    }

    #[test]
    fn a_document_whose_updates_were_pruned_falls_back_to_its_snapshot() {
        let mut d = doc_export();
        // Snapshot 4 covered 3..4 and they were pruned.
        d.doc.pruned_through = 4;
        d.updates.retain(|u| u.seq > 4);
        let at3 = doc(d, "2026-01-03x").unwrap();
        assert!(at3.updates.is_empty());
        assert_eq!((at3.doc.last_seq, at3.doc.pruned_through), (2, 2));
    }
}
