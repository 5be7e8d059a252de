//! `/metrics` as Prometheus text: requests (by status class, and latency
//! per route), the store's connections and cache, jobs, documents, blob
//! store failures, backups, the change feed's consumers and the text index.
//! Counters are this process's; gauges are read when scraped.

use super::AppState;
use crate::feed::ConsumerReport;
use crate::jobs::stats::JobCounts;
use crate::search::text_index::TextIndexReport;
use crate::store::cache::CacheStats;
use crate::store::RuntimeStats;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use std::collections::HashMap;
use std::fmt::{Display, Write};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Instant;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

/// The route label of a request no route matched: one label for all of
/// them, so unknown paths cannot grow the metrics without bound.
const UNMATCHED: &str = "unmatched";

#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    micros_sum: AtomicU64,
}

impl Histogram {
    fn observe(&self, seconds: f64) {
        self.count.fetch_add(1, Relaxed);
        self.micros_sum.fetch_add((seconds * 1e6) as u64, Relaxed);
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
    }
}

/// (method, route template): a bounded set, the routes the router knows.
type RouteKey = (String, String);

#[derive(Default)]
pub struct Metrics {
    by_class: [AtomicU64; 6],
    routes: RwLock<HashMap<RouteKey, Arc<Histogram>>>,
}

/// What is read when `/metrics` is scraped.
pub struct Scrape<'a> {
    pub cache: CacheStats,
    pub runtime: RuntimeStats,
    pub consumers: &'a [ConsumerReport],
    pub text_index: Option<TextIndexReport>,
    pub jobs: Vec<(&'static str, JobCounts)>,
    /// Documents with live connections on this daemon, and the connections.
    pub live_docs: (u64, u64),
    pub backend: &'a str,
}

impl Metrics {
    fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let class = (status / 100).min(5) as usize;
        self.by_class[class].fetch_add(1, Relaxed);
        let key = (method.to_owned(), route.to_owned());
        let known = self.routes.read().expect("metrics lock").get(&key).cloned();
        let histogram = match known {
            Some(h) => h,
            None => self
                .routes
                .write()
                .expect("metrics lock")
                .entry(key)
                .or_default()
                .clone(),
        };
        histogram.observe(seconds);
    }

    pub fn render(&self, scrape: &Scrape) -> String {
        let mut out = Text::default();
        self.render_requests(&mut out);
        render_store(&mut out, scrape);
        render_jobs(&mut out, &scrape.jobs);
        render_documents(&mut out, scrape.live_docs);
        render_blobs(&mut out);
        render_backups(&mut out);
        render_consumers(&mut out, scrape.consumers);
        if let Some(index) = &scrape.text_index {
            out.gauge(
                "strata_text_index_documents",
                "Entities in this daemon's text index.",
                index.documents,
            );
            out.gauge(
                "strata_text_index_current",
                "1 when the text index is built and has applied the whole change feed (text searches use it).",
                u8::from(index.current),
            );
        }
        out.family("strata_info", "gauge", "Build and backend.");
        out.sample(
            "strata_info",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("backend", scrape.backend),
            ],
            1,
        );
        out.0
    }

    fn render_requests(&self, out: &mut Text) {
        let name = "strata_http_requests_total";
        out.family(name, "counter", "HTTP requests by status class.");
        for (class, n) in self.by_class.iter().enumerate().skip(1) {
            let class = format!("{class}xx");
            out.sample(name, &[("class", &class)], n.load(Relaxed));
        }
        let name = "strata_http_request_duration_seconds";
        out.family(name, "histogram", "Request latency by method and route.");
        let routes = self.routes.read().expect("metrics lock");
        let mut keys: Vec<&RouteKey> = routes.keys().collect();
        keys.sort();
        for key in keys {
            let h = &routes[key];
            let (method, route) = (key.0.as_str(), key.1.as_str());
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(&h.buckets) {
                cumulative += n.load(Relaxed);
                let le = bound.to_string();
                let labels = [("method", method), ("route", route), ("le", &le)];
                out.sample(&format!("{name}_bucket"), &labels, cumulative);
            }
            let count = h.count.load(Relaxed);
            let labels = [("method", method), ("route", route), ("le", "+Inf")];
            out.sample(&format!("{name}_bucket"), &labels, count);
            let labels = [("method", method), ("route", route)];
            let sum = h.micros_sum.load(Relaxed) as f64 / 1e6;
            out.sample(&format!("{name}_sum"), &labels, sum);
            out.sample(&format!("{name}_count"), &labels, count);
        }
    }
}

/// Prometheus text being written.
#[derive(Default)]
struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            let pairs: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = write!(self.0, "{{{}}}", pairs.join(","));
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn gauge(&mut self, name: &str, help: &str, value: impl Display) {
        self.family(name, "gauge", help);
        self.sample(name, &[], value);
    }

    fn counter(&mut self, name: &str, help: &str, value: impl Display) {
        self.family(name, "counter", help);
        self.sample(name, &[], value);
    }

    fn maybe_gauge(&mut self, name: &str, help: &str, value: Option<impl Display>) {
        self.family(name, "gauge", help);
        if let Some(v) = value {
            self.sample(name, &[], v);
        }
    }

    fn maybe_counter(&mut self, name: &str, help: &str, value: Option<impl Display>) {
        self.family(name, "counter", help);
        if let Some(v) = value {
            self.sample(name, &[], v);
        }
    }
}

/// A label value as the text format wants it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The entity cache, write contention, and the backend's connections.
fn render_store(out: &mut Text, scrape: &Scrape) {
    let cache = scrape.cache;
    out.counter(
        "strata_entity_cache_hits_total",
        "Entity reads served from the cache.",
        cache.hits,
    );
    out.counter(
        "strata_entity_cache_misses_total",
        "Entity reads that went to the store.",
        cache.misses,
    );
    out.gauge(
        "strata_entity_cache_entries",
        "Entities held in the cache.",
        cache.entries,
    );
    out.counter(
        "strata_store_write_retries_total",
        "Write transactions sent again after colliding with concurrent writers.",
        crate::store::WRITE_RETRIES.load(Relaxed),
    );
    out.counter(
        "strata_store_writes_contended_total",
        "Writes answered 503 because every attempt collided with concurrent writers.",
        crate::store::WRITES_CONTENDED.load(Relaxed),
    );
    // Each backend has one of the two: the other's families stay empty.
    let pool = scrape.runtime.pool;
    let name = "strata_db_pool_connections";
    out.family(
        name,
        "gauge",
        "PostgreSQL connections of the pool, by state.",
    );
    if let Some(pool) = pool {
        out.sample(name, &[("state", "in_use")], pool.open - pool.idle);
        out.sample(name, &[("state", "idle")], pool.idle);
    }
    out.maybe_gauge(
        "strata_db_pool_max_connections",
        "Most connections the PostgreSQL pool opens.",
        pool.map(|p| p.max),
    );
    out.maybe_gauge(
        "strata_db_pool_waiting",
        "Callers waiting for a pooled PostgreSQL connection.",
        pool.map(|p| p.waiting),
    );
    let writer = scrape.runtime.writer;
    out.maybe_gauge(
        "strata_sqlite_writer_queue_depth",
        "Writes waiting for the SQLite writer thread.",
        writer.map(|w| w.queued),
    );
    out.maybe_counter(
        "strata_sqlite_writer_groups_total",
        "Group transactions the SQLite writer committed or tried (one fsync each).",
        writer.map(|w| w.groups),
    );
    out.maybe_counter(
        "strata_sqlite_writer_grouped_writes_total",
        "Writes in those groups (divided by the groups: the mean group size).",
        writer.map(|w| w.grouped_writes),
    );
    out.maybe_gauge(
        "strata_sqlite_writer_last_group_size",
        "Writes in the SQLite writer's newest group.",
        writer.map(|w| w.last_group),
    );
}

/// A metric family of jobs: name, type, help, and its value of one job.
type JobFamily = (
    &'static str,
    &'static str,
    &'static str,
    fn(&JobCounts) -> f64,
);

/// Runs of each job this daemon made (one daemon runs each tick). The
/// label is `scheduled_job`: `job` is Prometheus's own target label.
fn render_jobs(out: &mut Text, jobs: &[(&'static str, JobCounts)]) {
    let name = "strata_job_runs_total";
    out.family(name, "counter", "Job runs this daemon made, by outcome.");
    for (job, c) in jobs {
        out.sample(
            name,
            &[("scheduled_job", job), ("outcome", "ok")],
            c.succeeded,
        );
        out.sample(
            name,
            &[("scheduled_job", job), ("outcome", "failed")],
            c.failed,
        );
    }
    let families: [JobFamily; 3] = [
        (
            "strata_job_duration_seconds_total",
            "counter",
            "Time this daemon spent running the job.",
            |c| c.seconds_total,
        ),
        (
            "strata_job_last_duration_seconds",
            "gauge",
            "How long the job's newest run on this daemon took.",
            |c| c.last_seconds,
        ),
        (
            "strata_job_last_success_timestamp_seconds",
            "gauge",
            "When the job's newest successful run on this daemon ended (Unix seconds; 0: none).",
            |c| c.last_success as f64,
        ),
    ];
    for (name, kind, help, value) in families {
        out.family(name, kind, help);
        for (job, c) in jobs {
            out.sample(name, &[("scheduled_job", job)], value(c));
        }
    }
}

/// Yjs documents: stored updates, quarantine, live connections.
fn render_documents(out: &mut Text, (docs, connections): (u64, u64)) {
    out.counter(
        "strata_crdt_updates_stored_total",
        "Yjs updates this process stored from clients (HTTP and sockets).",
        crate::crdt::UPDATES_STORED.load(Relaxed),
    );
    out.counter(
        "strata_crdt_quarantined_updates_total",
        "Stored Yjs updates that failed the update check and were moved to quarantine by this process.",
        crate::crdt::QUARANTINED_UPDATES.load(Relaxed),
    );
    out.gauge(
        "strata_crdt_live_documents",
        "Documents with live socket connections on this daemon.",
        docs,
    );
    out.gauge(
        "strata_crdt_live_connections",
        "Live socket connections to documents on this daemon.",
        connections,
    );
}

/// Failed blob store operations (not found and the like are answers).
fn render_blobs(out: &mut Text) {
    let name = "strata_blob_failures_total";
    out.family(
        name,
        "counter",
        "Blob store operations that failed (I/O, the backend, a checksum), by operation.",
    );
    for (op, n) in crate::blob::OPERATIONS.iter().zip(&crate::blob::FAILURES) {
        out.sample(name, &[("op", op)], n.load(Relaxed));
    }
}

/// What this process's backups did (`crate::backup::stats`).
fn render_backups(out: &mut Text) {
    use crate::backup::stats;
    let families = [
        (
            "strata_backups_completed_total",
            "counter",
            "Backups this process completed.",
            &stats::COMPLETED,
        ),
        (
            "strata_backups_failed_total",
            "counter",
            "Backups this process started that failed (no manifest written).",
            &stats::FAILED,
        ),
        (
            "strata_backups_running",
            "gauge",
            "Backups this process is taking now.",
            &stats::RUNNING,
        ),
        (
            "strata_backup_last_success_timestamp_seconds",
            "gauge",
            "When the newest backup this process completed finished (Unix seconds; 0: none).",
            &stats::LAST_SUCCESS,
        ),
        (
            "strata_backup_last_bytes",
            "gauge",
            "Compressed bytes of the newest backup this process completed.",
            &stats::LAST_BYTES,
        ),
    ];
    for (name, kind, help, value) in families {
        out.family(name, kind, help);
        out.sample(name, &[], value.load(Relaxed));
    }
}

/// A metric family of consumers: name, type, help, and its value of one.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ConsumerReport) -> f64,
);

/// Each change-feed consumer this daemon knows of (its leader reports lag).
fn render_consumers(out: &mut Text, consumers: &[ConsumerReport]) {
    let families: [Family; 4] = [
        (
            "strata_feed_consumer_leader",
            "gauge",
            "1 while this daemon runs the consumer (one daemon does).",
            |c| f64::from(u8::from(c.leader)),
        ),
        (
            "strata_feed_consumer_lag_seconds",
            "gauge",
            "Age of the oldest change the consumer has not applied (0 when caught up).",
            |c| c.lag_seconds,
        ),
        (
            "strata_feed_consumer_position",
            "gauge",
            "Feed position the consumer has applied up to.",
            |c| c.position as f64,
        ),
        (
            "strata_feed_consumer_failures_total",
            "counter",
            "Failed attempts (retried with backoff).",
            |c| c.failures as f64,
        ),
    ];
    for (name, kind, help, value) in families {
        out.family(name, kind, help);
        for c in consumers {
            out.sample(name, &[("consumer", c.name)], value(c));
        }
    }
}

pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, |p| p.as_str())
        .to_owned();
    let response = next.run(req).await;
    let seconds = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    state.metrics.observe(&method, &route, status, seconds);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Latency is kept per route template; the text names each with its
    /// method, and label values are escaped.
    #[test]
    fn latency_is_rendered_per_route() {
        let m = Metrics::default();
        m.observe("GET", "/v1/orgs/{org}", 200, 0.003);
        m.observe("GET", "/v1/orgs/{org}", 404, 0.2);
        m.observe("POST", UNMATCHED, 404, 0.0001);
        let mut out = Text::default();
        m.render_requests(&mut out);
        let text = out.0;
        let bucket = "strata_http_request_duration_seconds_bucket";
        assert!(text.contains(&format!(
            "{bucket}{{method=\"GET\",route=\"/v1/orgs/{{org}}\",le=\"0.005\"}} 1\n"
        )));
        assert!(text.contains(&format!(
            "{bucket}{{method=\"GET\",route=\"/v1/orgs/{{org}}\",le=\"+Inf\"}} 2\n"
        )));
        assert!(text.contains(
            "strata_http_request_duration_seconds_count{method=\"POST\",route=\"unmatched\"} 1\n"
        ));
        assert!(text.contains("strata_http_requests_total{class=\"4xx\"} 2\n"));
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
