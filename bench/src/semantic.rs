//! `semantic`: semantic search in embedded mode through the store itself,
//! with the local model embedding each query, as `mode=semantic` does:
//! N seeded vectors (the `hnsw` bench's clusters) are stored in a fresh
//! SQLite store with `put_vectors`, then each query sentence is embedded
//! and ranked by `search_vectors` (the exact scan), timed together and
//! apart, unfiltered and with a type filter. The ranking's cost does not
//! depend on what the vectors mean, only on how many there are.

use crate::hnsw::{type_of, Cloud, MODEL};
use crate::stats;
use crate::Ctx;
use anyhow::{Context, Result};
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;
use strata::domain::{Caller, EntityVector, Scope};
use strata::embed::LocalEmbedder;

pub struct Opts {
    pub model: PathBuf,
    pub vectors: usize,
    pub queries: usize,
    pub warmup: usize,
}

pub async fn semantic(ctx: &Ctx, o: Opts) -> Result<()> {
    let model = LocalEmbedder::load(&o.model)
        .with_context(|| format!("cannot load the model from {}", o.model.display()))?;
    let dims = model.embed_blocking(&["probe".to_owned()])?[0].len();

    let dir = tempfile::tempdir()?;
    let config = strata::config::Config::embedded(dir.path());
    let store = strata::store::open(&config.database_url, &config.store_settings()).await?;
    let caller = Caller::new("bench");
    store.create_org(&caller, "bench", "Bench").await?;
    store
        .create_project(&caller, "bench", "vectors", "Vectors")
        .await?;
    let scope = Scope::new("bench", "vectors");

    let cloud = Cloud::new(ctx.common.seed, dims, 100, 1.0);
    let mut r = crate::gen::rng(ctx.common.seed, 7002);
    let started = Instant::now();
    for start in (0..o.vectors).step_by(1000) {
        let batch: Vec<EntityVector> = (start..(start + 1000).min(o.vectors))
            .map(|i| EntityVector {
                id: format!("v{i:07}"),
                entity_type: type_of(i),
                version: 1,
                vector: cloud.draw(&mut r),
            })
            .collect();
        store.put_vectors(&scope, MODEL, batch).await?;
    }
    let load = started.elapsed();
    eprintln!(
        "stored {} vectors in {:.1} s",
        o.vectors,
        load.as_secs_f64()
    );

    let mut rng = crate::gen::rng(ctx.common.seed, 7003);
    let mut summaries = Vec::new();
    for filter in [None, Some(type_of(3))] {
        let label = if filter.is_some() {
            "type (10 %)"
        } else {
            "unfiltered"
        };
        let (mut total, mut embed, mut rank) = (Vec::new(), Vec::new(), Vec::new());
        let started = Instant::now();
        for n in 0..o.warmup + o.queries {
            let text = crate::embed::sentence(&mut rng, 1..=4);
            let t = Instant::now();
            let query = model.embed_blocking(&[text])?.remove(0);
            let embedded = t.elapsed();
            let hits = store
                .search_vectors(&scope, MODEL, &query, filter.as_deref(), 10)
                .await?;
            let all = t.elapsed();
            anyhow::ensure!(hits.len() == 10, "{} hits, not 10", hits.len());
            if n >= o.warmup {
                total.push(all.as_nanos() as u64);
                embed.push(embedded.as_nanos() as u64);
                rank.push((all - embedded).as_nanos() as u64);
            }
        }
        let took = started.elapsed();
        summaries.push(stats::summarize(
            &format!("semantic top-10, {label}: embed + rank"),
            total,
            0,
            took,
        ));
        summaries.push(stats::summarize(
            &format!("semantic top-10, {label}: embed"),
            embed,
            0,
            took,
        ));
        summaries.push(stats::summarize(
            &format!("semantic top-10, {label}: rank"),
            rank,
            0,
            took,
        ));
    }
    store.close().await;
    ctx.report(
        "semantic",
        &summaries,
        json!({"vectors": o.vectors, "dims": dims, "load_secs": load.as_secs_f64()}),
    )
}
