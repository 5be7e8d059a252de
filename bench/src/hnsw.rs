//! `hnsw`: semantic search on PostgreSQL with pgvector, through the store
//! itself (no daemon): N unit vectors are stored with `put_vectors`, the
//! store builds its HNSW index, and Q top-k queries are timed through
//! `search_vectors` and scored against the exact top-k the bench computes
//! by brute force over its own copy.
//!
//! Two kinds of vectors:
//! - seeded clusters with isotropic noise (the default): a hard case for a
//!   graph index, since every direction of the 384 is used;
//! - `--texts FILE`: real sentences (bench/corpus.py makes a file of them)
//!   embedded with the local model, as the daemon would store them; the
//!   first N lines are stored, the next Q are the queries and the next W
//!   the warm-up. Embedding 1M sentences takes most of an hour on two
//!   cores, so the vectors are kept in `--embeddings FILE` for the next run.
//!
//! Two ways to get the index, as a deployment meets them:
//! - `bulk`: the vectors are stored with pgvector off (the bytes column
//!   only, as on a server without the extension), then the store is opened
//!   again with pgvector on: it fills the `vector` column and builds each
//!   model's index in one `CREATE INDEX` (the path of an existing install
//!   that gains pgvector);
//! - `incremental`: the index exists from the first batch and every insert
//!   goes into it (the path of a new model on a pgvector server).

use crate::stats;
use crate::Ctx;
use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::json;
use std::io::BufRead;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use strata::domain::{Caller, EntityVector, Scope};
use strata::store::postgres::ExtensionMode;
use strata::store::{DynStore, Maintenance};

pub(crate) const MODEL: &str = "bench:random-384";
/// The model name the `--texts` vectors are stored under.
const TEXT_MODEL: &str = "bench:all-minilm-l6-v2";
/// Entity types: the filtered queries ask for one of them.
const TYPES: usize = 10;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Build {
    Bulk,
    Incremental,
}

pub struct Opts {
    pub vectors: usize,
    pub dims: usize,
    pub centres: usize,
    /// Length of the noise added to a centre (the centre has length 1).
    pub spread: f32,
    pub queries: usize,
    pub warmup: usize,
    pub k: usize,
    pub batch: usize,
    pub build: Build,
    /// `hnsw_ef_search` settings to measure, each over the same queries
    /// (0: the store's default).
    pub ef_search: Vec<usize>,
    /// A database a `--keep` run of the same options left: the vectors are
    /// drawn again (same seed) but not stored, the index is there.
    pub reuse: Option<String>,
    pub texts: Option<Texts>,
}

/// Real sentences instead of drawn vectors.
pub struct Texts {
    /// One sentence per line.
    pub file: PathBuf,
    /// The local model's files.
    pub model: PathBuf,
    /// The vectors of the first N + Q + W lines, as little-endian f32 rows,
    /// kept between runs (`embed_lines`).
    pub embeddings: PathBuf,
    /// Stop once the embeddings file is complete.
    pub embed_only: bool,
}

/// What a run stores and asks.
struct Vectors {
    model: &'static str,
    /// N x dims, row i is entity `id(i)`.
    data: Vec<f32>,
    queries: Vec<Vec<f32>>,
    warmup: Vec<Vec<f32>>,
}

impl Vectors {
    fn drawn(o: &Opts, seed: u64) -> Vectors {
        let cloud = Cloud::new(seed, o.dims, o.centres, o.spread);
        let mut r = crate::gen::rng(seed, 7002);
        let data = (0..o.vectors).flat_map(|_| cloud.draw(&mut r)).collect();
        let mut r = crate::gen::rng(seed, 7003);
        let queries = (0..o.queries).map(|_| cloud.draw(&mut r)).collect();
        let mut r = crate::gen::rng(seed, 7004);
        let warmup = (0..o.warmup).map(|_| cloud.draw(&mut r)).collect();
        Vectors {
            model: MODEL,
            data,
            queries,
            warmup,
        }
    }

    fn embedded(o: &Opts, t: &Texts) -> Result<Vectors> {
        let wanted = o.vectors + o.queries + o.warmup;
        embed_lines(t, wanted, o.dims)?;
        let bytes = std::fs::read(&t.embeddings)
            .with_context(|| format!("cannot read {}", t.embeddings.display()))?;
        let flat: Vec<f32> = bytes[..wanted * o.dims * 4]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let mut rows = flat[o.vectors * o.dims..]
            .chunks_exact(o.dims)
            .map(<[f32]>::to_vec);
        let queries = rows.by_ref().take(o.queries).collect();
        let warmup = rows.collect();
        let mut data = flat;
        data.truncate(o.vectors * o.dims);
        Ok(Vectors {
            model: TEXT_MODEL,
            data,
            queries,
            warmup,
        })
    }
}

/// Makes sure the embeddings file holds the vectors of the first `wanted`
/// lines of the texts, embedding by the local model what it lacks. Each
/// batch is appended as it is done, so a run that is stopped (or runs
/// under `nice` for hours) resumes where it was; a torn last row is cut.
fn embed_lines(t: &Texts, wanted: usize, dims: usize) -> Result<()> {
    use std::io::Write;
    let row = dims * 4;
    let mut cache = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&t.embeddings)
        .with_context(|| format!("cannot open {}", t.embeddings.display()))?;
    let held = cache.metadata()?.len() as usize / row;
    cache.set_len((held * row) as u64)?;
    if held >= wanted {
        return Ok(());
    }
    let file = std::fs::File::open(&t.file)
        .with_context(|| format!("cannot read {}", t.file.display()))?;
    let lines: Vec<String> = std::io::BufReader::new(file)
        .lines()
        .skip(held)
        .take(wanted - held)
        .collect::<std::io::Result<_>>()?;
    if held + lines.len() < wanted {
        bail!(
            "{} has {} lines; --vectors + --queries + --warmup need {wanted}",
            t.file.display(),
            held + lines.len()
        );
    }
    let model = strata::embed::LocalEmbedder::load(&t.model)?;
    let started = Instant::now();
    let mut done = 0;
    for chunk in lines.chunks(1024) {
        let mut bytes = Vec::with_capacity(chunk.len() * row);
        for v in model.embed_blocking(chunk)? {
            if v.len() != dims {
                bail!("the model gives {} dimensions, not --dims {dims}", v.len());
            }
            bytes.extend(v.iter().flat_map(|x| x.to_le_bytes()));
        }
        cache.write_all(&bytes)?;
        done += chunk.len();
        if done % (1024 * 50) == 0 || done == lines.len() {
            eprintln!(
                "embedded {} of {wanted} sentences ({:.0}/s)",
                held + done,
                done as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    cache.sync_all()?;
    Ok(())
}

/// A seeded unit vector near one of the centres.
pub(crate) struct Cloud {
    centres: Vec<Vec<f32>>,
    dims: usize,
    spread: f32,
}

impl Cloud {
    pub(crate) fn new(seed: u64, dims: usize, centres: usize, spread: f32) -> Cloud {
        let mut r = crate::gen::rng(seed, 7001);
        let centres = (0..centres.max(1))
            .map(|_| unit(gaussian(&mut r, dims)))
            .collect();
        Cloud {
            centres,
            dims,
            spread,
        }
    }

    pub(crate) fn draw(&self, r: &mut StdRng) -> Vec<f32> {
        let centre = &self.centres[r.random_range(0..self.centres.len())];
        let noise = unit(gaussian(r, self.dims));
        unit(
            centre
                .iter()
                .zip(noise)
                .map(|(c, n)| c + self.spread * n)
                .collect(),
        )
    }
}

/// Standard normal samples (Box–Muller).
fn gaussian(r: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let u: f64 = r.random_range(f64::EPSILON..1.0);
            let v: f64 = r.random();
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        })
        .collect()
}

fn unit(v: Vec<f32>) -> Vec<f32> {
    let n = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::MIN_POSITIVE);
    v.into_iter().map(|x| x / n).collect()
}

/// Eight running sums, so the compiler can use SIMD lanes (a single sum
/// must be added in order); the brute force over 1M vectors is dominated
/// by this.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for ((s, x), y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    acc.iter().sum::<f32>() + tail
}

fn id(i: usize) -> String {
    format!("v{i:07}")
}

pub(crate) fn type_of(i: usize) -> String {
    format!("t{}", i % TYPES)
}

/// The exact top-k ids of each query among the vectors `keep` admits, on
/// two threads (the machine has two cores).
fn exact_top(
    data: &[f32],
    dims: usize,
    queries: &[Vec<f32>],
    k: usize,
    keep: impl Fn(usize) -> bool + Sync,
) -> Vec<Vec<String>> {
    let one = |q: &Vec<f32>| {
        let mut best: Vec<(f32, usize)> = Vec::with_capacity(k + 1);
        for (i, v) in data.chunks_exact(dims).enumerate() {
            if !keep(i) {
                continue;
            }
            let s = dot(q, v);
            if best.len() < k || s > best[best.len() - 1].0 {
                let at = best.partition_point(|(b, _)| *b >= s);
                best.insert(at, (s, i));
                best.truncate(k);
            }
        }
        best.into_iter().map(|(_, i)| id(i)).collect::<Vec<_>>()
    };
    let half = queries.len().div_ceil(2);
    std::thread::scope(|s| {
        let parts: Vec<_> = queries
            .chunks(half.max(1))
            .map(|part| s.spawn(move || part.iter().map(one).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|h| h.join().expect("exact top-k thread"))
            .collect()
    })
}

async fn open(
    url: &str,
    pgvector: ExtensionMode,
    ef_search: usize,
) -> Result<(DynStore, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let mut config = strata::config::Config::embedded(dir.path());
    config.database_url = url.to_owned();
    config.postgres.pool_size = 2;
    config.postgres.notify = false;
    config.postgres.pgvector = pgvector;
    config.postgres.hnsw_ef_search = ef_search;
    // A bulk build of a large index takes longer than a request may.
    config.postgres.statement_timeout_ms = 0;
    let store = strata::store::open(url, &config.store_settings()).await?;
    Ok((store, dir))
}

pub async fn hnsw(ctx: &Ctx, o: Opts) -> Result<()> {
    if let Some(t) = o.texts.as_ref().filter(|t| t.embed_only) {
        return embed_lines(t, o.vectors + o.queries + o.warmup, o.dims);
    }
    let url = match &o.reuse {
        Some(url) => url.clone(),
        None => ctx
            .common
            .env
            .iter()
            .find(|(k, _)| k == "STRATA_DATABASE_URL")
            .map(|(_, v)| v.clone())
            .context("hnsw needs --postgres URL (a server with pgvector) or --reuse URL")?,
    };
    let seed = ctx.common.seed;
    let Vectors {
        model,
        data,
        queries,
        warmup,
    } = match &o.texts {
        Some(t) => Vectors::embedded(&o, t)?,
        None => Vectors::drawn(&o, seed),
    };
    let scope = Scope::new("bench", "vectors");
    let (load, build) = match &o.reuse {
        Some(_) => (Duration::ZERO, Duration::ZERO),
        None => load_and_build(&url, &o, model, &data, &scope).await?,
    };
    let plan = explain(&url, model, o.dims).await?;
    eprintln!("plan of an unfiltered search:");
    for line in plan.lines() {
        eprintln!("  {}", line.chars().take(120).collect::<String>());
    }
    if !plan.contains(&strata::store::postgres::hnsw_index_name(model, o.dims)) {
        bail!("the search does not use the HNSW index; plan:\n{plan}");
    }

    let filtered_type = type_of(0);
    let t = Instant::now();
    let exact_all = exact_top(&data, o.dims, &queries, o.k, |_| true);
    let exact_typed = exact_top(&data, o.dims, &queries, o.k, |i| i % TYPES == 0);
    eprintln!(
        "exact top-{} by brute force in {:.1} s",
        o.k,
        t.elapsed().as_secs_f64()
    );
    drop(data);

    let mut summaries = Vec::new();
    for &ef in &o.ef_search {
        let (store, _dir) = open(&url, ExtensionMode::On, ef).await?;
        for (name, entity_type, exact) in [
            ("top-k", None, &exact_all),
            ("top-k, type", Some(filtered_type.as_str()), &exact_typed),
        ] {
            // Warm-up on other queries: the index pages come into memory.
            for q in &warmup {
                store
                    .search_vectors(&scope, model, q, entity_type, o.k)
                    .await?;
            }
            let mut lat = Vec::with_capacity(queries.len());
            let mut found = 0usize;
            let mut short = 0usize;
            let t = Instant::now();
            for (q, want) in queries.iter().zip(exact) {
                let one = Instant::now();
                let hits = store
                    .search_vectors(&scope, model, q, entity_type, o.k)
                    .await?;
                lat.push(one.elapsed().as_nanos() as u64);
                short += usize::from(hits.len() < o.k);
                found += hits.iter().filter(|h| want.contains(&h.id)).count();
            }
            let recall = found as f64 / (exact.len() * o.k) as f64;
            let label = format!("ef {ef} {name}");
            let s = stats::summarize(&label, lat, 0, t.elapsed())
                .with(&format!("recall@{}", o.k), json!(recall))
                .with("ef_search_setting", json!(ef))
                .with("short_answers", json!(short));
            eprintln!("{}", s.line());
            summaries.push(s);
        }
        store.close().await;
    }
    ctx.report(
        "hnsw",
        &summaries,
        json!({
            "vectors": o.vectors, "dims": o.dims, "model": model,
            "texts": o.texts.as_ref().map(|t| t.file.display().to_string()),
            "centres": o.centres, "spread": o.spread,
            "k": o.k, "build": match o.build { Build::Bulk => "bulk", Build::Incremental => "incremental" },
            "reused": o.reuse.is_some(),
            "load_secs": load.as_secs_f64(), "build_secs": build.as_secs_f64(),
        }),
    )
}

/// Stores the vectors through the store and has it build the index;
/// returns the load and the build time.
async fn load_and_build(
    url: &str,
    o: &Opts,
    model: &str,
    data: &[f32],
    scope: &Scope,
) -> Result<(Duration, Duration)> {
    let load_mode = match o.build {
        Build::Bulk => ExtensionMode::Off,
        Build::Incremental => ExtensionMode::On,
    };
    let (store, _dir) = open(url, load_mode, 0).await?;
    let caller = Caller::new("bench");
    store.create_org(&caller, "bench", "Bench").await?;
    store
        .create_project(&caller, "bench", "vectors", "Vectors")
        .await?;
    let started = Instant::now();
    let mut next = 0;
    while next < o.vectors {
        let end = (next + o.batch).min(o.vectors);
        let batch: Vec<EntityVector> = (next..end)
            .map(|i| EntityVector {
                id: id(i),
                entity_type: type_of(i),
                version: 1,
                vector: data[i * o.dims..(i + 1) * o.dims].to_vec(),
            })
            .collect();
        store.put_vectors(scope, model, batch).await?;
        next = end;
        if next % (o.batch * 100) == 0 {
            eprintln!(
                "stored {next} vectors in {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    let load = started.elapsed();
    eprintln!(
        "stored {} vectors in {:.1} s",
        o.vectors,
        load.as_secs_f64()
    );
    let mut build = Duration::ZERO;
    let store = if o.build == Build::Bulk {
        store.close().await;
        drop(store);
        let t = Instant::now();
        let (store, _) = open(url, ExtensionMode::On, 0).await?;
        build = t.elapsed();
        eprintln!(
            "opened with pgvector: column filled and index built in {:.1} s",
            build.as_secs_f64()
        );
        store
    } else {
        store
    };
    // Statistics, as the daily job (or autovacuum) would have them.
    store.maintain(Maintenance::Daily).await?;
    store.close().await;
    Ok((load, build))
}

/// EXPLAIN of the store's own search statement for this model.
async fn explain(url: &str, model: &str, dims: usize) -> Result<String> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "SET search_path = {}",
            strata::store::postgres::SCHEMA
        ))
        .await?;
    let q: Vec<f32> = (0..dims).map(|i| if i == 0 { 1.0 } else { 0.0 }).collect();
    let rows = client
        .query(
            &format!(
                "EXPLAIN {}",
                strata::store::postgres::hnsw_search_sql("public", model, dims)
            ),
            &[
                &"bench",
                &"vectors",
                &None::<&str>,
                &strata::store::postgres::VectorParam(&q),
                &10i64,
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n"))
}
