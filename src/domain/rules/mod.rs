//! The rules of how stored state changes, as pure functions: given what a
//! backend loaded (and locked), they decide what it must store. No I/O: the
//! backends load, persist and answer queries, and nothing else.

pub mod as_of;
pub mod audit;
pub mod docs;
pub mod ends;
pub mod entities;
pub mod graph;
pub mod history;
pub mod import;
pub mod relationships;

use crate::domain::{DomainError, DomainResult, WriteOp};
use chrono::{DateTime, Utc};
use entities::EntityOp;
use relationships::{NewRelationship, RelationshipOp};

/// Who makes a change, and when (one instant for everything a write stores).
#[derive(Debug, Clone)]
pub struct Stamp {
    pub actor: String,
    pub time: DateTime<Utc>,
    /// `time` in the stored form (crate::clock).
    pub at: String,
}

impl Stamp {
    pub fn new(actor: &str, time: DateTime<Utc>) -> Self {
        Stamp {
            actor: actor.to_owned(),
            time,
            at: crate::clock::format(time),
        }
    }

    pub fn now(actor: &str) -> Self {
        Stamp::new(actor, Utc::now())
    }
}

/// An `If-Match`-style precondition: the write applies only to `expected`.
pub fn check_expected(expected: Option<i64>, current: i64) -> DomainResult<()> {
    match expected {
        Some(expected) if expected != current => {
            Err(DomainError::PreconditionFailed { expected, current })
        }
        _ => Ok(()),
    }
}

/// A write op, by what it writes to.
pub enum Target {
    Entity(String, EntityOp),
    Relationship(String, RelationshipOp),
}

/// Splits a write op into its target and what it does there: each backend
/// then has one entity path and one relationship path.
pub fn target(op: WriteOp) -> Target {
    use Target::{Entity, Relationship};
    match op {
        WriteOp::CreateEntity {
            id,
            entity_type,
            properties,
        } => Entity(
            id,
            EntityOp::Create {
                entity_type,
                properties,
            },
        ),
        WriteOp::PutEntity {
            id,
            entity_type,
            properties,
            expected_version,
        } => Entity(
            id,
            EntityOp::Put {
                entity_type,
                properties,
                expected: expected_version,
            },
        ),
        WriteOp::PatchEntity {
            id,
            patch,
            entity_type,
            expected_version,
        } => Entity(
            id,
            EntityOp::Patch {
                patch,
                entity_type,
                expected: expected_version,
            },
        ),
        WriteOp::DeleteEntity {
            id,
            expected_version,
        } => Entity(
            id,
            EntityOp::Delete {
                expected: expected_version,
            },
        ),
        WriteOp::PurgeEntity { id } => Entity(id, EntityOp::Purge),
        WriteOp::RestoreEntity { id } => Entity(id, EntityOp::Restore),
        WriteOp::RevertEntity {
            id,
            to_version,
            expected_version,
        } => Entity(
            id,
            EntityOp::Revert {
                to_version,
                expected: expected_version,
            },
        ),
        WriteOp::CreateRelationship {
            id,
            rel_type,
            from,
            to,
            properties,
        } => Relationship(
            id,
            RelationshipOp::Create(NewRelationship {
                rel_type,
                from,
                to,
                properties,
            }),
        ),
        WriteOp::PatchRelationship {
            id,
            patch,
            rel_type,
            expected_version,
        } => Relationship(
            id,
            RelationshipOp::Patch {
                patch,
                rel_type,
                expected: expected_version,
            },
        ),
        WriteOp::DeleteRelationship {
            id,
            expected_version,
        } => Relationship(
            id,
            RelationshipOp::Delete {
                expected: expected_version,
            },
        ),
    }
}
