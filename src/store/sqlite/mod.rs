//! The embedded backend: one SQLite file in WAL mode, one writer thread that
//! group-commits concurrent writes, and a pool of reader threads.

mod audit;
mod docs;
mod entities;
mod graph;
mod keys;
mod lease;
pub mod migrate;
mod outbox;
mod relationships;
mod rows;
mod search;
mod tenancy;
mod threads;

use super::prelude::*;
use super::{in_batch, ChangeSink, Coherence, Ctx, DocLease, Maintenance};
use crate::domain::rules::{self, audit as audit_rules, entities as entity_rules, Target};
use crate::domain::*;
use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags};
use serde::Deserialize;
use std::path::Path;
use std::sync::Arc;
use threads::{Readers, Seq, Writer};

/// When a commit counts as durable.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// fsync on every commit: an acknowledged write survives power loss.
    #[default]
    Full,
    /// WAL fsync at checkpoints only: survives a process crash, not power loss.
    Normal,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SqliteConfig {
    pub synchronous: Synchronous,
    pub readers: usize,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        SqliteConfig {
            synchronous: Synchronous::Full,
            readers: 4,
        }
    }
}

pub(crate) fn sql_err(e: rusqlite::Error) -> DomainError {
    DomainError::Storage(Box::new(e))
}

pub struct SqliteStore {
    writer: Writer,
    readers: Readers,
    /// Documents being compacted (one daemon per file: a local set suffices).
    leases: Arc<std::sync::Mutex<std::collections::HashSet<(Scope, String)>>>,
}

fn connect(path: &Path, config: &SqliteConfig, read_only: bool) -> rusqlite::Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    let sync = match config.synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    conn.execute_batch(&format!(
        "PRAGMA busy_timeout = 5000;
         PRAGMA foreign_keys = ON;
         PRAGMA synchronous = {sync};
         PRAGMA cache_size = -16384;
         PRAGMA temp_store = MEMORY;"
    ))?;
    if !read_only {
        conn.pragma_update(None, "journal_mode", "WAL")?;
    }
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub fn open(path: &str, config: &SqliteConfig) -> anyhow::Result<Self> {
        let path = Path::new(path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut conn = connect(path, config, false)?;
        migrate::run(&mut conn)?;
        search::create_staging(&conn)?;
        let readers = (0..config.readers.max(1))
            .map(|_| connect(path, config, true))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SqliteStore {
            writer: Writer::spawn(conn, search::apply_staged)?,
            readers: Readers::spawn(readers)?,
            leases: Arc::default(),
        })
    }

    /// Applies migrations and closes the file (`strata migrate`).
    pub fn migrate(path: &str) -> anyhow::Result<usize> {
        let mut conn = connect(Path::new(path), &SqliteConfig::default(), false)?;
        Ok(migrate::run(&mut conn)?)
    }

    async fn read<T, F>(&self, f: F) -> DomainResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> DomainResult<T> + Send + 'static,
    {
        self.readers.read(f).await
    }
}

fn project_exists(conn: &Connection, scope: &Scope) -> DomainResult<()> {
    tenancy::get_project(conn, &scope.org, &scope.project).map(|_| ())
}

/// Applies one op and records its audit event in the same transaction.
fn apply(
    conn: &Connection,
    seq: &mut Seq,
    scope: &Scope,
    caller: &Caller,
    op: WriteOp,
) -> DomainResult<WriteOutcome> {
    let ctx = Ctx::new(scope, caller, &op);
    let outcome = match rules::target(op) {
        Target::Entity(id, op) => entities::write(conn, seq, &ctx, &id, op)?,
        Target::Relationship(id, op) => relationships::write(conn, seq, &ctx, &id, op)?,
    };
    let place = audit::AuditPlace {
        org: &scope.org,
        project: Some(&scope.project),
        caller,
    };
    let fact = audit_rules::of_write(ctx.action, &outcome);
    audit::record(conn, &place, fact.action, &fact.target, fact.details)?;
    Ok(outcome)
}

#[async_trait]
impl TenancyStore for SqliteStore {
    async fn is_empty(&self) -> DomainResult<bool> {
        self.read(|conn| {
            conn.query_row("SELECT NOT EXISTS (SELECT 1 FROM orgs)", [], |r| r.get(0))
                .map_err(sql_err)
        })
        .await
    }

    async fn create_org(&self, caller: &Caller, id: &str, name: &str) -> DomainResult<Org> {
        let (caller, id, name) = (caller.clone(), id.to_owned(), name.to_owned());
        self.writer
            .write(move |conn, _| tenancy::create_org(conn, &caller, &id, &name))
            .await
    }

    async fn get_org(&self, id: &str) -> DomainResult<Org> {
        let id = id.to_owned();
        self.read(move |conn| tenancy::get_org(conn, &id)).await
    }

    async fn list_orgs(&self, page: &PageRequest) -> DomainResult<Page<Org>> {
        let page = page.clone();
        self.read(move |conn| tenancy::list_orgs(conn, &page)).await
    }

    async fn delete_org(&self, caller: &Caller, id: &str) -> DomainResult<()> {
        let (caller, id) = (caller.clone(), id.to_owned());
        self.writer
            .write(move |conn, _| tenancy::delete_org(conn, &caller, &id))
            .await
    }

    async fn create_project(
        &self,
        caller: &Caller,
        org: &str,
        id: &str,
        name: &str,
    ) -> DomainResult<Project> {
        let caller = caller.clone();
        let (org, id, name) = (org.to_owned(), id.to_owned(), name.to_owned());
        self.writer
            .write(move |conn, _| tenancy::create_project(conn, &caller, &org, &id, &name))
            .await
    }

    async fn get_project(&self, org: &str, id: &str) -> DomainResult<Project> {
        let (org, id) = (org.to_owned(), id.to_owned());
        self.read(move |conn| tenancy::get_project(conn, &org, &id))
            .await
    }

    async fn list_projects(&self, org: &str, page: &PageRequest) -> DomainResult<Page<Project>> {
        let (org, page) = (org.to_owned(), page.clone());
        self.read(move |conn| tenancy::list_projects(conn, &org, &page))
            .await
    }

    async fn delete_project(&self, caller: &Caller, org: &str, id: &str) -> DomainResult<()> {
        let (caller, org, id) = (caller.clone(), org.to_owned(), id.to_owned());
        self.writer
            .write(move |conn, _| tenancy::delete_project(conn, Some(&caller), &org, &id))
            .await
    }
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn create_key(&self, caller: &Caller, key: StoredKey) -> DomainResult<ApiKeyInfo> {
        let caller = caller.clone();
        self.writer
            .write(move |conn, _| keys::create(conn, &caller, &key))
            .await
    }

    async fn list_keys(&self, org: &str, page: &PageRequest) -> DomainResult<Page<ApiKeyInfo>> {
        let (org, page) = (org.to_owned(), page.clone());
        self.read(move |conn| keys::list(conn, &org, &page)).await
    }

    async fn revoke_key(&self, caller: &Caller, org: &str, id: &str) -> DomainResult<()> {
        let (caller, org, id) = (caller.clone(), org.to_owned(), id.to_owned());
        self.writer
            .write(move |conn, _| keys::revoke(conn, &caller, &org, &id))
            .await
    }

    async fn find_key(&self, id: &str) -> DomainResult<Option<StoredKey>> {
        let id = id.to_owned();
        self.read(move |conn| keys::find(conn, &id)).await
    }
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn list_audit(
        &self,
        org: &str,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> DomainResult<Page<AuditEvent>> {
        let (org, filter, page) = (org.to_owned(), filter.clone(), page.clone());
        self.read(move |conn| {
            tenancy::get_org(conn, &org)?;
            audit::list(conn, &org, &filter, &page)
        })
        .await
    }
}

#[async_trait]
impl EntityStore for SqliteStore {
    async fn write(
        &self,
        scope: &Scope,
        caller: &Caller,
        ops: Vec<WriteOp>,
    ) -> DomainResult<Vec<WriteOutcome>> {
        let (scope, caller) = (scope.clone(), caller.clone());
        self.writer
            .write(move |conn, seq| {
                project_exists(conn, &scope)?;
                ops.into_iter()
                    .enumerate()
                    .map(|(index, op)| {
                        apply(conn, seq, &scope, &caller, op).map_err(in_batch(index))
                    })
                    .collect::<DomainResult<Vec<_>>>()
            })
            .await
    }

    async fn get_entity(&self, scope: &Scope, id: &str, read: &EntityRead) -> DomainResult<Entity> {
        let (s, id, read) = (scope.clone(), id.to_owned(), read.clone());
        self.read(move |conn| {
            let version = match (&read.version, &read.as_of) {
                (Some(v), _) => Some(*v),
                (None, Some(at)) => Some(
                    entities::version_as_of(conn, &s, &id, at)?
                        .ok_or_else(|| entity_rules::not_found(&id))?,
                ),
                (None, None) => None,
            };
            let entity = match version {
                Some(v) => entities::read_version(conn, &s, &id, v)?,
                None => {
                    entities::load(conn, &s, &id)?
                        .ok_or_else(|| entity_rules::not_found(&id))?
                        .entity
                }
            };
            entity_rules::visible(entity, &read)
        })
        .await
    }

    async fn list_entities(
        &self,
        scope: &Scope,
        filter: &EntityFilter,
        page: &PageRequest,
    ) -> DomainResult<Page<Entity>> {
        let (s, filter, page) = (scope.clone(), filter.clone(), page.clone());
        self.read(move |conn| {
            project_exists(conn, &s)?;
            entities::list(conn, &s, &filter, &page)
        })
        .await
    }

    async fn list_versions(
        &self,
        scope: &Scope,
        id: &str,
        page: &PageRequest,
    ) -> DomainResult<Page<VersionInfo>> {
        let (s, id, page) = (scope.clone(), id.to_owned(), page.clone());
        self.read(move |conn| entities::versions(conn, &s, &id, &page))
            .await
    }

    async fn get_relationship(&self, scope: &Scope, id: &str) -> DomainResult<Relationship> {
        let (s, id) = (scope.clone(), id.to_owned());
        self.read(move |conn| {
            relationships::load(conn, &s, &id)?
                .ok_or_else(|| DomainError::not_found(format!("relationship {id}")))
        })
        .await
    }

    async fn list_relationships(
        &self,
        scope: &Scope,
        filter: &RelationshipFilter,
        page: &PageRequest,
    ) -> DomainResult<Page<Relationship>> {
        let (s, filter, page) = (scope.clone(), filter.clone(), page.clone());
        self.read(move |conn| {
            project_exists(conn, &s)?;
            relationships::list(conn, &s, &filter, &page)
        })
        .await
    }
}

#[async_trait]
impl GraphStore for SqliteStore {
    async fn cypher(
        &self,
        _scope: &Scope,
        _query: &str,
        _params: &serde_json::Map<String, serde_json::Value>,
    ) -> DomainResult<CypherResult> {
        Err(DomainError::NotImplemented(
            "the sqlite backend has no Cypher engine; use the graph endpoints, or server mode with Apache AGE".into(),
        ))
    }

    async fn sync_graph(&self, _scope: &Scope) -> DomainResult<GraphSync> {
        Err(DomainError::NotImplemented(
            "the sqlite backend keeps no graph projection".into(),
        ))
    }

    async fn traverse(&self, scope: &Scope, t: &Traversal) -> DomainResult<Subgraph> {
        let (s, t) = (scope.clone(), t.clone());
        self.read(move |conn| graph::traverse(conn, &s, &t)).await
    }

    async fn expand(
        &self,
        scope: &Scope,
        nodes: &[String],
        direction: Direction,
        types: &[String],
    ) -> DomainResult<Vec<EdgeRef>> {
        let (s, nodes, types) = (scope.clone(), nodes.to_vec(), types.to_vec());
        self.read(move |conn| graph::expand(conn, &s, &nodes, direction, &types))
            .await
    }

    async fn node_headers(
        &self,
        scope: &Scope,
        ids: &[String],
        include_properties: bool,
    ) -> DomainResult<Vec<GraphNode>> {
        let (s, ids) = (scope.clone(), ids.to_vec());
        self.read(move |conn| graph::node_headers(conn, &s, &ids, include_properties))
            .await
    }
}

#[async_trait]
impl SearchStore for SqliteStore {
    async fn search_text(
        &self,
        scope: &Scope,
        query: &str,
        entity_type: Option<&str>,
        limit: usize,
    ) -> DomainResult<Vec<SearchHit>> {
        let (s, q, t) = (
            scope.clone(),
            query.to_owned(),
            entity_type.map(str::to_owned),
        );
        self.read(move |conn| search::search(conn, &s, &q, t.as_deref(), limit))
            .await
    }
}

#[async_trait]
impl DocStore for SqliteStore {
    async fn append_updates(
        &self,
        scope: &Scope,
        doc: &str,
        updates: Vec<Vec<u8>>,
        origin: Option<String>,
    ) -> DomainResult<(i64, i64)> {
        let (s, doc) = (scope.clone(), doc.to_owned());
        self.writer
            .write(move |conn, _| docs::append(conn, &s, &doc, &updates, origin.as_deref()))
            .await
    }

    async fn get_doc(&self, scope: &Scope, doc: &str) -> DomainResult<DocInfo> {
        let (s, doc) = (scope.clone(), doc.to_owned());
        self.read(move |conn| docs::get(conn, &s, &doc)).await
    }

    async fn put_doc(
        &self,
        scope: &Scope,
        caller: &Caller,
        doc: &str,
        entity_id: Option<String>,
    ) -> DomainResult<DocInfo> {
        let (s, caller, doc) = (scope.clone(), caller.clone(), doc.to_owned());
        self.writer
            .write(move |conn, _| docs::put(conn, &s, &caller, &doc, entity_id.as_deref()))
            .await
    }

    async fn delete_doc(
        &self,
        scope: &Scope,
        caller: &Caller,
        doc: &str,
    ) -> DomainResult<Vec<String>> {
        let (s, caller, doc) = (scope.clone(), caller.clone(), doc.to_owned());
        self.writer
            .write(move |conn, _| docs::delete(conn, &s, &caller, &doc))
            .await
    }

    async fn doc_log(&self, scope: &Scope, doc: &str, as_of: Option<&str>) -> DomainResult<DocLog> {
        let (s, doc, as_of) = (scope.clone(), doc.to_owned(), as_of.map(str::to_owned));
        self.read(move |conn| docs::log(conn, &s, &doc, as_of.as_deref()))
            .await
    }

    async fn list_doc_updates(
        &self,
        scope: &Scope,
        doc: &str,
        after: i64,
        limit: usize,
    ) -> DomainResult<Vec<DocUpdate>> {
        let (s, doc) = (scope.clone(), doc.to_owned());
        self.read(move |conn| docs::list_updates(conn, &s, &doc, after, limit))
            .await
    }

    async fn list_snapshots(&self, scope: &Scope, doc: &str) -> DomainResult<Vec<DocSnapshot>> {
        let (s, doc) = (scope.clone(), doc.to_owned());
        self.read(move |conn| docs::list_snapshots(conn, &s, &doc))
            .await
    }

    async fn record_snapshot(
        &self,
        scope: &Scope,
        caller: &Caller,
        doc: &str,
        snapshot: DocSnapshot,
    ) -> DomainResult<()> {
        let (s, caller, doc) = (scope.clone(), caller.clone(), doc.to_owned());
        self.writer
            .write(move |conn, _| docs::record_snapshot(conn, &s, &caller, &doc, &snapshot))
            .await
    }

    async fn prune_doc(
        &self,
        scope: &Scope,
        doc: &str,
        updates_before: &str,
        snapshots_before: &str,
    ) -> DomainResult<Vec<String>> {
        let (s, doc) = (scope.clone(), doc.to_owned());
        let (u, sn) = (updates_before.to_owned(), snapshots_before.to_owned());
        self.writer
            .write(move |conn, _| docs::prune(conn, &s, &doc, &u, &sn))
            .await
    }

    async fn quarantine_updates(
        &self,
        scope: &Scope,
        doc: &str,
        seqs: &[i64],
        reason: &str,
    ) -> DomainResult<usize> {
        let (s, doc, seqs, reason) = (
            scope.clone(),
            doc.to_owned(),
            seqs.to_vec(),
            reason.to_owned(),
        );
        self.writer
            .write(move |conn, _| docs::quarantine(conn, &s, &doc, &seqs, &reason))
            .await
    }

    async fn docs_to_compact(&self, limit: usize) -> DomainResult<Vec<(Scope, String)>> {
        self.read(move |conn| docs::to_compact(conn, limit)).await
    }

    async fn lease_doc(&self, scope: &Scope, doc: &str) -> DomainResult<Option<DocLease>> {
        Ok(lease::LocalLease::take(&self.leases, scope, doc).map(DocLease::new))
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> DomainResult<()> {
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).map_err(sql_err))
            .await
    }

    async fn maintain(&self, task: Maintenance) -> DomainResult<String> {
        match task {
            // Outside the group transaction: a checkpoint cannot run inside one.
            Maintenance::Frequent => self.writer.outside_transaction(|conn| {
                conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    Ok(format!(
                        "checkpointed {} of {} WAL pages (busy: {})",
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(0)?
                    ))
                })
                .map_err(sql_err)
            })
            .await,
            Maintenance::Daily => self.writer.write(|conn, _| {
                conn.execute_batch(
                    "PRAGMA optimize; INSERT INTO entity_fts (entity_fts, rank) VALUES ('merge', 500);",
                )
                .map_err(sql_err)?;
                Ok("planner statistics refreshed; full-text segments merged".to_string())
            })
            .await,
        }
    }

    async fn close(&self) {
        // The writer's connection closes last: the last connection to close
        // folds the write-ahead log back into the file (readers cannot).
        self.readers.close().await;
        self.writer.close().await;
    }

    fn coherence(&self) -> Coherence {
        Coherence::SoleWriter
    }

    /// One daemon per file: every write passes through the cache already.
    fn watch_changes(&self, _sink: Arc<dyn ChangeSink>) {}
}
