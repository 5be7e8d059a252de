//! The embedded backend: one SQLite file in WAL mode, one writer thread that
//! group-commits concurrent writes, and a pool of reader threads.

mod audit;
mod bulk;
mod doc_import;
mod docs;
mod entities;
mod export;
mod graph;
mod import;
mod jobs;
mod keys;
mod lease;
pub mod migrate;
mod outbox;
mod rank;
mod relationships;
mod rows;
mod search;
mod tenancy;
mod threads;
mod vectors;

use super::prelude::*;
use super::{AuditPlace, ChangeSink, Coherence, Ctx, Maintenance};
use crate::domain::rules::{self, audit as audit_rules, Target};
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
    /// Memory for the vector sets semantic search ranks in (MiB).
    pub vector_memory_mb: usize,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        SqliteConfig {
            synchronous: Synchronous::Full,
            readers: 4,
            vector_memory_mb: 1024,
        }
    }
}

pub(crate) fn sql_err(e: rusqlite::Error) -> DomainError {
    if is_disk_full(&e) {
        return DomainError::DiskFull;
    }
    DomainError::Storage(Box::new(e))
}

/// SQLite's own answer when a write finds no space left (ENOSPC).
pub(crate) fn is_disk_full(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
}

pub struct SqliteStore {
    writer: Writer,
    readers: Readers,
    /// What is leased now (one daemon per file: a local set suffices).
    leases: lease::Leased,
    /// Projects' embeddings in memory for semantic search (`vectors.rs`).
    vector_sets: Arc<vectors::VectorSets>,
    /// The file and its settings, for connections of snapshots (`export.rs`).
    path: std::path::PathBuf,
    config: SqliteConfig,
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
    // The writer's page cache holds the indexes' hot pages of bulk writes.
    let cache = if read_only { -16_384 } else { -131_072 };
    conn.execute_batch(&format!(
        "PRAGMA busy_timeout = 5000;
         PRAGMA foreign_keys = ON;
         PRAGMA synchronous = {sync};
         PRAGMA cache_size = {cache};
         PRAGMA temp_store = MEMORY;"
    ))?;
    if !read_only {
        // Large sorts (the index builds after a bulk load) use both cores.
        conn.pragma_update(None, "threads", 2)?;
        prefer_incremental_vacuum(&conn)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // A checkpoint that resets the log cuts its file back to this size.
        conn.pragma_update(None, "journal_size_limit", WAL_LIMIT_BYTES)?;
    }
    conn.set_prepared_statement_cache_capacity(64);
    rank::register(&conn)?;
    Ok(conn)
}

/// The write-ahead log's file is cut back to this after a checkpoint.
pub const WAL_LIMIT_BYTES: i64 = 64 << 20;

/// A new database keeps a list of its free pages that the daily job hands
/// back to the file system (`PRAGMA incremental_vacuum`), so a store that
/// shrinks (compaction, retention, purges) shrinks on disk. It can be
/// chosen only before the first table exists: a store made earlier keeps
/// its free pages for reuse (README: Storage hygiene).
fn prefer_incremental_vacuum(conn: &Connection) -> rusqlite::Result<()> {
    let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
    if tables == 0 {
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    }
    Ok(())
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
        // A bulk load cut short left its indexes to build (`bulk`).
        while bulk::build_deferred(&conn)? {}
        search::create_staging(&conn)?;
        let readers = (0..config.readers.max(1))
            .map(|_| connect(path, config, true))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SqliteStore {
            writer: Writer::spawn(conn, search::apply_staged)?,
            readers: Readers::spawn(readers)?,
            leases: Arc::default(),
            vector_sets: Arc::new(vectors::VectorSets::new(config.vector_memory_mb << 20)),
            path: path.to_owned(),
            config: config.clone(),
        })
    }

    /// Applies migrations and closes the file (`strata migrate`).
    pub fn migrate(path: &str) -> anyhow::Result<usize> {
        let mut conn = Self::writer_connection(Path::new(path))?;
        Ok(migrate::run(&mut conn)?)
    }

    /// A connection opened as the writer thread opens its own (pragmas,
    /// write-ahead log, ranking function), with the default settings:
    /// for migrations and for tools that measure the store.
    pub fn writer_connection(path: &Path) -> rusqlite::Result<Connection> {
        connect(path, &SqliteConfig::default(), false)
    }

    async fn read<T, F>(&self, f: F) -> DomainResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> DomainResult<T> + Send + 'static,
    {
        self.readers.read(f).await
    }
}

/// Returns the free pages to the file system when the store keeps a list
/// of them (`prefer_incremental_vacuum`); says what it did.
fn hand_back_free_pages(conn: &Connection) -> DomainResult<String> {
    let pragma = |name: &str| -> DomainResult<i64> {
        conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
            .map_err(sql_err)
    };
    let free = pragma("freelist_count")?;
    if pragma("auto_vacuum")? != 2 {
        return Ok(format!(
            "{free} free pages kept for reuse (a store made before incremental vacuum)"
        ));
    }
    // Stepped to its end: each step may free more pages.
    let mut st = conn.prepare("PRAGMA incremental_vacuum").map_err(sql_err)?;
    let mut rows = st.query([]).map_err(sql_err)?;
    while rows.next().map_err(sql_err)?.is_some() {}
    Ok(format!("{free} free pages handed back to the file system"))
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
    let place = AuditPlace::scope(scope, caller);
    let fact = audit_rules::of_write(ctx.action, &outcome);
    audit::record(conn, &place, fact.action, &fact.target, fact.details)?;
    Ok(outcome)
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
                let freed = hand_back_free_pages(conn)?;
                Ok(format!(
                    "planner statistics refreshed; full-text segments merged; {freed}"
                ))
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

    fn runtime_stats(&self) -> crate::store::RuntimeStats {
        crate::store::RuntimeStats {
            pool: None,
            writer: Some(self.writer.stats()),
        }
    }

    /// One daemon per file: every write passes through the cache already.
    fn watch_changes(&self, _sink: Arc<dyn ChangeSink>) {}
}
