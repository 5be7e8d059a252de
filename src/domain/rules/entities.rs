//! How an entity changes: from its current row (as the backend loaded and
//! locked it) and a write, the next state and what its version row records.
//! The backend assigns the change sequence and stores the result.

use super::{check_expected, Stamp};
use crate::domain::patch::apply_merge_patch;
use crate::domain::*;
use serde_json::Value;

/// A write to one entity (the entity half of `WriteOp`).
#[derive(Debug, Clone)]
pub enum EntityOp {
    Create {
        entity_type: String,
        properties: Properties,
    },
    Put {
        entity_type: String,
        properties: Properties,
        expected: Option<i64>,
    },
    Patch {
        patch: Value,
        entity_type: Option<String>,
        expected: Option<i64>,
    },
    Delete {
        expected: Option<i64>,
    },
    Purge,
    Restore,
    Revert {
        to_version: i64,
        expected: Option<i64>,
    },
}

pub use super::ends::Ends;

/// A new version of an existing entity.
#[derive(Debug, Clone)]
pub struct NextVersion {
    /// The next state; `change_seq` is the backend's to assign.
    pub entity: Entity,
    pub op: VersionOp,
    /// The version the new version row stores its delta from, with its
    /// properties: the current one, or for a revert the target.
    pub parent: (i64, Properties),
    pub ends: Ends,
}

/// What a backend must store for an entity write.
#[derive(Debug, Clone)]
pub enum EntityChange {
    /// A first version: the row does not exist yet.
    Create(Entity),
    Version(NextVersion),
    /// Erase the entity, its history, relationships and documents.
    Purge,
}

impl EntityOp {
    /// The version a revert needs loaded, if this is one.
    pub fn revert_to(&self) -> Option<i64> {
        match self {
            EntityOp::Revert { to_version, .. } => Some(*to_version),
            _ => None,
        }
    }
}

pub fn not_found(id: &str) -> DomainError {
    DomainError::not_found(format!("entity {id}"))
}

/// Deleted entities read as absent unless asked for; an explicit version
/// is history, shown even when the entity was deleted since.
pub fn visible(e: Entity, read: &EntityRead) -> DomainResult<Entity> {
    if read.version.is_none() && e.deleted_at.is_some() && !read.include_deleted {
        return Err(not_found(&e.id));
    }
    Ok(e)
}

pub fn already_exists(id: &str) -> DomainError {
    DomainError::Conflict(format!("entity {id} already exists"))
}

/// The first version of a new entity.
pub fn first_version(
    id: &str,
    entity_type: String,
    properties: Properties,
    stamp: &Stamp,
) -> Entity {
    Entity {
        id: id.to_owned(),
        entity_type,
        properties,
        version: 1,
        created_at: stamp.at.clone(),
        updated_at: stamp.at.clone(),
        created_by: stamp.actor.to_owned(),
        updated_by: stamp.actor.to_owned(),
        deleted_at: None,
        change_seq: 0,
    }
}

/// Decides an entity write from what the backend loaded: the current row
/// (locked for the write) and, for a revert, the type and properties of the
/// target version (`EntityOp::revert_to`).
pub fn decide(
    id: &str,
    op: EntityOp,
    current: Option<Entity>,
    revert_target: Option<(String, Properties)>,
    stamp: &Stamp,
) -> DomainResult<EntityChange> {
    let live = |current: Option<Entity>| match current {
        Some(e) if e.deleted_at.is_none() => Ok(e),
        _ => Err(not_found(id)),
    };
    let next = |current: Entity, op, entity_type, properties, parent, ends| {
        next_version(current, op, entity_type, properties, parent, ends, stamp)
    };
    match op {
        EntityOp::Create {
            entity_type,
            properties,
        } => match current {
            Some(_) => Err(already_exists(id)),
            None => Ok(EntityChange::Create(first_version(
                id,
                entity_type,
                properties,
                stamp,
            ))),
        },
        EntityOp::Put {
            entity_type,
            properties,
            expected,
        } => match current {
            None => match expected {
                Some(expected) => Err(DomainError::PreconditionFailed {
                    expected,
                    current: 0,
                }),
                None => Ok(EntityChange::Create(first_version(
                    id,
                    entity_type,
                    properties,
                    stamp,
                ))),
            },
            Some(e) if e.deleted_at.is_some() => Err(DomainError::Conflict(format!(
                "entity {id} is deleted; restore it before replacing it"
            ))),
            Some(e) => {
                check_expected(expected, e.version)?;
                let (t, p) = (Some(entity_type), Some(properties));
                next(e, VersionOp::Replace, t, p, None, Ends::Unchanged)
            }
        },
        EntityOp::Patch {
            patch,
            entity_type,
            expected,
        } => {
            let e = live(current)?;
            check_expected(expected, e.version)?;
            let properties = merged(&e.properties, &patch)?;
            let ends = Ends::Unchanged;
            next(
                e,
                VersionOp::Update,
                entity_type,
                Some(properties),
                None,
                ends,
            )
        }
        EntityOp::Delete { expected } => {
            let e = live(current)?;
            check_expected(expected, e.version)?;
            next(e, VersionOp::Delete, None, None, None, Ends::Hide)
        }
        EntityOp::Purge => match current {
            Some(_) => Ok(EntityChange::Purge),
            None => Err(not_found(id)),
        },
        EntityOp::Restore => match current {
            None => Err(not_found(id)),
            Some(e) if e.deleted_at.is_none() => {
                Err(DomainError::Conflict(format!("entity {id} is not deleted")))
            }
            Some(e) => next(e, VersionOp::Restore, None, None, None, Ends::Revive),
        },
        EntityOp::Revert {
            to_version,
            expected,
        } => {
            let e = live(current)?;
            check_expected(expected, e.version)?;
            let (entity_type, properties) = revert_target.ok_or_else(|| {
                DomainError::Unprocessable(format!("entity {id} has no version {to_version}"))
            })?;
            let parent = Some((to_version, properties.clone()));
            let (t, p) = (Some(entity_type), Some(properties));
            next(e, VersionOp::Revert, t, p, parent, Ends::Unchanged)
        }
    }
}

/// What a version row records besides the state: when, by whom, whether
/// it deleted the entity, and its change sequence.
pub struct VersionMeta {
    pub at: String,
    pub actor: String,
    pub deleted: bool,
    pub change_seq: i64,
}

pub fn version_not_found(id: &str, version: i64) -> DomainError {
    DomainError::not_found(format!("version {version} of entity {id}"))
}

/// The entity as it was at a version: its state rebuilt from the history
/// chain, time and actor from that version's row, creation from the
/// current row (None when a part is missing).
pub fn at_version(
    current: Entity,
    version: i64,
    meta: Option<VersionMeta>,
    state: Option<(String, Properties)>,
) -> DomainResult<Entity> {
    let missing = || version_not_found(&current.id, version);
    let meta = meta.ok_or_else(missing)?;
    let (entity_type, properties) = state.ok_or_else(missing)?;
    Ok(Entity {
        id: current.id,
        entity_type,
        properties,
        version,
        created_at: current.created_at,
        updated_at: meta.at.clone(),
        created_by: current.created_by,
        updated_by: meta.actor,
        deleted_at: meta.deleted.then_some(meta.at),
        change_seq: meta.change_seq,
    })
}

/// A JSON merge patch applied to properties; the result must stay an object.
pub fn merged(properties: &Properties, patch: &Value) -> DomainResult<Properties> {
    let mut merged = Value::Object(properties.clone());
    apply_merge_patch(&mut merged, patch);
    match merged {
        Value::Object(properties) => Ok(properties),
        _ => Err(DomainError::BadRequest(
            "properties must be a JSON object".into(),
        )),
    }
}

fn next_version(
    current: Entity,
    op: VersionOp,
    entity_type: Option<String>,
    properties: Option<Properties>,
    parent: Option<(i64, Properties)>,
    ends: Ends,
    stamp: &Stamp,
) -> DomainResult<EntityChange> {
    let parent = parent.unwrap_or_else(|| (current.version, current.properties.clone()));
    let mut e = current;
    if let Some(t) = entity_type {
        e.entity_type = t;
    }
    if let Some(p) = properties {
        e.properties = p;
    }
    validate::properties(&e.properties)?;
    e.version += 1;
    e.updated_at = stamp.at.clone();
    e.updated_by = stamp.actor.to_owned();
    match op {
        VersionOp::Delete => e.deleted_at = Some(stamp.at.clone()),
        VersionOp::Restore => e.deleted_at = None,
        _ => {}
    }
    Ok(EntityChange::Version(NextVersion {
        entity: e,
        op,
        parent,
        ends,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stamp() -> Stamp {
        Stamp::new("k1", chrono::Utc::now())
    }

    fn entity(version: i64, deleted: bool) -> Entity {
        let mut e = first_version("a", "t".into(), Properties::new(), &stamp());
        e.version = version;
        e.deleted_at = deleted.then(|| "2026-01-01T00:00:00.000000Z".into());
        e
    }

    #[test]
    fn expected_version_is_checked_before_anything_is_decided() {
        let op = EntityOp::Delete { expected: Some(2) };
        let err = decide("a", op, Some(entity(3, false)), None, &stamp()).unwrap_err();
        assert!(matches!(
            err,
            DomainError::PreconditionFailed {
                expected: 2,
                current: 3
            }
        ));
    }

    #[test]
    fn put_creates_when_absent_and_refuses_deleted_rows() {
        let put = || EntityOp::Put {
            entity_type: "t".into(),
            properties: Properties::new(),
            expected: None,
        };
        assert!(matches!(
            decide("a", put(), None, None, &stamp()).unwrap(),
            EntityChange::Create(e) if e.version == 1
        ));
        let err = decide("a", put(), Some(entity(2, true)), None, &stamp()).unwrap_err();
        assert!(matches!(err, DomainError::Conflict(_)));
    }

    #[test]
    fn delete_and_restore_move_liveness_and_the_relationships_with_it() {
        let deleted = decide(
            "a",
            EntityOp::Delete { expected: None },
            Some(entity(1, false)),
            None,
            &stamp(),
        )
        .unwrap();
        let EntityChange::Version(v) = deleted else {
            panic!("a version")
        };
        assert!(v.entity.deleted_at.is_some());
        assert_eq!((v.entity.version, v.ends), (2, Ends::Hide));
        let restored = decide("a", EntityOp::Restore, Some(v.entity), None, &stamp()).unwrap();
        let EntityChange::Version(r) = restored else {
            panic!("a version")
        };
        assert_eq!((r.entity.deleted_at, r.ends), (None, Ends::Revive));
    }

    #[test]
    fn a_patch_that_is_not_an_object_is_refused() {
        let op = EntityOp::Patch {
            patch: json!([1]),
            entity_type: None,
            expected: None,
        };
        let err = decide("a", op, Some(entity(1, false)), None, &stamp()).unwrap_err();
        assert!(matches!(err, DomainError::BadRequest(_)));
    }

    #[test]
    fn a_revert_to_a_missing_version_is_unprocessable() {
        let op = EntityOp::Revert {
            to_version: 9,
            expected: None,
        };
        let err = decide("a", op, Some(entity(2, false)), None, &stamp()).unwrap_err();
        assert!(matches!(err, DomainError::Unprocessable(_)));
    }
}
