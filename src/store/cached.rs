//! The entity cache as a layer around any backend: current entity states
//! are served from memory, kept by every write that passes through and
//! evicted by the changes other daemons make (`Store::watch_changes`).
//! Backends know nothing of it. Everything but entity reads and writes,
//! and the tenancy deletes that empty it, passes straight through.

use super::cache::{CacheStats, EntityCache};
use super::prelude::*;
use super::{ChangeSink, Coherence, FeedBounds, JobRunEnd, JobRunRecord, Lease, Maintenance};
use crate::domain::rules::entities::visible;
use crate::domain::*;
use async_trait::async_trait;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How long a cached entity may be served without a fresh read when other
/// daemons write too: the bound on staleness if one dies between a commit
/// and its notice.
const SHARED_TTL: Duration = Duration::from_secs(10);

pub struct CachedStore<S> {
    inner: S,
    cache: Arc<EntityCache>,
    coherence: Coherence,
}

impl ChangeSink for EntityCache {
    fn entity_changed(&self, scope: &Scope, id: &str, seq: i64) {
        self.tombstone(scope, id, seq);
    }

    fn everything_changed(&self) {
        self.clear();
    }
}

impl<S: Store> CachedStore<S> {
    /// A cache of `capacity` entities over `inner` (0 turns caching off).
    pub fn new(inner: S, capacity: u64) -> Self {
        let coherence = match inner.coherence() {
            _ if capacity == 0 => Coherence::Blind,
            coherence => coherence,
        };
        let ttl = matches!(coherence, Coherence::Watched(_)).then_some(SHARED_TTL);
        let cache = Arc::new(EntityCache::new(capacity, ttl));
        inner.watch_changes(cache.clone());
        CachedStore {
            inner,
            cache,
            coherence,
        }
    }

    /// Whether states may be served from (and put into) the cache now.
    fn caching(&self) -> bool {
        match &self.coherence {
            Coherence::SoleWriter => true,
            Coherence::Watched(live) => live.load(Ordering::Acquire),
            Coherence::Blind => false,
        }
    }
}

#[async_trait]
impl<S: Store> EntityStore for CachedStore<S> {
    async fn write(
        &self,
        scope: &Scope,
        caller: &Caller,
        ops: Vec<WriteOp>,
    ) -> DomainResult<Vec<WriteOutcome>> {
        let outcomes = self.inner.write(scope, caller, ops).await?;
        for outcome in &outcomes {
            match outcome {
                WriteOutcome::Entity { entity, .. } => {
                    self.cache.offer(scope, Arc::new(entity.clone()))
                }
                WriteOutcome::Purged { id, seq, .. } => self.cache.tombstone(scope, id, *seq),
                _ => {}
            }
        }
        Ok(outcomes)
    }

    async fn get_entity(&self, scope: &Scope, id: &str, read: &EntityRead) -> DomainResult<Entity> {
        let current = read.version.is_none() && read.as_of.is_none();
        if !current || !self.caching() {
            return self.inner.get_entity(scope, id, read).await;
        }
        if let Some(e) = self.cache.get(scope, id) {
            return visible((*e).clone(), read);
        }
        // Read deleted states too, so that they are cached as well.
        let any = EntityRead {
            include_deleted: true,
            ..read.clone()
        };
        let entity = self.inner.get_entity(scope, id, &any).await?;
        self.cache.offer(scope, Arc::new(entity.clone()));
        visible(entity, read)
    }

    async fn list_entities(
        &self,
        scope: &Scope,
        filter: &EntityFilter,
        page: &PageRequest,
    ) -> DomainResult<Page<Entity>> {
        self.inner.list_entities(scope, filter, page).await
    }

    async fn list_versions(
        &self,
        scope: &Scope,
        id: &str,
        page: &PageRequest,
    ) -> DomainResult<Page<VersionInfo>> {
        self.inner.list_versions(scope, id, page).await
    }

    async fn get_relationship(&self, scope: &Scope, id: &str) -> DomainResult<Relationship> {
        self.inner.get_relationship(scope, id).await
    }

    async fn list_relationships(
        &self,
        scope: &Scope,
        filter: &RelationshipFilter,
        page: &PageRequest,
    ) -> DomainResult<Page<Relationship>> {
        self.inner.list_relationships(scope, filter, page).await
    }
}

#[async_trait]
impl<S: Store> JobStore for CachedStore<S> {
    async fn claim_job_run(
        &self,
        job: &str,
        tick: Option<&str>,
        daemon: &str,
    ) -> DomainResult<Option<i64>> {
        self.inner.claim_job_run(job, tick, daemon).await
    }

    async fn finish_job_run(&self, id: i64, ended: &JobRunEnd) -> DomainResult<()> {
        self.inner.finish_job_run(id, ended).await
    }

    async fn last_job_runs(&self) -> DomainResult<Vec<JobRunRecord>> {
        self.inner.last_job_runs().await
    }

    async fn lease_job(&self, job: &str) -> DomainResult<Option<Lease>> {
        self.inner.lease_job(job).await
    }
}

#[async_trait]
impl<S: Store> ChangeStore for CachedStore<S> {
    async fn list_changes(
        &self,
        scope: &Scope,
        after: i64,
        limit: usize,
    ) -> DomainResult<Vec<Change>> {
        self.inner.list_changes(scope, after, limit).await
    }

    async fn read_feed(&self, after: i64, limit: usize) -> DomainResult<Vec<FeedChange>> {
        self.inner.read_feed(after, limit).await
    }

    async fn feed_bounds(&self) -> DomainResult<FeedBounds> {
        self.inner.feed_bounds().await
    }

    async fn feed_cursor(&self, consumer: &str) -> DomainResult<Option<i64>> {
        self.inner.feed_cursor(consumer).await
    }

    async fn save_feed_cursor(&self, consumer: &str, position: i64) -> DomainResult<()> {
        self.inner.save_feed_cursor(consumer, position).await
    }

    async fn prune_feed(&self, before: &str, stale: &str, limit: usize) -> DomainResult<u64> {
        self.inner.prune_feed(before, stale, limit).await
    }

    async fn lease_consumer(&self, consumer: &str) -> DomainResult<Option<Lease>> {
        self.inner.lease_consumer(consumer).await
    }
}

#[async_trait]
impl<S: Store> TenancyStore for CachedStore<S> {
    async fn is_empty(&self) -> DomainResult<bool> {
        self.inner.is_empty().await
    }

    async fn create_org(&self, caller: &Caller, id: &str, name: &str) -> DomainResult<Org> {
        self.inner.create_org(caller, id, name).await
    }

    async fn get_org(&self, id: &str) -> DomainResult<Org> {
        self.inner.get_org(id).await
    }

    async fn list_orgs(&self, page: &PageRequest) -> DomainResult<Page<Org>> {
        self.inner.list_orgs(page).await
    }

    async fn delete_org(&self, caller: &Caller, id: &str) -> DomainResult<()> {
        self.inner.delete_org(caller, id).await?;
        self.cache.clear();
        Ok(())
    }

    async fn create_project(
        &self,
        caller: &Caller,
        org: &str,
        id: &str,
        name: &str,
    ) -> DomainResult<Project> {
        self.inner.create_project(caller, org, id, name).await
    }

    async fn get_project(&self, org: &str, id: &str) -> DomainResult<Project> {
        self.inner.get_project(org, id).await
    }

    async fn list_projects(&self, org: &str, page: &PageRequest) -> DomainResult<Page<Project>> {
        self.inner.list_projects(org, page).await
    }

    async fn delete_project(&self, caller: &Caller, org: &str, id: &str) -> DomainResult<()> {
        self.inner.delete_project(caller, org, id).await?;
        self.cache.clear();
        Ok(())
    }
}

#[async_trait]
impl<S: Store> KeyStore for CachedStore<S> {
    async fn create_key(&self, caller: &Caller, key: StoredKey) -> DomainResult<ApiKeyInfo> {
        self.inner.create_key(caller, key).await
    }

    async fn list_keys(&self, org: &str, page: &PageRequest) -> DomainResult<Page<ApiKeyInfo>> {
        self.inner.list_keys(org, page).await
    }

    async fn revoke_key(&self, caller: &Caller, org: &str, id: &str) -> DomainResult<()> {
        self.inner.revoke_key(caller, org, id).await
    }

    async fn find_key(&self, id: &str) -> DomainResult<Option<StoredKey>> {
        self.inner.find_key(id).await
    }

    fn key_revocations(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        self.inner.key_revocations()
    }
}

#[async_trait]
impl<S: Store> AuditStore for CachedStore<S> {
    async fn list_audit(
        &self,
        org: &str,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> DomainResult<Page<AuditEvent>> {
        self.inner.list_audit(org, filter, page).await
    }
}

#[async_trait]
impl<S: Store> GraphStore for CachedStore<S> {
    async fn traverse(&self, scope: &Scope, t: &Traversal) -> DomainResult<Subgraph> {
        self.inner.traverse(scope, t).await
    }

    async fn expand(
        &self,
        scope: &Scope,
        nodes: &[String],
        direction: Direction,
        types: &[String],
    ) -> DomainResult<Vec<EdgeRef>> {
        self.inner.expand(scope, nodes, direction, types).await
    }

    async fn node_headers(
        &self,
        scope: &Scope,
        ids: &[String],
        include_properties: bool,
    ) -> DomainResult<Vec<GraphNode>> {
        self.inner
            .node_headers(scope, ids, include_properties)
            .await
    }

    async fn cypher(
        &self,
        scope: &Scope,
        query: &str,
        params: &serde_json::Map<String, serde_json::Value>,
    ) -> DomainResult<CypherResult> {
        self.inner.cypher(scope, query, params).await
    }

    async fn sync_graph(&self, scope: &Scope) -> DomainResult<GraphSync> {
        self.inner.sync_graph(scope).await
    }
}

#[async_trait]
impl<S: Store> SearchStore for CachedStore<S> {
    async fn search_text(
        &self,
        scope: &Scope,
        query: &str,
        entity_type: Option<&str>,
        limit: usize,
    ) -> DomainResult<Vec<SearchHit>> {
        self.inner
            .search_text(scope, query, entity_type, limit)
            .await
    }
}

#[async_trait]
impl<S: Store> DocStore for CachedStore<S> {
    async fn append_batch(&self, appends: Vec<DocAppend>) -> DomainResult<Vec<(i64, i64)>> {
        self.inner.append_batch(appends).await
    }

    async fn get_doc(&self, scope: &Scope, doc: &str) -> DomainResult<DocInfo> {
        self.inner.get_doc(scope, doc).await
    }

    async fn put_doc(
        &self,
        scope: &Scope,
        caller: &Caller,
        doc: &str,
        entity_id: Option<String>,
    ) -> DomainResult<DocInfo> {
        self.inner.put_doc(scope, caller, doc, entity_id).await
    }

    async fn delete_doc(
        &self,
        scope: &Scope,
        caller: &Caller,
        doc: &str,
    ) -> DomainResult<Vec<String>> {
        self.inner.delete_doc(scope, caller, doc).await
    }

    async fn doc_log(&self, scope: &Scope, doc: &str, as_of: Option<&str>) -> DomainResult<DocLog> {
        self.inner.doc_log(scope, doc, as_of).await
    }

    async fn list_doc_updates(
        &self,
        scope: &Scope,
        doc: &str,
        after: i64,
        limit: usize,
    ) -> DomainResult<Vec<DocUpdate>> {
        self.inner.list_doc_updates(scope, doc, after, limit).await
    }

    async fn list_snapshots(&self, scope: &Scope, doc: &str) -> DomainResult<Vec<DocSnapshot>> {
        self.inner.list_snapshots(scope, doc).await
    }

    async fn record_snapshot(
        &self,
        scope: &Scope,
        caller: &Caller,
        doc: &str,
        snapshot: DocSnapshot,
    ) -> DomainResult<()> {
        self.inner
            .record_snapshot(scope, caller, doc, snapshot)
            .await
    }

    async fn prune_doc(
        &self,
        scope: &Scope,
        doc: &str,
        updates_before: &str,
        snapshots_before: &str,
    ) -> DomainResult<Vec<String>> {
        self.inner
            .prune_doc(scope, doc, updates_before, snapshots_before)
            .await
    }

    async fn quarantine_updates(
        &self,
        scope: &Scope,
        doc: &str,
        seqs: &[i64],
        reason: &str,
    ) -> DomainResult<usize> {
        self.inner
            .quarantine_updates(scope, doc, seqs, reason)
            .await
    }

    async fn docs_to_compact(&self, limit: usize) -> DomainResult<Vec<(Scope, String)>> {
        self.inner.docs_to_compact(limit).await
    }

    async fn lease_doc(&self, scope: &Scope, doc: &str) -> DomainResult<Option<Lease>> {
        self.inner.lease_doc(scope, doc).await
    }
}

#[async_trait]
impl<S: Store> Store for CachedStore<S> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn ping(&self) -> DomainResult<()> {
        self.inner.ping().await
    }

    async fn ping_age(&self) -> Option<DomainResult<()>> {
        self.inner.ping_age().await
    }

    async fn maintain(&self, task: Maintenance) -> DomainResult<String> {
        self.inner.maintain(task).await
    }

    async fn close(&self) {
        self.inner.close().await
    }

    fn coherence(&self) -> Coherence {
        self.inner.coherence()
    }

    fn watch_changes(&self, sink: Arc<dyn ChangeSink>) {
        self.inner.watch_changes(sink)
    }

    fn runtime_stats(&self) -> super::RuntimeStats {
        self.inner.runtime_stats()
    }

    fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }
}

#[async_trait]
impl<S: Store> VectorStore for CachedStore<S> {
    async fn put_vectors(
        &self,
        scope: &Scope,
        model: &str,
        vectors: Vec<EntityVector>,
    ) -> DomainResult<()> {
        self.inner.put_vectors(scope, model, vectors).await
    }

    async fn delete_vectors(&self, scope: &Scope, ids: &[String]) -> DomainResult<()> {
        self.inner.delete_vectors(scope, ids).await
    }

    async fn search_vectors(
        &self,
        scope: &Scope,
        model: &str,
        query: &[f32],
        entity_type: Option<&str>,
        limit: usize,
    ) -> DomainResult<Vec<VectorHit>> {
        self.inner
            .search_vectors(scope, model, query, entity_type, limit)
            .await
    }
}

/// Exports read the backend directly: they want every row, not the cache's.
#[async_trait]
impl<S: Store> ExportStore for CachedStore<S> {
    async fn snapshot(&self) -> DomainResult<Box<dyn Snapshot>> {
        self.inner.snapshot().await
    }
}

/// Imported entities replace what was cached: their states older than the
/// import's changes are tombstoned.
#[async_trait]
impl<S: Store> ImportStore for CachedStore<S> {
    async fn import_start(&self, scope: &Scope) -> DomainResult<bool> {
        self.inner.import_start(scope).await
    }

    async fn import_finish(&self) -> DomainResult<()> {
        self.inner.import_finish().await
    }

    async fn import_org(&self, caller: &Caller, org: &Org) -> DomainResult<bool> {
        self.inner.import_org(caller, org).await
    }

    async fn import_project(&self, caller: &Caller, project: &Project) -> DomainResult<bool> {
        self.inner.import_project(caller, project).await
    }

    async fn import_audit(
        &self,
        events: Vec<crate::domain::export::AuditRecord>,
    ) -> DomainResult<u64> {
        self.inner.import_audit(events).await
    }

    async fn import(
        &self,
        scope: &Scope,
        caller: &Caller,
        items: Vec<super::ImportItem>,
        fresh: bool,
    ) -> DomainResult<Vec<super::Imported>> {
        let ids: Vec<Option<String>> = items
            .iter()
            .map(|item| match item {
                super::ImportItem::Entity(e) => Some(e.entity.id.clone()),
                _ => None,
            })
            .collect();
        let done = self.inner.import(scope, caller, items, fresh).await?;
        for (id, imported) in ids.iter().zip(&done) {
            if let (Some(id), true) = (id, imported.seq > 0) {
                self.cache.tombstone(scope, id, imported.seq);
            }
        }
        Ok(done)
    }
}
