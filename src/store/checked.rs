//! The store every caller gets (`store::open` wraps each backend in it):
//! checks the text of every `Store` call against what both backends can
//! hold, before either backend sees it, so they answer alike.
//!
//! Today that is NUL (U+0000), which PostgreSQL refuses in `text` and, as
//! `\u0000`, in jsonb (a 500 from deep inside a statement), while SQLite
//! stores it. The check sits here rather than in the HTTP extractors because
//! this is the one door nothing passes around: HTTP paths, query strings and
//! bodies, WebSocket and Hocuspocus document names, the CLI and the jobs all
//! reach storage through this trait, and forged cursors only show their
//! content here. A new `Store` method does not compile until it is
//! forwarded (and checked) below.

use super::prelude::*;
use super::{
    cache, ChangeSink, Coherence, FeedBounds, JobRunEnd, JobRunRecord, Lease, Maintenance, Which,
};
use crate::domain::validate::{json_no_nul, map_no_nul, no_nul};
use crate::domain::*;
use async_trait::async_trait;
use std::sync::Arc;

pub struct Checked<S>(pub S);

fn scope(s: &Scope) -> DomainResult<()> {
    no_nul("org", &s.org)?;
    no_nul("project", &s.project)
}

fn caller(c: &Caller) -> DomainResult<()> {
    no_nul("caller key id", &c.key_id)?;
    opt("client address", c.ip.as_deref())?;
    opt("user agent", c.user_agent.as_deref())
}

fn opt(what: &str, value: Option<&str>) -> DomainResult<()> {
    value.map_or(Ok(()), |v| no_nul(what, v))
}

fn all(what: &str, values: &[String]) -> DomainResult<()> {
    values.iter().try_for_each(|v| no_nul(what, v))
}

/// A cursor is base64 JSON made by the server; one holding NUL was forged
/// (the backends would put its content into a statement).
fn page(p: &PageRequest) -> DomainResult<()> {
    let Some(c) = &p.cursor else { return Ok(()) };
    no_nul("cursor", c)?;
    if let Ok(v) = super::cursor::decode::<serde_json::Value>(c) {
        json_no_nul("cursor", &v).map_err(|_| {
            DomainError::BadRequest(
                "cursor is not one this server issued (it holds a NUL character)".into(),
            )
        })?;
    }
    Ok(())
}

fn op(o: &WriteOp) -> DomainResult<()> {
    match o {
        WriteOp::CreateEntity {
            id,
            entity_type,
            properties,
        }
        | WriteOp::PutEntity {
            id,
            entity_type,
            properties,
            ..
        } => {
            no_nul("id", id)?;
            no_nul("type", entity_type)?;
            map_no_nul("properties", properties)
        }
        WriteOp::PatchEntity {
            id,
            patch,
            entity_type,
            ..
        } => {
            no_nul("id", id)?;
            opt("type", entity_type.as_deref())?;
            json_no_nul("properties", patch)
        }
        WriteOp::PatchRelationship {
            id,
            patch,
            rel_type,
            ..
        } => {
            no_nul("id", id)?;
            opt("type", rel_type.as_deref())?;
            json_no_nul("properties", patch)
        }
        WriteOp::DeleteEntity { id, .. }
        | WriteOp::PurgeEntity { id }
        | WriteOp::RestoreEntity { id }
        | WriteOp::RevertEntity { id, .. }
        | WriteOp::DeleteRelationship { id, .. } => no_nul("id", id),
        WriteOp::CreateRelationship {
            id,
            rel_type,
            from,
            to,
            properties,
        } => {
            no_nul("id", id)?;
            no_nul("type", rel_type)?;
            no_nul("from", from)?;
            no_nul("to", to)?;
            map_no_nul("properties", properties)
        }
    }
}

#[async_trait]
impl<S: Store> TenancyStore for Checked<S> {
    async fn is_empty(&self) -> DomainResult<bool> {
        self.0.is_empty().await
    }

    async fn create_org(&self, c: &Caller, id: &str, name: &str) -> DomainResult<Org> {
        caller(c)?;
        no_nul("org id", id)?;
        no_nul("org name", name)?;
        self.0.create_org(c, id, name).await
    }

    async fn get_org(&self, id: &str) -> DomainResult<Org> {
        no_nul("org", id)?;
        self.0.get_org(id).await
    }

    async fn list_orgs(&self, p: &PageRequest) -> DomainResult<Page<Org>> {
        page(p)?;
        self.0.list_orgs(p).await
    }

    async fn delete_org(&self, c: &Caller, id: &str) -> DomainResult<()> {
        caller(c)?;
        no_nul("org", id)?;
        self.0.delete_org(c, id).await
    }

    async fn create_project(
        &self,
        c: &Caller,
        org: &str,
        id: &str,
        name: &str,
    ) -> DomainResult<Project> {
        caller(c)?;
        no_nul("org", org)?;
        no_nul("project id", id)?;
        no_nul("project name", name)?;
        self.0.create_project(c, org, id, name).await
    }

    async fn get_project(&self, org: &str, id: &str) -> DomainResult<Project> {
        no_nul("org", org)?;
        no_nul("project", id)?;
        self.0.get_project(org, id).await
    }

    async fn list_projects(&self, org: &str, p: &PageRequest) -> DomainResult<Page<Project>> {
        no_nul("org", org)?;
        page(p)?;
        self.0.list_projects(org, p).await
    }

    async fn delete_project(&self, c: &Caller, org: &str, id: &str) -> DomainResult<()> {
        caller(c)?;
        no_nul("org", org)?;
        no_nul("project", id)?;
        self.0.delete_project(c, org, id).await
    }
}

#[async_trait]
impl<S: Store> KeyStore for Checked<S> {
    async fn create_key(&self, c: &Caller, key: StoredKey) -> DomainResult<ApiKeyInfo> {
        caller(c)?;
        no_nul("key id", &key.info.id)?;
        no_nul("org", &key.info.org)?;
        no_nul("key name", &key.info.name)?;
        no_nul("created_by", &key.info.created_by)?;
        no_nul("key hash", &key.secret_hash)?;
        self.0.create_key(c, key).await
    }

    async fn list_keys(&self, org: &str, p: &PageRequest) -> DomainResult<Page<ApiKeyInfo>> {
        no_nul("org", org)?;
        page(p)?;
        self.0.list_keys(org, p).await
    }

    async fn revoke_key(&self, c: &Caller, org: &str, id: &str) -> DomainResult<()> {
        caller(c)?;
        no_nul("org", org)?;
        no_nul("key id", id)?;
        self.0.revoke_key(c, org, id).await
    }

    async fn find_key(&self, id: &str) -> DomainResult<Option<StoredKey>> {
        no_nul("key id", id)?;
        self.0.find_key(id).await
    }

    fn key_revocations(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        self.0.key_revocations()
    }
}

#[async_trait]
impl<S: Store> AuditStore for Checked<S> {
    async fn list_audit(
        &self,
        org: &str,
        filter: &AuditFilter,
        p: &PageRequest,
    ) -> DomainResult<Page<AuditEvent>> {
        no_nul("org", org)?;
        opt("action", filter.action.as_deref())?;
        opt("target", filter.target.as_deref())?;
        page(p)?;
        self.0.list_audit(org, filter, p).await
    }
}

#[async_trait]
impl<S: Store> EntityStore for Checked<S> {
    async fn write(
        &self,
        s: &Scope,
        c: &Caller,
        ops: Vec<WriteOp>,
    ) -> DomainResult<Vec<WriteOutcome>> {
        scope(s)?;
        caller(c)?;
        for (index, o) in ops.iter().enumerate() {
            op(o).map_err(|e| DomainError::InBatch {
                index,
                source: Box::new(e),
            })?;
        }
        self.0.write(s, c, ops).await
    }

    async fn get_entity(&self, s: &Scope, id: &str, read: &EntityRead) -> DomainResult<Entity> {
        scope(s)?;
        no_nul("id", id)?;
        opt("as_of", read.as_of.as_deref())?;
        self.0.get_entity(s, id, read).await
    }

    async fn list_entities(
        &self,
        s: &Scope,
        filter: &EntityFilter,
        p: &PageRequest,
    ) -> DomainResult<Page<Entity>> {
        scope(s)?;
        opt("type", filter.entity_type.as_deref())?;
        if let Some(m) = &filter.contains {
            map_no_nul("where", m)?;
        }
        opt("updated_since", filter.updated_since.as_deref())?;
        page(p)?;
        self.0.list_entities(s, filter, p).await
    }

    async fn list_versions(
        &self,
        s: &Scope,
        id: &str,
        p: &PageRequest,
    ) -> DomainResult<Page<VersionInfo>> {
        scope(s)?;
        no_nul("id", id)?;
        page(p)?;
        self.0.list_versions(s, id, p).await
    }

    async fn get_relationship(&self, s: &Scope, id: &str) -> DomainResult<Relationship> {
        scope(s)?;
        no_nul("id", id)?;
        self.0.get_relationship(s, id).await
    }

    async fn list_relationships(
        &self,
        s: &Scope,
        filter: &RelationshipFilter,
        p: &PageRequest,
    ) -> DomainResult<Page<Relationship>> {
        scope(s)?;
        opt("from", filter.from.as_deref())?;
        opt("to", filter.to.as_deref())?;
        opt("type", filter.rel_type.as_deref())?;
        page(p)?;
        self.0.list_relationships(s, filter, p).await
    }
}

#[async_trait]
impl<S: Store> JobStore for Checked<S> {
    async fn claim_job_run(
        &self,
        job: &str,
        tick: Option<&str>,
        daemon: &str,
    ) -> DomainResult<Option<i64>> {
        no_nul("job", job)?;
        no_nul("daemon", daemon)?;
        self.0.claim_job_run(job, tick, daemon).await
    }

    async fn finish_job_run(&self, id: i64, ended: &JobRunEnd) -> DomainResult<()> {
        self.0.finish_job_run(id, ended).await
    }

    async fn last_job_runs(&self) -> DomainResult<Vec<JobRunRecord>> {
        self.0.last_job_runs().await
    }

    async fn lease_job(&self, job: &str) -> DomainResult<Option<Lease>> {
        no_nul("job", job)?;
        self.0.lease_job(job).await
    }
}

#[async_trait]
impl<S: Store> ChangeStore for Checked<S> {
    async fn list_changes(&self, s: &Scope, after: i64, limit: usize) -> DomainResult<Vec<Change>> {
        scope(s)?;
        self.0.list_changes(s, after, limit).await
    }

    async fn read_feed(&self, after: i64, limit: usize) -> DomainResult<Vec<FeedChange>> {
        self.0.read_feed(after, limit).await
    }

    async fn feed_bounds(&self) -> DomainResult<FeedBounds> {
        self.0.feed_bounds().await
    }

    async fn feed_cursor(&self, consumer: &str) -> DomainResult<Option<i64>> {
        no_nul("consumer", consumer)?;
        self.0.feed_cursor(consumer).await
    }

    async fn save_feed_cursor(&self, consumer: &str, position: i64) -> DomainResult<()> {
        no_nul("consumer", consumer)?;
        self.0.save_feed_cursor(consumer, position).await
    }

    async fn prune_feed(&self, before: &str, stale: &str, limit: usize) -> DomainResult<u64> {
        no_nul("time", before)?;
        no_nul("time", stale)?;
        self.0.prune_feed(before, stale, limit).await
    }

    async fn lease_consumer(&self, consumer: &str) -> DomainResult<Option<Lease>> {
        no_nul("consumer", consumer)?;
        self.0.lease_consumer(consumer).await
    }
}

#[async_trait]
impl<S: Store> GraphStore for Checked<S> {
    async fn traverse(&self, s: &Scope, t: &Traversal) -> DomainResult<Subgraph> {
        scope(s)?;
        no_nul("id", &t.start)?;
        all("types", &t.types)?;
        self.0.traverse(s, t).await
    }

    async fn expand(
        &self,
        s: &Scope,
        nodes: &[String],
        direction: Direction,
        types: &[String],
    ) -> DomainResult<Vec<EdgeRef>> {
        scope(s)?;
        all("id", nodes)?;
        all("types", types)?;
        self.0.expand(s, nodes, direction, types).await
    }

    async fn node_headers(
        &self,
        s: &Scope,
        ids: &[String],
        include_properties: bool,
    ) -> DomainResult<Vec<GraphNode>> {
        scope(s)?;
        all("id", ids)?;
        self.0.node_headers(s, ids, include_properties).await
    }

    async fn cypher(
        &self,
        s: &Scope,
        query: &str,
        params: &serde_json::Map<String, serde_json::Value>,
    ) -> DomainResult<CypherResult> {
        scope(s)?;
        no_nul("query", query)?;
        map_no_nul("params", params)?;
        self.0.cypher(s, query, params).await
    }

    async fn sync_graph(&self, s: &Scope) -> DomainResult<GraphSync> {
        scope(s)?;
        self.0.sync_graph(s).await
    }
}

#[async_trait]
impl<S: Store> SearchStore for Checked<S> {
    async fn search_text(
        &self,
        s: &Scope,
        query: &str,
        entity_type: Option<&str>,
        limit: usize,
    ) -> DomainResult<Vec<SearchHit>> {
        scope(s)?;
        no_nul("q", query)?;
        opt("type", entity_type)?;
        self.0.search_text(s, query, entity_type, limit).await
    }
}

#[async_trait]
impl<S: Store> DocStore for Checked<S> {
    async fn append_batch(&self, appends: Vec<DocAppend>) -> DomainResult<Vec<(i64, i64)>> {
        for a in &appends {
            scope(&a.scope)?;
            no_nul("doc", &a.doc)?;
            opt("X-Strata-Origin", a.origin.as_deref())?;
        }
        self.0.append_batch(appends).await
    }

    async fn get_doc(&self, s: &Scope, doc: &str) -> DomainResult<DocInfo> {
        scope(s)?;
        no_nul("doc", doc)?;
        self.0.get_doc(s, doc).await
    }

    async fn put_doc(
        &self,
        s: &Scope,
        c: &Caller,
        doc: &str,
        entity_id: Option<String>,
    ) -> DomainResult<DocInfo> {
        scope(s)?;
        caller(c)?;
        no_nul("doc", doc)?;
        opt("entity_id", entity_id.as_deref())?;
        self.0.put_doc(s, c, doc, entity_id).await
    }

    async fn delete_doc(&self, s: &Scope, c: &Caller, doc: &str) -> DomainResult<Vec<String>> {
        scope(s)?;
        caller(c)?;
        no_nul("doc", doc)?;
        self.0.delete_doc(s, c, doc).await
    }

    async fn doc_log(&self, s: &Scope, doc: &str, as_of: Option<&str>) -> DomainResult<DocLog> {
        scope(s)?;
        no_nul("doc", doc)?;
        opt("as_of", as_of)?;
        self.0.doc_log(s, doc, as_of).await
    }

    async fn list_doc_updates(
        &self,
        s: &Scope,
        doc: &str,
        after: i64,
        limit: usize,
    ) -> DomainResult<Vec<DocUpdate>> {
        scope(s)?;
        no_nul("doc", doc)?;
        self.0.list_doc_updates(s, doc, after, limit).await
    }

    async fn list_snapshots(&self, s: &Scope, doc: &str) -> DomainResult<Vec<DocSnapshot>> {
        scope(s)?;
        no_nul("doc", doc)?;
        self.0.list_snapshots(s, doc).await
    }

    async fn record_snapshot(
        &self,
        s: &Scope,
        c: &Caller,
        doc: &str,
        snapshot: DocSnapshot,
    ) -> DomainResult<()> {
        scope(s)?;
        caller(c)?;
        no_nul("doc", doc)?;
        no_nul("covers_at", &snapshot.covers_at)?;
        no_nul("created_at", &snapshot.created_at)?;
        no_nul("sha256", &snapshot.sha256)?;
        if let SnapshotData::Blob(key) = &snapshot.data {
            no_nul("blob key", key)?;
        }
        self.0.record_snapshot(s, c, doc, snapshot).await
    }

    async fn prune_doc(
        &self,
        s: &Scope,
        doc: &str,
        updates_before: &str,
        snapshots_before: &str,
    ) -> DomainResult<Vec<String>> {
        scope(s)?;
        no_nul("doc", doc)?;
        no_nul("updates_before", updates_before)?;
        no_nul("snapshots_before", snapshots_before)?;
        self.0
            .prune_doc(s, doc, updates_before, snapshots_before)
            .await
    }

    async fn quarantine_updates(
        &self,
        s: &Scope,
        doc: &str,
        seqs: &[i64],
        reason: &str,
    ) -> DomainResult<usize> {
        scope(s)?;
        no_nul("doc", doc)?;
        no_nul("reason", reason)?;
        self.0.quarantine_updates(s, doc, seqs, reason).await
    }

    async fn docs_to_compact(&self, limit: usize) -> DomainResult<Vec<(Scope, String)>> {
        self.0.docs_to_compact(limit).await
    }

    async fn lease_doc(&self, s: &Scope, doc: &str) -> DomainResult<Option<Lease>> {
        scope(s)?;
        no_nul("doc", doc)?;
        self.0.lease_doc(s, doc).await
    }
}

#[async_trait]
impl<S: Store> Store for Checked<S> {
    fn backend(&self) -> &'static str {
        self.0.backend()
    }

    async fn ping(&self) -> DomainResult<()> {
        self.0.ping().await
    }

    async fn ping_age(&self) -> Option<DomainResult<()>> {
        self.0.ping_age().await
    }

    async fn maintain(&self, task: Maintenance) -> DomainResult<String> {
        self.0.maintain(task).await
    }

    async fn close(&self) {
        self.0.close().await
    }

    fn coherence(&self) -> Coherence {
        self.0.coherence()
    }

    fn watch_changes(&self, sink: Arc<dyn ChangeSink>) {
        self.0.watch_changes(sink)
    }

    fn runtime_stats(&self) -> super::RuntimeStats {
        self.0.runtime_stats()
    }

    fn cache_stats(&self) -> cache::CacheStats {
        self.0.cache_stats()
    }
}

#[async_trait]
impl<S: Store> VectorStore for Checked<S> {
    async fn put_vectors(
        &self,
        s: &Scope,
        model: &str,
        vectors: Vec<EntityVector>,
    ) -> DomainResult<()> {
        scope(s)?;
        no_nul("model", model)?;
        for v in &vectors {
            no_nul("id", &v.id)?;
            no_nul("type", &v.entity_type)?;
        }
        self.0.put_vectors(s, model, vectors).await
    }

    async fn delete_vectors(&self, s: &Scope, ids: &[String]) -> DomainResult<()> {
        scope(s)?;
        all("id", ids)?;
        self.0.delete_vectors(s, ids).await
    }

    async fn search_vectors(
        &self,
        s: &Scope,
        model: &str,
        query: &[f32],
        entity_type: Option<&str>,
        limit: usize,
    ) -> DomainResult<Vec<VectorHit>> {
        scope(s)?;
        no_nul("model", model)?;
        opt("type", entity_type)?;
        self.0
            .search_vectors(s, model, query, entity_type, limit)
            .await
    }
}

#[async_trait]
impl<S: Store> ExportStore for Checked<S> {
    async fn snapshot(&self) -> DomainResult<Box<dyn Snapshot>> {
        Ok(Box::new(CheckedSnapshot(self.0.snapshot().await?)))
    }
}

/// The same checks on the arguments of a snapshot's reads.
struct CheckedSnapshot(Box<dyn Snapshot>);

#[async_trait]
impl Snapshot for CheckedSnapshot {
    fn seq(&self) -> i64 {
        self.0.seq()
    }

    async fn orgs(&self) -> DomainResult<Vec<Org>> {
        self.0.orgs().await
    }

    async fn projects(&self, org: &str) -> DomainResult<Vec<Project>> {
        no_nul("org", org)?;
        self.0.projects(org).await
    }

    async fn entities(&self, s: &Scope, which: &Which) -> DomainResult<Vec<export::EntityExport>> {
        scope(s)?;
        match which {
            Which::After(after, _) => no_nul("cursor", after)?,
            Which::Ids(ids) => ids.iter().try_for_each(|id| no_nul("id", id))?,
        }
        self.0.entities(s, which).await
    }

    async fn relationships(
        &self,
        s: &Scope,
        which: &Which,
    ) -> DomainResult<Vec<export::RelationshipRecord>> {
        scope(s)?;
        match which {
            Which::After(after, _) => no_nul("cursor", after)?,
            Which::Ids(ids) => ids.iter().try_for_each(|id| no_nul("id", id))?,
        }
        self.0.relationships(s, which).await
    }

    async fn docs(&self, s: &Scope, which: &Which) -> DomainResult<Vec<DocInfo>> {
        scope(s)?;
        match which {
            Which::After(after, _) => no_nul("cursor", after)?,
            Which::Ids(ids) => ids.iter().try_for_each(|id| no_nul("id", id))?,
        }
        self.0.docs(s, which).await
    }

    async fn doc_snapshots(&self, s: &Scope, doc: &str) -> DomainResult<Vec<DocSnapshot>> {
        scope(s)?;
        no_nul("doc", doc)?;
        self.0.doc_snapshots(s, doc).await
    }

    async fn doc_updates(
        &self,
        s: &Scope,
        doc: &str,
        after: i64,
        limit: usize,
    ) -> DomainResult<Vec<DocUpdate>> {
        scope(s)?;
        no_nul("doc", doc)?;
        self.0.doc_updates(s, doc, after, limit).await
    }

    async fn docs_changed(&self, s: &Scope, since: &str) -> DomainResult<Vec<String>> {
        scope(s)?;
        no_nul("since", since)?;
        self.0.docs_changed(s, since).await
    }

    async fn audit(
        &self,
        after: i64,
        since: Option<&str>,
        limit: usize,
    ) -> DomainResult<Vec<export::AuditRecord>> {
        if let Some(since) = since {
            no_nul("since", since)?;
        }
        self.0.audit(after, since, limit).await
    }
}

#[async_trait]
impl<S: Store> ImportStore for Checked<S> {
    async fn import_start(&self, s: &Scope) -> DomainResult<bool> {
        scope(s)?;
        self.0.import_start(s).await
    }

    async fn import_finish(&self) -> DomainResult<()> {
        self.0.import_finish().await
    }

    async fn import_org(&self, c: &Caller, org: &Org) -> DomainResult<bool> {
        caller(c)?;
        for (what, text) in [
            ("org", &org.id),
            ("name", &org.name),
            ("created_at", &org.created_at),
        ] {
            no_nul(what, text)?;
        }
        self.0.import_org(c, org).await
    }

    async fn import_audit(&self, events: Vec<export::AuditRecord>) -> DomainResult<u64> {
        for r in &events {
            let e = &r.event;
            for (what, text) in [
                ("org", &r.org),
                ("at", &e.at),
                ("actor", &e.actor),
                ("action", &e.action),
                ("target", &e.target),
            ] {
                no_nul(what, text)?;
            }
            for (what, text) in [
                ("project", &e.project),
                ("ip", &e.ip),
                ("user_agent", &e.user_agent),
            ] {
                if let Some(text) = text {
                    no_nul(what, text)?;
                }
            }
            json_no_nul("details", &e.details)?;
        }
        self.0.import_audit(events).await
    }

    async fn import_project(&self, c: &Caller, p: &Project) -> DomainResult<bool> {
        caller(c)?;
        scope(&Scope::new(p.org.clone(), p.id.clone()))?;
        no_nul("name", &p.name)?;
        no_nul("created_at", &p.created_at)?;
        self.0.import_project(c, p).await
    }

    async fn import(
        &self,
        s: &Scope,
        c: &Caller,
        items: Vec<super::ImportItem>,
        fresh: bool,
    ) -> DomainResult<Vec<super::Imported>> {
        scope(s)?;
        caller(c)?;
        for item in &items {
            match item {
                super::ImportItem::Entity(e) => {
                    let en = &e.entity;
                    for (what, text) in [
                        ("id", &en.id),
                        ("type", &en.entity_type),
                        ("created_by", &en.created_by),
                        ("updated_by", &en.updated_by),
                    ] {
                        no_nul(what, text)?;
                    }
                    map_no_nul("properties", &en.properties)?;
                    for v in &e.versions {
                        no_nul("actor", &v.actor)?;
                        no_nul("type", &v.entity_type)?;
                        json_no_nul("patch", &v.patch)?;
                        if let Some(snapshot) = &v.snapshot {
                            json_no_nul("snapshot", snapshot)?;
                        }
                    }
                }
                super::ImportItem::Relationship(r) => {
                    let rel = &r.relationship;
                    for (what, text) in [
                        ("id", &rel.id),
                        ("type", &rel.rel_type),
                        ("from", &rel.from),
                        ("to", &rel.to),
                        ("created_by", &rel.created_by),
                        ("updated_by", &rel.updated_by),
                    ] {
                        no_nul(what, text)?;
                    }
                    map_no_nul("properties", &rel.properties)?;
                }
                super::ImportItem::Doc(d) => {
                    no_nul("doc", &d.id)?;
                    no_nul("created_at", &d.created_at)?;
                    if let Some(entity) = &d.entity_id {
                        no_nul("entity_id", entity)?;
                    }
                }
                super::ImportItem::DocSnapshot(snap) => {
                    for (what, text) in [
                        ("doc", &snap.doc),
                        ("covers_at", &snap.covers_at),
                        ("created_at", &snap.created_at),
                        ("sha256", &snap.sha256),
                    ] {
                        no_nul(what, text)?;
                    }
                }
                super::ImportItem::DocUpdate(u) => {
                    no_nul("doc", &u.doc)?;
                    no_nul("at", &u.at)?;
                    if let Some(origin) = &u.origin {
                        no_nul("origin", origin)?;
                    }
                }
            }
        }
        self.0.import(s, c, items, fresh).await
    }
}
