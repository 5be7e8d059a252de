//! How a relationship changes. A relationship is live while it is not
//! deleted and both its ends are live entities; the backends keep that in a
//! `live` column so the graph indexes hold exactly the walkable edges.

use super::entities::merged;
use super::{check_expected, Stamp};
use crate::domain::*;
use serde_json::Value;

/// A write to one relationship (the relationship half of `WriteOp`).
#[derive(Debug, Clone)]
pub enum RelationshipOp {
    Create(NewRelationship),
    Patch {
        patch: Value,
        rel_type: Option<String>,
        expected: Option<i64>,
    },
    Delete {
        expected: Option<i64>,
    },
}

/// What a create names.
#[derive(Debug, Clone)]
pub struct NewRelationship {
    pub rel_type: String,
    pub from: String,
    pub to: String,
    pub properties: Properties,
}

pub fn not_found(id: &str) -> DomainError {
    DomainError::not_found(format!("relationship {id}"))
}

pub fn already_exists(id: &str) -> DomainError {
    DomainError::Conflict(format!("relationship {id} already exists"))
}

/// Both ends must be live entities of the project; `live` lists the ends
/// found live (in any order).
pub fn check_ends(from: &str, to: &str, live: &[String]) -> DomainResult<()> {
    for end in [from, to] {
        if !live.iter().any(|id| id == end) {
            return Err(DomainError::Unprocessable(format!(
                "entity {end} does not exist in this project"
            )));
        }
    }
    Ok(())
}

/// A new relationship at version 1.
pub fn first_version(id: &str, new: NewRelationship, stamp: &Stamp) -> Relationship {
    Relationship {
        id: id.to_owned(),
        rel_type: new.rel_type,
        from: new.from,
        to: new.to,
        properties: new.properties,
        version: 1,
        created_at: stamp.at.clone(),
        updated_at: stamp.at.clone(),
        created_by: stamp.actor.clone(),
        updated_by: stamp.actor.clone(),
    }
}

/// The current live row, or NotFound; then the precondition.
pub fn live(
    id: &str,
    current: Option<Relationship>,
    expected: Option<i64>,
) -> DomainResult<Relationship> {
    let rel = current.ok_or_else(|| not_found(id))?;
    check_expected(expected, rel.version)?;
    Ok(rel)
}

/// The next state of a patched relationship (`current` as `live` gave it).
pub fn patched(
    mut rel: Relationship,
    patch: &Value,
    rel_type: Option<String>,
    stamp: &Stamp,
) -> DomainResult<Relationship> {
    rel.properties = merged(&rel.properties, patch)?;
    validate::properties(&rel.properties)?;
    if let Some(t) = rel_type {
        rel.rel_type = t;
    }
    Ok(next(rel, stamp))
}

/// The state a delete records (deleted at `stamp`).
pub fn deleted(rel: Relationship, stamp: &Stamp) -> Relationship {
    next(rel, stamp)
}

fn next(mut rel: Relationship, stamp: &Stamp) -> Relationship {
    rel.version += 1;
    rel.updated_at = stamp.at.clone();
    rel.updated_by = stamp.actor.clone();
    rel
}
