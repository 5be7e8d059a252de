//! Live documents over the y-websocket route: several clients typing into
//! one document as fast as they can (disconnects, converged rate, every
//! update durable), and many idle documents with a connection each (the
//! daemon's memory per document, and how fast a new edit is relayed).

use crate::load::{project_path, setup_project};
use crate::stats::summarize;
use crate::{start, Ctx};
use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message as Ws;
use yrs::sync::{Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, ReadTxn, Text, Transact, Update};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: &str, key: &str, doc: &str) -> Result<Socket> {
    let url = format!(
        "ws://{addr}{}?token={key}",
        project_path(&format!("/docs/{doc}/ws"))
    );
    let (ws, _) = tokio_tungstenite::connect_async(url).await?;
    Ok(ws)
}

/// An edit at the start of the client's text (prepending keeps yrs fast).
fn edit(doc: &Doc, n: usize) -> Vec<u8> {
    type_into(doc, "t", n, Spot::Start)
}

/// Where the clients of `typing` type.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Spot {
    /// Each at its own cursor (its own paragraph): what people typing
    /// together do; their edits rarely touch the same place.
    Own,
    /// All at the start of one text: every edit conflicts with every
    /// concurrent one, which costs the clients' CRDT (not the server)
    /// time growing with the concurrency.
    Start,
}

/// The six characters of edit `n` typed into `text` at `spot`.
fn type_into(doc: &Doc, text: &str, n: usize, spot: Spot) -> Vec<u8> {
    let text = doc.get_or_insert_text(text);
    let mut txn = doc.transact_mut();
    let at = match spot {
        Spot::Own => text.len(&txn),
        Spot::Start => 0,
    };
    text.insert(&mut txn, at, &format!("{n:05};"));
    let update = txn.encode_update_v1();
    Message::Sync(SyncMessage::Update(update)).encode_v1()
}

/// `clients` connections on one document, each sending `edits` updates as
/// fast as the socket takes them (with durable acknowledgements asked
/// for) while reading every relay. Counts disconnects; the rate is updates
/// sent by all clients over the time until every client has seen every
/// other's edits (converged); then the stored state must hold them all.
pub async fn typing(ctx: &Ctx, clients: usize, edits: usize, spot: Spot) -> Result<()> {
    let d = start(ctx)?;
    setup_project(&d.addr, &d.key).await?;
    let mut sockets = Vec::new();
    for _ in 0..clients {
        let mut ws = connect(&d.addr, &d.key, "typing").await?;
        ws.next().await.context("no sync step 1")??;
        ws.send(Ws::Binary(vec![100, 1].into())).await?;
        sockets.push(ws);
    }
    let began = Instant::now();
    let tasks: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(i, ws)| {
            tokio::spawn(async move {
                let (mut tx, mut rx) = ws.split();
                // The client's document: its own edits, and every relay
                // applied to it (as a real client does).
                let doc = Doc::with_client_id(100 + i as u64);
                let mirror = doc.clone();
                let mine = text_of(i, spot);
                let send = async move {
                    for n in 0..edits {
                        tx.send(Ws::Binary(type_into(&doc, &mine, n, spot).into()))
                            .await?;
                    }
                    anyhow::Ok(tx)
                };
                // Read relays (and acks) until every client's edits are in
                // the document and all of ours are acknowledged.
                let read = async move {
                    let mut acks = 0;
                    let want = clients * edits * 6;
                    loop {
                        let message = match rx.next().await {
                            Some(Ok(Ws::Binary(b))) => b,
                            Some(Ok(Ws::Close(frame))) => bail!("disconnected: {frame:?}"),
                            Some(Ok(_)) => continue,
                            Some(Err(e)) => bail!("disconnected: {e}"),
                            None => bail!("disconnected"),
                        };
                        if message.first() == Some(&100) {
                            acks += 1;
                        } else if let Ok(Message::Sync(
                            SyncMessage::Update(u) | SyncMessage::SyncStep2(u),
                        )) = Message::decode_v1(&message)
                        {
                            mirror.transact_mut().apply_update(Update::decode_v1(&u)?)?;
                        }
                        let seen = typed(&mirror, clients, spot);
                        if acks == edits && seen == want {
                            return anyhow::Ok(began.elapsed());
                        }
                    }
                };
                let (sent, converged) = tokio::join!(send, read);
                let _sink = sent?;
                converged
            })
        })
        .collect();
    let (mut disconnects, mut converged) = (0, Duration::ZERO);
    for t in tasks {
        match t.await? {
            Ok(at) => converged = converged.max(at),
            Err(e) => {
                eprintln!("client: {e:#}");
                disconnects += 1;
            }
        }
    }
    let total = clients * edits;
    let rate = total as f64 / converged.as_secs_f64();
    // Every update durable: the stored state holds every client's edits.
    let mut c = crate::http::Conn::open(&d.addr, &d.key).await?;
    let (_, state) = c.get(&project_path("/docs/typing")).await?;
    let stored = Doc::new();
    stored
        .transact_mut()
        .apply_update(Update::decode_v1(&state)?)?;
    let chars = typed(&stored, clients, spot);
    println!(
        "{clients} clients x {edits} edits: {disconnects} disconnects, converged in {:.2} s: {rate:.0} updates/s; stored {} of {} edits",
        converged.as_secs_f64(),
        chars / 6,
        total
    );
    let summary = summarize("socket typing (converged)", vec![], disconnects, converged)
        .with("spot", json!(format!("{spot:?}")))
        .with("updates_per_s", json!(rate.round()))
        .with("disconnects", json!(disconnects))
        .with("stored_edits", json!(chars / 6))
        .with("sent_edits", json!(total));
    ctx.report("crdt-sockets", &[summary], json!({}))
}

/// The text client `i` types into.
fn text_of(i: usize, spot: Spot) -> String {
    match spot {
        Spot::Own => format!("t{i}"),
        Spot::Start => "t".into(),
    }
}

/// Characters typed into the document by all the clients.
fn typed(doc: &Doc, clients: usize, spot: Spot) -> usize {
    let texts = match spot {
        Spot::Own => clients,
        Spot::Start => 1,
    };
    let txn = doc.transact();
    (0..texts)
        .filter_map(|i| txn.get_text(text_of(i, spot).as_str()))
        .map(|t| t.len(&txn) as usize)
        .sum()
}

/// `docs` documents with one idle connection each; then `probes` edits,
/// each to one document with a second connection, timed from send until
/// the idle connection receives the relay. Reports the daemon's RSS.
pub async fn idle(ctx: &Ctx, docs: usize, probes: usize) -> Result<()> {
    let d = start(ctx)?;
    setup_project(&d.addr, &d.key).await?;
    let (rss_before, _) = d.rss_kib()?;
    let mut idle = Vec::with_capacity(docs);
    for i in 0..docs {
        let mut ws = connect(&d.addr, &d.key, &format!("idle-{i}")).await?;
        ws.next().await.context("no sync step 1")??;
        idle.push(ws);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss, _) = d.rss_kib()?;
    let per_doc = (rss.saturating_sub(rss_before)) as f64 * 1024.0 / docs as f64;
    println!(
        "{docs} idle documents: RSS {} MiB ({} MiB before), {per_doc:.0} bytes per document and connection",
        rss / 1024,
        rss_before / 1024
    );
    let mut lat = Vec::new();
    let writer = Doc::new();
    for p in 0..probes {
        let target = (p * 7919) % docs;
        let mut ws = connect(&d.addr, &d.key, &format!("idle-{target}")).await?;
        ws.next().await.context("no sync step 1")??;
        let sent = Instant::now();
        ws.send(Ws::Binary(edit(&writer, p).into())).await?;
        loop {
            match tokio::time::timeout(Duration::from_secs(10), idle[target].next()).await {
                Ok(Some(Ok(Ws::Binary(_)))) => break,
                Ok(Some(Ok(_))) => continue,
                other => bail!("no relay on idle-{target}: {other:?}"),
            }
        }
        lat.push(sent.elapsed().as_nanos() as u64);
        ws.close(None).await.ok();
    }
    let summary = summarize("relay to an idle document", lat, 0, Duration::from_secs(1))
        .with("documents", json!(docs))
        .with("rss_mib", json!(rss / 1024))
        .with("bytes_per_document", json!(per_doc.round()));
    ctx.report("crdt-idle", &[summary], json!({}))
}

/// kill -9 during socket editing: in each of `trials` trials a daemon on
/// the same data directory takes edits from `clients` socket clients that
/// asked for durable acknowledgements, and is killed with SIGKILL mid-
/// stream; started again, it must hold every edit that was acknowledged.
pub async fn kill_trials(ctx: &Ctx, trials: usize, clients: usize) -> Result<()> {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir()?;
    let mut opts = ctx.daemon_opts();
    opts.data_dir = Some(dir.path().join("data"));
    opts.keep = true;
    let (mut acked_total, mut lost_total) = (0, 0);
    for trial in 0..trials {
        let mut d = crate::daemon::Daemon::spawn(&opts)?;
        d.wait_ready(Duration::from_millis(5), Duration::from_secs(120))?;
        if trial == 0 {
            setup_project(&d.addr, &d.key).await?;
        }
        let acked = Arc::new(Mutex::new(Vec::<String>::new()));
        let mut tasks = Vec::new();
        for c in 0..clients {
            let mut ws = connect(&d.addr, &d.key, "killed").await?;
            ws.next().await.context("no sync step 1")??;
            ws.send(Ws::Binary(vec![100, 1].into())).await?;
            let acked = acked.clone();
            tasks.push(tokio::spawn(async move {
                let (mut tx, mut rx) = ws.split();
                let sent = Arc::new(Mutex::new(VecDeque::<String>::new()));
                let outstanding = sent.clone();
                let send = async move {
                    let doc = Doc::with_client_id((trial * 1000 + c + 1) as u64);
                    for n in 0.. {
                        if outstanding.lock().unwrap().len() >= 64 {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                            continue;
                        }
                        let mark = format!("t{trial}c{c}n{n};");
                        let update = {
                            let text = doc.get_or_insert_text("t");
                            let mut txn = doc.transact_mut();
                            text.insert(&mut txn, 0, &mark);
                            txn.encode_update_v1()
                        };
                        outstanding.lock().unwrap().push_back(mark);
                        let message = Message::Sync(SyncMessage::Update(update)).encode_v1();
                        if tx.send(Ws::Binary(message.into())).await.is_err() {
                            return;
                        }
                    }
                };
                // Each acknowledgement is for the oldest edit not yet acknowledged.
                let read = async move {
                    while let Some(Ok(message)) = rx.next().await {
                        if let Ws::Binary(b) = message {
                            if b.first() == Some(&100) {
                                if let Some(mark) = sent.lock().unwrap().pop_front() {
                                    acked.lock().unwrap().push(mark);
                                }
                            }
                        }
                    }
                };
                tokio::select! { _ = send => {}, _ = read => {} }
            }));
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        d.kill9();
        for t in tasks {
            t.await?;
        }
        drop(d);
        let acked = acked.lock().unwrap().clone();
        let mut again = crate::daemon::Daemon::spawn(&opts)?;
        again.wait_ready(Duration::from_millis(5), Duration::from_secs(120))?;
        let mut c = crate::http::Conn::open(&again.addr, &again.key).await?;
        let (status, state) = c.get(&project_path("/docs/killed")).await?;
        anyhow::ensure!(status.is_success(), "GET killed: {status}");
        let stored = Doc::new();
        stored
            .transact_mut()
            .apply_update(Update::decode_v1(&state)?)?;
        let text = stored
            .get_or_insert_text("t")
            .get_string(&stored.transact());
        let lost = acked.iter().filter(|m| !text.contains(m.as_str())).count();
        println!(
            "trial {}: {} edits acknowledged before kill -9, {lost} lost",
            trial + 1,
            acked.len()
        );
        acked_total += acked.len();
        lost_total += lost;
        again.stop();
    }
    println!("{trials} trials: {acked_total} acknowledged edits, {lost_total} lost");
    let summary = summarize(
        "kill -9 during socket editing",
        vec![],
        lost_total,
        Duration::from_secs(1),
    )
    .with("trials", json!(trials))
    .with("acknowledged", json!(acked_total))
    .with("lost", json!(lost_total));
    ctx.report("crdt-kill", &[summary], json!({}))
}
