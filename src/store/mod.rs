//! Storage: the `Store` trait every backend implements, shaped by the domain.
//! Each call is atomic. Nothing above this module sees SQL or transactions.

pub mod cache;
pub mod cached;
pub mod checked;
pub mod cursor;

pub mod migrate;
pub mod postgres;
pub mod sqlite;

use crate::domain::rules::{self, Stamp};
use crate::domain::*;
use async_trait::async_trait;
use cache::CacheStats;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

/// Write transactions sent again after colliding with concurrent writers
/// (a deadlock, a lock wait given up, a serialisation failure), and those
/// answered 503 because every attempt collided. For `/metrics`.
pub static WRITE_RETRIES: AtomicU64 = AtomicU64::new(0);
pub static WRITES_CONTENDED: AtomicU64 = AtomicU64::new(0);

/// Orgs and projects: the tenants every other row belongs to.
#[async_trait]
pub trait TenancyStore: Send + Sync {
    /// True when no org exists yet (first start).
    async fn is_empty(&self) -> DomainResult<bool>;
    async fn create_org(&self, caller: &Caller, id: &str, name: &str) -> DomainResult<Org>;
    async fn get_org(&self, id: &str) -> DomainResult<Org>;
    async fn list_orgs(&self, page: &PageRequest) -> DomainResult<Page<Org>>;
    /// Erases the org with everything in it, its audit trail included, and
    /// records one `org.delete` event (rules::audit).
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
}

/// API keys: stored hashed, revoked at once everywhere.
#[async_trait]
pub trait KeyStore: Send + Sync {
    async fn create_key(&self, caller: &Caller, key: StoredKey) -> DomainResult<ApiKeyInfo>;
    async fn list_keys(&self, org: &str, page: &PageRequest) -> DomainResult<Page<ApiKeyInfo>>;
    /// Revokes at once; NotFound for a key of another org or already revoked.
    async fn revoke_key(&self, caller: &Caller, org: &str, id: &str) -> DomainResult<()>;
    /// A key by its public id, revoked or not.
    async fn find_key(&self, id: &str) -> DomainResult<Option<StoredKey>>;
    /// Ids of keys revoked by any daemon sharing this store, as they happen
    /// (None when no other daemon can share it).
    fn key_revocations(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        None
    }
}

/// The audit trail, written by every change in its own transaction.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Audit events of an org, newest first.
    async fn list_audit(
        &self,
        org: &str,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> DomainResult<Page<AuditEvent>>;
}

/// Entities and relationships with their history: written together by
/// `write`, read one row, page or version at a time.
#[async_trait]
pub trait EntityStore: Send + Sync {
    /// Applies `ops` in one transaction with their history, outbox and audit
    /// rows: all succeed or none is applied (a failure names the index of the
    /// failing op). `caller` is recorded as the actor.
    async fn write(
        &self,
        scope: &Scope,
        caller: &Caller,
        ops: Vec<WriteOp>,
    ) -> DomainResult<Vec<WriteOutcome>>;
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
    async fn get_relationship(&self, scope: &Scope, id: &str) -> DomainResult<Relationship>;
    async fn list_relationships(
        &self,
        scope: &Scope,
        filter: &RelationshipFilter,
        page: &PageRequest,
    ) -> DomainResult<Page<Relationship>>;
}

/// Walks over the live graph, and Cypher where the backend has an engine.
#[async_trait]
pub trait GraphStore: Send + Sync {
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
    /// A read-only openCypher query over the project's graph.
    async fn cypher(
        &self,
        scope: &Scope,
        query: &str,
        params: &serde_json::Map<String, serde_json::Value>,
    ) -> DomainResult<CypherResult>;
    /// Repairs relationship liveness against the invariant, compares the
    /// project's graph projection with the tables and rebuilds it.
    async fn sync_graph(&self, scope: &Scope) -> DomainResult<GraphSync>;
}

/// Full-text search over live entities.
#[async_trait]
pub trait SearchStore: Send + Sync {
    async fn search_text(
        &self,
        scope: &Scope,
        query: &str,
        entity_type: Option<&str>,
        limit: usize,
    ) -> DomainResult<Vec<SearchHit>>;
}

/// Embeddings of live entities, kept by the embedding consumer, searched
/// by similarity.
#[async_trait]
pub trait VectorStore: Send + Sync {
    /// Stores each entity's vector unless a newer version's is stored.
    async fn put_vectors(
        &self,
        scope: &Scope,
        model: &str,
        vectors: Vec<EntityVector>,
    ) -> DomainResult<()>;
    /// Forgets the vectors of these entities (deleted or purged).
    async fn delete_vectors(&self, scope: &Scope, ids: &[String]) -> DomainResult<()>;
    /// The entities whose `model` vectors are most similar to `query` (a
    /// unit vector), best first, by cosine.
    async fn search_vectors(
        &self,
        scope: &Scope,
        model: &str,
        query: &[f32],
        entity_type: Option<&str>,
        limit: usize,
    ) -> DomainResult<Vec<VectorHit>>;
}

/// The project's change feed: every entity and relationship change, in
/// change-sequence order (the outbox).
#[async_trait]
pub trait ChangeStore: Send + Sync {
    /// Changes after `after` (exclusive), at most `limit`; NotFound for a
    /// missing project.
    async fn list_changes(
        &self,
        scope: &Scope,
        after: i64,
        limit: usize,
    ) -> DomainResult<Vec<Change>>;
    /// Every project's changes after feed position `after`, in feed order,
    /// for the feed's consumers.
    async fn read_feed(&self, after: i64, limit: usize) -> DomainResult<Vec<FeedChange>>;
    /// The oldest and newest positions the feed can be read from now; every
    /// change committed before the call is at or before `head`.
    async fn feed_bounds(&self) -> DomainResult<FeedBounds>;
    /// A consumer's durable cursor (None before its first save).
    async fn feed_cursor(&self, consumer: &str) -> DomainResult<Option<i64>>;
    /// Moves a consumer's cursor forward to `position` (never back).
    async fn save_feed_cursor(&self, consumer: &str, position: i64) -> DomainResult<()>;
    /// Deletes up to `limit` of the oldest changes that every consumer with
    /// a cursor moved since `stale` has passed and that were made before
    /// `before`; returns how many went. The horizon moves past them.
    async fn prune_feed(&self, before: &str, stale: &str, limit: usize) -> DomainResult<u64>;
    /// Leadership of a consumer across every daemon sharing the store; None
    /// while another daemon holds it.
    async fn lease_consumer(&self, consumer: &str) -> DomainResult<Option<Lease>>;
}

/// Runs of scheduled jobs, shared by every daemon on the store, so one
/// daemon runs each scheduled run and any daemon can show the cluster's.
#[async_trait]
pub trait JobStore: Send + Sync {
    /// Records that `daemon` starts `job` now and returns the run's id. A
    /// scheduled run names its `tick` (the schedule's time it is for) and is
    /// claimed once across every daemon: None when another claimed it. A run
    /// on request (`tick` None) always starts. Runs older than
    /// `JOB_RUNS_KEPT_DAYS` go.
    async fn claim_job_run(
        &self,
        job: &str,
        tick: Option<&str>,
        daemon: &str,
    ) -> DomainResult<Option<i64>>;
    /// Records how the run `id` ended.
    async fn finish_job_run(&self, id: i64, ended: &JobRunEnd) -> DomainResult<()>;
    /// Each job's newest finished run.
    async fn last_job_runs(&self) -> DomainResult<Vec<JobRunRecord>>;
    /// Leadership of a job while it runs, across every daemon sharing the
    /// store: a run that outlasts its period is not started again beside it.
    async fn lease_job(&self, job: &str) -> DomainResult<Option<Lease>>;
}

/// How long finished job runs are kept.
pub const JOB_RUNS_KEPT_DAYS: i64 = 7;

/// How a job run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRunEnd {
    pub duration_ms: u64,
    pub ok: bool,
    pub outcome: String,
}

/// A finished job run as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRunRecord {
    pub job: String,
    pub daemon: String,
    pub started_at: String,
    pub end: JobRunEnd,
}

/// Where the feed can be read from: changes at or before `horizon` were
/// pruned; `head` is the newest change readable now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeedBounds {
    pub horizon: i64,
    pub head: i64,
}

/// What a change writes to the outbox: (kind, target id, op, version).
pub type OutboxEntry<'a> = (&'a str, &'a str, &'a str, Option<i64>);

/// The store as of one moment, for exports and backups: one read
/// transaction (SQLite) or one `REPEATABLE READ` read-only transaction
/// (PostgreSQL) held until the snapshot is dropped, so every read through
/// it agrees, while writes go on unblocked. Rows come exactly as stored,
/// history and deleted rows included (`domain::export`).
#[async_trait]
pub trait Snapshot: Send + Sync {
    /// The change sequence when the view was taken: every change the view
    /// holds has a sequence at most this.
    fn seq(&self) -> i64;
    /// Every org, by id.
    async fn orgs(&self) -> DomainResult<Vec<Org>>;
    /// Every project of `org`, by id.
    async fn projects(&self, org: &str) -> DomainResult<Vec<Project>>;
    /// The project's entity rows `which` names, by id, each with all its
    /// versions; NotFound for a missing project.
    async fn entities(
        &self,
        scope: &Scope,
        which: &Which,
    ) -> DomainResult<Vec<export::EntityExport>>;
    /// The project's relationship rows `which` names, by id.
    async fn relationships(
        &self,
        scope: &Scope,
        which: &Which,
    ) -> DomainResult<Vec<export::RelationshipRecord>>;
    /// The project's document rows `which` names, by id.
    async fn docs(&self, scope: &Scope, which: &Which) -> DomainResult<Vec<DocInfo>>;
    /// A document's snapshots, oldest first (the caller reads blob-stored
    /// states from the blob store).
    async fn doc_snapshots(&self, scope: &Scope, doc: &str) -> DomainResult<Vec<DocSnapshot>>;
    /// Up to `limit` of a document's retained updates after `after`, by seq.
    async fn doc_updates(
        &self,
        scope: &Scope,
        doc: &str,
        after: i64,
        limit: usize,
    ) -> DomainResult<Vec<DocUpdate>>;
    /// The ids of the project's documents changed at or after `since` (a
    /// stored time), or at a time not recorded, by id.
    async fn docs_changed(&self, scope: &Scope, since: &str) -> DomainResult<Vec<String>>;
    /// Up to `limit` audit events of every org with ids after `after`, made
    /// at or after `since` when given, by id.
    async fn audit(
        &self,
        after: i64,
        since: Option<&str>,
        limit: usize,
    ) -> DomainResult<Vec<export::AuditRecord>>;
}

/// Which rows a snapshot read returns.
#[derive(Debug, Clone)]
pub enum Which {
    /// A page: the first `limit` rows with ids after this one.
    After(String, usize),
    /// The rows of these ids that exist.
    Ids(Vec<String>),
}

#[async_trait]
pub trait ExportStore: Send + Sync {
    /// A view of the whole store as of now (`Snapshot`).
    async fn snapshot(&self) -> DomainResult<Box<dyn Snapshot>>;
}

/// Exported rows stored again as they are (`rules::import`).
#[async_trait]
pub trait ImportStore: Send + Sync {
    /// Stores each item unless the store holds it already or a newer
    /// version of it, in one transaction with outbox rows for what changed
    /// and one `project.import` audit event; one verdict per item, in
    /// order. Relationships' liveness follows their ends in the store.
    /// `fresh`: the project held nothing when the import started
    /// (`import_start`), so the store may insert without first reading what
    /// it holds; the result is the same either way.
    async fn import(
        &self,
        scope: &Scope,
        caller: &Caller,
        items: Vec<ImportItem>,
        fresh: bool,
    ) -> DomainResult<Vec<Imported>>;
    /// Readies a load into `scope`: true when the project holds no entity
    /// and no relationship (its batches may then be `fresh`). The store may
    /// set up a bulk load here (SQLite defers indexes in an empty store);
    /// `import_finish` completes it, and must follow, after a failed
    /// import too.
    async fn import_start(&self, scope: &Scope) -> DomainResult<bool>;
    /// Completes what `import_start` set up (builds deferred indexes).
    async fn import_finish(&self) -> DomainResult<()>;
    /// Makes the org as exported (its name and creation time) unless it
    /// exists; true when it was made.
    async fn import_org(&self, caller: &Caller, org: &Org) -> DomainResult<bool>;
    /// Makes the project as exported unless it exists (its org must);
    /// true when it was made.
    async fn import_project(&self, caller: &Caller, project: &Project) -> DomainResult<bool>;
    /// Stores audit events as they were, with their ids, unless an event
    /// with the id is stored; how many were stored. New events are numbered
    /// after them.
    async fn import_audit(&self, events: Vec<export::AuditRecord>) -> DomainResult<u64>;
}

/// What importing one item did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub verdict: rules::import::Verdict,
    /// The change sequence of what was stored (0 when nothing was).
    pub seq: i64,
}

/// One checked record of an import.
#[derive(Debug, Clone)]
pub enum ImportItem {
    Entity(export::EntityExport),
    Relationship(export::RelationshipRecord),
    /// A document row; its snapshots and updates come after it.
    Doc(DocInfo),
    DocSnapshot(export::DocSnapshotRecord),
    DocUpdate(export::DocUpdateRecord),
}

/// CRDT documents: Yjs update logs with their snapshots.
#[async_trait]
pub trait DocStore: Send + Sync {
    /// Appends updates to a document's log, creating the document; answers
    /// once durable with the (first, last) sequence numbers given.
    async fn append_updates(
        &self,
        scope: &Scope,
        doc: &str,
        updates: Vec<Vec<u8>>,
        origin: Option<String>,
    ) -> DomainResult<(i64, i64)> {
        let append = DocAppend {
            scope: scope.clone(),
            doc: doc.to_owned(),
            updates,
            origin,
        };
        Ok(self.append_batch(vec![append]).await?[0])
    }
    /// Appends several writers' updates to several documents (each
    /// append's in order, one document's appends in the order given) in one
    /// transaction, creating documents; answers once all are durable with
    /// each append's (first, last) sequence numbers, in the order given.
    /// All or nothing: one refused append refuses the group.
    async fn append_batch(&self, appends: Vec<DocAppend>) -> DomainResult<Vec<(i64, i64)>>;
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
    async fn lease_doc(&self, scope: &Scope, doc: &str) -> DomainResult<Option<Lease>>;
}

/// A whole store: every concern, and the store's own life. Each call is
/// atomic. Callers bring the concern traits into scope with
/// `use crate::store::prelude::*`.
#[async_trait]
pub trait Store:
    TenancyStore
    + KeyStore
    + AuditStore
    + EntityStore
    + ChangeStore
    + JobStore
    + GraphStore
    + SearchStore
    + VectorStore
    + DocStore
    + ExportStore
    + ImportStore
    + 'static
{
    /// A short backend name for logs and health output.
    fn backend(&self) -> &'static str;

    /// Answers when the store can serve reads and writes.
    async fn ping(&self) -> DomainResult<()>;

    /// Answers when the store's Apache AGE graph projection works
    /// (readiness); `None` when this store keeps none.
    async fn ping_age(&self) -> Option<DomainResult<()>> {
        None
    }

    /// Routine upkeep, run by scheduled jobs; returns a one-line summary.
    async fn maintain(&self, task: Maintenance) -> DomainResult<String>;

    /// Finishes what the store has accepted and stops its own threads and
    /// tasks, for shutdown: on SQLite the writer commits its queue and is
    /// joined (after the readers); on PostgreSQL queued change notices are
    /// sent, the listener stops and the pool closes. Calls made after it
    /// answer `unavailable`; a second call does nothing.
    async fn close(&self);

    /// Whether a cache above this store can learn of every write it does
    /// not see itself.
    fn coherence(&self) -> Coherence;

    /// From now on `sink` is told of the writes other daemons make (a store
    /// that is the sole writer has none to tell).
    fn watch_changes(&self, sink: Arc<dyn ChangeSink>);

    /// Hit and miss counts of the entity cache above the backend, for
    /// `/metrics` (zero without one).
    fn cache_stats(&self) -> CacheStats {
        CacheStats::default()
    }

    /// How busy the backend's connections are, for `/metrics`.
    fn runtime_stats(&self) -> RuntimeStats {
        RuntimeStats::default()
    }
}

/// How busy a backend's connections are: the PostgreSQL pool, or the SQLite
/// writer (whichever the backend has).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuntimeStats {
    pub pool: Option<PoolStats>,
    pub writer: Option<WriterStats>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections open now, and how many of them are idle.
    pub open: u64,
    pub idle: u64,
    pub max: u64,
    /// Callers waiting for a connection.
    pub waiting: u64,
}

/// The SQLite writer: writes waiting for it, and the groups it committed
/// (many writes share one transaction and one fsync).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    pub queued: u64,
    pub groups: u64,
    pub grouped_writes: u64,
    pub last_group: u64,
}

/// Every store trait, for `use crate::store::prelude::*`.
pub mod prelude {
    pub use super::{
        AuditStore, ChangeStore, DocStore, EntityStore, ExportStore, GraphStore, ImportStore,
        JobStore, KeyStore, SearchStore, Snapshot, Store, TenancyStore, VectorStore,
    };
}

pub type DynStore = Arc<dyn Store>;

/// Whether an insert made its row (a conflict: it was already there).
pub(crate) fn made<T>(inserted: DomainResult<T>) -> DomainResult<bool> {
    match inserted {
        Ok(_) => Ok(true),
        Err(DomainError::Conflict(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Told of entity changes made by other daemons sharing the store.
pub trait ChangeSink: Send + Sync {
    /// The entity changed (or was erased) at change `seq`.
    fn entity_changed(&self, scope: &Scope, id: &str, seq: i64);
    /// Anything may have changed (a project or org was deleted, or notices
    /// may have been lost).
    fn everything_changed(&self);
}

/// Whether a cache above a store can stay coherent with it.
#[derive(Clone)]
pub enum Coherence {
    /// Every write passes through this daemon (one SQLite file).
    SoleWriter,
    /// Other daemons write too: their changes reach the sink while the flag
    /// is up; while it is down notices may be lost and nothing is cached.
    Watched(Arc<AtomicBool>),
    /// Changes made elsewhere cannot be learnt of: nothing is cached.
    Blind,
}

/// Where and by whom an audited change happened.
pub struct AuditPlace<'a> {
    pub org: &'a str,
    pub project: Option<&'a str>,
    pub caller: &'a Caller,
}

impl<'a> AuditPlace<'a> {
    /// A change to an org itself, or to one of its keys.
    pub fn org(org: &'a str, caller: &'a Caller) -> Self {
        AuditPlace {
            org,
            project: None,
            caller,
        }
    }

    /// A change inside (or to) a project.
    pub fn project(org: &'a str, project: &'a str, caller: &'a Caller) -> Self {
        AuditPlace {
            org,
            project: Some(project),
            caller,
        }
    }

    pub fn scope(scope: &'a Scope, caller: &'a Caller) -> Self {
        AuditPlace::project(&scope.org, &scope.project, caller)
    }
}

/// What one write op runs with, inside its transaction.
pub struct Ctx<'a> {
    pub scope: &'a Scope,
    pub caller: &'a Caller,
    /// The op's audit action.
    pub action: WriteAction,
    /// The one instant and actor every row of the op records.
    pub stamp: Stamp,
}

impl<'a> Ctx<'a> {
    pub fn new(scope: &'a Scope, caller: &'a Caller, op: &WriteOp) -> Self {
        Ctx {
            scope,
            caller,
            action: op.audit_action(),
            stamp: Stamp::now(&caller.key_id),
        }
    }

    /// The key the change is recorded under.
    pub fn actor(&self) -> &str {
        &self.caller.key_id
    }
}

/// Wraps the error of the batch's op at `index`.
pub fn in_batch(index: usize) -> impl Fn(DomainError) -> DomainError {
    move |e| DomainError::InBatch {
        index,
        source: Box::new(e),
    }
}

/// The tables whose rows belong to a project (both backends name their
/// tables alike), children first: deleting a project empties them.
pub const PROJECT_TABLES: &[&str] = &[
    "entities",
    "entity_versions",
    "relationships",
    "outbox",
    "entity_vectors",
    "crdt_updates",
    "crdt_quarantine",
    "crdt_snapshots",
    "crdt_docs",
];

/// Exclusive right to something across every daemon sharing the store (a
/// document's compaction, a feed consumer's leadership); dropping it
/// releases it.
pub struct Lease(Box<dyn LeaseGuard>);

impl Lease {
    pub fn new(guard: impl LeaseGuard + 'static) -> Self {
        Lease(Box::new(guard))
    }

    /// True once the lease can no longer be trusted (the connection holding
    /// it closed): its holder stops and takes it again.
    pub fn is_lost(&self) -> bool {
        self.0.is_lost()
    }
}

/// The names leases are taken under, alike on both backends.
pub mod lease_key {
    use crate::domain::Scope;

    pub fn doc(scope: &Scope, doc: &str) -> String {
        format!("strata-doc/{}/{}/{}", scope.org, scope.project, doc)
    }

    pub fn consumer(name: &str) -> String {
        format!("strata-consumer/{name}")
    }

    pub fn job(name: &str) -> String {
        format!("strata-job/{name}")
    }
}

/// Gone when a feed reader's cursor `after` is older than the horizon:
/// changes it has not seen were pruned (0 starts at the oldest retained).
pub fn passed_horizon(after: i64, horizon: i64) -> DomainResult<()> {
    if after > 0 && after < horizon {
        return Err(DomainError::Gone(format!(
            "changes after {after} are no longer retained (the oldest kept follows {horizon}): start again from 0"
        )));
    }
    Ok(())
}

/// What holds a lease until dropped.
pub trait LeaseGuard: Send + Sync {
    fn is_lost(&self) -> bool {
        false
    }
}

/// A lease with nothing to hold (a store only one daemon can open).
impl LeaseGuard for () {}

/// Upkeep tasks a backend knows how to do.
/// Each backend decides what it does at each rhythm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Maintenance {
    /// Every few minutes (SQLite folds its write-ahead log back).
    Frequent,
    /// Once a day (planner statistics, full-text index merges).
    Daily,
}

/// What opening a store needs besides its URL.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub sqlite: sqlite::SqliteConfig,
    pub postgres: postgres::PgConfig,
    /// Entities the cache above the backend holds (0: no cache).
    pub cache_entries: u64,
}

/// Opens the store named by a database URL and applies pending migrations.
/// Every caller gets the backend behind the entity cache (`cached`), behind
/// `checked::Checked`, which refuses text neither backend can hold before
/// any statement runs.
pub async fn open(url: &str, settings: &Settings) -> anyhow::Result<DynStore> {
    fn stack<S: Store>(backend: S, settings: &Settings) -> DynStore {
        let cached = cached::CachedStore::new(backend, settings.cache_entries);
        Arc::new(checked::Checked(cached))
    }
    if let Some(path) = url.strip_prefix("sqlite://") {
        let backend = sqlite::SqliteStore::open(path, &settings.sqlite)?;
        return Ok(stack(backend, settings));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let backend = postgres::PgStore::open(url, &settings.postgres).await?;
        return Ok(stack(backend, settings));
    }
    anyhow::bail!("STRATA_DATABASE_URL must start with sqlite:// or postgres:// (got {url:?})")
}
