//! CRDT workloads: durable ingest of small Yjs updates from many gateways,
//! compaction of a long log, load of a large compacted document, and stored
//! bytes before and after compaction of an edit-and-delete-heavy document.

use crate::http::Conn;
use crate::load::{closed_loop, project_path, setup_project, Gen, Req, Stop};
use crate::stats::summarize;
use crate::{start, Ctx};
use anyhow::Result;
use base64::Engine;
use bytes::Bytes;
use hyper::Method;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use yrs::{Doc, GetString, Text, Transact};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A text edit of `len` characters at the start: one small update. (At the
/// start, not the end: finding an index walks the text's blocks, so a
/// generator appending 100,000 edits spends minutes walking.)
fn prepend(doc: &Doc, rng: &mut StdRng, len: usize) -> Vec<u8> {
    let text = doc.get_or_insert_text("t");
    let mut txn = doc.transact_mut();
    let s: String = (0..len)
        .map(|_| rng.random_range(b'a'..=b'z') as char)
        .collect();
    text.insert(&mut txn, 0, &s);
    txn.encode_update_v1()
}

/// Posts `updates` in requests of at most 1,000 updates and ~512 KiB of
/// update bytes (base64 makes that ~700 KB, under the 1 MiB body limit).
async fn post_updates(c: &mut Conn, doc: &str, updates: &[Vec<u8>]) -> Result<()> {
    let mut start = 0;
    while start < updates.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < updates.len()
            && end - start < 1000
            && (end == start || bytes + updates[end].len() <= 512 * 1024)
        {
            bytes += updates[end].len();
            end += 1;
        }
        let chunk = &updates[start..end];
        start = end;
        let body = json!({"updates": chunk.iter().map(|u| b64(u)).collect::<Vec<_>>()});
        c.send_ok(
            Method::POST,
            &project_path(&format!("/docs/{doc}/updates")),
            Bytes::from(body.to_string()),
        )
        .await?;
    }
    Ok(())
}

pub async fn crdt(
    ctx: &Ctx,
    gateways: usize,
    docs: usize,
    duration: f64,
    log_updates: usize,
    big_mb: usize,
) -> Result<()> {
    let d = start(ctx)?;
    setup_project(&d.addr, &d.key).await?;
    let seed = ctx.common.seed;

    // 1. Ingest: each gateway owns a Yjs client and posts every edit as it
    // happens (one update of 50-200 bytes per request), acknowledged durable.
    let clients: Arc<Vec<Mutex<Doc>>> = Arc::new(
        (0..gateways)
            .map(|w| Mutex::new(Doc::with_client_id(1000 + w as u64)))
            .collect(),
    );
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let (gen_clients, gen_sizes) = (clients.clone(), sizes.clone());
    let gen: Gen = Arc::new(move |w, _i, r| {
        let doc = gen_clients[w].lock().unwrap();
        let len = r.random_range(20..140);
        let update = prepend(&doc, r, len);
        gen_sizes.lock().unwrap().push(update.len());
        let body = json!({"updates": [b64(&update)]});
        Req {
            method: Method::POST,
            path: project_path(&format!("/docs/g{}/updates", w % docs)),
            body: Some(Bytes::from(body.to_string())),
        }
    });
    let stop = Stop::Time {
        warmup: Duration::from_secs(1),
        measure: Duration::from_secs_f64(duration),
    };
    let ingest = closed_loop(
        "crdt ingest (1 update/request)",
        &d.addr,
        &d.key,
        seed,
        gateways,
        stop,
        "",
        gen,
    )
    .await?;
    let sizes = sizes.lock().unwrap().clone();
    let mean = sizes.iter().sum::<usize>() as f64 / sizes.len().max(1) as f64;
    let ingest = ingest.with("mean_update_bytes", json!(mean.round()));

    let mut c = Conn::open(&d.addr, &d.key).await?;
    let mut rng = StdRng::seed_from_u64(seed);

    // 2. Compaction of a document with `log_updates` small updates.
    let writer = Doc::with_client_id(7);
    let updates: Vec<Vec<u8>> = (0..log_updates)
        .map(|_| prepend(&writer, &mut rng, 60))
        .collect();
    post_updates(&mut c, "long-log", &updates).await?;
    let started = Instant::now();
    let out = c
        .send_ok(
            Method::POST,
            &project_path("/docs/long-log/compact"),
            Bytes::new(),
        )
        .await?;
    let compact_ms = started.elapsed().as_secs_f64() * 1e3;
    let compacted: Value = serde_json::from_slice(&out)?;

    // 3. Load of a compacted document of `big_mb` MiB.
    let big = Doc::with_client_id(8);
    let chunk = 64 * 1024;
    let big_updates: Vec<Vec<u8>> = (0..big_mb * 1024 * 1024 / chunk)
        .map(|_| prepend(&big, &mut rng, chunk))
        .collect();
    post_updates(&mut c, "big", &big_updates).await?;
    c.send_ok(
        Method::POST,
        &project_path("/docs/big/compact"),
        Bytes::new(),
    )
    .await?;
    let mut lat = Vec::new();
    let mut state_bytes = 0;
    let loads = Instant::now();
    for _ in 0..30 {
        let t = Instant::now();
        let (status, body) = c.get(&project_path("/docs/big")).await?;
        anyhow::ensure!(status.is_success(), "GET big: {status}");
        lat.push(t.elapsed().as_nanos() as u64);
        state_bytes = body.len();
    }
    let load = summarize("load compacted doc", lat, 0, loads.elapsed())
        .with("state_bytes", json!(state_bytes));

    // 4. Stored bytes before and after compaction of an edit-and-delete-heavy document.
    let churn = Doc::with_client_id(9);
    let text = churn.get_or_insert_text("t");
    let mut churn_updates = Vec::new();
    for i in 0..20_000 {
        let mut txn = churn.transact_mut();
        let len = text.len(&txn);
        if i % 2 == 1 && len > 30 {
            text.remove_range(&mut txn, 0, 30);
        } else {
            let s: String = (0..40)
                .map(|_| rng.random_range(b'a'..=b'z') as char)
                .collect();
            text.insert(&mut txn, 0, &s);
        }
        churn_updates.push(txn.encode_update_v1());
    }
    let before: usize = churn_updates.iter().map(Vec::len).sum();
    post_updates(&mut c, "churn", &churn_updates).await?;
    let out = c
        .send_ok(
            Method::POST,
            &project_path("/docs/churn/compact"),
            Bytes::new(),
        )
        .await?;
    let after = serde_json::from_slice::<Value>(&out)?["data"]["bytes"]
        .as_i64()
        .unwrap_or(0);
    let visible = churn
        .get_or_insert_text("t")
        .get_string(&churn.transact())
        .len();

    println!(
        "compaction of {log_updates} updates: {compact_ms:.0} ms -> {}",
        compacted["data"]
    );
    println!("edit-and-delete doc: {before} bytes in 20000 updates -> {after} bytes snapshot ({visible} visible chars)");
    ctx.report(
        "crdt",
        &[ingest, load],
        json!({
            "compaction": {"updates": log_updates, "ms": compact_ms, "result": compacted["data"]},
            "churn": {"updates": 20000, "bytes_before": before, "bytes_after": after, "visible_chars": visible},
        }),
    )
}

/// Gateway ingest in binary batches (`POST P/doc-updates`): `gateways`
/// concurrent gateways, each editing its own share of `docs` documents
/// (one Yjs client per document) and posting `batch` updates per request
/// across them, each request acknowledged once all its updates are
/// durable. Reports durable updates per second and request latency.
pub async fn ingest_batches(
    ctx: &Ctx,
    gateways: usize,
    docs: usize,
    batch: usize,
    duration: f64,
) -> Result<()> {
    let d = start(ctx)?;
    setup_project(&d.addr, &d.key).await?;
    let per_gateway = (docs / gateways).max(1);
    let warmup = Duration::from_secs(1);
    let measure = Duration::from_secs_f64(duration);
    let began = Instant::now();
    let tasks: Vec<_> = (0..gateways)
        .map(|g| {
            let (addr, key) = (d.addr.clone(), d.key.clone());
            let seed = ctx.common.seed + g as u64;
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(seed);
                let clients: Vec<(String, Doc)> = (0..per_gateway)
                    .map(|k| (format!("gw{g}-{k}"), Doc::with_client_id(1 + g as u64)))
                    .collect();
                let mut c = Conn::open(&addr, &key).await?;
                let path = project_path("/doc-updates");
                let (mut lat, mut updates, mut errors) = (Vec::new(), 0usize, 0usize);
                let mut turn = 0;
                while began.elapsed() < warmup + measure {
                    let frames: Vec<(usize, Vec<u8>)> = (0..batch)
                        .map(|_| {
                            turn = (turn + 1) % clients.len();
                            let len = rng.random_range(20..140);
                            (turn, prepend(&clients[turn].1, &mut rng, len))
                        })
                        .collect();
                    let body = strata::crdt::batch::encode(
                        frames
                            .iter()
                            .map(|(k, u)| (clients[*k].0.as_str(), u.as_slice())),
                    );
                    let sent = Instant::now();
                    let (status, _) = c
                        .request_as(
                            Method::POST,
                            &path,
                            Some(Bytes::from(body)),
                            "application/vnd.strata.yjs-batch",
                        )
                        .await?;
                    let measured =
                        sent.duration_since(began) >= warmup && began.elapsed() <= warmup + measure;
                    if !measured {
                        continue;
                    }
                    if status.as_u16() == 201 {
                        lat.push(sent.elapsed().as_nanos() as u64);
                        updates += batch;
                    } else {
                        errors += 1;
                    }
                }
                anyhow::Ok((lat, updates, errors))
            })
        })
        .collect();
    let (mut lat, mut updates, mut errors) = (Vec::new(), 0, 0);
    for t in tasks {
        let (l, u, e) = t.await??;
        lat.extend(l);
        updates += u;
        errors += e;
    }
    let rate = updates as f64 / measure.as_secs_f64();
    let name = format!("crdt ingest ({batch} updates/request, binary batches)");
    let summary = summarize(&name, lat, errors, measure)
        .with("durable_updates_per_s", json!(rate.round()))
        .with("gateways", json!(gateways))
        .with("docs", json!(per_gateway * gateways));
    println!("durable updates/s: {rate:.0}");
    ctx.report("crdt-batch", &[summary], json!({}))
}
