//! Storage: the `Store` trait every backend implements, shaped by the domain.
//! Each call is atomic. Nothing above this module sees SQL or transactions.

pub mod cache;
pub mod checked;
pub mod cursor;

pub mod migrate;
pub mod postgres;
pub mod sqlite;

use crate::domain::*;
use async_trait::async_trait;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// Write transactions sent again after colliding with concurrent writers
/// (a deadlock, a lock wait given up, a serialisation failure), and those
/// answered 503 because every attempt collided. For `/metrics`.
pub static WRITE_RETRIES: AtomicU64 = AtomicU64::new(0);
pub static WRITES_CONTENDED: AtomicU64 = AtomicU64::new(0);

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A short backend name for logs and health output.
    fn backend(&self) -> &'static str;

    /// Answers when the store can serve reads and writes.
    async fn ping(&self) -> DomainResult<()>;

    /// True when no org exists yet (first start).
    async fn is_empty(&self) -> DomainResult<bool>;

    // Tenancy.
    async fn create_org(&self, caller: &Caller, id: &str, name: &str) -> DomainResult<Org>;
    async fn get_org(&self, id: &str) -> DomainResult<Org>;
    async fn list_orgs(&self, page: &PageRequest) -> DomainResult<Page<Org>>;
    async fn delete_org(&self, caller: &Caller, id: &str) -> DomainResult<()>;
    async fn create_project(
        &self,
        caller: &Caller,
        org: &str,
        id: &str,
        name: &str,
    ) -> DomainResult<Project>;
    async fn get_project(&self, org: &str, id: &str) -> DomainResult<Project>;
    async fn list_projects(&self, org: &str, page: &PageRequest) -> DomainResult<Page<Project>>;
    async fn delete_project(&self, caller: &Caller, org: &str, id: &str) -> DomainResult<()>;

    /// Applies `ops` in one transaction with their history, outbox and audit
    /// rows: all succeed or none is applied (a failure names the index of the
    /// failing op). `caller` is recorded as the actor.
    async fn write(
        &self,
        scope: &Scope,
        caller: &Caller,
        ops: Vec<WriteOp>,
    ) -> DomainResult<Vec<WriteOutcome>>;

    // Entities.
    async fn get_entity(&self, scope: &Scope, id: &str, read: &EntityRead) -> DomainResult<Entity>;
    async fn list_entities(
        &self,
        scope: &Scope,
        filter: &EntityFilter,
        page: &PageRequest,
    ) -> DomainResult<Page<Entity>>;
    async fn list_versions(
        &self,
        scope: &Scope,
        id: &str,
        page: &PageRequest,
    ) -> DomainResult<Page<VersionInfo>>;

    // Relationships.
    async fn get_relationship(&self, scope: &Scope, id: &str) -> DomainResult<Relationship>;
    async fn list_relationships(
        &self,
        scope: &Scope,
        filter: &RelationshipFilter,
        page: &PageRequest,
    ) -> DomainResult<Page<Relationship>>;

    // Graph.
    /// Every live node within `max_depth` hops of the start, each at its
    /// shortest depth, and the edges walked between them.
    async fn traverse(&self, scope: &Scope, t: &Traversal) -> DomainResult<Subgraph>;
    /// The live edges touching any of `nodes` in `direction` (one BFS
    /// level), ids and ends only: a search reads whole rows for the path it
    /// keeps, not for every edge it looks at.
    async fn expand(
        &self,
        scope: &Scope,
        nodes: &[String],
        direction: Direction,
        types: &[String],
    ) -> DomainResult<Vec<EdgeRef>>;
    /// Node headers (id, type) for live entities among `ids`, in any order.
    async fn node_headers(
        &self,
        scope: &Scope,
        ids: &[String],
        include_properties: bool,
    ) -> DomainResult<Vec<GraphNode>>;

    // Search.
    async fn search_text(
        &self,
        scope: &Scope,
        query: &str,
        entity_type: Option<&str>,
        limit: usize,
    ) -> DomainResult<Vec<SearchHit>>;

    // API keys and audit.
    async fn create_key(&self, caller: &Caller, key: StoredKey) -> DomainResult<ApiKeyInfo>;
    async fn list_keys(&self, org: &str, page: &PageRequest) -> DomainResult<Page<ApiKeyInfo>>;
    /// Revokes at once; NotFound for a key of another org or already revoked.
    async fn revoke_key(&self, caller: &Caller, org: &str, id: &str) -> DomainResult<()>;
    /// A key by its public id, revoked or not.
    async fn find_key(&self, id: &str) -> DomainResult<Option<StoredKey>>;
    /// Audit events of an org, newest first.
    async fn list_audit(
        &self,
        org: &str,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> DomainResult<Page<AuditEvent>>;

    // CRDT documents (Yjs update logs).
    /// Appends updates to a document's log, creating the document; answers
    /// once durable with the (first, last) sequence numbers given.
    async fn append_updates(
        &self,
        scope: &Scope,
        doc: &str,
        updates: Vec<Vec<u8>>,
        origin: Option<String>,
    ) -> DomainResult<(i64, i64)>;
    /// A document; NotFound when never written or when its entity is deleted.
    async fn get_doc(&self, scope: &Scope, doc: &str) -> DomainResult<DocInfo>;
    /// Creates a document (if absent) and links it to an entity (or unlinks).
    async fn put_doc(
        &self,
        scope: &Scope,
        caller: &Caller,
        doc: &str,
        entity_id: Option<String>,
    ) -> DomainResult<DocInfo>;
    /// Erases a document; returns the blob keys its snapshots used.
    async fn delete_doc(
        &self,
        scope: &Scope,
        caller: &Caller,
        doc: &str,
    ) -> DomainResult<Vec<String>>;
    /// The newest snapshot and retained updates that rebuild the state now,
    /// or as of a time (Gone when retained history no longer reaches it).
    async fn doc_log(&self, scope: &Scope, doc: &str, as_of: Option<&str>) -> DomainResult<DocLog>;
    async fn list_doc_updates(
        &self,
        scope: &Scope,
        doc: &str,
        after: i64,
        limit: usize,
    ) -> DomainResult<Vec<DocUpdate>>;
    async fn list_snapshots(&self, scope: &Scope, doc: &str) -> DomainResult<Vec<DocSnapshot>>;
    /// Records a snapshot (idempotent for the same `covers_seq`).
    async fn record_snapshot(
        &self,
        scope: &Scope,
        caller: &Caller,
        doc: &str,
        snapshot: DocSnapshot,
    ) -> DomainResult<()>;
    /// Deletes updates covered by the newest snapshot and older than
    /// `updates_before`, and snapshots older than `snapshots_before` except
    /// the newest; returns the blob keys no longer referenced.
    async fn prune_doc(
        &self,
        scope: &Scope,
        doc: &str,
        updates_before: &str,
        snapshots_before: &str,
    ) -> DomainResult<Vec<String>>;
    /// Moves stored updates that no longer pass the update check out of the
    /// log into quarantine (kept, never merged again); returns how many moved.
    async fn quarantine_updates(
        &self,
        scope: &Scope,
        doc: &str,
        seqs: &[i64],
        reason: &str,
    ) -> DomainResult<usize>;
    /// Documents whose log has updates no snapshot covers yet.
    async fn docs_to_compact(&self, limit: usize) -> DomainResult<Vec<(Scope, String)>>;
    /// Exclusive right to compact a document, across every daemon sharing the
    /// store, until the lease is dropped (or its holder dies); None when
    /// another holds it.
    async fn lease_doc(&self, scope: &Scope, doc: &str) -> DomainResult<Option<DocLease>>;

    /// A read-only openCypher query over the project's graph.
    async fn cypher(
        &self,
        _scope: &Scope,
        _query: &str,
        _params: &serde_json::Map<String, serde_json::Value>,
    ) -> DomainResult<CypherResult> {
        Err(DomainError::NotImplemented(format!(
            "the {} backend has no Cypher engine; use the graph endpoints, or server mode with Apache AGE",
            self.backend()
        )))
    }

    /// Repairs relationship liveness against the invariant, compares the
    /// project's graph projection with the tables and rebuilds it.
    async fn sync_graph(&self, _scope: &Scope) -> DomainResult<GraphSync> {
        Err(DomainError::NotImplemented(format!(
            "the {} backend keeps no graph projection",
            self.backend()
        )))
    }

    /// Routine upkeep, run by scheduled jobs; returns a one-line summary.
    async fn maintain(&self, task: Maintenance) -> DomainResult<String>;

    /// Finishes what the store has accepted and stops its own threads and
    /// tasks, for shutdown: on SQLite the writer commits its queue and is
    /// joined (after the readers); on PostgreSQL queued change notices are
    /// sent, the listener stops and the pool closes. Calls made after it
    /// answer `unavailable`; a second call does nothing.
    async fn close(&self);

    /// Ids of keys revoked by any daemon sharing this store, as they happen
    /// (None when the backend has no such feed).
    fn key_revocations(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        None
    }

    /// Hit and miss counts of the entity cache, for `/metrics`.
    fn cache_stats(&self) -> cache::CacheStats;
}

pub type DynStore = Arc<dyn Store>;

/// The audit event of an applied op: (action, target, details). Purges keep
/// the event, never the purged content.
pub fn audit_event(
    op_action: WriteAction,
    outcome: &WriteOutcome,
) -> (&'static str, String, serde_json::Value) {
    use serde_json::json;
    let op_action = op_action.as_str();
    match outcome {
        WriteOutcome::Entity { entity, created } => (
            if *created {
                WriteAction::EntityCreate.as_str()
            } else {
                op_action
            },
            entity.id.clone(),
            json!({ "version": entity.version, "type": entity.entity_type }),
        ),
        WriteOutcome::Relationship(r) => (
            op_action,
            r.id.clone(),
            json!({ "version": r.version, "type": r.rel_type, "from": r.from, "to": r.to }),
        ),
        WriteOutcome::Deleted { id } | WriteOutcome::Purged { id, .. } => {
            (op_action, id.clone(), json!({}))
        }
    }
}

/// Deleted entities read as absent unless asked for.
pub(crate) fn visible(e: &Entity, include_deleted: bool, id: &str) -> DomainResult<()> {
    if e.deleted_at.is_some() && !include_deleted {
        return Err(DomainError::not_found(format!("entity {id}")));
    }
    Ok(())
}

/// Held while compacting a document; dropping it releases the document.
pub struct DocLease(#[allow(dead_code)] Box<dyn Send + Sync>);

impl DocLease {
    pub fn new(guard: impl Send + Sync + 'static) -> Self {
        DocLease(Box::new(guard))
    }
}

/// Upkeep tasks a backend knows how to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Maintenance {
    /// Fold the write-ahead log back into the database file.
    Checkpoint,
    /// Refresh planner statistics and merge full-text index segments.
    Optimize,
}

/// Opens the store named by a database URL and applies pending migrations.
/// Every caller gets the backend behind `checked::Checked`, which refuses
/// text neither backend can hold before any statement runs.
pub async fn open(config: &crate::config::Config) -> anyhow::Result<DynStore> {
    let url = &config.database_url;
    if let Some(path) = url.strip_prefix("sqlite://") {
        let store = sqlite::SqliteStore::open(path, &config.sqlite, config.cache_entries)?;
        return Ok(Arc::new(checked::Checked(store)));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = postgres::PgStore::open(url, &config.postgres, config.cache_entries).await?;
        return Ok(Arc::new(checked::Checked(store)));
    }
    anyhow::bail!("STRATA_DATABASE_URL must start with sqlite:// or postgres:// (got {url:?})")
}
