//! `transfer`: import and export through the daemon's own code, in process
//! (no HTTP): an export file of N entities (one version each, a few
//! properties) and M relationships is generated, imported into an empty
//! project with `strata::import::run` (both passes: the check, then the
//! stores' batches), imported again (every row unchanged), and exported
//! back with `strata::export::project`. SQLite by default; PostgreSQL with
//! `--postgres` (a fresh database).

use crate::Ctx;
use anyhow::{ensure, Result};
use futures_util::StreamExt;
use rand::Rng;
use serde_json::json;
use std::io::Write;
use std::time::Instant;
use strata::domain::{Caller, Scope};
use strata::import::Target;

/// The size of the generated graph.
#[derive(clap::Args)]
pub struct Opts {
    #[arg(long, default_value_t = 1_000_000)]
    pub entities: usize,
    #[arg(long, default_value_t = 2_480_000)]
    pub relationships: usize,
}

#[derive(clap::Args)]
pub struct TransferOpts {
    #[command(flatten)]
    pub graph: Opts,
    /// Stop after the first import (no second import, no export): for
    /// profiling the load alone.
    #[arg(long)]
    pub import_only: bool,
}

/// When the import's passes were seen to move: the first and the last
/// `stored` call mark the store pass's start and end, so the time before
/// is the check pass and the time after is the closing index builds.
#[derive(Default)]
struct Phases {
    first_stored: std::sync::OnceLock<Instant>,
    last_stored: std::sync::Mutex<Option<Instant>>,
}

impl strata::import::Progress for Phases {
    fn stored(&self, _bytes: u64) {
        let now = Instant::now();
        self.first_stored.get_or_init(|| now);
        *self.last_stored.lock().expect("phases lock") = Some(now);
    }
}

impl Phases {
    /// Seconds of (check, store, finish) of an import that began at
    /// `start` and took `total` seconds.
    fn split(&self, start: Instant, total: f64) -> (f64, f64, f64) {
        let first = self.first_stored.get().copied().unwrap_or(start);
        let last = self
            .last_stored
            .lock()
            .expect("phases lock")
            .unwrap_or(first);
        let check = (first - start).as_secs_f64();
        let store = (last - first).as_secs_f64();
        (check, store, total - check - store)
    }
}

const AT: &str = "2026-12-04T00:00:00.000000Z";

/// Writes the export file; returns its size in bytes.
pub fn generate(path: &std::path::Path, o: &Opts, seed: u64) -> Result<u64> {
    let mut r = crate::gen::rng(seed, 9001);
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let line = |out: &mut std::io::BufWriter<std::fs::File>, v: serde_json::Value| {
        serde_json::to_writer(&mut *out, &v)?;
        out.write_all(b"\n")
    };
    line(
        &mut out,
        json!({"kind": "project", "org": "bench", "id": "p", "name": "p", "created_at": AT}),
    )?;
    for i in 0..o.entities {
        let id = format!("e{i:08}");
        let props = json!({"name": format!("package {i}"), "downloads": r.random_range(0..1_000_000),
                           "tags": ["rust", "graph"], "stable": i % 3 == 0});
        line(
            &mut out,
            json!({"kind": "entity", "id": id, "type": "package", "properties": props,
                   "version": 1, "created_at": AT, "updated_at": AT,
                   "created_by": "bench", "updated_by": "bench"}),
        )?;
        line(
            &mut out,
            json!({"kind": "version", "entity": id, "version": 1, "parent": null,
                   "op": "create", "type": "package", "deleted": false, "actor": "bench",
                   "at": AT, "patch": props, "snapshot": props, "chain": 0}),
        )?;
    }
    for i in 0..o.relationships {
        let from = r.random_range(0..o.entities);
        let to = r.random_range(0..o.entities);
        line(
            &mut out,
            json!({"kind": "relationship", "id": format!("r{i:08}"), "type": "DEPENDS_ON",
                   "from": format!("e{from:08}"), "to": format!("e{to:08}"),
                   "properties": {}, "version": 1, "created_at": AT, "updated_at": AT,
                   "created_by": "bench", "updated_by": "bench"}),
        )?;
    }
    out.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

/// The store under test (embedded in `dir`, or the `--postgres` database,
/// with no statement timeout) with org `bench` and its empty project `p`.
pub async fn open_store(
    ctx: &Ctx,
    dir: &std::path::Path,
) -> Result<(strata::config::Config, strata::store::DynStore)> {
    let mut config = strata::config::Config::embedded(dir);
    if let Some((_, url)) = ctx
        .common
        .env
        .iter()
        .find(|(k, _)| k == "STRATA_DATABASE_URL")
    {
        config.database_url = url.clone();
        config.postgres.statement_timeout_ms = 0;
    }
    let store = strata::store::open(&config.database_url, &config.store_settings()).await?;
    let caller = Caller::new("bench");
    store.create_org(&caller, "bench", "Bench").await?;
    store.create_project(&caller, "bench", "p", "P").await?;
    Ok((config, store))
}

pub async fn transfer(ctx: &Ctx, opts: TransferOpts) -> Result<()> {
    let o = opts.graph;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("export.ndjson");
    let bytes = generate(&file, &o, ctx.common.seed)?;
    let (_, store) = open_store(ctx, dir.path()).await?;
    let caller = Caller::new("bench");
    let target = Target::Project(Scope::new("bench", "p"));
    let rows = (o.entities + o.relationships) as f64;
    let mb = bytes as f64 / 1e6;

    let t = Instant::now();
    let phases = Phases::default();
    let first = strata::import::run_with(&store, &target, &file, &caller, false, &phases).await?;
    let import = t.elapsed().as_secs_f64();
    ensure!(
        first.counts.created as usize == o.entities + o.relationships,
        "{first:?}"
    );
    let (check, stored, finish) = phases.split(t, import);
    println!(
        "{}: import {import:.1} s ({:.0} entities/s): check pass {check:.1} s, store pass {stored:.1} s, index builds {finish:.1} s",
        store.backend(),
        o.entities as f64 / import
    );
    if opts.import_only {
        store.close().await;
        return Ok(());
    }
    let t = Instant::now();
    let again = strata::import::run(&store, &target, &file, &caller, false).await?;
    let reimport = t.elapsed().as_secs_f64();
    ensure!(again.counts.unchanged as usize == o.entities + o.relationships);

    // What the import's closing step costs alone: the graph projection's
    // rebuild (AGE on PostgreSQL; nothing on SQLite).
    let t = Instant::now();
    let synced = store.sync_graph(&Scope::new("bench", "p")).await.is_ok();
    let sync = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let blobs =
        strata::blob::open(&format!("file://{}", dir.path().join("blobs").display())).await?;
    let mut lines = Box::pin(strata::export::project(&store, blobs, "bench", "p").await?);
    let mut exported = 0usize;
    while let Some(chunk) = lines.next().await {
        exported += chunk?.len();
    }
    let export = t.elapsed().as_secs_f64();
    store.close().await;

    let report = json!({
        "backend": store.backend(),
        "entities": o.entities, "relationships": o.relationships, "file_bytes": bytes,
        "import_secs": import, "import_phases_secs": {"check": check, "store": stored, "finish": finish},
        "import_entities_per_sec": o.entities as f64 / import,
        "import_rows_per_sec": rows / import, "import_mb_per_sec": mb / import,
        "reimport_secs": reimport, "reimport_rows_per_sec": rows / reimport,
        "export_secs": export, "export_rows_per_sec": rows / export,
        "export_mb_per_sec": exported as f64 / 1e6 / export,
        "graph_sync_secs": synced.then_some(sync),
    });
    println!(
        "{}: {} entities + {} relationships ({mb:.0} MB): import {import:.1} s ({:.0} rows/s, {:.0} entities/s), again {reimport:.1} s ({:.0} rows/s), export {export:.1} s ({:.0} rows/s, {:.0} MB/s); graph projection rebuilt in {sync:.1} s: {synced}",
        store.backend(),
        o.entities,
        o.relationships,
        rows / import,
        o.entities as f64 / import,
        rows / reimport,
        rows / export,
        exported as f64 / 1e6 / export
    );
    ctx.report("transfer", &[], report)
}
