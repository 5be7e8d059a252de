//! Bulk loading through `POST .../batch`, and closed-loop measurement over
//! keep-alive connections.

use crate::http::Conn;
use crate::stats::{summarize, Summary};
use anyhow::Result;
use bytes::Bytes;
use hyper::Method;
use rand::rngs::StdRng;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

pub const ORG: &str = "bench";
pub const PROJECT: &str = "p";

pub fn project_path(rest: &str) -> String {
    format!("/v1/orgs/{ORG}/projects/{PROJECT}{rest}")
}

/// Creates the bench org and project (already there is fine).
pub async fn setup_project(addr: &str, key: &str) -> Result<()> {
    let mut c = Conn::open(addr, key).await?;
    for (path, body) in [
        (
            "/v1/orgs".to_string(),
            format!(r#"{{"id":"{ORG}","name":"bench"}}"#),
        ),
        (
            format!("/v1/orgs/{ORG}/projects"),
            format!(r#"{{"id":"{PROJECT}","name":"bench"}}"#),
        ),
    ] {
        let (status, body) = c
            .request(Method::POST, &path, Some(Bytes::from(body)))
            .await?;
        anyhow::ensure!(
            status.is_success() || status.as_u16() == 409,
            "POST {path}: {status} {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(())
}

/// Creates a `read`-scoped key of the bench org; returns its secret.
pub async fn read_key(addr: &str, admin_key: &str) -> Result<String> {
    let mut c = Conn::open(addr, admin_key).await?;
    let body = c
        .send_ok(
            Method::POST,
            &format!("/v1/orgs/{ORG}/keys"),
            Bytes::from(r#"{"name":"bench-reader","scopes":["read"]}"#),
        )
        .await?;
    let reply: serde_json::Value = serde_json::from_slice(&body)?;
    reply["data"]["key"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no key in {reply}"))
}

/// Sends operations (JSON objects, one per string) in batches of
/// `batch_size`, `concurrency` batches in flight. Returns (ops, elapsed).
pub async fn bulk_load(
    addr: &str,
    key: &str,
    label: &str,
    total: usize,
    batch_size: usize,
    concurrency: usize,
    ops: impl Iterator<Item = String> + Send + 'static,
) -> Result<(usize, Duration)> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(concurrency * 2);
    // Generate and serialise on a plain thread, off the client runtime.
    let producer = std::thread::spawn(move || {
        let mut ops = ops.peekable();
        while ops.peek().is_some() {
            let mut body = String::from(r#"{"operations":["#);
            for (i, op) in ops.by_ref().take(batch_size).enumerate() {
                if i > 0 {
                    body.push(',');
                }
                body.push_str(&op);
            }
            body.push_str("]}");
            if tx.blocking_send(Bytes::from(body)).is_err() {
                return;
            }
        }
    });
    let rx = Arc::new(Mutex::new(rx));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let path = project_path("/batch");
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (rx, done, path) = (rx.clone(), done.clone(), path.clone());
        let (addr, key) = (addr.to_owned(), key.to_owned());
        workers.push(tokio::spawn(async move {
            let mut c = Conn::open(&addr, &key).await?;
            loop {
                let Some(body) = rx.lock().await.recv().await else {
                    return anyhow::Ok(());
                };
                c.send_ok(Method::POST, &path, body).await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let progress = {
        let done = done.clone();
        let label = label.to_owned();
        tokio::spawn(async move {
            let batches = total.div_ceil(batch_size).max(1) as u64;
            loop {
                tokio::time::sleep(Duration::from_secs(15)).await;
                let d = done.load(Ordering::Relaxed);
                let ops = (d as usize * batch_size).min(total);
                let secs = start.elapsed().as_secs_f64();
                eprintln!(
                    "  loading {label}: {d}/{batches} batches, {:.0} ops/s",
                    ops as f64 / secs
                );
            }
        })
    };
    for w in workers {
        w.await??;
    }
    progress.abort();
    let _ = producer.join();
    Ok((total, start.elapsed()))
}

pub struct Req {
    pub method: Method,
    pub path: String,
    pub body: Option<Bytes>,
}

impl Req {
    pub fn get(path: String) -> Req {
        Req {
            method: Method::GET,
            path,
            body: None,
        }
    }
}

/// Makes the i-th request of worker w.
pub type Gen = Arc<dyn Fn(usize, u64, &mut StdRng) -> Req + Send + Sync>;

#[derive(Clone, Copy)]
pub enum Stop {
    /// Unrecorded warm-up time, then a measured window.
    Time { warmup: Duration, measure: Duration },
    /// Per worker: unrecorded warm-up requests, then measured ones.
    Count { warmup: u64, measure: u64 },
}

#[derive(Default)]
struct WorkerOut {
    lat: Vec<u64>,
    errors: usize,
    first_error: Option<String>,
    bytes: u64,
    /// Occurrences of `count_token` in measured responses.
    tokens: u64,
    elapsed: Duration,
}

fn count(hay: &[u8], needle: &[u8]) -> u64 {
    if needle.is_empty() {
        return 0;
    }
    hay.windows(needle.len()).filter(|w| *w == needle).count() as u64
}

/// Closed loop: `conns` connections, each sending its next request when the
/// previous one has answered. Non-2xx answers count as errors.
#[allow(clippy::too_many_arguments)]
pub async fn closed_loop(
    name: &str,
    addr: &str,
    key: &str,
    seed: u64,
    conns: usize,
    stop: Stop,
    count_token: &'static str,
    gen: Gen,
) -> Result<Summary> {
    let mut handles = Vec::new();
    let mut opened = Vec::new();
    for _ in 0..conns {
        opened.push(Conn::open(addr, key).await?);
    }
    let t0 = Instant::now();
    for (w, mut c) in opened.into_iter().enumerate() {
        let gen = gen.clone();
        handles.push(tokio::spawn(async move {
            let mut r = crate::gen::rng(seed, 1000 + w as u64);
            let mut out = WorkerOut::default();
            let mut i = 0u64;
            let mut measured_from: Option<Instant> = None;
            loop {
                let now = Instant::now();
                let record = match stop {
                    Stop::Time { warmup, measure } => {
                        if now >= t0 + warmup + measure {
                            break;
                        }
                        now >= t0 + warmup
                    }
                    Stop::Count { warmup, measure } => {
                        if i >= warmup + measure {
                            break;
                        }
                        i >= warmup
                    }
                };
                if record && measured_from.is_none() {
                    measured_from = Some(now);
                }
                let req = gen(w, i, &mut r);
                i += 1;
                let sent = Instant::now();
                let res = c.request(req.method, &req.path, req.body).await;
                let took = sent.elapsed();
                match res {
                    Ok((status, body)) if status.is_success() => {
                        if record {
                            out.lat.push(took.as_nanos() as u64);
                            out.bytes += body.len() as u64;
                            out.tokens += count(&body, count_token.as_bytes());
                        }
                    }
                    Ok((status, body)) => {
                        out.errors += 1;
                        out.first_error.get_or_insert_with(|| {
                            format!(
                                "{} {status} {}",
                                req.path,
                                String::from_utf8_lossy(&body[..body.len().min(300)])
                            )
                        });
                    }
                    Err(e) => {
                        out.errors += 1;
                        out.first_error
                            .get_or_insert_with(|| format!("{}: {e:#}", req.path));
                        // A broken connection ends this worker.
                        break;
                    }
                }
            }
            out.elapsed = measured_from.map(|m| m.elapsed()).unwrap_or_default();
            out
        }));
    }
    let mut lat = Vec::new();
    let (mut errors, mut bytes, mut tokens) = (0, 0, 0);
    let mut elapsed = Duration::ZERO;
    let mut first_error = None;
    for h in handles {
        let o = h.await?;
        lat.extend(o.lat);
        errors += o.errors;
        bytes += o.bytes;
        tokens += o.tokens;
        elapsed = elapsed.max(o.elapsed);
        if first_error.is_none() {
            first_error = o.first_error;
        }
    }
    if let Some(e) = &first_error {
        eprintln!("  {name}: first error: {e}");
    }
    if let Stop::Time { measure, .. } = stop {
        elapsed = measure;
    }
    let n = lat.len().max(1) as f64;
    let mut s = summarize(name, lat, errors, elapsed)
        .with("conns", conns.into())
        .with(
            "mean_response_bytes",
            ((bytes as f64 / n).round() as u64).into(),
        );
    if !count_token.is_empty() {
        s = s.with(
            "mean_items",
            (((tokens as f64 / n) * 10.0).round() / 10.0).into(),
        );
    }
    Ok(s)
}

/// A counter from `/metrics`.
pub async fn metric(addr: &str, key: &str, name: &str) -> Result<f64> {
    let mut c = Conn::open(addr, key).await?;
    let (_, body) = c.get("/metrics").await?;
    let text = String::from_utf8_lossy(&body);
    Ok(text
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN))
}
