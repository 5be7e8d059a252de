//! What this daemon's job runs did, for `/metrics` (the cluster's runs are
//! in the store; these count the runs this process made).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// One job's runs on this daemon.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JobCounts {
    pub succeeded: u64,
    pub failed: u64,
    pub seconds_total: f64,
    pub last_seconds: f64,
    /// Unix seconds of the newest successful run's end; 0: none yet.
    pub last_success: u64,
}

#[derive(Default)]
pub struct JobStats(Mutex<BTreeMap<&'static str, JobCounts>>);

impl JobStats {
    pub fn record(&self, job: &'static str, took: Duration, ok: bool) {
        let mut all = self.0.lock().expect("job stats lock");
        let counts = all.entry(job).or_default();
        if ok {
            counts.succeeded += 1;
            counts.last_success = chrono::Utc::now().timestamp().max(0) as u64;
        } else {
            counts.failed += 1;
        }
        counts.seconds_total += took.as_secs_f64();
        counts.last_seconds = took.as_secs_f64();
    }

    /// Every job this daemon has run, by name.
    pub fn snapshot(&self) -> Vec<(&'static str, JobCounts)> {
        let all = self.0.lock().expect("job stats lock");
        all.iter().map(|(name, c)| (*name, *c)).collect()
    }
}
