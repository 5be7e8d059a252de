//! Importing exported rows (`domain::export`): whether a record is whole
//! and consistent (checked before anything is stored), and what storing it
//! does to what the store holds. An import keeps every row as exported
//! (versions, times, actors), so importing the same file twice changes
//! nothing, and a store that is behind the file is brought up to it.

use super::ends::Ends;
use super::history::{self, ChainLink, SNAPSHOT_EVERY};
use crate::domain::export::{
    DocSnapshotRecord, DocUpdateRecord, EntityExport, RelationshipRecord, VersionRecord,
};
use crate::domain::{
    validate, DocInfo, DomainError, DomainResult, Entity, Properties, Relationship,
};
use chrono::DateTime;
use serde_json::Value;
use std::collections::HashMap;

/// Most versions one imported entity may carry (its rows are held in
/// memory while it is checked and stored).
pub const MAX_VERSIONS: usize = 100_000;

/// What storing one imported row does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The store has no such row.
    Create,
    /// The store holds an older version: the versions after `after` are added.
    Update { after: i64 },
    /// The store holds this very version already.
    Unchanged,
    /// The store holds a newer or a different version: nothing is stored.
    Conflict(String),
}

impl Verdict {
    /// The op the change feed carries for a row stored with this verdict,
    /// in the contract's words (API.md, Changes): a row stored deleted is
    /// a `delete`, a row the store lacked a `create`, an older one brought
    /// up to the file's a `replace`.
    pub fn feed_op(&self, deleted: bool) -> &'static str {
        match self {
            _ if deleted => "delete",
            Verdict::Create => "create",
            _ => "replace",
        }
    }

    /// Whether the row is stored, and after which of the store's versions
    /// the file's are added (0: all of them); None when nothing is stored.
    pub fn stores_after(&self) -> Option<i64> {
        match self {
            Verdict::Create => Some(0),
            Verdict::Update { after } => Some(*after),
            Verdict::Unchanged | Verdict::Conflict(_) => None,
        }
    }
}

/// Counts of an import, as the route answers them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ImportCounts {
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub failed: u64,
}

impl ImportCounts {
    /// The details of the `project.import` audit event of one batch.
    pub fn audit_details<'a>(verdicts: impl Iterator<Item = &'a Verdict>) -> serde_json::Value {
        let mut counts = ImportCounts::default();
        verdicts.for_each(|v| counts.add(v));
        serde_json::to_value(counts).expect("counts serialise")
    }

    pub fn add(&mut self, verdict: &Verdict) {
        match verdict {
            Verdict::Create => self.created += 1,
            Verdict::Update { .. } => self.updated += 1,
            Verdict::Unchanged => self.unchanged += 1,
            Verdict::Conflict(_) => self.failed += 1,
        }
    }
}

/// The entity row and the version numbers in the store decide.
pub fn entity(stored: Option<&Entity>, incoming: &Entity) -> Verdict {
    let Some(stored) = stored else {
        return Verdict::Create;
    };
    let same = stored.entity_type == incoming.entity_type
        && stored.properties == incoming.properties
        && stored.deleted_at.is_some() == incoming.deleted_at.is_some();
    versions(stored.version, incoming.version, same)
}

/// What storing an imported entity does to its relationships: they follow
/// its deletion, as for a delete or a restore. `stored_deleted`: whether
/// the store's row was deleted (None: there was none).
pub fn ends(stored_deleted: Option<bool>, incoming: &Entity) -> Ends {
    match (stored_deleted, incoming.deleted_at.is_some()) {
        (Some(false), true) => Ends::Hide,
        (Some(true), false) => Ends::Revive,
        _ => Ends::Unchanged,
    }
}

/// As for entities, and whether the stored row is live. `stored`: the
/// store's row and whether it is deleted; `ends`: for `from` and `to`,
/// whether the entity is live, None when the project lacks it (a row
/// whose ends are missing is not stored).
pub fn relationship(
    stored: Option<(&Relationship, bool)>,
    incoming: &RelationshipRecord,
    ends: [Option<bool>; 2],
) -> (Verdict, bool) {
    let verdict = relationship_versions(stored, incoming);
    let r = &incoming.relationship;
    match ends {
        [Some(from), Some(to)] => (verdict, incoming.deleted_at.is_none() && from && to),
        _ if verdict.stores_after().is_some() => (
            Verdict::Conflict(format!(
                "relationship {}: its ends are not in the project",
                r.id
            )),
            false,
        ),
        _ => (verdict, false),
    }
}

fn relationship_versions(
    stored: Option<(&Relationship, bool)>,
    incoming: &RelationshipRecord,
) -> Verdict {
    let Some((stored, deleted)) = stored else {
        return Verdict::Create;
    };
    let r = &incoming.relationship;
    let same = stored.rel_type == r.rel_type
        && stored.from == r.from
        && stored.to == r.to
        && stored.properties == r.properties
        && deleted == incoming.deleted_at.is_some();
    if stored.from != r.from || stored.to != r.to {
        return Verdict::Conflict(format!(
            "relationship {} joins other entities in the store",
            r.id
        ));
    }
    versions(stored.version, r.version, same)
}

fn versions(stored: i64, incoming: i64, same: bool) -> Verdict {
    match stored.cmp(&incoming) {
        std::cmp::Ordering::Less => Verdict::Update { after: stored },
        std::cmp::Ordering::Equal if same => Verdict::Unchanged,
        std::cmp::Ordering::Equal => Verdict::Conflict(format!(
            "the store's version {stored} differs from the file's"
        )),
        std::cmp::Ordering::Greater => Verdict::Conflict(format!(
            "the store holds version {stored}, newer than the file's {incoming}"
        )),
    }
}

/// Whether an entity's unit takes one more of the version lines after it:
/// up to one more than the entity declares (`check_entity` then names the
/// mismatch), so a run of surplus lines is not held in memory.
pub fn wants_version(e: &EntityExport) -> bool {
    let declared = usize::try_from(e.entity.version).unwrap_or(0);
    e.versions.len() <= declared.min(MAX_VERSIONS)
}

/// An entity record with its versions is whole and consistent: valid ids,
/// type and times; versions 1..=version in order, each a patch on a parent
/// before it or a snapshot, within the snapshot spacing; and the last
/// version rebuilds to the entity's properties, type and deletion.
/// Times are rewritten in the stored form.
pub fn check_entity(e: &mut EntityExport) -> DomainResult<()> {
    let entity = &mut e.entity;
    validate::id("entity id", &entity.id)?;
    validate::type_name("entity type", &entity.entity_type)?;
    validate::properties(&entity.properties)?;
    for t in [&mut entity.created_at, &mut entity.updated_at] {
        *t = stored_time(t)?;
    }
    if let Some(t) = &mut entity.deleted_at {
        *t = stored_time(t)?;
    }
    let count = usize::try_from(entity.version).unwrap_or(0);
    if count == 0 || count > MAX_VERSIONS || e.versions.len() != count {
        return Err(bad(format!(
            "entity {} has version {} but {} version records (1 to {MAX_VERSIONS} expected, one each)",
            entity.id,
            entity.version,
            e.versions.len()
        )));
    }
    let mut chains: HashMap<i64, i64> = HashMap::new();
    for (n, v) in e.versions.iter_mut().enumerate() {
        check_version(v, &entity.id, n as i64 + 1, &chains)?;
        chains.insert(v.version, v.chain);
    }
    let last = e.versions.last().expect("count > 0");
    if last.entity_type != entity.entity_type || last.deleted != entity.deleted_at.is_some() {
        return Err(bad(format!(
            "entity {}: its last version's type or deletion differs from the entity's",
            entity.id
        )));
    }
    let rebuilds = match &last.snapshot {
        // What `rebuild` would answer at once, compared without a copy.
        Some(Value::Object(snapshot)) => snapshot == &entity.properties,
        _ => rebuild(&e.versions, entity)?.as_ref() == Some(&entity.properties),
    };
    if !rebuilds {
        return Err(bad(format!(
            "entity {}: its last version does not rebuild to its properties",
            entity.id
        )));
    }
    Ok(())
}

/// The properties `versions` rebuild to at the entity's version.
fn rebuild(versions: &[VersionRecord], entity: &Entity) -> DomainResult<Option<Properties>> {
    let by_version: HashMap<i64, &VersionRecord> =
        versions.iter().map(|v| (v.version, v)).collect();
    history::rebuild(entity.version, |n| {
        Ok(by_version.get(&n).map(|v| ChainLink {
            parent: v.parent,
            // A snapshot ends the walk; its patch is not read.
            patch: match v.snapshot {
                Some(_) => Value::Null,
                None => v.patch.clone(),
            },
            snapshot: v.snapshot.clone(),
        }))
    })
    .map_err(|_| bad(format!("entity {}: its versions do not rebuild", entity.id)))
}

fn check_version(
    v: &mut VersionRecord,
    entity: &str,
    expected: i64,
    chains: &HashMap<i64, i64>,
) -> DomainResult<()> {
    if v.entity != entity || v.version != expected {
        return Err(bad(format!(
            "expected version {expected} of entity {entity}, found version {} of {}",
            v.version, v.entity
        )));
    }
    validate::type_name("version type", &v.entity_type)?;
    validate::name("version actor", &v.actor)?;
    v.at = stored_time(&v.at)?;
    if !v.patch.is_object() || v.snapshot.as_ref().is_some_and(|s| !s.is_object()) {
        return Err(bad(format!(
            "version {expected} of {entity}: patch and snapshot must be objects"
        )));
    }
    let parent_chain = match v.parent {
        Some(p) if p >= 1 && p < v.version => chains.get(&p).copied(),
        Some(p) => {
            return Err(bad(format!(
                "version {expected} of {entity} names parent {p}, not an earlier version"
            )))
        }
        None => None,
    };
    let consistent = match (&v.snapshot, parent_chain) {
        (Some(_), _) => v.chain == 0,
        (None, Some(c)) => v.chain == c + 1 && v.chain < SNAPSHOT_EVERY,
        (None, None) => false,
    };
    if !consistent {
        return Err(bad(format!(
            "version {expected} of {entity}: chain {} does not follow its parent or snapshot",
            v.chain
        )));
    }
    Ok(())
}

/// A relationship record is valid: ids, type, times, a version.
pub fn check_relationship(r: &mut RelationshipRecord) -> DomainResult<()> {
    let rel = &mut r.relationship;
    validate::id("relationship id", &rel.id)?;
    validate::type_name("relationship type", &rel.rel_type)?;
    validate::id("relationship from", &rel.from)?;
    validate::id("relationship to", &rel.to)?;
    validate::properties(&rel.properties)?;
    if rel.version < 1 {
        return Err(bad(format!("relationship {} has no version", rel.id)));
    }
    for t in [&mut rel.created_at, &mut rel.updated_at] {
        *t = stored_time(t)?;
    }
    if let Some(t) = &mut r.deleted_at {
        *t = stored_time(t)?;
    }
    Ok(())
}

/// A document row: its ids, its time, and sequences that fit together.
pub fn check_doc(d: &mut DocInfo) -> DomainResult<()> {
    validate::id("doc", &d.id)?;
    if let Some(entity) = &d.entity_id {
        validate::id("entity_id", entity)?;
    }
    d.created_at = stored_time(&d.created_at)?;
    if d.pruned_through < 0 || d.pruned_through > d.last_seq {
        return Err(bad(format!(
            "document {}: pruned_through {} is not within 0..=last_seq {}",
            d.id, d.pruned_through, d.last_seq
        )));
    }
    Ok(())
}

/// A snapshot of `doc`, the document of the `doc` line before it: within
/// its log, its state matching its checksum. (That the state is a Yjs
/// update is the caller's check: the domain does not know Yjs.)
pub fn check_doc_snapshot(s: &mut DocSnapshotRecord, doc: &DocInfo) -> DomainResult<()> {
    follows("doc_snapshot", &s.doc, doc)?;
    within(doc, s.covers_seq)?;
    s.covers_at = stored_time(&s.covers_at)?;
    s.created_at = stored_time(&s.created_at)?;
    if crate::digest::sha256_hex(&s.state) != s.sha256 {
        return Err(bad(format!(
            "document {}: the state of snapshot {} does not match its sha256",
            doc.id, s.covers_seq
        )));
    }
    Ok(())
}

/// A retained update of `doc` (as for snapshots).
pub fn check_doc_update(u: &mut DocUpdateRecord, doc: &DocInfo) -> DomainResult<()> {
    follows("doc_update", &u.doc, doc)?;
    within(doc, u.seq)?;
    u.at = stored_time(&u.at)?;
    if u.origin.as_ref().is_some_and(|o| o.len() > MAX_ORIGIN) {
        return Err(bad(format!("an origin over {MAX_ORIGIN} bytes")));
    }
    Ok(())
}

/// Longest gateway origin kept with an update.
const MAX_ORIGIN: usize = 256;

fn follows(kind: &str, named: &str, doc: &DocInfo) -> DomainResult<()> {
    if named == doc.id {
        return Ok(());
    }
    Err(bad(format!(
        "a {kind} line of document {named} inside document {}",
        doc.id
    )))
}

fn within(doc: &DocInfo, seq: i64) -> DomainResult<()> {
    if (1..=doc.last_seq).contains(&seq) {
        return Ok(());
    }
    Err(bad(format!(
        "document {}: sequence {seq} is not within 1..=last_seq {}",
        doc.id, doc.last_seq
    )))
}

/// The document row in the store decides: made at another time is another
/// document; otherwise the link follows the file and the log's end is the
/// further of the two (`Update { after }` names the store's).
pub fn doc(stored: Option<&DocInfo>, incoming: &DocInfo) -> Verdict {
    match stored {
        None => Verdict::Create,
        Some(s) if s.created_at != incoming.created_at => Verdict::Conflict(format!(
            "document {} was made at another time in this project",
            incoming.id
        )),
        Some(s) if s.entity_id == incoming.entity_id && s.last_seq >= incoming.last_seq => {
            Verdict::Unchanged
        }
        Some(s) => Verdict::Update { after: s.last_seq },
    }
}

/// A snapshot the store holds (its checksum) must be the same one.
pub fn doc_snapshot(stored_sha256: Option<&str>, incoming: &DocSnapshotRecord) -> Verdict {
    match stored_sha256 {
        None => Verdict::Create,
        Some(sha) if sha == incoming.sha256 => Verdict::Unchanged,
        Some(_) => Verdict::Conflict(format!(
            "document {}: the store holds another snapshot {}",
            incoming.doc, incoming.covers_seq
        )),
    }
}

/// An update the store holds must have the same bytes; one the store has
/// pruned (`pruned_through`: a snapshot covers it) is not stored again.
pub fn doc_update(
    stored: Option<&[u8]>,
    pruned_through: i64,
    incoming: &DocUpdateRecord,
) -> Verdict {
    match stored {
        Some(bytes) if bytes == incoming.update.as_slice() => Verdict::Unchanged,
        Some(_) => Verdict::Conflict(format!(
            "document {}: the store holds another update {}",
            incoming.doc, incoming.seq
        )),
        None if incoming.seq <= pruned_through => Verdict::Unchanged,
        None => Verdict::Create,
    }
}

/// An RFC 3339 time in the stored form (UTC, microseconds).
fn stored_time(text: &str) -> DomainResult<String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| crate::clock::format(t.to_utc()))
        .map_err(|_| bad(format!("{text:?} is not an RFC 3339 time")))
}

fn bad(message: String) -> DomainError {
    DomainError::BadRequest(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::VersionOp;
    use serde_json::json;

    fn exported() -> EntityExport {
        let at = "2026-12-03T10:00:00.000000Z".to_string();
        let version = |n: i64, parent: Option<i64>, patch, snapshot, chain| VersionRecord {
            entity: "a".into(),
            version: n,
            parent,
            op: if n == 1 {
                VersionOp::Create
            } else {
                VersionOp::Update
            },
            entity_type: "thing".into(),
            deleted: false,
            actor: "key1".into(),
            at: at.clone(),
            patch,
            snapshot,
            chain,
        };
        EntityExport {
            entity: Entity {
                id: "a".into(),
                entity_type: "thing".into(),
                properties: json!({"x": 2}).as_object().unwrap().clone(),
                version: 2,
                created_at: at.clone(),
                updated_at: "2026-12-03T11:00:00+01:00".into(),
                created_by: "key1".into(),
                updated_by: "key1".into(),
                deleted_at: None,
                change_seq: 0,
            },
            versions: vec![
                version(1, None, json!({"x": 1}), Some(json!({"x": 1})), 0),
                version(2, Some(1), json!({"x": 2}), None, 1),
            ],
        }
    }

    #[test]
    fn a_whole_record_passes_and_its_times_take_the_stored_form() {
        let mut e = exported();
        check_entity(&mut e).unwrap();
        assert_eq!(e.entity.updated_at, "2026-12-03T10:00:00.000000Z");
    }

    /// One surplus version line is kept, so the check names the mismatch;
    /// no more are held.
    #[test]
    fn an_entity_takes_one_version_line_more_than_it_declares() {
        let mut e = exported();
        assert!(wants_version(&e), "a third line is kept");
        e.versions.push(e.versions[1].clone());
        assert!(!wants_version(&e));
        assert!(check_entity(&mut e).is_err());
        e.entity.version = i64::MAX;
        assert!(wants_version(&e), "bounded by MAX_VERSIONS, not the claim");
        e.versions = vec![e.versions[0].clone(); MAX_VERSIONS + 1];
        assert!(!wants_version(&e));
    }

    #[test]
    fn broken_histories_are_refused() {
        let mut missing = exported();
        missing.versions.pop();
        let mut wrong_state = exported();
        wrong_state.entity.properties = json!({"x": 3}).as_object().unwrap().clone();
        let mut no_snapshot = exported();
        no_snapshot.versions[0].snapshot = None;
        let mut bad_parent = exported();
        bad_parent.versions[1].parent = Some(2);
        let mut bad_time = exported();
        bad_time.versions[1].at = "yesterday".into();
        for mut e in [missing, wrong_state, no_snapshot, bad_parent, bad_time] {
            assert!(matches!(
                check_entity(&mut e),
                Err(DomainError::BadRequest(_))
            ));
        }
    }

    #[test]
    fn the_store_s_version_decides() {
        let e = exported().entity;
        let mut older = e.clone();
        older.version = 1;
        let mut newer = e.clone();
        newer.version = 3;
        let mut other = e.clone();
        other.properties.clear();
        assert_eq!(entity(None, &e), Verdict::Create);
        assert_eq!(entity(Some(&older), &e), Verdict::Update { after: 1 });
        assert_eq!(entity(Some(&e), &e), Verdict::Unchanged);
        assert!(matches!(entity(Some(&newer), &e), Verdict::Conflict(_)));
        assert!(matches!(entity(Some(&other), &e), Verdict::Conflict(_)));
    }
}
