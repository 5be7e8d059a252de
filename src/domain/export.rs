//! The export format: one JSON object per line (NDJSON), each a stored row
//! of a project as it is, history included, so a project moves between
//! stores (and backends) without losing a version. `kind` names the row.
//! An org's export starts with its `org` line. A project's lines come in
//! this order: its `project` line, then each
//! entity (by id) followed by its `version` lines (by version), then its
//! relationships (by id). Deleted entities and relationships are included.

use super::{Entity, Org, Relationship, VersionOp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ExportRecord {
    /// An org; in org exports and backups, before the org's projects.
    Org(Org),
    Project(ProjectRecord),
    Entity(Entity),
    Version(VersionRecord),
    Relationship(RelationshipRecord),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ProjectRecord {
    pub org: String,
    pub id: String,
    pub name: String,
    pub created_at: String,
}

/// One stored version of an entity. `patch` is the JSON Merge Patch
/// (RFC 7386) from the `parent` version's properties (the full properties
/// when there is no parent); `snapshot`, when present, is the version's
/// full properties, and `chain` counts the patches since the nearest
/// snapshot along the parents.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct VersionRecord {
    pub entity: String,
    pub version: i64,
    #[schema(required = true)]
    pub parent: Option<i64>,
    pub op: VersionOp,
    #[serde(rename = "type")]
    pub entity_type: String,
    pub deleted: bool,
    pub actor: String,
    pub at: String,
    #[schema(value_type = Object)]
    pub patch: Value,
    #[schema(value_type = Option<Object>)]
    pub snapshot: Option<Value>,
    pub chain: i64,
}

/// A relationship row, deleted or not.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct RelationshipRecord {
    #[serde(flatten)]
    pub relationship: Relationship,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub deleted_at: Option<String>,
}

/// An entity row with every version row it has, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityExport {
    pub entity: Entity,
    pub versions: Vec<VersionRecord>,
}
