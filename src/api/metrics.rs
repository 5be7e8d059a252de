//! Request counters and latency, rendered as Prometheus text with the
//! store's cache counters.

use super::AppState;
use crate::feed::ConsumerReport;
use crate::search::text_index::TextIndexReport;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

#[derive(Default)]
pub struct Metrics {
    by_class: [AtomicU64; 6],
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    micros_sum: AtomicU64,
}

impl Metrics {
    fn observe(&self, status: u16, seconds: f64) {
        let class = (status / 100).min(5) as usize;
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.micros_sum
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn render(
        &self,
        cache: crate::store::cache::CacheStats,
        consumers: &[ConsumerReport],
        text_index: Option<TextIndexReport>,
        backend: &str,
    ) -> String {
        let mut out = String::new();
        out.push_str("# HELP strata_http_requests_total HTTP requests by status class.\n");
        out.push_str("# TYPE strata_http_requests_total counter\n");
        for (class, n) in self.by_class.iter().enumerate().skip(1) {
            out.push_str(&format!(
                "strata_http_requests_total{{class=\"{class}xx\"}} {}\n",
                n.load(Ordering::Relaxed)
            ));
        }
        out.push_str("# HELP strata_http_request_duration_seconds Request latency.\n");
        out.push_str("# TYPE strata_http_request_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (bound, n) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            out.push_str(&format!(
                "strata_http_request_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}\n"
            ));
        }
        let count = self.count.load(Ordering::Relaxed);
        out.push_str(&format!(
            "strata_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}\n\
             strata_http_request_duration_seconds_sum {}\n\
             strata_http_request_duration_seconds_count {count}\n",
            self.micros_sum.load(Ordering::Relaxed) as f64 / 1e6
        ));
        out.push_str(&format!(
            "# HELP strata_entity_cache_hits_total Entity reads served from the cache.\n\
             # TYPE strata_entity_cache_hits_total counter\n\
             strata_entity_cache_hits_total {}\n\
             # HELP strata_entity_cache_misses_total Entity reads that went to the store.\n\
             # TYPE strata_entity_cache_misses_total counter\n\
             strata_entity_cache_misses_total {}\n\
             # HELP strata_entity_cache_entries Entities held in the cache.\n\
             # TYPE strata_entity_cache_entries gauge\n\
             strata_entity_cache_entries {}\n\
             # HELP strata_crdt_quarantined_updates_total Stored Yjs updates that failed the update check and were moved to quarantine by this process.\n\
             # TYPE strata_crdt_quarantined_updates_total counter\n\
             strata_crdt_quarantined_updates_total {}\n\
             # HELP strata_store_write_retries_total Write transactions sent again after colliding with concurrent writers.\n\
             # TYPE strata_store_write_retries_total counter\n\
             strata_store_write_retries_total {}\n\
             # HELP strata_store_writes_contended_total Writes answered 503 because every attempt collided with concurrent writers.\n\
             # TYPE strata_store_writes_contended_total counter\n\
             strata_store_writes_contended_total {}\n\
             # HELP strata_info Build and backend.\n\
             # TYPE strata_info gauge\n\
             strata_info{{version=\"{}\",backend=\"{backend}\"}} 1\n",
            cache.hits,
            cache.misses,
            cache.entries,
            crate::crdt::QUARANTINED_UPDATES.load(Ordering::Relaxed),
            crate::store::WRITE_RETRIES.load(Ordering::Relaxed),
            crate::store::WRITES_CONTENDED.load(Ordering::Relaxed),
            env!("CARGO_PKG_VERSION"),
        ));
        render_backups(&mut out);
        render_consumers(&mut out, consumers);
        if let Some(index) = text_index {
            out.push_str(&format!(
                "# HELP strata_text_index_documents Entities in this daemon's text index.\n\
                 # TYPE strata_text_index_documents gauge\n\
                 strata_text_index_documents {}\n\
                 # HELP strata_text_index_current 1 when the text index is built and has applied the whole change feed (text searches use it).\n\
                 # TYPE strata_text_index_current gauge\n\
                 strata_text_index_current {}\n",
                index.documents,
                u8::from(index.current),
            ));
        }
        out
    }
}

/// What this process's backups did (`crate::backup::stats`).
fn render_backups(out: &mut String) {
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
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}\n",
            value.load(Ordering::Relaxed)
        ));
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
fn render_consumers(out: &mut String, consumers: &[ConsumerReport]) {
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
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for c in consumers {
            out.push_str(&format!("{name}{{consumer=\"{}\"}} {}\n", c.name, value(c)));
        }
    }
}

pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let response = next.run(req).await;
    state
        .metrics
        .observe(response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}
