//! Latency samples to a one-line summary (and JSON).

use serde_json::{json, Value};
use std::time::Duration;

pub struct Summary {
    pub name: String,
    pub count: usize,
    pub errors: usize,
    pub secs: f64,
    pub throughput: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
    pub extra: Value,
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1e6
}

/// `lat` in nanoseconds; latencies reported in milliseconds.
pub fn summarize(name: &str, mut lat: Vec<u64>, errors: usize, elapsed: Duration) -> Summary {
    lat.sort_unstable();
    let secs = elapsed.as_secs_f64();
    let mean = if lat.is_empty() {
        0.0
    } else {
        lat.iter().sum::<u64>() as f64 / lat.len() as f64 / 1e6
    };
    Summary {
        name: name.to_owned(),
        count: lat.len(),
        errors,
        secs,
        throughput: lat.len() as f64 / secs.max(1e-9),
        p50: pct(&lat, 0.50),
        p90: pct(&lat, 0.90),
        p99: pct(&lat, 0.99),
        max: lat.last().map(|&m| m as f64 / 1e6).unwrap_or(0.0),
        mean,
        extra: json!({}),
    }
}

impl Summary {
    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.extra[key] = value;
        self
    }

    pub fn line(&self) -> String {
        let mut s = format!(
            "{:<22} {:>8} ok {:>5} err {:>7.1}s {:>10.1} /s | p50 {:>8.3} ms  p90 {:>8.3} ms  p99 {:>8.3} ms  max {:>8.3} ms",
            self.name, self.count, self.errors, self.secs, self.throughput, self.p50, self.p90, self.p99, self.max
        );
        if let Some(m) = self.extra.as_object().filter(|m| !m.is_empty()) {
            s.push_str("  ");
            s.push_str(&serde_json::to_string(m).unwrap_or_default());
        }
        s
    }

    pub fn json(&self) -> Value {
        json!({
            "name": self.name, "count": self.count, "errors": self.errors,
            "secs": self.secs, "throughput_per_sec": self.throughput,
            "p50_ms": self.p50, "p90_ms": self.p90, "p99_ms": self.p99,
            "max_ms": self.max, "mean_ms": self.mean, "extra": self.extra,
        })
    }
}
