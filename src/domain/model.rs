use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub type Properties = Map<String, Value>;

/// The tenant a call acts in: every stored row carries both ids and every
/// query is filtered by them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    pub org: String,
    pub project: String,
}

impl Scope {
    pub fn new(org: impl Into<String>, project: impl Into<String>) -> Self {
        Scope {
            org: org.into(),
            project: project.into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Org {
    pub id: String,
    pub name: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Project {
    pub id: String,
    pub org: String,
    pub name: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Entity {
    pub id: String,
    #[serde(rename = "type")]
    pub entity_type: String,
    #[schema(value_type = Object)]
    pub properties: Properties,
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
    pub created_by: String,
    pub updated_by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<String>,
    /// Change sequence of the write that made this state (not in the API).
    #[serde(skip)]
    pub change_seq: i64,
}

/// One entry of a project's change feed (the outbox).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Change {
    /// The change sequence: global, increasing, the feed's order and cursor.
    pub seq: i64,
    /// `entity` or `relationship`.
    pub kind: String,
    pub id: String,
    /// `create`, `update`, `replace`, `delete`, `restore`, `revert` or `purge`.
    pub op: String,
    /// The version the change made; null for a purge.
    #[schema(required = true)]
    pub version: Option<i64>,
    pub at: String,
}

/// An entity's embedding, as the embedding consumer stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityVector {
    pub id: String,
    pub entity_type: String,
    /// The version whose text was embedded.
    pub version: i64,
    /// L2-normalised.
    pub vector: Vec<f32>,
}

/// An entity found by similarity: its id and cosine similarity.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorHit {
    pub id: String,
    pub score: f32,
}

/// One change as the feed's consumers see it: the project it belongs to and
/// the change, whose `seq` is its feed position (commit order on both
/// backends).
#[derive(Debug, Clone)]
pub struct FeedChange {
    pub scope: Scope,
    pub change: Change,
}

/// A live edge as a search step sees it: its id and its ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeRef {
    pub id: String,
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Relationship {
    pub id: String,
    #[serde(rename = "type")]
    pub rel_type: String,
    pub from: String,
    pub to: String,
    #[schema(value_type = Object)]
    pub properties: Properties,
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
    pub created_by: String,
    pub updated_by: String,
}

/// What kind of change made a version.
#[derive(
    Debug,
    Clone,
    Copy,
    Serialize,
    Deserialize,
    PartialEq,
    Eq,
    utoipa::ToSchema,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum VersionOp {
    Create,
    Update,
    Replace,
    Delete,
    Restore,
    Revert,
}

impl VersionOp {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(s: &str) -> Option<Self> {
        s.parse().ok()
    }
}

/// One row of an entity's history, as listed by the versions endpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct VersionInfo {
    pub version: i64,
    pub parent_version: Option<i64>,
    pub op: VersionOp,
    pub actor: String,
    pub at: String,
    /// JSON merge patch from the parent's properties to this version's.
    #[schema(value_type = Object)]
    pub patch: Value,
}

/// How to read one entity.
#[derive(Debug, Clone, Default)]
pub struct EntityRead {
    pub version: Option<i64>,
    pub as_of: Option<String>,
    pub include_deleted: bool,
}

/// One page request: an opaque cursor from the previous page and a size.
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub cursor: Option<String>,
    pub limit: usize,
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct EntityFilter {
    pub entity_type: Option<String>,
    /// Containment: properties must contain this JSON object.
    pub contains: Option<Properties>,
    pub updated_since: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct RelationshipFilter {
    pub from: Option<String>,
    pub to: Option<String>,
    pub rel_type: Option<String>,
}

/// A write, as the single-resource routes and the batch route express it.
/// A store applies a list of these atomically.
#[derive(Debug, Clone)]
pub enum WriteOp {
    CreateEntity {
        id: String,
        entity_type: String,
        properties: Properties,
    },
    /// PUT: replace, or create when absent.
    PutEntity {
        id: String,
        entity_type: String,
        properties: Properties,
        expected_version: Option<i64>,
    },
    PatchEntity {
        id: String,
        patch: Value,
        entity_type: Option<String>,
        expected_version: Option<i64>,
    },
    DeleteEntity {
        id: String,
        expected_version: Option<i64>,
    },
    PurgeEntity {
        id: String,
    },
    RestoreEntity {
        id: String,
    },
    RevertEntity {
        id: String,
        to_version: i64,
        expected_version: Option<i64>,
    },
    CreateRelationship {
        id: String,
        rel_type: String,
        from: String,
        to: String,
        properties: Properties,
    },
    PatchRelationship {
        id: String,
        patch: Value,
        rel_type: Option<String>,
        expected_version: Option<i64>,
    },
    DeleteRelationship {
        id: String,
        expected_version: Option<i64>,
    },
}

impl WriteOp {
    /// The audit trail's name for this kind of write.
    pub fn audit_action(&self) -> WriteAction {
        match self {
            WriteOp::CreateEntity { .. } => WriteAction::EntityCreate,
            WriteOp::PutEntity { .. } => WriteAction::EntityReplace,
            WriteOp::PatchEntity { .. } => WriteAction::EntityUpdate,
            WriteOp::DeleteEntity { .. } => WriteAction::EntityDelete,
            WriteOp::PurgeEntity { .. } => WriteAction::EntityPurge,
            WriteOp::RestoreEntity { .. } => WriteAction::EntityRestore,
            WriteOp::RevertEntity { .. } => WriteAction::EntityRevert,
            WriteOp::CreateRelationship { .. } => WriteAction::RelationshipCreate,
            WriteOp::PatchRelationship { .. } => WriteAction::RelationshipUpdate,
            WriteOp::DeleteRelationship { .. } => WriteAction::RelationshipDelete,
        }
    }
}

/// What an applied `WriteOp` did, as the audit trail names it. Code that
/// depends on the kind of write matches on this, never on the name.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString, strum::VariantArray,
)]
pub enum WriteAction {
    #[strum(serialize = "entity.create")]
    EntityCreate,
    #[strum(serialize = "entity.replace")]
    EntityReplace,
    #[strum(serialize = "entity.update")]
    EntityUpdate,
    #[strum(serialize = "entity.delete")]
    EntityDelete,
    #[strum(serialize = "entity.purge")]
    EntityPurge,
    #[strum(serialize = "entity.restore")]
    EntityRestore,
    #[strum(serialize = "entity.revert")]
    EntityRevert,
    #[strum(serialize = "relationship.create")]
    RelationshipCreate,
    #[strum(serialize = "relationship.update")]
    RelationshipUpdate,
    #[strum(serialize = "relationship.delete")]
    RelationshipDelete,
}

impl WriteAction {
    /// The stored `audit_events.action` (part of the public contract).
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The result of one applied `WriteOp`.
#[derive(Debug, Clone)]
pub enum WriteOutcome {
    Entity {
        entity: Entity,
        created: bool,
    },
    Relationship(Relationship),
    Deleted {
        id: String,
    },
    /// Erased for good at change sequence `seq`, with its documents
    /// (`docs`); `blobs` are their snapshot blobs, to delete from the blob
    /// store.
    Purged {
        id: String,
        seq: i64,
        docs: Vec<String>,
        blobs: Vec<String>,
    },
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString, strum::VariantArray,
)]
#[strum(serialize_all = "lowercase")]
pub enum Direction {
    Out,
    In,
    Both,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(s: &str) -> Option<Self> {
        s.parse().ok()
    }
}

/// A bounded walk from one entity.
#[derive(Debug, Clone)]
pub struct Traversal {
    pub start: String,
    pub direction: Direction,
    /// Empty means every relationship type.
    pub types: Vec<String>,
    pub max_depth: u32,
    pub limit: usize,
    pub include_properties: bool,
}

impl Traversal {
    /// One level of a breadth-first walk: records the nodes of `found` not
    /// yet seen at `depth` and returns them, the next frontier. When the
    /// level would pass `limit`, its smallest ids are kept, so a walk's
    /// answer is its first `limit` nodes by depth, then id.
    pub fn admit_level(
        &self,
        depths: &mut std::collections::HashMap<String, u32>,
        found: impl IntoIterator<Item = String>,
        depth: u32,
    ) -> Vec<String> {
        let mut new: Vec<String> = found
            .into_iter()
            .filter(|id| !depths.contains_key(id))
            .collect();
        new.sort_unstable();
        new.dedup();
        new.truncate(self.limit.saturating_sub(depths.len()));
        for id in &new {
            depths.insert(id.clone(), depth);
        }
        new
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct GraphNode {
    pub id: String,
    #[serde(rename = "type")]
    pub node_type: String,
    pub depth: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub properties: Option<Properties>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Default, utoipa::ToSchema)]
pub struct Subgraph {
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<Relationship>,
}

/// A scored full-text match.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SearchHit {
    pub entity: Entity,
    pub score: f64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub highlights: Vec<String>,
}

/// What an API key may do in its org. Each level implies the ones below.
#[derive(
    Debug,
    Clone,
    Copy,
    Serialize,
    Deserialize,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    utoipa::ToSchema,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum KeyScope {
    Read,
    Write,
    Admin,
}

impl KeyScope {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// An API key as listed (never with its secret).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ApiKeyInfo {
    pub id: String,
    pub org: String,
    pub name: String,
    pub scopes: Vec<KeyScope>,
    /// The projects of the org the key may reach; absent: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projects: Option<Vec<String>>,
    pub created_at: String,
    pub created_by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

/// An API key with the hash its secret is checked against.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub info: ApiKeyInfo,
    pub secret_hash: String,
}

/// Who performs a write and from where: recorded in history and audit.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub key_id: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// Replaying a store's own rows (a restore): its writes add nothing to
    /// the audit trail, which is restored as it was.
    pub replay: bool,
}

impl Caller {
    pub fn new(key_id: impl Into<String>) -> Self {
        Caller {
            key_id: key_id.into(),
            ..Default::default()
        }
    }

    /// A caller whose writes replay another store's rows (`replay`).
    pub fn replaying(key_id: impl Into<String>) -> Self {
        Caller {
            replay: true,
            ..Caller::new(key_id)
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct AuditEvent {
    pub id: String,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub project: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    #[schema(value_type = Object)]
    pub details: Value,
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub action: Option<String>,
    pub target: Option<String>,
}

/// The answer of a read-only Cypher query: plain JSON values.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct CypherResult {
    pub columns: Vec<String>,
    #[schema(value_type = Vec<Vec<Object>>)]
    pub rows: Vec<Vec<Value>>,
}

/// How a project's AGE graph differed from its tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct GraphDrift {
    /// Live entities without a vertex.
    pub missing_vertices: u64,
    /// Vertices without a live entity, or a second vertex of one.
    pub stray_vertices: u64,
    /// Live relationships without an edge between their ends.
    pub missing_edges: u64,
    /// Edges without a live relationship, with other ends, or repeated.
    pub stray_edges: u64,
    /// Edges whose start or end vertex is gone (invisible to MATCH).
    pub dangling_edges: u64,
}

impl GraphDrift {
    pub fn is_none(&self) -> bool {
        *self == GraphDrift::default()
    }
}

/// What `sync_graph` found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GraphSync {
    /// Relationships marked live with an end that is not (now hidden).
    pub relationships_hidden: u64,
    /// Undeleted relationships with both ends live that were hidden (now live).
    pub relationships_revived: u64,
    /// The graph against the repaired tables, before the rebuild.
    pub before: GraphDrift,
    /// The same comparison after the rebuild: none when they agree.
    pub after: GraphDrift,
    pub vertices: u64,
    pub edges: u64,
}

impl GraphSync {
    /// Whether the sync had anything to repair.
    pub fn repaired_anything(&self) -> bool {
        self.relationships_hidden + self.relationships_revived > 0 || !self.before.is_none()
    }
}

/// One stored Yjs update of a document's log.
#[derive(Debug, Clone, PartialEq)]
pub struct DocUpdate {
    pub seq: i64,
    pub bytes: Vec<u8>,
    pub origin: Option<String>,
    pub at: String,
}

/// Updates for one document from one writer, to be appended in order.
#[derive(Debug, Clone, PartialEq)]
pub struct DocAppend {
    pub scope: Scope,
    pub doc: String,
    pub updates: Vec<Vec<u8>>,
    pub origin: Option<String>,
}

/// Where a snapshot's bytes are: in the database, or in the blob store.
#[derive(Debug, Clone, PartialEq)]
pub enum SnapshotData {
    Inline(Vec<u8>),
    Blob(String),
}

/// A compacted state of a document: every update up to `covers_seq`.
#[derive(Debug, Clone, PartialEq)]
pub struct DocSnapshot {
    pub covers_seq: i64,
    /// Time of the update at `covers_seq`: the state is the state as of then.
    pub covers_at: String,
    pub created_at: String,
    pub size: i64,
    pub sha256: String,
    pub data: SnapshotData,
}

/// What is needed to rebuild a document: the newest usable snapshot and the
/// retained updates after it.
#[derive(Debug, Clone, PartialEq)]
pub struct DocLog {
    pub snapshot: Option<DocSnapshot>,
    pub updates: Vec<DocUpdate>,
    /// The last sequence number the state includes.
    pub last_seq: i64,
}

/// A document row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DocInfo {
    pub id: String,
    pub entity_id: Option<String>,
    pub created_at: String,
    pub last_seq: i64,
    /// Updates with seq ≤ this were removed from the log (a snapshot covers them).
    pub pruned_through: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::VariantArray;

    /// Every name parses back to its variant, and serde (the JSON form)
    /// spells it the same way where the type is serialised.
    #[test]
    fn every_variant_round_trips_through_its_name() {
        for &op in VersionOp::VARIANTS {
            assert_eq!(VersionOp::parse(op.as_str()), Some(op));
            assert_eq!(serde_json::to_value(op).unwrap(), op.as_str());
        }
        for &action in WriteAction::VARIANTS {
            assert_eq!(action.as_str().parse::<WriteAction>(), Ok(action));
        }
        for &direction in Direction::VARIANTS {
            assert_eq!(Direction::parse(direction.as_str()), Some(direction));
        }
        for &scope in KeyScope::VARIANTS {
            assert_eq!(scope.as_str().parse::<KeyScope>(), Ok(scope));
            assert_eq!(serde_json::to_value(scope).unwrap(), scope.as_str());
        }
        assert_eq!(WriteAction::EntityCreate.as_str(), "entity.create");
        assert_eq!(
            WriteAction::RelationshipDelete.as_str(),
            "relationship.delete"
        );
        assert_eq!(VersionOp::parse("Create"), None);
        assert_eq!(Direction::parse("sideways"), None);
    }
}
