//! What each consumer is doing, as this daemon sees it: for `/metrics` and
//! the readiness detail.

use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct FeedStatus {
    consumers: Mutex<BTreeMap<&'static str, State>>,
}

#[derive(Default, Clone)]
struct State {
    leader: bool,
    position: i64,
    /// When the oldest change not yet applied was made; None when caught up.
    pending_since: Option<DateTime<Utc>>,
    applied: u64,
    failures: u64,
    last_error: Option<String>,
}

/// One consumer's state, as reported.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ConsumerReport {
    pub name: &'static str,
    /// Whether this daemon runs the consumer now (one daemon does).
    pub leader: bool,
    /// The feed position applied up to.
    pub position: i64,
    /// Age of the oldest change not yet applied (0 when caught up).
    pub lag_seconds: f64,
    pub applied: u64,
    pub failures: u64,
    pub last_error: Option<String>,
}

impl FeedStatus {
    fn update(&self, name: &'static str, f: impl FnOnce(&mut State)) {
        f(self
            .consumers
            .lock()
            .expect("feed status lock")
            .entry(name)
            .or_default());
    }

    pub fn set_leader(&self, name: &'static str, leader: bool) {
        self.update(name, |s| {
            s.leader = leader;
            s.pending_since = None;
        });
    }

    pub fn caught_up(&self, name: &'static str, position: i64) {
        self.update(name, |s| {
            s.position = position;
            s.pending_since = None;
        });
    }

    /// A batch after `position` was read; its first change was made `at`.
    pub fn pending(&self, name: &'static str, position: i64, at: &str) {
        let at = DateTime::parse_from_rfc3339(at).map(|t| t.with_timezone(&Utc));
        self.update(name, |s| {
            s.position = position;
            s.pending_since = Some(at.unwrap_or_else(|_| Utc::now()));
        });
    }

    pub fn applied(&self, name: &'static str, position: i64, count: usize) {
        self.update(name, |s| {
            s.position = position;
            s.applied += count as u64;
            s.last_error = None;
        });
    }

    pub fn failed(&self, name: &'static str, error: &str) {
        self.update(name, |s| {
            s.failures += 1;
            s.last_error = Some(error.chars().take(500).collect());
        });
    }

    pub fn report(&self) -> Vec<ConsumerReport> {
        let now = Utc::now();
        self.consumers
            .lock()
            .expect("feed status lock")
            .iter()
            .map(|(name, s)| ConsumerReport {
                name,
                leader: s.leader,
                position: s.position,
                lag_seconds: s.pending_since.map_or(0.0, |t| {
                    (now - t).num_microseconds().unwrap_or(0).max(0) as f64 / 1e6
                }),
                applied: s.applied,
                failures: s.failures,
                last_error: s.last_error.clone(),
            })
            .collect()
    }
}
