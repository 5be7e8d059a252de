//! Several daemons writing one project on one PostgreSQL at once (issue 10).
//!
//! Three in-process daemons, each with its own connection pool, share a fresh
//! database; 24 seeded writer tasks spread over them create, patch, retype,
//! delete, restore and (rarely) purge a hot set of 150 entities plus fresh
//! ones, and create, patch and delete relationships between them, alone and
//! in batches, for a bounded time. 4xx answers are the expected outcome of
//! racing writers; afterwards the test checks what must hold whatever the
//! interleaving:
//! - no answer is a 5xx (nor a 400: every request sent is well formed), also
//!   for reads on every pool after the load (a connection returned to the
//!   pool inside an aborted transaction would fail them);
//! - in the tables, `relationships.live` is true exactly when the
//!   relationship is not deleted and both its ends are live (ARCHITECTURE.md),
//!   after the load and in every committed state sampled while it runs (a
//!   later delete or restore of an end may repair a row a reader saw broken);
//! - with Apache AGE installed, the project's graph equals the tables: one
//!   vertex per live entity, one edge per live relationship with the right
//!   ends and labels, and no edge whose start or end vertex is gone.
//!
//! Knobs (environment): `STRATA_TEST_CONCURRENCY_SECS` (default 25),
//! `STRATA_TEST_CONCURRENCY_SEED` (default fixed; printed), and
//! `STRATA_TEST_CONCURRENCY_PG_URL` to run on another PostgreSQL server (for
//! instance one with AGE) instead of the test stack's. The summary is printed
//! on stderr (`cargo test --test it concurrency:: -- --nocapture`).

use crate::support;

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_postgres::SimpleQueryMessage;
use tower::ServiceExt;

const ADMIN: &str = "test-admin-key-concurrency-0123456789";
const ORG: &str = "acme";
const PROJECT: &str = "app";
const P: &str = "/v1/orgs/acme/projects/app";
const DAEMONS: usize = 3;
const POOL_SIZE: usize = 8;
const WRITERS: usize = 24;
/// Entities `hot0000`..`hot0149`, created before the load.
const HOT: usize = 150;
/// Relationships `hr0000`..`hr0149` between hot entities, created before the
/// load; writers also try to create these ids again.
const HOT_RELS: usize = 150;
const DEFAULT_SECS: u64 = 25;
const DEFAULT_SEED: u64 = 0x5712_a7a0_0010;
const ENTITY_TYPES: [&str; 3] = ["person", "place", "thing"];
const REL_TYPES: [&str; 3] = ["KNOWS", "NEAR", "OWNS"];
/// A writer's memory of its own fresh entities and relationships.
const RECENT: usize = 32;
/// Reads sent through every daemon after the load.
const READS_AFTER: usize = 4 * POOL_SIZE;
/// How often the invariant is sampled while the load runs.
const WATCH_EVERY: Duration = Duration::from_millis(250);
/// Bodies of unexpected answers printed in full.
const SAMPLES: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_daemons_keep_liveness_and_the_graph_consistent() {
    if std::env::var_os("STRATA_TEST_CONCURRENCY_PG_URL").is_none()
        && support::skip_without(support::PG)
    {
        return;
    }
    let log = ServerLog::install();
    let secs = env_u64("STRATA_TEST_CONCURRENCY_SECS", DEFAULT_SECS);
    let seed = env_u64("STRATA_TEST_CONCURRENCY_SEED", DEFAULT_SEED);
    let url = match std::env::var("STRATA_TEST_CONCURRENCY_PG_URL") {
        Ok(server) => support::fresh_pg_database_on(&server).await,
        Err(_) => support::fresh_pg_database().await,
    };
    eprintln!(
        "concurrency: seed {seed} (STRATA_TEST_CONCURRENCY_SEED), {secs} s, {WRITERS} writers on {DAEMONS} daemons, database {}",
        url.rsplit('/').next().unwrap_or_default()
    );
    let dirs: Vec<_> = (0..DAEMONS).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut daemons = Vec::new();
    for dir in &dirs {
        daemons.push(daemon(dir.path(), &url).await);
    }
    let routers: Vec<Router> = daemons.iter().map(|d| d.router.clone()).collect();
    set_up_project(&routers[0], seed).await;

    let started = Instant::now();
    let duration = Duration::from_secs(secs);
    let watcher = tokio::spawn(watch_liveness(url.clone(), duration));
    let mut tally = run_writers(&routers, seed, duration).await;
    let elapsed = started.elapsed();
    let watch = watcher.await.expect("the liveness watcher panicked");
    let writes = tally.total();
    reads_after_load(&routers, &mut tally).await;

    let db = connect(&url).await;
    let liveness = check_liveness(&db).await;
    let graph = check_graph(&db, &liveness).await;
    // With AGE, `strata age sync` must find nothing to repair.
    let sync = match graph {
        Some(_) => Some(
            daemons[0]
                .store
                .sync_graph(&strata::domain::Scope::new(ORG, PROJECT))
                .await
                .expect("sync the graph"),
        ),
        None => None,
    };

    print_summary(
        seed,
        elapsed,
        writes,
        &tally,
        &liveness,
        &watch,
        graph.as_ref(),
    );
    eprintln!(
        "  write transactions retried after a collision: {}, given up (503): {}",
        strata::store::WRITE_RETRIES.load(std::sync::atomic::Ordering::Relaxed),
        strata::store::WRITES_CONTENDED.load(std::sync::atomic::Ordering::Relaxed)
    );
    if let Some(sync) = &sync {
        eprintln!("  age sync afterwards: {sync:?}");
    }
    log.print();
    let mut problems = problems(&tally, &liveness, &watch, graph.as_ref());
    if let Some(sync) = sync.filter(|s| s.repaired_anything() || !s.after.is_none()) {
        problems.push(format!("age sync found something to repair: {sync:?}"));
    }
    assert!(
        problems.is_empty(),
        "concurrent writers broke the server-mode invariants (seed {seed}):\n- {}",
        problems.join("\n- ")
    );
}

// ---------------------------------------------------------------- set-up

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not an unsigned integer")),
        Err(_) => default,
    }
}

/// One daemon on `url`: its own store and pool, AGE used when the server has it.
async fn daemon(dir: &std::path::Path, url: &str) -> strata::server::Daemon {
    let mut config = support::pg_config(dir, url);
    config.postgres.pool_size = POOL_SIZE;
    config.postgres.age = strata::store::postgres::AgeMode::Auto;
    strata::server::build(config, ADMIN)
        .await
        .expect("start a daemon")
}

/// The org, the project, the hot entities and the hot relationships.
async fn set_up_project(router: &Router, seed: u64) {
    let org = json!({"id": ORG, "name": "Acme"});
    expect(router, "POST", "/v1/orgs", &org, 201).await;
    let project = json!({"id": PROJECT, "name": "App"});
    expect(router, "POST", "/v1/orgs/acme/projects", &project, 201).await;
    let entities: Vec<Value> = (0..HOT)
        .map(|i| {
            json!({"op": "create_entity", "id": hot_id(i),
                   "type": ENTITY_TYPES[i % ENTITY_TYPES.len()], "properties": {"n": i}})
        })
        .collect();
    let batch = json!({ "operations": entities });
    expect(router, "POST", &format!("{P}/batch"), &batch, 200).await;
    let mut rng = StdRng::seed_from_u64(seed);
    let rels: Vec<Value> = (0..HOT_RELS)
        .map(|i| {
            json!({"op": "create_relationship", "id": format!("hr{i:04}"),
                   "type": REL_TYPES[i % REL_TYPES.len()],
                   "from": hot_id(rng.random_range(0..HOT)), "to": hot_id(rng.random_range(0..HOT)),
                   "properties": {"n": i}})
        })
        .collect();
    let batch = json!({ "operations": rels });
    expect(router, "POST", &format!("{P}/batch"), &batch, 200).await;
}

async fn expect(router: &Router, method: &str, path: &str, body: &Value, status: u16) {
    let answer = call(router, method, path, Some(body), None).await;
    assert_eq!(
        answer.status, status,
        "set-up {method} {path} answered {}: {}",
        answer.status, answer.body
    );
}

fn hot_id(i: usize) -> String {
    format!("hot{i:04}")
}

// ---------------------------------------------------------------- HTTP

struct Answer {
    status: u16,
    body: String,
}

/// One request through `router` with the admin key (exempt from rate limits).
async fn call(
    router: &Router,
    method: &str,
    path: &str,
    body: Option<&Value>,
    if_match: Option<i64>,
) -> Answer {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {ADMIN}"));
    if let Some(version) = if_match {
        request = request.header("if-match", format!("\"{version}\""));
    }
    let body = match body {
        Some(v) => {
            request = request.header("content-type", "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let response = router
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .expect("a router answers every request");
    let status = response.status().as_u16();
    let body = match http_body_util::BodyExt::collect(response.into_body()).await {
        Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
        Err(e) => format!("(body unreadable: {e})"),
    };
    Answer { status, body }
}

/// An answer no well-formed request may get, whatever the interleaving.
fn unexpected(status: u16) -> bool {
    status >= 500 || status == 400
}

/// Counts per operation and status, unexpected answers grouped by message.
#[derive(Default)]
struct Tally {
    by_op: BTreeMap<(&'static str, u16), u64>,
    unexpected: BTreeMap<String, u64>,
    samples: Vec<String>,
}

impl Tally {
    fn record(&mut self, op: &'static str, method: &str, path: &str, answer: &Answer) {
        *self.by_op.entry((op, answer.status)).or_default() += 1;
        if unexpected(answer.status) {
            let key = format!("{} {}", answer.status, message_shape(&answer.body));
            *self.unexpected.entry(key).or_default() += 1;
            if self.samples.len() < SAMPLES {
                self.samples.push(format!(
                    "{op}: {method} {path} -> {} {}",
                    answer.status, answer.body
                ));
            }
        }
    }

    fn merge(&mut self, other: Tally) {
        for (k, n) in other.by_op {
            *self.by_op.entry(k).or_default() += n;
        }
        for (k, n) in other.unexpected {
            *self.unexpected.entry(k).or_default() += n;
        }
        let room = SAMPLES.saturating_sub(self.samples.len());
        self.samples.extend(other.samples.into_iter().take(room));
    }

    /// The unexpected answers with a status `keep` accepts, grouped.
    fn unexpected_answers(&self, keep: impl Fn(u16) -> bool) -> String {
        self.unexpected
            .iter()
            .filter(|(shape, _)| shape[..3].parse().is_ok_and(&keep))
            .map(|(shape, n)| format!("{n} x {shape}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn total(&self) -> u64 {
        self.by_op.values().sum()
    }

    fn by_status(&self) -> BTreeMap<u16, u64> {
        let mut out = BTreeMap::new();
        for ((_, status), n) in &self.by_op {
            *out.entry(*status).or_default() += n;
        }
        out
    }

    fn count(&self, keep: impl Fn(u16) -> bool) -> u64 {
        self.by_status()
            .into_iter()
            .filter(|(s, _)| keep(*s))
            .map(|(_, n)| n)
            .sum()
    }
}

/// The error message of an answer with digits folded, so that answers
/// differing only in ids or numbers group together.
fn message_shape(body: &str) -> String {
    let message = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.to_owned());
    fold_digits(&message)
}

fn fold_digits(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars().take(200) {
        if c.is_ascii_digit() {
            if !out.ends_with('#') {
                out.push('#');
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The daemons' warnings and errors (a 500 answers only "internal error";
/// its cause is logged), kept in memory and printed grouped by shape.
#[derive(Clone, Default)]
struct ServerLog(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for ServerLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl ServerLog {
    fn install() -> ServerLog {
        let log = ServerLog::default();
        let writer = log.clone();
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .without_time()
            .with_writer(move || writer.clone())
            .try_init();
        log
    }

    fn print(&self) {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        let mut shapes: BTreeMap<String, u64> = BTreeMap::new();
        for line in text.lines() {
            *shapes.entry(fold_digits(line)).or_default() += 1;
        }
        eprintln!(
            "  server log, warnings and errors: {} lines",
            text.lines().count()
        );
        for (shape, n) in shapes {
            eprintln!("    {n} x {shape}");
        }
    }
}

// ---------------------------------------------------------------- the load

/// Runs the writers until `duration` has passed; every writer stops at its
/// first request after that, and the whole load is bounded by a timeout.
async fn run_writers(routers: &[Router], seed: u64, duration: Duration) -> Tally {
    let start = Instant::now();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let writer = Writer::new(w, seed, routers[w % routers.len()].clone(), start);
            tokio::spawn(writer.run(duration))
        })
        .collect();
    let all = futures_util::future::join_all(tasks);
    let joined = tokio::time::timeout(duration + Duration::from_secs(120), all)
        .await
        .expect("the writers did not stop within 120 s of the end of the load");
    let mut tally = Tally::default();
    for result in joined {
        tally.merge(result.expect("a writer task panicked"));
    }
    tally
}

/// Reads through every daemon, four times as many at once as its pool has
/// connections, so that the pooled connections the load left behind serve
/// some of them.
async fn reads_after_load(routers: &[Router], tally: &mut Tally) {
    let reads = routers.iter().flat_map(|router| {
        (0..READS_AFTER).map(move |i| async move {
            // A list: never answered from the entity cache.
            let path = format!("{P}/relationships?from={}&limit=5", hot_id(i % HOT));
            let answer = call(router, "GET", &path, None, None).await;
            (path, answer)
        })
    });
    for (path, answer) in futures_util::future::join_all(reads).await {
        tally.record("read after load", "GET", &path, &answer);
    }
}

/// One writer task: its own seeded RNG, one daemon, its own recent ids.
struct Writer {
    n: usize,
    rng: StdRng,
    router: Router,
    start: Instant,
    step: u64,
    fresh: VecDeque<String>,
    rels: VecDeque<String>,
    tally: Tally,
}

impl Writer {
    fn new(n: usize, seed: u64, router: Router, start: Instant) -> Self {
        let own = seed ^ (n as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        Writer {
            n,
            rng: StdRng::seed_from_u64(own),
            router,
            start,
            step: 0,
            fresh: VecDeque::new(),
            rels: VecDeque::new(),
            tally: Tally::default(),
        }
    }

    async fn run(mut self, duration: Duration) -> Tally {
        while self.start.elapsed() < duration {
            self.step += 1;
            self.one_request().await;
        }
        self.tally
    }

    /// One request of the mix (weights in thousandths).
    async fn one_request(&mut self) {
        match self.rng.random_range(0..1000) {
            0..80 => self.create_fresh_entity().await,
            80..100 => self.create_hot_entity().await,
            100..150 => self.replace_hot_entity().await,
            150..270 => self.patch_entity_properties().await,
            270..320 => self.patch_entity_type().await,
            320..410 => self.delete_entity().await,
            410..520 => self.restore_entity().await,
            520..525 => self.purge_entity().await,
            525..760 => self.create_relationship().await,
            760..830 => self.patch_relationship().await,
            830..900 => self.delete_relationship().await,
            _ => self.batch().await,
        }
    }

    async fn send(
        &mut self,
        op: &'static str,
        method: &str,
        path: &str,
        body: Option<&Value>,
        if_match: Option<i64>,
    ) -> Answer {
        let answer = call(&self.router, method, path, body, if_match).await;
        self.tally.record(op, method, path, &answer);
        answer
    }

    // -- choices

    /// Skewed like real traffic: half the picks go to the hottest fifth, so
    /// writes meet on the same entities often.
    fn hot(&mut self) -> String {
        let range = if self.rng.random_bool(0.5) {
            HOT / 5
        } else {
            HOT
        };
        hot_id(self.rng.random_range(0..range))
    }

    /// A hot entity mostly, else one of this writer's fresh entities.
    fn end(&mut self) -> String {
        if self.fresh.is_empty() || self.rng.random_bool(0.85) {
            self.hot()
        } else {
            let i = self.rng.random_range(0..self.fresh.len());
            self.fresh[i].clone()
        }
    }

    /// A hot relationship id or one this writer created.
    fn rel(&mut self) -> String {
        if self.rels.is_empty() || self.rng.random_bool(0.4) {
            format!("hr{:04}", self.rng.random_range(0..HOT_RELS))
        } else {
            let i = self.rng.random_range(0..self.rels.len());
            self.rels[i].clone()
        }
    }

    fn fresh_id(&mut self, prefix: &str) -> String {
        format!("{prefix}-{}-{}", self.n, self.step)
    }

    /// Whether to use this period's new type name: a type name is new for
    /// two seconds and used by half the typed requests of its first quarter
    /// second, so that first uses of a label meet on every daemon.
    fn use_new_type(&mut self) -> bool {
        let burst = self.start.elapsed().as_millis() % 2000 < 250;
        self.rng.random_bool(if burst { 0.5 } else { 0.02 })
    }

    fn new_type(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.start.elapsed().as_secs() / 2)
    }

    fn entity_type(&mut self) -> String {
        if self.use_new_type() {
            self.new_type("fresh_t")
        } else {
            ENTITY_TYPES[self.rng.random_range(0..ENTITY_TYPES.len())].to_string()
        }
    }

    fn rel_type(&mut self) -> String {
        if self.use_new_type() {
            self.new_type("FRESH_R")
        } else {
            REL_TYPES[self.rng.random_range(0..REL_TYPES.len())].to_string()
        }
    }

    fn properties(&mut self) -> Value {
        json!({"w": self.n, "step": self.step, "score": self.rng.random_range(0..100)})
    }

    /// A merge patch: sets a key, sometimes removes one.
    fn patch(&mut self) -> Value {
        let mut patch = json!({"score": self.rng.random_range(0..100), "by": self.n});
        if self.rng.random_bool(0.2) {
            patch["step"] = Value::Null;
        }
        patch
    }

    /// Usually none; sometimes a small version, stale more often than not.
    fn if_match(&mut self) -> Option<i64> {
        self.rng
            .random_bool(0.1)
            .then(|| self.rng.random_range(1..6))
    }

    fn remember(list: &mut VecDeque<String>, id: String) {
        if list.len() == RECENT {
            list.pop_front();
        }
        list.push_back(id);
    }

    // -- entities

    async fn create_fresh_entity(&mut self) {
        let id = self.fresh_id("f");
        let body = json!({"id": id, "type": self.entity_type(), "properties": self.properties()});
        let answer = self
            .send(
                "create entity",
                "POST",
                &format!("{P}/entities"),
                Some(&body),
                None,
            )
            .await;
        if answer.status == 201 {
            Self::remember(&mut self.fresh, id);
        }
    }

    /// Mostly 409; recreates a purged hot entity.
    async fn create_hot_entity(&mut self) {
        let body =
            json!({"id": self.hot(), "type": self.entity_type(), "properties": self.properties()});
        self.send(
            "create hot entity",
            "POST",
            &format!("{P}/entities"),
            Some(&body),
            None,
        )
        .await;
    }

    async fn replace_hot_entity(&mut self) {
        let path = format!("{P}/entities/{}", self.hot());
        let body = json!({"type": self.entity_type(), "properties": self.properties()});
        let if_match = self.if_match();
        self.send("replace entity", "PUT", &path, Some(&body), if_match)
            .await;
    }

    async fn patch_entity_properties(&mut self) {
        let path = format!("{P}/entities/{}", self.end());
        let body = json!({ "properties": self.patch() });
        let if_match = self.if_match();
        self.send("patch entity", "PATCH", &path, Some(&body), if_match)
            .await;
    }

    async fn patch_entity_type(&mut self) {
        let path = format!("{P}/entities/{}", self.hot());
        let body = json!({"properties": self.patch(), "type": self.entity_type()});
        self.send("retype entity", "PATCH", &path, Some(&body), None)
            .await;
    }

    async fn delete_entity(&mut self) {
        let path = format!("{P}/entities/{}", self.end());
        let if_match = self.if_match();
        self.send("delete entity", "DELETE", &path, None, if_match)
            .await;
    }

    async fn restore_entity(&mut self) {
        let path = format!("{P}/entities/{}/restore", self.hot());
        self.send("restore entity", "POST", &path, None, None).await;
    }

    async fn purge_entity(&mut self) {
        let path = format!("{P}/entities/{}?purge=true", self.hot());
        self.send("purge entity", "DELETE", &path, None, None).await;
    }

    // -- relationships

    async fn create_relationship(&mut self) {
        let id = if self.rng.random_bool(0.15) {
            format!("hr{:04}", self.rng.random_range(0..HOT_RELS))
        } else {
            self.fresh_id("r")
        };
        let body = json!({"id": id, "type": self.rel_type(), "from": self.end(), "to": self.end(),
                          "properties": self.properties()});
        let answer = self
            .send(
                "create relationship",
                "POST",
                &format!("{P}/relationships"),
                Some(&body),
                None,
            )
            .await;
        if answer.status == 201 {
            Self::remember(&mut self.rels, id);
        }
    }

    async fn patch_relationship(&mut self) {
        let path = format!("{P}/relationships/{}", self.rel());
        let mut body = json!({ "properties": self.patch() });
        if self.rng.random_bool(0.25) {
            body["type"] = Value::String(self.rel_type());
        }
        let if_match = self.if_match();
        self.send("patch relationship", "PATCH", &path, Some(&body), if_match)
            .await;
    }

    async fn delete_relationship(&mut self) {
        let path = format!("{P}/relationships/{}", self.rel());
        self.send("delete relationship", "DELETE", &path, None, None)
            .await;
    }

    /// 2 to 6 operations; all or nothing, so one failing op fails the batch.
    async fn batch(&mut self) {
        let size = self.rng.random_range(2..=6);
        let operations: Vec<Value> = (0..size).map(|i| self.batch_op(i)).collect();
        let body = json!({ "operations": operations });
        self.send("batch", "POST", &format!("{P}/batch"), Some(&body), None)
            .await;
    }

    fn batch_op(&mut self, i: usize) -> Value {
        match self.rng.random_range(0..100) {
            0..30 => {
                json!({"op": "create_entity", "id": format!("b-{}-{}-{i}", self.n, self.step),
                       "type": self.entity_type(), "properties": self.properties()})
            }
            30..55 => {
                let mut op =
                    json!({"op": "update_entity", "id": self.hot(), "properties": self.patch()});
                if self.rng.random_bool(0.3) {
                    op["type"] = Value::String(self.entity_type());
                }
                op
            }
            55..65 => json!({"op": "delete_entity", "id": self.end()}),
            65..90 => {
                json!({"op": "create_relationship", "id": format!("br-{}-{}-{i}", self.n, self.step),
                       "type": self.rel_type(), "from": self.end(), "to": self.end(),
                       "properties": self.properties()})
            }
            _ => json!({"op": "delete_relationship", "id": self.rel()}),
        }
    }
}

// ---------------------------------------------------------------- the database

/// A connection that finds Strata's tables wherever the running migrations
/// put them: the `strata` schema, `public`, or (AGE on, before issue 10)
/// `ag_catalog`. Queries below name tables without a schema.
async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test database");
    tokio::spawn(connection);
    client
        .batch_execute("SET search_path = strata, public, ag_catalog")
        .await
        .expect("set the search path");
    client
}

/// Rows of a simple (text) query, each as its columns' text.
async fn text_rows(db: &tokio_postgres::Client, sql: &str) -> Vec<Vec<Option<String>>> {
    let messages = db
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

struct Rel {
    id: String,
    rel_type: String,
    from: String,
    to: String,
    live: bool,
}

/// The three ways a relationship row can break the liveness invariant.
const LIVE_WITH_DEAD_END: &str = "live relationships with a missing or deleted end";
const HIDDEN: &str = "relationships not live although not deleted and both ends live";
const LIVE_BUT_DELETED: &str = "live relationships that are deleted";
const KINDS: [&str; 3] = [LIVE_WITH_DEAD_END, HIDDEN, LIVE_BUT_DELETED];

/// A relationship row with the state of its ends, read in one statement.
struct RelRow {
    rel: Rel,
    deleted: bool,
    from_state: String,
    to_state: String,
}

impl RelRow {
    /// Which part of the invariant the row breaks, if any.
    fn violation(&self) -> Option<&'static str> {
        let ends_live = self.from_state == "live" && self.to_state == "live";
        match (self.rel.live, self.deleted, ends_live) {
            (true, _, false) => Some(LIVE_WITH_DEAD_END),
            (true, true, true) => Some(LIVE_BUT_DELETED),
            (false, false, true) => Some(HIDDEN),
            _ => None,
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} ({} {} -> {} {}, live {}, deleted {})",
            self.rel.id,
            self.rel.from,
            self.from_state,
            self.rel.to,
            self.to_state,
            self.rel.live,
            self.deleted
        )
    }
}

/// Every relationship of the project with the state of its ends.
async fn relationship_rows(db: &tokio_postgres::Client) -> Vec<RelRow> {
    let rows = text_rows(
        db,
        "SELECT r.id, r.type, r.from_id, r.to_id, r.live, r.deleted_at IS NOT NULL,
                CASE WHEN f.id IS NULL THEN 'missing'
                     WHEN f.deleted_at IS NOT NULL THEN 'deleted' ELSE 'live' END,
                CASE WHEN t.id IS NULL THEN 'missing'
                     WHEN t.deleted_at IS NOT NULL THEN 'deleted' ELSE 'live' END
         FROM relationships r
         LEFT JOIN entities f
           ON f.org_id = r.org_id AND f.project_id = r.project_id AND f.id = r.from_id
         LEFT JOIN entities t
           ON t.org_id = r.org_id AND t.project_id = r.project_id AND t.id = r.to_id
         WHERE r.org_id = 'acme' AND r.project_id = 'app'
         ORDER BY r.id",
    )
    .await;
    rows.iter()
        .map(|r| RelRow {
            rel: Rel {
                id: col(r, 0),
                rel_type: col(r, 1),
                from: col(r, 2),
                to: col(r, 3),
                live: col(r, 4) == "t",
            },
            deleted: col(r, 5) == "t",
            from_state: col(r, 6),
            to_state: col(r, 7),
        })
        .collect()
}

/// What the tables say after the load.
struct Liveness {
    live_entities: HashMap<String, String>,
    relationships: usize,
    live_rels: Vec<Rel>,
    /// per kind of violation, the rows breaking it
    violations: BTreeMap<&'static str, Vec<String>>,
}

async fn check_liveness(db: &tokio_postgres::Client) -> Liveness {
    let live_entities = text_rows(
        db,
        "SELECT id, type FROM entities
         WHERE org_id = 'acme' AND project_id = 'app' AND deleted_at IS NULL",
    )
    .await
    .into_iter()
    .map(|r| (col(&r, 0), col(&r, 1)))
    .collect();
    let rows = relationship_rows(db).await;
    let mut out = Liveness {
        live_entities,
        relationships: rows.len(),
        live_rels: Vec::new(),
        violations: KINDS.iter().map(|k| (*k, Vec::new())).collect(),
    };
    for row in rows {
        if let Some(kind) = row.violation() {
            out.violations.entry(kind).or_default().push(row.describe());
        }
        if row.rel.live {
            out.live_rels.push(row.rel);
        }
    }
    out
}

/// Violations seen in committed states while the load ran (each statement
/// reads one snapshot, and a correct store keeps the invariant in every
/// committed state): later writes may repair a row before the end, but a
/// reader saw it broken. Distinct relationship ids per kind.
#[derive(Default)]
struct Watch {
    samples: usize,
    seen: BTreeMap<&'static str, BTreeMap<String, String>>,
}

/// Samples the invariant every `WATCH_EVERY` until `duration` has passed.
async fn watch_liveness(url: String, duration: Duration) -> Watch {
    let db = connect(&url).await;
    let start = Instant::now();
    let mut watch = Watch::default();
    while start.elapsed() < duration {
        for row in relationship_rows(&db).await {
            if let Some(kind) = row.violation() {
                let seen = watch.seen.entry(kind).or_default();
                seen.entry(row.rel.id.clone())
                    .or_insert_with(|| row.describe());
            }
        }
        watch.samples += 1;
        tokio::time::sleep(WATCH_EVERY).await;
    }
    watch
}

fn col(row: &[Option<String>], i: usize) -> String {
    row[i].clone().unwrap_or_default()
}

/// How the AGE graph differs from the tables.
#[derive(Default)]
struct GraphDrift {
    graph: String,
    vertices: usize,
    edges: usize,
    /// live entities without a vertex, and vertices without a live entity
    vertices_missing: Vec<String>,
    vertices_extra: Vec<String>,
    /// vertices sharing an entity id (beyond the first)
    vertices_duplicate: Vec<String>,
    vertex_labels_wrong: Vec<String>,
    edges_missing: Vec<String>,
    edges_extra: Vec<String>,
    edges_duplicate: Vec<String>,
    /// an edge whose start or end vertex does not exist
    edges_dangling: Vec<String>,
    /// an edge between the wrong entities
    edge_ends_wrong: Vec<String>,
    edge_labels_wrong: Vec<String>,
}

impl GraphDrift {
    fn lists(&self) -> [(&'static str, &Vec<String>); 10] {
        [
            ("live entities without a vertex", &self.vertices_missing),
            ("vertices without a live entity", &self.vertices_extra),
            ("duplicate vertices", &self.vertices_duplicate),
            (
                "vertices labelled other than the type",
                &self.vertex_labels_wrong,
            ),
            ("live relationships without an edge", &self.edges_missing),
            ("edges without a live relationship", &self.edges_extra),
            ("duplicate edges", &self.edges_duplicate),
            (
                "edges whose start or end vertex is missing (dangling)",
                &self.edges_dangling,
            ),
            (
                "edges between other entities than from/to",
                &self.edge_ends_wrong,
            ),
            (
                "edges labelled other than the type",
                &self.edge_labels_wrong,
            ),
        ]
    }
}

/// `None` when the database has no AGE. The graph is read from its label
/// tables, not through MATCH: MATCH does not see an edge whose vertex is gone.
async fn check_graph(db: &tokio_postgres::Client, liveness: &Liveness) -> Option<GraphDrift> {
    let age = text_rows(db, "SELECT 1 FROM pg_extension WHERE extname = 'age'").await;
    if age.is_empty() {
        return None;
    }
    let pk = text_rows(
        db,
        "SELECT pk FROM projects WHERE org_id = 'acme' AND id = 'app'",
    )
    .await;
    let graph = format!("strata_g{}", col(&pk[0], 0));
    db.batch_execute("LOAD 'age'").await.expect("LOAD 'age'");
    let exists = text_rows(
        db,
        &format!("SELECT 1 FROM ag_catalog.ag_graph WHERE name = '{graph}'"),
    )
    .await;
    let mut drift = GraphDrift {
        graph: graph.clone(),
        ..GraphDrift::default()
    };
    if exists.is_empty() {
        drift.vertices_missing.push(format!("(no graph {graph})"));
        return Some(drift);
    }
    let vertices = text_rows(
        db,
        &format!(
            "SELECT v.id::text, c.relname, v.properties::text
             FROM {graph}._ag_label_vertex v JOIN pg_class c ON c.oid = v.tableoid"
        ),
    )
    .await;
    let edges = text_rows(
        db,
        &format!(
            "SELECT e.start_id::text, e.end_id::text, c.relname, e.properties::text
             FROM {graph}._ag_label_edge e JOIN pg_class c ON c.oid = e.tableoid"
        ),
    )
    .await;
    drift.vertices = vertices.len();
    drift.edges = edges.len();
    let by_graphid = compare_vertices(&mut drift, &vertices, &liveness.live_entities);
    compare_edges(&mut drift, &edges, &by_graphid, &liveness.live_rels);
    Some(drift)
}

/// The `id` property of an agtype map in text form (JSON for the values the
/// load writes: strings and integers).
fn agtype_id(properties: &str) -> String {
    serde_json::from_str::<Value>(properties)
        .ok()
        .and_then(|v| v["id"].as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("(no readable id in {properties})"))
}

/// Compares vertices with live entities; returns graphid -> entity id.
fn compare_vertices(
    drift: &mut GraphDrift,
    vertices: &[Vec<Option<String>>],
    live: &HashMap<String, String>,
) -> HashMap<String, String> {
    let mut by_graphid = HashMap::new();
    let mut seen = HashSet::new();
    for v in vertices {
        let (graphid, label, id) = (col(v, 0), col(v, 1), agtype_id(&col(v, 2)));
        if !seen.insert(id.clone()) {
            drift.vertices_duplicate.push(id.clone());
        }
        match live.get(&id) {
            None => drift.vertices_extra.push(id.clone()),
            Some(t) if *t != label => drift
                .vertex_labels_wrong
                .push(format!("{id}: label {label}, type {t}")),
            Some(_) => {}
        }
        by_graphid.insert(graphid, id);
    }
    let mut missing: Vec<_> = live
        .keys()
        .filter(|id| !seen.contains(*id))
        .cloned()
        .collect();
    missing.sort();
    drift.vertices_missing = missing;
    by_graphid
}

fn compare_edges(
    drift: &mut GraphDrift,
    edges: &[Vec<Option<String>>],
    by_graphid: &HashMap<String, String>,
    live_rels: &[Rel],
) {
    let live: HashMap<&str, &Rel> = live_rels.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut seen = HashSet::new();
    for e in edges {
        let (label, id) = (col(e, 2), agtype_id(&col(e, 3)));
        let from = by_graphid.get(&col(e, 0));
        let to = by_graphid.get(&col(e, 1));
        if !seen.insert(id.clone()) {
            drift.edges_duplicate.push(id.clone());
        }
        let (Some(from), Some(to)) = (from, to) else {
            drift.edges_dangling.push(format!(
                "{id} ({} vertex missing)",
                if from.is_none() { "start" } else { "end" }
            ));
            continue;
        };
        let Some(rel) = live.get(id.as_str()) else {
            drift.edges_extra.push(id);
            continue;
        };
        if (from, to) != (&rel.from, &rel.to) {
            drift.edge_ends_wrong.push(format!(
                "{id}: edge {from} -> {to}, table {} -> {}",
                rel.from, rel.to
            ));
        }
        if label != rel.rel_type {
            drift
                .edge_labels_wrong
                .push(format!("{id}: label {label}, type {}", rel.rel_type));
        }
    }
    drift.edges_missing = live_rels
        .iter()
        .filter(|r| !seen.contains(&r.id))
        .map(|r| r.id.clone())
        .collect();
}

// ---------------------------------------------------------------- report

fn print_summary(
    seed: u64,
    elapsed: Duration,
    writes: u64,
    tally: &Tally,
    liveness: &Liveness,
    watch: &Watch,
    graph: Option<&GraphDrift>,
) {
    let secs = elapsed.as_secs_f64();
    eprintln!(
        "concurrency: seed {seed}, load {secs:.1} s, {writes} requests, {:.0} requests/s",
        writes as f64 / secs
    );
    eprintln!(
        "  by status (with {} reads after the load): {:?}",
        READS_AFTER * DAEMONS,
        tally.by_status()
    );
    let mut ops: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for ((op, status), n) in &tally.by_op {
        ops.entry(op).or_default().push(format!("{status}:{n}"));
    }
    for (op, counts) in ops {
        eprintln!("  {op:<20} {}", counts.join(" "));
    }
    eprintln!(
        "  5xx: {}, 400: {}",
        tally.count(|s| s >= 500),
        tally.count(|s| s == 400)
    );
    for (message, n) in &tally.unexpected {
        eprintln!("    {n} x {message}");
    }
    for sample in &tally.samples {
        eprintln!("    e.g. {sample}");
    }
    let hot_live = (0..HOT)
        .filter(|i| liveness.live_entities.contains_key(&hot_id(*i)))
        .count();
    eprintln!(
        "  tables after the load: {} live entities ({hot_live} of {HOT} hot), {} relationships ({} live)",
        liveness.live_entities.len(),
        liveness.relationships,
        liveness.live_rels.len(),
    );
    for (kind, rows) in &liveness.violations {
        eprintln!(
            "    {kind}: {} {:?}",
            rows.len(),
            &rows[..rows.len().min(5)]
        );
    }
    eprintln!(
        "  during the load ({} samples), distinct relationships seen breaking the invariant:",
        watch.samples
    );
    for kind in KINDS {
        let seen: Vec<&String> = watch
            .seen
            .get(kind)
            .into_iter()
            .flat_map(|m| m.values())
            .collect();
        eprintln!(
            "    {kind}: {} {:?}",
            seen.len(),
            &seen[..seen.len().min(5)]
        );
    }
    match graph {
        None => eprintln!("  AGE: not installed in this database; graph check skipped"),
        Some(g) => {
            eprintln!(
                "  AGE graph {}: {} vertices, {} edges",
                g.graph, g.vertices, g.edges
            );
            for (what, list) in g.lists() {
                eprintln!(
                    "    {what}: {} {:?}",
                    list.len(),
                    &list[..list.len().min(5)]
                );
            }
        }
    }
}

/// Every broken expectation, one line each.
fn problems(
    tally: &Tally,
    liveness: &Liveness,
    watch: &Watch,
    graph: Option<&GraphDrift>,
) -> Vec<String> {
    let mut out = Vec::new();
    let server_errors = tally.count(|s| s >= 500);
    if server_errors > 0 {
        out.push(format!(
            "{server_errors} answers with status >= 500 ({}; their causes are in the server log above)",
            tally.unexpected_answers(|s| s >= 500)
        ));
    }
    let bad_requests = tally.count(|s| s == 400);
    if bad_requests > 0 {
        out.push(format!(
            "{bad_requests} answers 400 to well-formed requests ({})",
            tally.unexpected_answers(|s| s == 400)
        ));
    }
    let invariant = "relationships.live must be true exactly when the relationship is not deleted and both its ends are live";
    for (kind, rows) in &liveness.violations {
        if !rows.is_empty() {
            out.push(format!(
                "after the load, {} {kind} ({invariant}), e.g. {:?}",
                rows.len(),
                &rows[..rows.len().min(3)]
            ));
        }
    }
    for (kind, seen) in &watch.seen {
        let rows: Vec<&String> = seen.values().take(3).collect();
        out.push(format!(
            "during the load, {} {kind} seen in committed states ({invariant}), e.g. {rows:?}",
            seen.len()
        ));
    }
    if let Some(g) = graph {
        for (what, list) in g.lists() {
            if !list.is_empty() {
                out.push(format!(
                    "AGE graph {} differs from the tables: {} {what}, e.g. {:?}",
                    g.graph,
                    list.len(),
                    &list[..list.len().min(3)]
                ));
            }
        }
    }
    out
}
