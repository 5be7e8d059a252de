//! `strata-bench`: reproducible workloads against a real `strata serve`
//! process that the driver spawns on its own temp data dir and free port.
//! See bench/README.md.

mod age;
mod backup;
mod crdt;
mod daemon;
mod embed;
mod feed;
mod floor;
mod gen;
mod hnsw;
mod http;
mod load;
mod pg;
mod quality;
mod semantic;
mod sockets;
mod stats;
mod transfer;

use anyhow::Result;
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use daemon::{Daemon, DaemonOpts};
use hyper::Method;
use load::{bulk_load, closed_loop, project_path, setup_project, Gen, Req, Stop};
use rand::Rng;
use serde_json::{json, Value};
use stats::Summary;

// The daemon's allocator (src/main.rs): the in-process workloads run the
// daemon's own code and should allocate as `strata` does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "strata-bench",
    about = "Benchmark workloads for the strata daemon"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Args, Clone)]
struct Common {
    /// The strata binary (default: the one built beside strata-bench).
    #[arg(long, global = true)]
    strata: Option<PathBuf>,
    /// Seed of every generator and of the request streams.
    #[arg(long, global = true, default_value_t = 42)]
    seed: u64,
    /// Append one JSON object per run to this file.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    /// Tokio worker threads of the load generator (the daemon shares the machine).
    #[arg(long, global = true, default_value_t = 1)]
    client_threads: usize,
    /// Use this data dir (kept) instead of a fresh temp dir.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Keep the temp data dir after the run.
    #[arg(long, global = true)]
    keep: bool,
    /// Extra daemon settings, e.g. --env STRATA_SQLITE_SYNCHRONOUS=normal (repeatable).
    #[arg(long = "env", global = true, value_parser = parse_kv)]
    env: Vec<(String, String)>,
    /// Operations per POST /batch while loading.
    #[arg(long, global = true, default_value_t = 1000)]
    batch_size: usize,
    /// Batches in flight while loading.
    #[arg(long, global = true, default_value_t = 4)]
    load_concurrency: usize,
    /// Server mode: an admin URL of a PostgreSQL server. The run gets a
    /// fresh database there (dropped afterwards unless --keep).
    #[arg(long, global = true)]
    postgres: Option<String>,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

#[derive(Subcommand)]
enum Cmd {
    /// GET one entity by random id over many keep-alive connections.
    GetEntity {
        #[arg(long, default_value_t = 10_000)]
        entities: usize,
        #[arg(long, default_value_t = 64)]
        conns: usize,
        /// Measured seconds.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        #[arg(long, default_value_t = 2.0)]
        warmup: f64,
        /// Read with a `read`-scoped org key (cache + rate limiter path)
        /// instead of the bootstrap admin key.
        #[arg(long)]
        org_key: bool,
    },
    /// Create an entity, then patch it, over C connections (durable writes).
    Write {
        #[arg(long, default_value_t = 64)]
        conns: usize,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        #[arg(long, default_value_t = 2.0)]
        warmup: f64,
    },
    /// Pokec-like social graph: neighbors depth 1 and depth-3 reachability.
    Pokec {
        #[arg(long, default_value_t = 10_000)]
        entities: u32,
        #[arg(long, default_value_t = 120_000)]
        relationships: usize,
        /// Power-law weight exponent (2/3 ~ degree exponent 2.5).
        #[arg(long, default_value_t = 0.667)]
        exponent: f64,
        /// Measured queries per query kind.
        #[arg(long, default_value_t = 1000)]
        queries: u64,
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// `limit` of the depth-3 query (API default 1000).
        #[arg(long, default_value_t = 1000)]
        depth3_limit: usize,
        /// Also measure depth 3 with this smaller limit (0: skip).
        #[arg(long, default_value_t = 100)]
        depth3_small_limit: usize,
    },
    /// 1M-entity dependency DAG: shortest path, dependents, text search.
    BigGraph {
        #[arg(long, default_value_t = 1_000_000)]
        entities: u32,
        /// Mean out-degree (DEPENDS_ON edges per node; total degree is twice this).
        #[arg(long, default_value_t = 2.5)]
        out_degree: f64,
        /// Local targets are drawn from this many nodes just below.
        #[arg(long, default_value_t = 1000)]
        window: u32,
        #[arg(long, default_value_t = 20_000)]
        vocab: usize,
        #[arg(long, default_value_t = 1000)]
        queries: u64,
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// `max_depth` of dependents (API default 10).
        #[arg(long, default_value_t = 10)]
        dependents_depth: u32,
        /// `limit` of dependents (API default 1000).
        #[arg(long, default_value_t = 1000)]
        dependents_limit: usize,
        /// Path pairs are found by random walks of 1..=this many hops.
        #[arg(long, default_value_t = 4)]
        path_hops: u32,
        #[arg(long, default_value_t = 10)]
        search_limit: usize,
        /// With --data-dir: skip loading when that dir already holds this graph.
        #[arg(long)]
        reuse: bool,
    },
    /// Diagnostics: EXPLAIN QUERY PLAN and timing of one SQL statement on a
    /// (copied) strata.db with the bundled SQLite the daemon uses.
    SqlPlan {
        #[arg(long)]
        db: PathBuf,
        #[arg(long)]
        sql: String,
        /// Positional text parameters ?1, ?2, ...
        #[arg(long = "param")]
        params: Vec<String>,
    },
    /// CRDT log: ingest from many gateways, compaction, large loads, stored bytes.
    Crdt {
        #[arg(long, default_value_t = 64)]
        gateways: usize,
        /// Documents the gateways write to.
        #[arg(long, default_value_t = 256)]
        docs: usize,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Updates in the log compacted in one go.
        #[arg(long, default_value_t = 100_000)]
        log_updates: usize,
        /// Size (MiB) of the compacted document that is loaded.
        #[arg(long, default_value_t = 10)]
        big_mb: usize,
    },
    /// Clients typing into one document over the y-websocket route as fast
    /// as they can: disconnects, converged rate, every update stored.
    CrdtSockets {
        #[arg(long, default_value_t = 8)]
        clients: usize,
        #[arg(long, default_value_t = 500)]
        edits: usize,
        /// All clients type at the start of one text (every edit conflicts)
        /// instead of each at its own cursor.
        #[arg(long)]
        same_spot: bool,
    },
    /// kill -9 during socket editing: acknowledged edits kept, per trial.
    CrdtKill {
        #[arg(long, default_value_t = 10)]
        trials: usize,
        #[arg(long, default_value_t = 4)]
        clients: usize,
    },
    /// Idle documents with a connection each: daemon RSS, relay latency.
    CrdtIdle {
        #[arg(long, default_value_t = 10_000)]
        docs: usize,
        #[arg(long, default_value_t = 200)]
        probes: usize,
    },
    /// Gateway ingest in binary batches (POST P/doc-updates): durable
    /// updates per second from many gateways over many documents.
    CrdtBatch {
        #[arg(long, default_value_t = 64)]
        gateways: usize,
        /// Documents the gateways write to (shared out among them).
        #[arg(long, default_value_t = 1024)]
        docs: usize,
        /// Updates per request.
        #[arg(long, default_value_t = 100)]
        batch: usize,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
    },
    /// Depth-3 reachability on PGlite (AGE): recursive CTE (REST) vs Cypher
    /// variable-length match, same engine, same start nodes.
    AgeRatio {
        /// Admin URL of a fresh PGlite server with AGE (one connection).
        #[arg(long)]
        pglite: String,
        #[arg(long, default_value_t = 2_000)]
        entities: u32,
        #[arg(long, default_value_t = 24_000)]
        relationships: usize,
        #[arg(long, default_value_t = 0.667)]
        exponent: f64,
        #[arg(long, default_value_t = 200)]
        queries: u64,
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Search quality: recall@10 and MRR of text, semantic and hybrid search
    /// on a generated, labelled corpus (synonyms, typos, multi-word, stems).
    Quality {
        #[arg(long, default_value_t = 3000)]
        entities: usize,
        /// Install the local embedding model from this directory
        /// (model.safetensors, tokenizer.json, config.json) before starting.
        #[arg(long)]
        model_dir: Option<PathBuf>,
        /// Write the results as JSON to this file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Seconds to wait for the derived indexes to catch up after loading.
        #[arg(long, default_value_t = 300)]
        catch_up_timeout: u64,
    },
    /// The change feed: Meilisearch-consumer lag under steady writes, then
    /// the outbox's size after a long run once consumers caught up.
    Feed {
        /// Entity writes per second while lag is sampled.
        #[arg(long, default_value_t = 2000)]
        rate: u64,
        /// Seconds of steady writes.
        #[arg(long, default_value_t = 30.0)]
        duration: f64,
        /// Writes of the long run (POST /batch of 500).
        #[arg(long, default_value_t = 1_000_000)]
        total: usize,
    },
    /// Time to /health/ready on an empty data dir, and idle RSS.
    Startup {
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Idle time after ready before reading VmRSS.
        #[arg(long, default_value_t = 2000)]
        settle_ms: u64,
    },
    /// Semantic search with pgvector's HNSW index through the store itself
    /// (needs --postgres, a server with pgvector): p50/p99 latency of
    /// top-k queries and recall@k against the exact top-k.
    Hnsw {
        /// Unit vectors stored.
        #[arg(long, default_value_t = 1_000_000)]
        vectors: usize,
        #[arg(long, default_value_t = 384)]
        dims: usize,
        /// Cluster centres the vectors are drawn around.
        #[arg(long, default_value_t = 100)]
        centres: usize,
        /// Length of the noise added to a (unit) centre before normalising.
        #[arg(long, default_value_t = 1.0)]
        spread: f32,
        /// Measured queries (each run unfiltered and with a type filter).
        #[arg(long, default_value_t = 1000)]
        queries: usize,
        #[arg(long, default_value_t = 200)]
        warmup: usize,
        #[arg(long, default_value_t = 10)]
        k: usize,
        /// Vectors per put_vectors call.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// bulk: store, then let the store build the index in one go;
        /// incremental: the index takes every insert.
        #[arg(long, value_enum, default_value = "bulk")]
        build: hnsw::Build,
        /// The store's least hnsw.ef_search, one run each (0: its default).
        #[arg(long, value_delimiter = ',', default_value = "0")]
        ef_search: Vec<usize>,
        /// Measure on the database a --keep run of the same options left
        /// (nothing is stored; --postgres is not needed).
        #[arg(long)]
        reuse: Option<String>,
        /// Real sentences, one per line (bench/corpus.py), embedded by the
        /// local model instead of drawn vectors.
        #[arg(long, requires = "embeddings")]
        texts: Option<PathBuf>,
        /// The model files, for --texts.
        #[arg(long, env = "STRATA_TEST_MODEL_DIR")]
        model: Option<PathBuf>,
        /// Where the --texts vectors are kept between runs.
        #[arg(long)]
        embeddings: Option<PathBuf>,
        /// Only embed the --texts (resumable; run it under nice while the
        /// machine does other work), then stop.
        #[arg(long, requires = "texts")]
        embed_only: bool,
    },
    /// Semantic search in embedded mode through the store itself: each
    /// query embedded by the local model, then ranked over --vectors
    /// stored vectors (the exact scan); p50/p99 of both together and apart.
    Semantic {
        /// The model files (ops/test-model.sh installs them).
        #[arg(long, env = "STRATA_TEST_MODEL_DIR")]
        model: PathBuf,
        #[arg(long, default_value_t = 100_000)]
        vectors: usize,
        #[arg(long, default_value_t = 500)]
        queries: usize,
        #[arg(long, default_value_t = 50)]
        warmup: usize,
    },
    /// Import and export in process (no HTTP): a generated export file of
    /// --entities and --relationships imported into an empty project,
    /// imported again, exported back; rows/s and MB/s.
    Transfer(transfer::TransferOpts),
    /// Logical backups in process (no HTTP): the transfer graph loaded, a
    /// full backup, its restore into SQLite, an incremental backup after
    /// 10,000 changes; seconds, bytes, rows/s.
    Backup(transfer::Opts),
    /// The bound under the import's rate: --entities imported, then the
    /// rows it wrote stored again by the database alone (SQLite
    /// `INSERT ... SELECT`, PostgreSQL binary `COPY`) into a fresh store.
    ImportFloor(floor::FloorOpts),
    /// The local embedding model in-process: sentences/s batched, and the
    /// latency of one short query (no daemon).
    Embed {
        /// The model files (ops/test-model.sh installs them).
        #[arg(long, env = "STRATA_TEST_MODEL_DIR")]
        model: PathBuf,
        #[arg(long, default_value_t = 1000)]
        sentences: usize,
        /// Sentences per call (the embedder runs passes of 32).
        #[arg(long, default_value_t = 256)]
        batch: usize,
        #[arg(long, default_value_t = 300)]
        queries: usize,
    },
}

pub struct Ctx {
    common: Common,
    command_line: String,
    load_avg: String,
}

impl Ctx {
    fn daemon_opts(&self) -> DaemonOpts {
        DaemonOpts {
            bin: self
                .common
                .strata
                .clone()
                .unwrap_or_else(daemon::default_bin),
            data_dir: self.common.data_dir.clone(),
            env: self.common.env.clone(),
            keep: self.common.keep,
        }
    }

    /// Loads `ops` through `POST .../batch` with this run's batch size and
    /// concurrency, and says how fast it went.
    async fn load(
        &self,
        d: &Daemon,
        label: &str,
        total: usize,
        ops: impl Iterator<Item = String> + Send + 'static,
    ) -> Result<(usize, Duration)> {
        let (n, took) = bulk_load(
            &d.addr,
            &d.key,
            label,
            total,
            self.common.batch_size,
            self.common.load_concurrency,
            ops,
        )
        .await?;
        eprintln!("{}", load_line(label, n, took));
        Ok((n, took))
    }

    /// The daemon's PostgreSQL database (server mode), if any.
    fn database_url(&self) -> Option<&str> {
        self.common
            .env
            .iter()
            .find(|(k, _)| k == "STRATA_DATABASE_URL")
            .map(|(_, v)| v.as_str())
    }

    /// Server mode: VACUUM ANALYZE after loading, as after any bulk load.
    async fn settle_after_load(&self) -> Result<()> {
        if let Some(url) = self.database_url() {
            let took = pg::vacuum_analyze(url).await?;
            eprintln!("VACUUM (ANALYZE) after loading: {took:.1?}");
        }
        Ok(())
    }

    fn report(&self, workload: &str, summaries: &[Summary], extra: Value) -> Result<()> {
        for s in summaries {
            println!("{}", s.line());
        }
        if let Some(path) = &self.common.json {
            use std::io::Write;
            let record = json!({
                "workload": workload,
                "command": self.command_line,
                "seed": self.common.seed,
                "load_avg_at_start": self.load_avg,
                "results": summaries.iter().map(Summary::json).collect::<Vec<_>>(),
                "extra": extra,
            });
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            writeln!(f, "{record}")?;
        }
        Ok(())
    }
}

fn load_avg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

pub fn start(ctx: &Ctx) -> Result<Daemon> {
    let mut d = Daemon::spawn(&ctx.daemon_opts())?;
    let ready = d.wait_ready(Duration::from_millis(5), Duration::from_secs(120))?;
    eprintln!(
        "strata pid {} ready on {} after {:?} (data {})",
        d.pid(),
        d.addr,
        ready,
        d.data_dir.display()
    );
    Ok(d)
}

pub fn load_line(label: &str, ops: usize, took: Duration) -> String {
    format!(
        "load {label}: {ops} ops in {:.1}s = {:.0} ops/s",
        took.as_secs_f64(),
        ops as f64 / took.as_secs_f64()
    )
}

fn main() -> Result<()> {
    // As `strata` runs its embedder (embed/local.rs).
    strata::embed::local::single_threaded_kernels();
    let mut cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.common.client_threads.max(1))
        .enable_all()
        .build()?;
    let database = match &cli.common.postgres {
        Some(admin) => {
            let db = rt.block_on(pg::create_database(admin))?;
            cli.common
                .env
                .push(("STRATA_DATABASE_URL".into(), db.url.clone()));
            Some(db)
        }
        None => None,
    };
    let keep = cli.common.keep;
    let result = run(cli, &rt);
    if let Some(db) = database.filter(|_| !keep) {
        if let Err(e) = rt.block_on(db.drop_database()) {
            eprintln!("could not drop {}: {e:#}", db.url);
        }
    }
    result
}

fn run(cli: Cli, rt: &tokio::runtime::Runtime) -> Result<()> {
    let ctx = Ctx {
        command_line: std::env::args().collect::<Vec<_>>().join(" "),
        load_avg: load_avg(),
        common: cli.common.clone(),
    };
    eprintln!("load average at start: {}", ctx.load_avg);
    rt.block_on(async move {
        match cli.command {
            Cmd::GetEntity {
                entities,
                conns,
                duration,
                warmup,
                org_key,
            } => get_entity(&ctx, entities, conns, duration, warmup, org_key).await,
            Cmd::Write {
                conns,
                duration,
                warmup,
            } => write(&ctx, conns, duration, warmup).await,
            Cmd::CrdtSockets {
                clients,
                edits,
                same_spot,
            } => {
                let spot = match same_spot {
                    true => sockets::Spot::Start,
                    false => sockets::Spot::Own,
                };
                sockets::typing(&ctx, clients, edits, spot).await
            }
            Cmd::CrdtIdle { docs, probes } => sockets::idle(&ctx, docs, probes).await,
            Cmd::CrdtKill { trials, clients } => sockets::kill_trials(&ctx, trials, clients).await,
            Cmd::CrdtBatch {
                gateways,
                docs,
                batch,
                duration,
            } => crdt::ingest_batches(&ctx, gateways, docs, batch, duration).await,
            Cmd::Crdt {
                gateways,
                docs,
                duration,
                log_updates,
                big_mb,
            } => crdt::crdt(&ctx, gateways, docs, duration, log_updates, big_mb).await,
            Cmd::Pokec {
                entities,
                relationships,
                exponent,
                queries,
                concurrency,
                depth3_limit,
                depth3_small_limit,
            } => {
                pokec(
                    &ctx,
                    entities,
                    relationships,
                    exponent,
                    queries,
                    concurrency,
                    depth3_limit,
                    depth3_small_limit,
                )
                .await
            }
            Cmd::BigGraph {
                entities,
                out_degree,
                window,
                vocab,
                queries,
                concurrency,
                dependents_depth,
                dependents_limit,
                path_hops,
                search_limit,
                reuse,
            } => {
                big_graph(
                    &ctx,
                    BigGraph {
                        entities,
                        out_degree,
                        window,
                        vocab,
                        queries,
                        concurrency,
                        dependents_depth,
                        dependents_limit,
                        path_hops,
                        search_limit,
                        reuse,
                    },
                )
                .await
            }
            Cmd::AgeRatio {
                pglite,
                entities,
                relationships,
                exponent,
                queries,
                limit,
            } => {
                age::ratio(
                    &ctx,
                    &pglite,
                    age::Graph {
                        users: entities,
                        knows: relationships,
                        exponent,
                    },
                    queries,
                    limit,
                )
                .await
            }
            Cmd::Quality {
                entities,
                model_dir,
                out,
                catch_up_timeout,
            } => {
                let opts = quality::Opts {
                    entities,
                    model_dir,
                    out,
                    catch_up_timeout: Duration::from_secs(catch_up_timeout),
                };
                quality::quality(&ctx, opts).await
            }
            Cmd::Feed {
                rate,
                duration,
                total,
            } => {
                let run = feed::FeedRun {
                    rate,
                    duration,
                    total,
                };
                feed::feed(&ctx, run).await
            }
            Cmd::Startup { runs, settle_ms } => startup(&ctx, runs, settle_ms),
            Cmd::Embed {
                model,
                sentences,
                batch,
                queries,
            } => embed::embed(&ctx, &model, sentences, batch, queries),
            Cmd::Semantic {
                model,
                vectors,
                queries,
                warmup,
            } => {
                let opts = semantic::Opts {
                    model,
                    vectors,
                    queries,
                    warmup,
                };
                semantic::semantic(&ctx, opts).await
            }
            Cmd::Transfer(opts) => transfer::transfer(&ctx, opts).await,
            Cmd::Backup(opts) => backup::backup(&ctx, opts).await,
            Cmd::ImportFloor(opts) => floor::import_floor(&ctx, opts).await,
            Cmd::SqlPlan { db, sql, params } => sql_plan(&db, &sql, &params),
            Cmd::Hnsw {
                vectors,
                dims,
                centres,
                spread,
                queries,
                warmup,
                k,
                batch,
                build,
                ef_search,
                reuse,
                texts,
                model,
                embeddings,
                embed_only,
            } => {
                let texts = match (texts, model, embeddings) {
                    (Some(file), Some(model), Some(embeddings)) => Some(hnsw::Texts {
                        file,
                        model,
                        embeddings,
                        embed_only,
                    }),
                    (Some(_), None, _) => {
                        anyhow::bail!("--texts needs --model or STRATA_TEST_MODEL_DIR")
                    }
                    _ => None,
                };
                let opts = hnsw::Opts {
                    vectors,
                    dims,
                    centres,
                    spread,
                    queries,
                    warmup,
                    k,
                    batch,
                    build,
                    ef_search,
                    reuse,
                    texts,
                };
                hnsw::hnsw(&ctx, opts).await
            }
        }
    })
}

async fn get_entity(
    ctx: &Ctx,
    n: usize,
    conns: usize,
    duration: f64,
    warmup: f64,
    org_key: bool,
) -> Result<()> {
    let d = start(ctx)?;
    setup_project(&d.addr, &d.key).await?;
    let seed = ctx.common.seed;
    let vocab = gen::Vocab::new(seed, 5000);
    let ops = (0..n).map(move |i| {
        let mut r = gen::rng(seed, 10 + i as u64);
        gen::item_op(&vocab, &mut r, i)
    });
    let (ops, took) = ctx.load(&d, "entities", n, ops).await?;
    let gen: Gen = Arc::new(move |_, _, r| {
        Req::get(project_path(&format!(
            "/entities/{}",
            gen::item_id(r.random_range(0..n))
        )))
    });
    let stop = Stop::Time {
        warmup: Duration::from_secs_f64(warmup),
        measure: Duration::from_secs_f64(duration),
    };
    let hits0 = load::metric(&d.addr, &d.key, "strata_entity_cache_hits_total").await?;
    let miss0 = load::metric(&d.addr, &d.key, "strata_entity_cache_misses_total").await?;
    let key = if org_key {
        load::read_key(&d.addr, &d.key).await?
    } else {
        d.key.clone()
    };
    let s = closed_loop("get-entity", &d.addr, &key, seed, conns, stop, "", gen)
        .await?
        .with("org_key", org_key.into());
    let hits = load::metric(&d.addr, &d.key, "strata_entity_cache_hits_total").await? - hits0;
    let miss = load::metric(&d.addr, &d.key, "strata_entity_cache_misses_total").await? - miss0;
    let (rss, hwm) = d.rss_kib()?;
    let s = s
        .with("entities", n.into())
        .with("cache_hit_ratio", (hits / (hits + miss).max(1.0)).into())
        .with("daemon_rss_mib", (rss / 1024).into());
    ctx.report(
        "get-entity",
        &[s],
        json!({"load_ops": ops, "load_secs": took.as_secs_f64(), "vm_hwm_kib": hwm}),
    )
}

async fn write(ctx: &Ctx, conns: usize, duration: f64, warmup: f64) -> Result<()> {
    let d = start(ctx)?;
    setup_project(&d.addr, &d.key).await?;
    let seed = ctx.common.seed;
    let vocab = Arc::new(gen::Vocab::new(seed, 5000));
    // Worker w's request i: even i creates w-(i/2), odd i patches it.
    let gen: Gen = Arc::new(move |w, i, r| {
        let id = format!("w{w}-{}", i / 2);
        if i % 2 == 0 {
            let body = json!({"id": id, "type": "Item", "properties": gen::item_props(&vocab, r, i as usize)});
            Req {
                method: Method::POST,
                path: project_path("/entities"),
                body: Some(Bytes::from(body.to_string())),
            }
        } else {
            let body = json!({"properties": {"status": "closed", "priority": r.random_range(1..=5), "note": vocab.sentence(r, 4)}});
            Req {
                method: Method::PATCH,
                path: project_path(&format!("/entities/{id}")),
                body: Some(Bytes::from(body.to_string())),
            }
        }
    });
    let stop = Stop::Time {
        warmup: Duration::from_secs_f64(warmup),
        measure: Duration::from_secs_f64(duration),
    };
    let sync = ctx
        .common
        .env
        .iter()
        .find(|(k, _)| k == "STRATA_SQLITE_SYNCHRONOUS")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "full".into());
    let s = closed_loop(
        "write (create+patch)",
        &d.addr,
        &d.key,
        seed,
        conns,
        stop,
        "",
        gen,
    )
    .await?
    .with("synchronous", sync.into());
    ctx.report("write", &[s], json!({}))
}

#[allow(clippy::too_many_arguments)]
async fn pokec(
    ctx: &Ctx,
    n: u32,
    m: usize,
    exponent: f64,
    queries: u64,
    conc: usize,
    limit: usize,
    small_limit: usize,
) -> Result<()> {
    let seed = ctx.common.seed;
    let d = start(ctx)?;
    let g = load_pokec(ctx, &d, n, m, exponent).await?;
    ctx.settle_after_load().await?;
    let (edges, n_ent, t_ent, n_rel, t_rel) =
        (g.edges, g.users, g.users_took, g.knows, g.knows_took);
    let (max_out, max_in) = (g.max_out, g.max_in);
    let per = queries.div_ceil(conc as u64);
    let stop = Stop::Count {
        warmup: 50,
        measure: per,
    };
    let nb = |depth: u32, limit: Option<usize>| -> Gen {
        Arc::new(move |_, _, r| {
            let start = gen::user_id(r.random_range(0..n));
            let lim = limit.map(|l| format!("&limit={l}")).unwrap_or_default();
            Req::get(project_path(&format!(
                "/entities/{start}/neighbors?depth={depth}&direction=out{lim}"
            )))
        })
    };
    let mut out = Vec::new();
    out.push(
        closed_loop(
            "neighbors depth=1",
            &d.addr,
            &d.key,
            seed,
            conc,
            stop,
            "\"depth\"",
            nb(1, None),
        )
        .await?,
    );
    out.push(
        closed_loop(
            &format!("depth3 limit={limit}"),
            &d.addr,
            &d.key,
            seed,
            conc,
            stop,
            "\"depth\"",
            nb(3, Some(limit)),
        )
        .await?,
    );
    if small_limit > 0 {
        out.push(
            closed_loop(
                &format!("depth3 limit={small_limit}"),
                &d.addr,
                &d.key,
                seed,
                conc,
                stop,
                "\"depth\"",
                nb(3, Some(small_limit)),
            )
            .await?,
        );
    }
    ctx.report(
        "pokec",
        &out,
        json!({
            "users": n, "knows": edges.len(), "max_out_degree": max_out, "max_in_degree": max_in,
            "load_users_secs": t_ent.as_secs_f64(), "load_knows_secs": t_rel.as_secs_f64(),
        }),
    )?;
    println!("{}", load_line("users", n_ent, t_ent));
    println!("{}", load_line("KNOWS", n_rel, t_rel));
    Ok(())
}

/// The Pokec-like graph as loaded into a running daemon.
pub struct PokecLoad {
    pub edges: Arc<Vec<(u32, u32)>>,
    pub users: usize,
    pub users_took: Duration,
    pub knows: usize,
    pub knows_took: Duration,
    pub max_out: u32,
    pub max_in: u32,
}

/// Generates the Pokec-like graph (`n` users, `m` KNOWS edges) and loads it
/// into the bench project through `POST .../batch`.
pub async fn load_pokec(
    ctx: &Ctx,
    d: &Daemon,
    n: u32,
    m: usize,
    exponent: f64,
) -> Result<PokecLoad> {
    let seed = ctx.common.seed;
    let t = Instant::now();
    let edges = Arc::new(gen::pokec_edges(seed, n, m, exponent));
    let mut outdeg = vec![0u32; n as usize];
    let mut indeg = vec![0u32; n as usize];
    for &(a, b) in edges.iter() {
        outdeg[a as usize] += 1;
        indeg[b as usize] += 1;
    }
    let max_out = *outdeg.iter().max().unwrap_or(&0);
    let max_in = *indeg.iter().max().unwrap_or(&0);
    let zero_out = outdeg.iter().filter(|&&d| d == 0).count();
    eprintln!("pokec graph: {n} users, {} KNOWS edges, max out {max_out}, max in {max_in}, {zero_out} users without out-edges (generated in {:?})", edges.len(), t.elapsed());
    setup_project(&d.addr, &d.key).await?;
    let vocab = gen::Vocab::new(seed, 5000);
    let ents = (0..n).map(move |i| {
        let mut r = gen::rng(seed, 10 + i as u64);
        gen::user_op(&vocab, &mut r, i)
    });
    let (users, users_took) = ctx.load(d, "users", n as usize, ents).await?;
    let e2 = edges.clone();
    let rels = (0..e2.len()).map(move |k| gen::knows_op(k, e2[k].0, e2[k].1));
    let (knows, knows_took) = ctx.load(d, "KNOWS", edges.len(), rels).await?;
    Ok(PokecLoad {
        edges,
        users,
        users_took,
        knows,
        knows_took,
        max_out,
        max_in,
    })
}

struct BigGraph {
    entities: u32,
    out_degree: f64,
    window: u32,
    vocab: usize,
    queries: u64,
    concurrency: usize,
    dependents_depth: u32,
    dependents_limit: usize,
    path_hops: u32,
    search_limit: usize,
    reuse: bool,
}

async fn big_graph(ctx: &Ctx, p: BigGraph) -> Result<()> {
    let seed = ctx.common.seed;
    let n = p.entities;
    let t = Instant::now();
    let adj = Arc::new(gen::dag(seed, n, p.out_degree, p.window));
    let m: usize = adj.iter().map(Vec::len).sum();
    eprintln!(
        "DAG: {n} packages, {m} DEPENDS_ON edges (mean out-degree {:.2}), generated in {:?}",
        m as f64 / n as f64,
        t.elapsed()
    );
    let marker = json!({"entities": n, "out_degree": p.out_degree, "window": p.window, "vocab": p.vocab, "seed": seed}).to_string();
    let marker_path = ctx
        .common
        .data_dir
        .as_ref()
        .map(|dir| dir.join("strata-bench-graph.json"));
    let already = p.reuse
        && marker_path
            .as_ref()
            .and_then(|m| std::fs::read_to_string(m).ok())
            .as_deref()
            == Some(marker.as_str());
    let d = start(ctx)?;
    setup_project(&d.addr, &d.key).await?;
    let vocab = Arc::new(gen::Vocab::new(seed, p.vocab));
    let mut load = json!({"reused": already});
    if !already {
        let v = vocab.clone();
        let ents = (0..n).map(move |i| {
            let mut r = gen::rng(seed, 10 + i as u64);
            gen::pkg_op(&v, &mut r, i)
        });
        let (ne, te) = ctx.load(&d, "packages", n as usize, ents).await?;
        let a2 = adj.clone();
        let rels = (0..n)
            .flat_map(move |i| {
                a2[i as usize]
                    .iter()
                    .map(move |&j| (i, j))
                    .collect::<Vec<_>>()
            })
            .enumerate()
            .map(|(k, (i, j))| gen::dep_op(k, i, j));
        let (nr, tr) = ctx.load(&d, "DEPENDS_ON", m, rels).await?;
        load = json!({"reused": false, "packages": ne, "packages_secs": te.as_secs_f64(), "edges": nr, "edges_secs": tr.as_secs_f64()});
        ctx.settle_after_load().await?;
        if let Some(m) = &marker_path {
            std::fs::write(m, &marker)?;
        }
    }
    let db_bytes = std::fs::metadata(d.data_dir.join("strata.db"))
        .map(|m| m.len())
        .unwrap_or(0);
    let per = p.queries.div_ceil(p.concurrency as u64);
    let stop = Stop::Count {
        warmup: 50,
        measure: per,
    };
    let conc = p.concurrency;
    let mut out = Vec::new();

    // Shortest path between a node and the end of a random walk along its
    // DEPENDS_ON edges: a path of at most `path_hops` hops exists.
    let (a3, hops) = (adj.clone(), p.path_hops);
    let path_gen: Gen = Arc::new(move |_, _, r| loop {
        let from = r.random_range(0..n);
        let steps = r.random_range(1..=hops);
        let mut at = from;
        for _ in 0..steps {
            let outs = &a3[at as usize];
            if outs.is_empty() {
                break;
            }
            at = outs[r.random_range(0..outs.len())];
        }
        if at != from {
            return Req::get(project_path(&format!(
                "/paths/shortest?from={}&to={}&direction=out&types=DEPENDS_ON",
                gen::pkg_id(from),
                gen::pkg_id(at)
            )));
        }
    });
    out.push(
        closed_loop(
            "shortest path",
            &d.addr,
            &d.key,
            seed,
            conc,
            stop,
            "\"depth\"",
            path_gen,
        )
        .await?,
    );

    let (dd, dl) = (p.dependents_depth, p.dependents_limit);
    let dep_gen: Gen = Arc::new(move |_, _, r| {
        Req::get(project_path(&format!(
            "/entities/{}/dependents?max_depth={dd}&limit={dl}",
            gen::pkg_id(r.random_range(0..n))
        )))
    });
    out.push(
        closed_loop(
            &format!("dependents d={dd} l={dl}"),
            &d.addr,
            &d.key,
            seed,
            conc,
            stop,
            "\"depth\"",
            dep_gen,
        )
        .await?,
    );
    let dep1: Gen = Arc::new(move |_, _, r| {
        Req::get(project_path(&format!(
            "/entities/{}/dependents?max_depth=1&limit={dl}",
            gen::pkg_id(r.random_range(0..n))
        )))
    });
    out.push(
        closed_loop(
            "dependents d=1",
            &d.addr,
            &d.key,
            seed,
            conc,
            stop,
            "\"depth\"",
            dep1,
        )
        .await?,
    );

    // Text search is measured on the daemon's text index once it has
    // applied the whole feed (until then the database's index answers).
    let t = Instant::now();
    while load::metric(&d.addr, &d.key, "strata_text_index_current").await? != 1.0 {
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(3600),
            "text index never caught up"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let text_index_wait = t.elapsed().as_secs_f64();
    let documents = load::metric(&d.addr, &d.key, "strata_text_index_documents").await?;
    eprintln!("text index current after {text_index_wait:.1} s more ({documents} documents)");

    // Half one-word, half two-word queries, words drawn uniformly or by
    // frequency (Zipf: the commonest words match much of the corpus).
    let sl = p.search_limit;
    for (name, zipf) in [
        ("search (uniform terms)", false),
        ("search (zipf terms)", true),
    ] {
        let v = vocab.clone();
        let gen: Gen = Arc::new(move |_, _, r| {
            let word = |r: &mut rand::rngs::StdRng| {
                let w = if zipf { v.zipf(r) } else { v.uniform(r) };
                w.to_owned()
            };
            let q = if r.random_bool(0.5) {
                word(r)
            } else {
                format!("{}+{}", word(r), word(r))
            };
            Req::get(project_path(&format!("/search?q={q}&mode=text&limit={sl}")))
        });
        out.push(closed_loop(name, &d.addr, &d.key, seed, conc, stop, "\"score\"", gen).await?);
    }
    let (rss, hwm) = d.rss_kib()?;
    ctx.report("big-graph", &out, json!({
        "entities": n, "edges": m, "load": load, "db_bytes": db_bytes, "rss_kib": rss, "hwm_kib": hwm,
        "text_index_wait_secs": text_index_wait, "text_index_documents": documents,
    }))?;
    if let Some(te) = load.get("packages_secs").and_then(Value::as_f64) {
        println!(
            "{}",
            load_line("packages", n as usize, Duration::from_secs_f64(te))
        );
        println!(
            "{}",
            load_line(
                "DEPENDS_ON",
                m,
                Duration::from_secs_f64(load["edges_secs"].as_f64().unwrap_or(0.0))
            )
        );
    }
    println!("database file: {:.1} MiB", db_bytes as f64 / 1048576.0);
    Ok(())
}

fn startup(ctx: &Ctx, runs: usize, settle_ms: u64) -> Result<()> {
    anyhow::ensure!(
        ctx.common.data_dir.is_none(),
        "startup always uses fresh empty data dirs"
    );
    let mut ready = Vec::new();
    let mut rss = Vec::new();
    let mut hwm = Vec::new();
    for _ in 0..runs {
        let mut d = Daemon::spawn(&ctx.daemon_opts())?;
        let t = d.wait_ready(Duration::from_micros(500), Duration::from_secs(30))?;
        ready.push(t.as_nanos() as u64);
        std::thread::sleep(Duration::from_millis(settle_ms));
        let (r, h) = d.rss_kib()?;
        rss.push(r);
        hwm.push(h);
        drop(d);
    }
    let rss_sorted = {
        let mut v = rss.clone();
        v.sort_unstable();
        v
    };
    let median_rss = rss_sorted[rss_sorted.len() / 2];
    let s = stats::summarize("startup to ready", ready, 0, Duration::from_secs(1))
        .with("runs", runs.into())
        .with(
            "idle_rss_mib_median",
            ((median_rss as f64 / 1024.0 * 10.0).round() / 10.0).into(),
        )
        .with("idle_rss_kib", json!(rss))
        .with("vm_hwm_kib", json!(hwm));
    ctx.report("startup", &[s], json!({}))
}

fn sql_plan(db: &std::path::Path, sql: &str, params: &[String]) -> Result<()> {
    use rusqlite::{params_from_iter, Connection, OpenFlags};
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    println!("sqlite {}", rusqlite::version());
    let mut st = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
    let rows = st.query_map(params_from_iter(params.iter()), |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(3)?,
        ))
    })?;
    for row in rows {
        let (id, parent, detail) = row?;
        println!("  {id:>4} {parent:>4} {detail}");
    }
    let mut st = conn.prepare(sql)?;
    let t = Instant::now();
    let n = st
        .query_map(params_from_iter(params.iter()), |_| Ok(()))?
        .count();
    println!("{n} rows in {:?}", t.elapsed());
    Ok(())
}
