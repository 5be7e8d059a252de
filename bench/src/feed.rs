//! The change feed under load: consumer lag while writes arrive at a steady
//! rate, and the outbox's size once a long run's consumers caught up.
//!
//! The consumer measured is the daemon's Meilisearch mirror, pointed at the
//! tests' protocol-level Meilisearch stand-in (`tests/it/support/
//! meili_standin.rs`, run in this process: Meilisearch cannot be installed
//! on these machines). The figures are Strata's feed and consumer work plus
//! an in-memory stand-in index, not a real Meilisearch's indexing time.

#[path = "../../tests/it/support/meili_standin.rs"]
#[allow(dead_code)]
mod meili_standin;

use crate::daemon::Daemon;
use crate::http::Conn;
use crate::load::{bulk_load, project_path, setup_project};
use crate::stats::summarize;
use crate::Ctx;
use anyhow::{bail, Result};
use bytes::Bytes;
use hyper::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const MEILI_KEY: &str = "bench-meili-key";
/// The consumer whose lag is sampled.
const CONSUMER: &str = "meilisearch";

pub struct FeedRun {
    /// Entity writes per second while lag is sampled.
    pub rate: u64,
    /// Seconds of steady writes.
    pub duration: f64,
    /// Writes of the long run after which the outbox is counted.
    pub total: usize,
}

pub async fn feed(ctx: &Ctx, run: FeedRun) -> Result<()> {
    let standin = standin_on_its_own_thread()?;
    let mut opts = ctx.daemon_opts();
    opts.env.extend([
        ("STRATA_MEILI_URL".to_string(), standin.url.clone()),
        ("STRATA_MEILI_KEY".to_string(), MEILI_KEY.to_string()),
        // Nothing kept for public readers: the outbox holds only what
        // consumers have not passed.
        ("STRATA_CHANGES_RETENTION_SECS".to_string(), "0".to_string()),
    ]);
    let mut d = Daemon::spawn(&opts)?;
    d.wait_ready(Duration::from_millis(5), Duration::from_secs(120))?;
    eprintln!(
        "strata ready on {} with the Meilisearch stand-in at {}",
        d.addr, standin.url
    );
    setup_project(&d.addr, &d.key).await?;
    eprintln!("steady writes: {}/s for {}s", run.rate, run.duration);

    let (lag, written, took) = steady_writes(&d, &run).await?;
    let achieved = written as f64 / took.as_secs_f64();
    println!(
        "feed lag: {written} entity writes in {:.1}s = {achieved:.0}/s (target {}/s); {CONSUMER} lag over {} samples: p50 {:.3}s, p99 {:.3}s, max {:.3}s",
        took.as_secs_f64(),
        run.rate,
        lag.len(),
        percentile(&lag, 0.50),
        percentile(&lag, 0.99),
        percentile(&lag, 1.0),
    );
    let caught_up = wait_caught_up(&d).await?;
    println!(
        "caught up {:.1}s after the writes stopped",
        caught_up.as_secs_f64()
    );

    let ops = (0..run.total).map(|i| {
        json!({"op": "create_entity", "type": "Item", "id": format!("bulk-{i}"),
               "properties": {"title": format!("item {i}"), "n": i}})
        .to_string()
    });
    let (n, load) = bulk_load(&d.addr, &d.key, "feed bulk", run.total, 500, 4, ops).await?;
    println!(
        "feed bulk: {n} writes in {:.1}s = {:.0}/s",
        load.as_secs_f64(),
        n as f64 / load.as_secs_f64()
    );
    let caught_up = wait_caught_up(&d).await?;
    // The runner prunes after a partial batch; the job every 10 s covers
    // the rest: give it one period.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let rows = outbox_rows(ctx, &d).await?;
    println!(
        "outbox after {n} writes, consumers caught up ({:.1}s after loading): {rows} rows (one consumer batch is 500)",
        caught_up.as_secs_f64()
    );
    let docs = standin.documents(meili_standin_index()).len();
    if docs < n {
        bail!("the stand-in holds {docs} documents, fewer than the {n} written");
    }
    // Lag samples as "latencies", so the summary line gives their
    // percentiles in milliseconds.
    let as_nanos = lag.iter().map(|s| (s * 1e9) as u64).collect();
    let summary = summarize(&format!("{CONSUMER} consumer lag"), as_nanos, 0, took)
        .with("rate_target", run.rate.into())
        .with("rate_achieved", achieved.round().into())
        .with("bulk_writes", n.into())
        .with("outbox_rows_after", rows.into());
    ctx.report("feed", &[summary], json!({}))
}

/// The stand-in on a runtime of its own: the bench's client runtime blocks
/// while it waits for the daemon to be ready, and the daemon's readiness
/// asks the stand-in.
fn standin_on_its_own_thread() -> Result<meili_standin::MeiliStandin> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the stand-in");
        rt.block_on(async move {
            let _ = tx.send(meili_standin::MeiliStandin::start(Some(MEILI_KEY)).await);
            std::future::pending::<()>().await
        })
    });
    Ok(rx.recv()?)
}

fn meili_standin_index() -> &'static str {
    "strata_entities"
}

/// Writes `rate` entities a second (batches of 20 every 10 ms on a few
/// connections) for the run's duration, sampling the consumer's lag from
/// `/metrics` every 100 ms. Returns (lag samples, writes, elapsed).
async fn steady_writes(d: &Daemon, run: &FeedRun) -> Result<(Vec<f64>, usize, Duration)> {
    const PER_REQUEST: u64 = 20;
    let ticks_per_sec = (run.rate / PER_REQUEST).max(1);
    let (tx, rx) = async_channel(64);
    let mut workers = Vec::new();
    for _ in 0..8 {
        let rx = rx.clone();
        let mut c = Conn::open(&d.addr, &d.key).await?;
        workers.push(tokio::spawn(async move {
            let mut written = 0usize;
            while let Ok(body) = rx.recv().await {
                c.send_ok(Method::POST, &project_path("/batch"), body)
                    .await?;
                written += PER_REQUEST as usize;
            }
            anyhow::Ok(written)
        }));
    }
    let samples = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sampler = {
        let (addr, key, samples) = (d.addr.clone(), d.key.clone(), samples.clone());
        tokio::spawn(async move {
            let mut c = Conn::open(&addr, &key).await?;
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let (_, body) = c.get("/metrics").await?;
                if let Some(lag) = consumer_metric(&body, "strata_feed_consumer_lag_seconds") {
                    samples.lock().expect("samples").push(lag);
                }
            }
            #[allow(unreachable_code)]
            anyhow::Ok(())
        })
    };
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / ticks_per_sec as f64));
    let mut i = 0u64;
    while start.elapsed().as_secs_f64() < run.duration {
        tick.tick().await;
        // A worker that stopped has an error to report: stop sending.
        if workers.iter().any(|w| w.is_finished()) {
            break;
        }
        let ops: Vec<String> = (0..PER_REQUEST)
            .map(|k| {
                json!({"op": "create_entity", "type": "Item", "id": format!("steady-{i}-{k}"),
                       "properties": {"title": format!("steady {i} {k}")}})
                .to_string()
            })
            .collect();
        let body = format!(r#"{{"operations":[{}]}}"#, ops.join(","));
        if tx.send(Bytes::from(body)).await.is_err() {
            break;
        }
        i += 1;
    }
    drop(tx);
    let mut written = 0;
    for w in workers {
        written += w.await??;
    }
    let took = start.elapsed();
    sampler.abort();
    let lag = std::mem::take(&mut *samples.lock().expect("samples"));
    Ok((lag, written, took))
}

/// A multi-consumer queue of request bodies (tokio's mpsc has one receiver).
fn async_channel(capacity: usize) -> (tokio::sync::mpsc::Sender<Bytes>, std::sync::Arc<SharedRx>) {
    let (tx, rx) = tokio::sync::mpsc::channel(capacity);
    (
        tx,
        std::sync::Arc::new(SharedRx(tokio::sync::Mutex::new(rx))),
    )
}

struct SharedRx(tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Bytes>>);

impl SharedRx {
    async fn recv(&self) -> Result<Bytes, ()> {
        self.0.lock().await.recv().await.ok_or(())
    }
}

/// Waits until the consumer reports no lag and has applied the project's
/// newest change; the time that took.
async fn wait_caught_up(d: &Daemon) -> Result<Duration> {
    let start = Instant::now();
    let mut c = Conn::open(&d.addr, &d.key).await?;
    let head = newest_change(&mut c).await?;
    loop {
        let (_, body) = c.get("/metrics").await?;
        let lag = consumer_metric(&body, "strata_feed_consumer_lag_seconds");
        let position = consumer_metric(&body, "strata_feed_consumer_position");
        if lag == Some(0.0) && position.is_some_and(|p| p >= head as f64) {
            return Ok(start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(1800) {
            bail!("the consumer did not catch up in 30 minutes (lag {lag:?}, position {position:?}, head {head})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The project's newest change sequence, from the public feed's last page.
async fn newest_change(c: &mut Conn) -> Result<i64> {
    let mut after = 0i64;
    loop {
        let (status, body) = c
            .get(&project_path(&format!("/changes?after={after}&limit=1000")))
            .await?;
        if !status.is_success() {
            bail!("GET changes: {status}");
        }
        let page: Value = serde_json::from_slice(&body)?;
        let items = page["data"].as_array().cloned().unwrap_or_default();
        match items.last().and_then(|c| c["seq"].as_i64()) {
            Some(seq) if items.len() == 1000 => after = seq,
            Some(seq) => return Ok(seq),
            None => return Ok(after),
        }
    }
}

/// A consumer's value of a metric family, from Prometheus text.
fn consumer_metric(body: &[u8], family: &str) -> Option<f64> {
    let prefix = format!("{family}{{consumer=\"{CONSUMER}\"}} ");
    String::from_utf8_lossy(body)
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).and_then(|v| v.trim().parse().ok()))
}

/// Rows left in the outbox, read from the database itself.
async fn outbox_rows(ctx: &Ctx, d: &Daemon) -> Result<i64> {
    if let Some(url) = ctx.database_url() {
        // As the daemon connects: the URL's sslmode and sslrootcert honoured.
        let (pg, tls) = strata::store::postgres::tls::configure(url)?;
        let (client, conn) = pg.connect(tls).await?;
        tokio::spawn(conn);
        let row = client
            .query_one("SELECT count(*) FROM strata.outbox", &[])
            .await?;
        return Ok(row.get(0));
    }
    let db = rusqlite::Connection::open_with_flags(
        d.data_dir.join("strata.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    Ok(db.query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))?)
}

fn percentile(samples: &[f64], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}
