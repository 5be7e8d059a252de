//! `backup`: logical backups through the daemon's own code, in process (no
//! HTTP): the `transfer` graph (N entities, M relationships) is loaded by
//! the import, then a full backup is taken into a directory, restored into
//! a fresh SQLite store, 10,000 entities are changed and an incremental
//! backup is taken. Seconds, bytes and MB/s of each. SQLite by default;
//! PostgreSQL as the source with `--postgres` (the restore target stays a
//! fresh SQLite file).

use crate::transfer::{generate, Opts};
use crate::Ctx;
use anyhow::{ensure, Result};
use rand::Rng;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;
use strata::backup::manifest::Kind;
use strata::backup::{Backups, State};
use strata::domain::{Caller, Scope, WriteOp};
use strata::import::Target;

/// Entities changed before the incremental backup.
const CHANGES: usize = 10_000;

pub async fn backup(ctx: &Ctx, o: Opts) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("export.ndjson");
    generate(&file, &o, ctx.common.seed)?;
    let (config, store) = crate::transfer::open_store(ctx, dir.path()).await?;
    let caller = Caller::new("bench");
    let scope = Scope::new("bench", "p");
    let t = Instant::now();
    strata::import::run(
        &store,
        &Target::Project(scope.clone()),
        &file,
        &caller,
        false,
    )
    .await?;
    let load = t.elapsed().as_secs_f64();

    let blobs = Arc::new(strata::blob::DirBlobStore::new(
        dir.path().join("backups").to_str().unwrap(),
    )?);
    let backups = Backups::new(store.clone(), blobs.clone(), blobs, &config);
    let t = Instant::now();
    let full = backups.take(Kind::Full).await?;
    let full_secs = t.elapsed().as_secs_f64();
    ensure!(full.state == State::Complete, "{full:?}");
    let rows = backups.manifest(&full.id).await?.lines;

    let target = strata::store::open(
        &format!("sqlite://{}", dir.path().join("restored.db").display()),
        &config.store_settings(),
    )
    .await?;
    let t = Instant::now();
    let restored = backups.restore(&full.id, &target, None).await?;
    let restore_secs = t.elapsed().as_secs_f64();
    target.close().await;
    ensure!(
        restored.counts.created as usize == o.entities + o.relationships,
        "{restored:?}"
    );

    let mut r = crate::gen::rng(ctx.common.seed, 9002);
    let changes: Vec<usize> = (0..CHANGES)
        .map(|_| r.random_range(0..o.entities))
        .collect();
    for batch in changes.chunks(500) {
        let ops = batch
            .iter()
            .map(|i| WriteOp::PatchEntity {
                id: format!("e{i:08}"),
                patch: json!({"downloads": i + 1}),
                entity_type: None,
                expected_version: None,
            })
            .collect();
        store.write(&scope, &caller, ops).await?;
    }
    let t = Instant::now();
    let incr = backups.take(Kind::Incr).await?;
    let incr_secs = t.elapsed().as_secs_f64();
    ensure!(
        incr.kind == Kind::Incr && incr.state == State::Complete,
        "{incr:?}"
    );
    store.close().await;

    let mb = |b: u64| b as f64 / 1e6;
    let report = json!({
        "backend": config.database_url.split(':').next(),
        "entities": o.entities, "relationships": o.relationships, "load_secs": load,
        "full_secs": full_secs, "full_bytes": full.bytes, "full_rows": rows,
        "full_rows_per_sec": rows as f64 / full_secs,
        "full_mb_per_sec_compressed": mb(full.bytes) / full_secs,
        "restore_secs": restore_secs, "restore_rows_per_sec": rows as f64 / restore_secs,
        "changes": CHANGES, "incr_secs": incr_secs, "incr_bytes": incr.bytes,
    });
    println!(
        "{} entities + {} relationships (loaded in {load:.1} s): full backup {full_secs:.1} s, {:.1} MB compressed ({rows} rows, {:.0} rows/s); restore into SQLite {restore_secs:.1} s ({:.0} rows/s); incremental after {CHANGES} changes {incr_secs:.2} s, {:.2} MB",
        o.entities,
        o.relationships,
        mb(full.bytes),
        rows as f64 / full_secs,
        rows as f64 / restore_secs,
        mb(incr.bytes),
    );
    ctx.report("backup", &[], report)
}
