//! `embed`: the local embedding model (all-MiniLM-L6-v2) in-process, with
//! the daemon's own `LocalEmbedder`: throughput over many varied sentences,
//! batched as indexing would send them, and the latency of embedding one
//! short query, as a semantic search does before it ranks.

use crate::stats;
use crate::Ctx;
use anyhow::{Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use strata::embed::LocalEmbedder;

const WORDS: &[&str] = &[
    "the",
    "a",
    "car",
    "vehicle",
    "road",
    "engine",
    "driver",
    "city",
    "river",
    "bridge",
    "old",
    "new",
    "fast",
    "slow",
    "green",
    "blue",
    "house",
    "garden",
    "tree",
    "winter",
    "summer",
    "market",
    "price",
    "rises",
    "falls",
    "team",
    "wins",
    "match",
    "player",
    "coach",
    "season",
    "music",
    "song",
    "album",
    "band",
    "concert",
    "doctor",
    "patient",
    "hospital",
    "treatment",
    "study",
    "shows",
    "results",
    "data",
    "model",
    "network",
    "server",
    "database",
    "query",
    "search",
    "banana",
    "apple",
    "bread",
    "kitchen",
    "recipe",
    "dinner",
    "family",
    "child",
    "school",
    "teacher",
    "lesson",
    "book",
    "story",
    "writer",
    "film",
    "actor",
    "scene",
    "light",
    "dark",
    "night",
    "morning",
    "train",
    "station",
    "ticket",
    "travel",
    "mountain",
    "lake",
    "weather",
    "storm",
    "rain",
    "sun",
    "energy",
    "solar",
    "power",
    "grid",
    "company",
    "report",
    "quarterly",
    "growth",
    "loss",
    "law",
    "court",
    "judge",
    "decision",
    "election",
    "vote",
    "policy",
    "health",
];

pub(crate) fn sentence(rng: &mut StdRng, words: std::ops::RangeInclusive<usize>) -> String {
    let n = rng.random_range(words);
    (0..n)
        .map(|_| WORDS[rng.random_range(0..WORDS.len())])
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn embed(
    ctx: &Ctx,
    model_dir: &Path,
    sentences: usize,
    batch: usize,
    queries: usize,
) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(ctx.common.seed);
    let started = Instant::now();
    let model = LocalEmbedder::load(model_dir)
        .with_context(|| format!("cannot load the model from {}", model_dir.display()))?;
    let load = started.elapsed();
    eprintln!("model loaded in {load:?}");

    let corpus: Vec<String> = (0..sentences).map(|_| sentence(&mut rng, 5..=20)).collect();
    model.embed_blocking(&corpus[..corpus.len().min(64)])?; // warm-up

    let mut per_batch = Vec::new();
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    for chunk in corpus.chunks(batch.max(1)) {
        let t = Instant::now();
        model.embed_blocking(chunk)?;
        per_batch.push(t.elapsed().as_nanos() as u64);
    }
    let took = started.elapsed();
    let cpu = cpu_seconds()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    let throughput = stats::summarize(&format!("embed batches of {batch}"), per_batch, 0, took)
        .with("sentences", sentences.into())
        .with(
            "sentences_per_sec",
            ((sentences as f64 / took.as_secs_f64()).round()).into(),
        )
        .with("cpu_seconds", cpu.into())
        .with(
            "sentences_per_cpu_second",
            cpu.map(|c| (sentences as f64 / c).round()).into(),
        );
    eprintln!(
        "{sentences} sentences in {:.2}s = {:.0} sentences/s, {} CPU seconds",
        took.as_secs_f64(),
        sentences as f64 / took.as_secs_f64(),
        cpu.map_or("?".into(), |c| format!("{c:.2}"))
    );

    let mut latencies = Vec::with_capacity(queries);
    let started = Instant::now();
    for _ in 0..queries {
        let query = vec![sentence(&mut rng, 1..=4)];
        let t = Instant::now();
        model.embed_blocking(&query)?;
        latencies.push(t.elapsed().as_nanos() as u64);
    }
    let single = stats::summarize("embed one query", latencies, 0, started.elapsed());
    let beside_bulk = query_beside_bulk(&model, &corpus, batch, queries, &mut rng)?;

    ctx.report(
        "embed",
        &[throughput, single, beside_bulk],
        json!({
            "model_load_ms": duration_ms(load),
            "peak_rss_mib": peak_rss_mib(),
        }),
    )?;
    println!(
        "model load {:.0} ms, peak RSS {} MiB",
        duration_ms(load),
        peak_rss_mib().map_or("?".into(), |m| format!("{m:.0}"))
    );
    Ok(())
}

/// One query at a time while another thread embeds the corpus in calls
/// of `batch`, again and again, as the embedding consumer does during a
/// bulk load: how long a semantic search's query waits for the model.
fn query_beside_bulk(
    model: &LocalEmbedder,
    corpus: &[String],
    batch: usize,
    queries: usize,
    rng: &mut StdRng,
) -> Result<stats::Summary> {
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let bulk = scope.spawn(|| -> Result<()> {
            for chunk in corpus.chunks(batch.max(1)).cycle() {
                if done.load(Ordering::Relaxed) {
                    return Ok(());
                }
                model.embed_blocking(chunk)?;
            }
            Ok(())
        });
        std::thread::sleep(Duration::from_millis(200));
        let mut latencies = Vec::with_capacity(queries);
        let started = Instant::now();
        for _ in 0..queries {
            let query = vec![sentence(rng, 1..=4)];
            let t = Instant::now();
            let embedded = model.embed_blocking(&query);
            latencies.push(t.elapsed().as_nanos() as u64);
            embedded?;
            // Queries come now and then, not back to back.
            std::thread::sleep(Duration::from_millis(20));
        }
        done.store(true, Ordering::Relaxed);
        bulk.join().expect("the bulk thread")?;
        let label = format!("embed one query beside calls of {batch}");
        Ok(stats::summarize(&label, latencies, 0, started.elapsed()))
    })
}

fn duration_ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// CPU time (user + system) of this process so far: on a machine shared
/// with other work, sentences per CPU second say what the model costs
/// when wall-clock throughput cannot.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the line, in clock ticks (100 per second).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// VmHWM: the most memory this process has held.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
