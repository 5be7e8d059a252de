//! Scheduled jobs (tokio-cron-scheduler): each has a name, a cron schedule
//! and a task. Every daemon schedules every job, and one runs each tick:
//! the daemon that takes the job's lease (an advisory lock on PostgreSQL,
//! released when its holder dies) and then claims the tick's run in the
//! store's `job_runs` (unique per job and tick) runs it; the others see the
//! lease held or the tick claimed and skip. Runs are recorded there, so
//! `/v1/admin/jobs` shows the cluster's newest run of each job from any
//! daemon. Every job is idempotent besides: store upkeep, outbox pruning,
//! compaction (two daemons record one snapshot), and backups (one at a time
//! under the backups lease).
//!
//! Scheduled runs are counted on the daemon's `Lifecycle` and end when it is
//! cancelled (a run cut short is finished by the next); none starts once it
//! is cancelled.

pub mod stats;
mod tick;

use crate::backup::manifest::Kind;
use crate::backup::{Backups, State};
use crate::blob::BlobStore;
use crate::config::{BackupConfig, Config};
use crate::crdt::{compact, CrdtConfig};
use crate::feed::Feed;
use crate::lifecycle::Lifecycle;
use crate::search::meili::MeiliIndex;
use crate::store::{DynStore, JobRunEnd, Maintenance};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio_cron_scheduler::{Job, JobScheduler};
use uuid::Uuid;

#[derive(Debug, Clone, Copy)]
enum Task {
    Store(Maintenance),
    CompactDocs,
    ReconcileSearch,
    PruneChanges,
    Backup(Kind),
}

/// One job's definition.
struct JobSpec {
    name: &'static str,
    /// Cron with seconds: `sec min hour day-of-month month day-of-week`.
    schedule: String,
    task: Task,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct JobRun {
    pub started_at: String,
    pub duration_ms: u64,
    pub outcome: String,
    pub ok: bool,
    /// The daemon that ran it (`host:pid`).
    pub daemon: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct JobStatus {
    pub name: String,
    pub schedule: String,
    /// The newest finished run on any daemon sharing the store.
    pub last_run: Option<JobRun>,
    pub next_run: Option<String>,
}

/// The job registry; cheap to clone.
#[derive(Clone)]
pub struct Jobs {
    store: DynStore,
    blobs: Arc<dyn BlobStore>,
    feed: Feed,
    crdt: CrdtConfig,
    specs: Arc<Vec<JobSpec>>,
    ids: Arc<Mutex<HashMap<&'static str, Uuid>>>,
    scheduler: Arc<tokio::sync::Mutex<Option<JobScheduler>>>,
    lifecycle: Lifecycle,
    meili: Option<Arc<MeiliIndex>>,
    backups: Option<Backups>,
    daemon: Arc<str>,
    stats: Arc<stats::JobStats>,
}

impl Jobs {
    pub fn new(
        store: DynStore,
        blobs: Arc<dyn BlobStore>,
        feed: Feed,
        config: &Config,
        lifecycle: &Lifecycle,
    ) -> Self {
        let specs = vec![
            JobSpec {
                name: "compact_docs",
                schedule: config.compact_schedule.clone(),
                task: Task::CompactDocs,
            },
            JobSpec {
                name: "checkpoint",
                schedule: "0 */10 * * * *".into(),
                task: Task::Store(Maintenance::Frequent),
            },
            // Consumers prune behind themselves; this covers a daemon with
            // none, and changes only the retention kept.
            JobSpec {
                name: "prune_changes",
                schedule: "*/10 * * * * *".into(),
                task: Task::PruneChanges,
            },
            JobSpec {
                name: "optimize",
                schedule: "0 17 3 * * *".into(),
                task: Task::Store(Maintenance::Daily),
            },
        ];
        Jobs {
            store,
            blobs,
            feed,
            crdt: config.crdt.clone(),
            specs: Arc::new(specs),
            ids: Arc::default(),
            scheduler: Arc::default(),
            lifecycle: lifecycle.clone(),
            meili: None,
            backups: None,
            daemon: daemon_name().into(),
            stats: Arc::default(),
        }
    }

    /// Adds the daily `reconcile_search` job (Meilisearch configured only).
    /// Before `start`.
    pub fn with_search_index(mut self, index: Arc<MeiliIndex>) -> Self {
        Arc::get_mut(&mut self.specs)
            .expect("jobs are added before the registry is shared")
            .push(JobSpec {
                name: "reconcile_search",
                schedule: "0 41 3 * * *".into(),
                task: Task::ReconcileSearch,
            });
        self.meili = Some(index);
        self
    }

    /// Adds the scheduled backups the configuration names (`backup_full`,
    /// `backup_incr`; each full one then expires what retention lets go).
    /// Before `start`.
    pub fn with_backups(mut self, backups: Backups, config: &BackupConfig) -> Self {
        let specs =
            Arc::get_mut(&mut self.specs).expect("jobs are added before the registry is shared");
        for (name, schedule, kind) in [
            ("backup_full", &config.full_schedule, Kind::Full),
            ("backup_incr", &config.incr_schedule, Kind::Incr),
        ] {
            if let Some(schedule) = schedule {
                specs.push(JobSpec {
                    name,
                    schedule: schedule.clone(),
                    task: Task::Backup(kind),
                });
            }
        }
        self.backups = Some(backups);
        self
    }

    /// This daemon's name in job runs.
    pub fn daemon(&self) -> &str {
        &self.daemon
    }

    /// What this daemon's runs did, for `/metrics`.
    pub fn stats(&self) -> &stats::JobStats {
        &self.stats
    }

    /// Starts the schedules.
    pub async fn start(&self) -> anyhow::Result<()> {
        let scheduler = JobScheduler::new().await?;
        for (index, spec) in self.specs.iter().enumerate() {
            let jobs = self.clone();
            let ticks = tick::Ticks::parse(&spec.schedule)?;
            let job = Job::new_async(spec.schedule.as_str(), move |_, _| {
                let jobs = jobs.clone();
                // Named when it fires: every daemon names the same tick.
                let tick = ticks.latest(chrono::Utc::now());
                // Held before the first await, so a stop that has begun
                // either sees this run or this run sees the stop.
                let held = jobs.lifecycle.hold();
                Box::pin(async move {
                    if jobs.lifecycle.is_cancelled() {
                        return;
                    }
                    tokio::select! {
                        _ = jobs.run_scheduled(index, tick) => {}
                        _ = jobs.lifecycle.cancelled() => {
                            tracing::info!(job = jobs.specs[index].name, "job run cut short by shutdown");
                        }
                    }
                    drop(held);
                })
            })?;
            let id = scheduler.add(job).await?;
            self.ids.lock().expect("job ids lock").insert(spec.name, id);
        }
        scheduler.start().await?;
        *self.scheduler.lock().await = Some(scheduler);
        Ok(())
    }

    /// Stops the schedules (runs in progress end with the lifecycle).
    pub async fn shutdown(&self) {
        if let Some(mut s) = self.scheduler.lock().await.take() {
            let _ = s.shutdown().await;
        }
    }

    /// One tick of a job's schedule: run here only if this daemon leads the
    /// job and is the first to claim the tick.
    async fn run_scheduled(&self, index: usize, tick: Option<String>) {
        let name = self.specs[index].name;
        let Some(tick) = tick else {
            tracing::warn!(job = name, "no tick of the schedule precedes now");
            return;
        };
        let _lead = match self.store.lease_job(name).await {
            Ok(Some(lease)) => lease,
            Ok(None) => {
                tracing::debug!(job = name, "job running on another daemon");
                return;
            }
            Err(e) => {
                tracing::warn!(job = name, error = %e, "could not take the job's lease");
                return;
            }
        };
        match self
            .store
            .claim_job_run(name, Some(&tick), &self.daemon)
            .await
        {
            Ok(Some(id)) => {
                self.run(index, id).await;
            }
            Ok(None) => tracing::debug!(job = name, tick, "tick run by another daemon"),
            Err(e) => tracing::warn!(job = name, error = %e, "could not claim the job's run"),
        }
    }

    /// Runs the job and records its end under the claimed run `id`.
    async fn run(&self, index: usize, id: i64) -> JobRun {
        let spec = &self.specs[index];
        let started = Instant::now();
        let started_at = crate::clock::now();
        let result = self.execute(spec.task).await;
        let end = JobRunEnd {
            duration_ms: started.elapsed().as_millis() as u64,
            ok: result.is_ok(),
            outcome: match result {
                Ok(summary) => summary,
                Err(e) => {
                    tracing::warn!(job = spec.name, error = %e, "job failed");
                    format!("failed: {e}")
                }
            },
        };
        self.stats.record(spec.name, started.elapsed(), end.ok);
        if let Err(e) = self.store.finish_job_run(id, &end).await {
            tracing::warn!(job = spec.name, error = %e, "could not record the job's run");
        }
        JobRun {
            started_at,
            duration_ms: end.duration_ms,
            outcome: end.outcome,
            ok: end.ok,
            daemon: self.daemon.to_string(),
        }
    }

    async fn execute(&self, task: Task) -> crate::domain::DomainResult<String> {
        match task {
            Task::Store(m) => self.store.maintain(m).await,
            Task::CompactDocs => {
                compact::compact_all(self.store.as_ref(), self.blobs.as_ref(), &self.crdt)
                    .await
                    .map(|run| run.to_string())
            }
            Task::ReconcileSearch => match &self.meili {
                Some(index) => crate::feed::meili::reconcile(&self.store, index, None)
                    .await
                    .map(|s| s.to_string())
                    .map_err(|e| crate::domain::DomainError::Internal(format!("{e:#}"))),
                None => Ok("Meilisearch is not configured".into()),
            },
            Task::Backup(kind) => match &self.backups {
                Some(backups) => backup(backups, kind).await,
                None => Ok("backups are not configured".into()),
            },
            Task::PruneChanges => self
                .feed
                .prune()
                .await
                .map(|n| format!("{n} changes pruned from the outbox")),
        }
    }

    /// Runs a job now, beside a scheduled run of it if one is going (every
    /// job is idempotent); `Ok(None)` when no job has that name.
    pub async fn run_now(&self, name: &str) -> crate::domain::DomainResult<Option<JobRun>> {
        let Some(index) = self.specs.iter().position(|s| s.name == name) else {
            return Ok(None);
        };
        let id = self
            .store
            .claim_job_run(name, None, &self.daemon)
            .await?
            .expect("a run on request is never a claimed tick");
        Ok(Some(self.run(index, id).await))
    }

    /// Each job with the cluster's newest run of it.
    pub async fn list(&self) -> crate::domain::DomainResult<Vec<JobStatus>> {
        let mut last: HashMap<String, JobRun> = self
            .store
            .last_job_runs()
            .await?
            .into_iter()
            .map(|r| {
                let run = JobRun {
                    started_at: r.started_at,
                    duration_ms: r.end.duration_ms,
                    outcome: r.end.outcome,
                    ok: r.end.ok,
                    daemon: r.daemon,
                };
                (r.job, run)
            })
            .collect();
        let mut out = Vec::new();
        for spec in self.specs.iter() {
            let id = self
                .ids
                .lock()
                .expect("job ids lock")
                .get(spec.name)
                .copied();
            let mut next_run = None;
            if let (Some(id), Some(s)) = (id, self.scheduler.lock().await.as_mut()) {
                if let Ok(Some(t)) = s.next_tick_for_job(id).await {
                    next_run = Some(crate::clock::format(t));
                }
            }
            out.push(JobStatus {
                name: spec.name.into(),
                schedule: spec.schedule.clone(),
                last_run: last.remove(spec.name),
                next_run,
            });
        }
        Ok(out)
    }
}

/// This daemon in job runs: its host and process id.
fn daemon_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", std::process::id())
}

/// A scheduled backup: one daemon takes it (the others find the lease held
/// and say so); a full one is followed by expiry.
async fn backup(backups: &Backups, kind: Kind) -> crate::domain::DomainResult<String> {
    let info = match backups.take(kind).await {
        Err(crate::domain::DomainError::Conflict(_)) => {
            return Ok("another daemon is taking a backup".into())
        }
        taken => taken?,
    };
    if info.state == State::Failed {
        let why = info.error.unwrap_or_default();
        return Err(crate::domain::DomainError::internal(format!(
            "backup {} failed: {why}",
            info.id
        )));
    }
    let mut summary = format!(
        "backup {} ({}) complete: {} bytes in {} chunks",
        info.id,
        info.kind.as_str(),
        info.bytes,
        info.chunks
    );
    if kind == Kind::Full {
        match backups.expire().await {
            Ok(expired) => summary.push_str(&format!("; {expired}")),
            Err(e) => summary.push_str(&format!("; expiry failed: {e:#}")),
        }
    }
    Ok(summary)
}
