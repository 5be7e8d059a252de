//! The server backend: PostgreSQL through a deadpool of tokio-postgres
//! connections. Each `write` is one transaction; rows are locked per entity,
//! so any number of daemons can share the database. Entity caches of
//! several daemons stay coherent through LISTEN/NOTIFY (see `notify.rs`);
//! correctness never waits for a notification: without a live listener the
//! cache is off.

mod age;
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
mod locks;
mod migrate;
mod notify;
mod outbox;
mod pgvector;
mod relationships;
mod rows;
mod search;
mod tenancy;
pub mod tls;
mod tx;
mod vectors;

pub use migrate::{Kind as SchemaObjectKind, OBJECTS as SCHEMA_OBJECTS, SCHEMA};
pub use pgvector::{index_name as hnsw_index_name, search_sql as hnsw_search_sql, VectorParam};

use super::prelude::*;
use super::{in_batch, AuditPlace, ChangeSink, Coherence, Ctx, Maintenance};
use crate::domain::rules::{self, audit as audit_rules, Target};
use crate::domain::*;
use crate::lifecycle::Lifecycle;
use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures_util::future::OptionFuture;
use rows::pg_err;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tls::MakeRustls;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PgConfig {
    pub pool_size: usize,
    /// 0 leaves the server's default (PGlite has no statement timeout).
    pub statement_timeout_ms: u64,
    pub connect_timeout_secs: u64,
    /// LISTEN for other daemons' writes (needs a second connection).
    pub notify: bool,
    /// Apache AGE projection and Cypher: use when installed, demand, or skip.
    pub age: AgeMode,
    /// pgvector HNSW indexes for semantic search: use when installed,
    /// demand, or skip (the exact scan).
    pub pgvector: ExtensionMode,
    /// The least `hnsw.ef_search` of a semantic search (candidates the
    /// HNSW walk keeps: recall against latency); 0 is Strata's default.
    pub hnsw_ef_search: usize,
}

/// Whether an optional extension is used: when installed, always (the start
/// fails without it), or never.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ExtensionMode {
    #[default]
    Auto,
    On,
    Off,
}

/// The mode of Apache AGE (the first optional extension, named before there
/// was a second).
pub type AgeMode = ExtensionMode;

/// Most rows a Cypher query may return.
const MAX_CYPHER_ROWS: usize = 10_000;
/// How long `close` waits for the last change notices to go out.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

impl Default for PgConfig {
    fn default() -> Self {
        PgConfig {
            pool_size: 16,
            statement_timeout_ms: 30_000,
            connect_timeout_secs: 5,
            notify: true,
            age: AgeMode::Auto,
            pgvector: ExtensionMode::Auto,
            hnsw_ef_search: 0,
        }
    }
}

pub struct PgStore {
    pool: Pool,
    feed: notify::Feed,
    notifier: notify::Notifier,
    /// The notifier's and the listener's tasks, stopped by `close`.
    tasks: Lifecycle,
    age: Option<age::Age>,
    /// pgvector's indexes, or `None`: the exact scan. Chosen once, at open.
    vectors: Option<pgvector::Pgvector>,
    statement_timeout_ms: u64,
}

/// Idle time before a connection's first keepalive probe, the time between
/// probes, and the unanswered probes that end it (on both ends).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_PROBES: u32 = 3;

/// The connection settings of `url` and the TLS connector its `sslmode`
/// asks for (`tls.rs`), which every connection of the store uses.
fn pg_config(url: &str, config: &PgConfig) -> anyhow::Result<(tokio_postgres::Config, MakeRustls)> {
    let (mut pg, tls) = tls::configure(url)?;
    pg.connect_timeout(Duration::from_secs(config.connect_timeout_secs));
    // plan_cache_mode stays `auto`: forcing generic plans saves planning
    // on point lookups, but a graph level's `= ANY($3)` over a thousand ids
    // then runs as a thousand index descents instead of a bitmap scan
    // (21 vs 13 ms, 65 vs 36 ms on the Pokec graph).
    // Unqualified names resolve to Strata's schema first on every
    // connection: the pool's, the listener's and AGE's detection (the
    // pool's hook sets it again for servers that ignore startup options).
    let mut options = format!("-c search_path={}", migrate::SCHEMA);
    // A peer that is gone without closing (its host down, the network cut)
    // is noticed in about half a minute instead of TCP's two hours, on both
    // ends: the server releases the advisory locks (leases) of a daemon
    // that vanished, and a daemon learns its lease connection is dead, so
    // it stops acting as the lease's holder.
    pg.keepalives(true)
        .keepalives_idle(KEEPALIVE_IDLE)
        .keepalives_interval(KEEPALIVE_INTERVAL)
        .keepalives_retries(KEEPALIVE_PROBES);
    options.push_str(&format!(
        " -c tcp_keepalives_idle={} -c tcp_keepalives_interval={} -c tcp_keepalives_count={KEEPALIVE_PROBES}",
        KEEPALIVE_IDLE.as_secs(),
        KEEPALIVE_INTERVAL.as_secs(),
    ));
    if config.statement_timeout_ms > 0 {
        options.push_str(&format!(
            " -c statement_timeout={}",
            config.statement_timeout_ms
        ));
    }
    pg.options(&options);
    Ok((pg, tls))
}

impl PgStore {
    /// Connects, migrates (one daemon at a time) and starts the listener.
    pub async fn open(url: &str, config: &PgConfig) -> anyhow::Result<Self> {
        let (pg, tls) = pg_config(url, config)?;
        let age = detect_age(&pg, &tls, config.age).await?;
        let manager = Manager::from_config(
            pg.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        // Every new connection sets its search_path (AGE's session adds
        // ag_catalog after strata): PGlite ignores the startup options and
        // keeps one session's settings for the next client.
        let session = if age.is_some() {
            age::SESSION
        } else {
            migrate::SET_SEARCH_PATH
        };
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(1))
            .post_create(deadpool_postgres::Hook::async_fn(move |client, _| {
                Box::pin(async move {
                    client
                        .batch_execute(session)
                        .await
                        .map_err(|e| deadpool_postgres::HookError::Message(e.to_string().into()))
                })
            }))
            .build()?;
        let vectors = {
            let mut client = first_connection(&pool).await?;
            migrate::run(&mut client).await?;
            detect_pgvector(&mut client, config).await?
        };
        let tasks = Lifecycle::new();
        let feed = if config.notify {
            notify::Feed::start(pg, tls, &tasks)
        } else {
            notify::Feed::disabled()
        };
        Ok(PgStore {
            notifier: notify::Notifier::start(pool.clone(), &tasks),
            tasks,
            pool,
            feed,
            age,
            vectors,
            statement_timeout_ms: config.statement_timeout_ms,
        })
    }

    /// Tells the other daemons what a write changed (after its commit, or
    /// when its fate is unknown: a notice for a change that did not happen
    /// only costs them a cache miss). This daemon's listener hears it too.
    fn announce(&self, scope: &Scope, outcomes: &[WriteOutcome]) {
        for outcome in outcomes {
            match outcome {
                WriteOutcome::Entity { entity, .. } => {
                    self.notifier
                        .entity_changed(scope, &entity.id, entity.change_seq)
                }
                WriteOutcome::Purged { id, seq, .. } => {
                    self.notifier.entity_changed(scope, id, *seq)
                }
                _ => {}
            }
        }
    }

    /// One attempt at a write: one transaction (or one statement).
    async fn write_once(
        &self,
        scope: &Scope,
        caller: &Caller,
        ops: Vec<WriteOp>,
    ) -> DomainResult<Vec<WriteOutcome>> {
        // A create alone is one statement that takes the project lock
        // itself, so it needs no transaction around it (one round trip).
        // With AGE the projection joins it, so it takes the general path.
        let alone = ops.len() == 1 && matches!(ops[0], WriteOp::CreateEntity { .. });
        if alone && self.age.is_none() {
            let c = self.client().await?;
            let op = ops.into_iter().next().expect("one op");
            let (_, outcome) = apply(&c, scope, caller, op).await.map_err(|e| match e {
                // The project is missing: reported as by the lock.
                e @ DomainError::NotFound(_) => e,
                e => in_batch(0)(e),
            })?;
            return Ok(vec![outcome]);
        }
        let tx = tx::WriteTx::new(self.client().await?);
        let c = tx.client();
        let mut outcomes = Vec::with_capacity(ops.len());
        let mut new_labels = age::NewLabels::default();
        let mut ops = ops.into_iter().enumerate();
        // The first op's first statement travels with BEGIN and the lock.
        let first = ops.next().map(|(_, op)| apply(c, scope, caller, op));
        let (pk, first) = tx.begin(scope, OptionFuture::from(first)).await?;
        let mut applied = first.map(|r| (0, r));
        loop {
            let (index, result) = match applied.take() {
                Some(done) => done,
                None => match ops.next() {
                    Some((index, op)) => (index, apply(c, scope, caller, op).await),
                    None => break,
                },
            };
            let (action, outcome) = result.map_err(in_batch(index))?;
            if let Some(age) = &self.age {
                age.project(c, pk, scope, action, &outcome, &mut new_labels)
                    .await
                    .map_err(in_batch(index))?;
            }
            outcomes.push(outcome);
        }
        if let Err(e) = tx.commit().await {
            self.announce(scope, &outcomes);
            return Err(e);
        }
        if let Some(age) = &self.age {
            age.remember(new_labels);
        }
        Ok(outcomes)
    }

    async fn client(&self) -> DomainResult<deadpool_postgres::Object> {
        self.pool
            .get()
            .await
            .map_err(|e| DomainError::Unavailable(format!("no database connection: {e}")))
    }
}

/// The first connection, retried briefly: a server that is starting, or a
/// single-session server (PGlite) still closing the previous session,
/// refuses for a moment.
async fn first_connection(pool: &Pool) -> anyhow::Result<deadpool_postgres::Object> {
    let mut attempt = 0;
    loop {
        match pool.get().await {
            Ok(client) => return Ok(client),
            // A certificate refused now is refused on every attempt.
            Err(e) if attempt < 25 && !tls::is_tls_failure(&e) => {
                attempt += 1;
                tracing::debug!(error = %e, attempt, "database not answering yet");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Sets AGE up on a connection of its own, before the pool exists, so every
/// pooled connection can load it from the start.
async fn detect_age(
    pg: &tokio_postgres::Config,
    tls: &MakeRustls,
    mode: AgeMode,
) -> anyhow::Result<Option<age::Age>> {
    if mode == AgeMode::Off {
        return Ok(None);
    }
    // Retried like the pool's first connection: a single-session server
    // (PGlite) still closing the previous session refuses for a moment.
    let mut attempt = 0;
    let (client, connection) = loop {
        match pg.connect(tls.clone()).await {
            Ok(pair) => break pair,
            Err(e) if attempt < 25 && e.as_db_error().is_none() && !tls::is_tls_failure(&e) => {
                attempt += 1;
                tracing::debug!(error = %e, attempt, "database not answering yet");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    let driver = tokio::spawn(connection);
    let found = age::Age::detect(&client).await;
    drop(client);
    let _ = driver.await;
    match (found?, mode) {
        (None, AgeMode::On) => {
            anyhow::bail!("STRATA_AGE=on but the database has no Apache AGE extension")
        }
        (found, _) => {
            tracing::info!(age = found.is_some(), "graph projection");
            Ok(found)
        }
    }
}

/// Sets pgvector up after the migrations (its column joins their table).
async fn detect_pgvector(
    client: &mut deadpool_postgres::Object,
    config: &PgConfig,
) -> anyhow::Result<Option<pgvector::Pgvector>> {
    let mode = config.pgvector;
    if mode == ExtensionMode::Off {
        return Ok(None);
    }
    match (
        pgvector::Pgvector::detect(client, config.hnsw_ef_search).await?,
        mode,
    ) {
        (None, ExtensionMode::On) => anyhow::bail!(
            "STRATA_PGVECTOR=on but pgvector is not installed in the database, \
             nor installable by this role"
        ),
        (found, _) => {
            tracing::info!(pgvector = found.is_some(), "semantic search index");
            Ok(found)
        }
    }
}

/// Applies one op with its audit row (the graph projection follows it).
async fn apply<C: deadpool_postgres::GenericClient>(
    c: &C,
    scope: &Scope,
    caller: &Caller,
    op: WriteOp,
) -> DomainResult<(WriteAction, WriteOutcome)> {
    let ctx = Ctx::new(scope, caller, &op);
    let outcome = match rules::target(op) {
        Target::Entity(id, op) => entities::write(c, &ctx, &id, op).await?,
        Target::Relationship(id, op) => relationships::write(c, &ctx, &id, op).await?,
    };
    // Entity changes and new relationships wrote their audit row with the
    // change itself (one statement).
    let audited = matches!(outcome, WriteOutcome::Entity { .. })
        || ctx.action == WriteAction::RelationshipCreate;
    if !audited {
        let fact = audit_rules::of_write(ctx.action, &outcome);
        let place = AuditPlace::scope(scope, caller);
        audit::record(c, &place, fact.action, &fact.target, fact.details).await?;
    }
    Ok((ctx.action, outcome))
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> DomainResult<()> {
        let c = self.client().await?;
        c.simple_query("SELECT 1").await.map_err(pg_err)?;
        Ok(())
    }

    async fn ping_age(&self) -> Option<DomainResult<()>> {
        let age = self.age.as_ref()?;
        let checked = async {
            let c = self.client().await?;
            age.ping(&c).await
        };
        Some(checked.await)
    }

    async fn maintain(&self, task: Maintenance) -> DomainResult<String> {
        let c = self.client().await?;
        match task {
            Maintenance::Frequent => {
                // PostgreSQL checkpoints on its own; nothing to fold back.
                Ok("nothing to do: PostgreSQL manages its write-ahead log".into())
            }
            Maintenance::Daily => {
                c.simple_query(
                    "ANALYZE entities; ANALYZE relationships; ANALYZE entity_versions; \
                     ANALYZE entity_vectors",
                )
                .await
                .map_err(pg_err)?;
                Ok("planner statistics refreshed".into())
            }
        }
    }

    async fn close(&self) {
        // The notifier sends what is queued before it ends.
        self.tasks.stop("postgres notices", CLOSE_GRACE).await;
        self.pool.close();
    }

    fn coherence(&self) -> Coherence {
        match self.feed.live_flag() {
            Some(live) => Coherence::Watched(live),
            None => Coherence::Blind,
        }
    }

    fn watch_changes(&self, sink: Arc<dyn ChangeSink>) {
        self.feed.watch(sink);
    }

    fn runtime_stats(&self) -> crate::store::RuntimeStats {
        let status = self.pool.status();
        crate::store::RuntimeStats {
            pool: Some(crate::store::PoolStats {
                open: status.size as u64,
                idle: status.available as u64,
                max: status.max_size as u64,
                waiting: status.waiting as u64,
            }),
            writer: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both ends probe an idle connection: the client through its socket,
    /// the server through the session settings sent at startup (which every
    /// connection of the test suite's servers accepts).
    #[test]
    fn connections_notice_a_vanished_peer_within_a_minute() {
        let config = PgConfig {
            pool_size: 4,
            statement_timeout_ms: 0,
            connect_timeout_secs: 5,
            notify: false,
            age: AgeMode::Off,
            pgvector: ExtensionMode::Off,
            hnsw_ef_search: 0,
        };
        let (pg, _) = pg_config("postgres://u@127.0.0.1:5432/db", &config).unwrap();
        assert!(pg.get_keepalives());
        let client = pg.get_keepalives_idle()
            + pg.get_keepalives_interval().unwrap() * pg.get_keepalives_retries().unwrap();
        assert!(client <= Duration::from_secs(60), "{client:?}");
        let options = pg.get_options().unwrap();
        for setting in [
            "tcp_keepalives_idle=10",
            "tcp_keepalives_interval=5",
            "tcp_keepalives_count=3",
        ] {
            assert!(options.contains(setting), "{options}");
        }
    }
}
