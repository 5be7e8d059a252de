//! Scheduled jobs (tokio-cron-scheduler): each has a name, a cron schedule
//! and a task; the registry keeps each job's last run for `/v1/admin/jobs`.
//! Jobs are safe to run on several daemons at once: store upkeep and
//! outbox pruning are idempotent, and compaction of one document by two daemons records one
//! snapshot (the second finds it recorded) and prunes the same prefix.
//!
//! Scheduled runs are counted on the daemon's `Lifecycle` and end when it is
//! cancelled (every step of every job is idempotent, so a run cut short is
//! finished by the next); none starts once it is cancelled.

use crate::backup::manifest::Kind;
use crate::backup::{Backups, State};
use crate::blob::BlobStore;
use crate::config::{BackupConfig, Config};
use crate::crdt::{compact, CrdtConfig};
use crate::feed::Feed;
use crate::lifecycle::Lifecycle;
use crate::search::meili::MeiliIndex;
use crate::store::{DynStore, Maintenance};
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
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct JobStatus {
    pub name: String,
    pub schedule: String,
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
    last: Arc<Mutex<HashMap<&'static str, JobRun>>>,
    ids: Arc<Mutex<HashMap<&'static str, Uuid>>>,
    scheduler: Arc<tokio::sync::Mutex<Option<JobScheduler>>>,
    lifecycle: Lifecycle,
    meili: Option<Arc<MeiliIndex>>,
    backups: Option<Backups>,
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
            last: Arc::default(),
            ids: Arc::default(),
            scheduler: Arc::default(),
            lifecycle: lifecycle.clone(),
            meili: None,
            backups: None,
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

    /// Starts the schedules.
    pub async fn start(&self) -> anyhow::Result<()> {
        let scheduler = JobScheduler::new().await?;
        for (index, spec) in self.specs.iter().enumerate() {
            let jobs = self.clone();
            let job = Job::new_async(spec.schedule.as_str(), move |_, _| {
                let jobs = jobs.clone();
                // Held before the first await, so a stop that has begun
                // either sees this run or this run sees the stop.
                let held = jobs.lifecycle.hold();
                Box::pin(async move {
                    if jobs.lifecycle.is_cancelled() {
                        return;
                    }
                    tokio::select! {
                        _ = jobs.run(index) => {}
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

    async fn run(&self, index: usize) -> JobRun {
        let spec = &self.specs[index];
        let started = Instant::now();
        let started_at = crate::clock::now();
        let result = match spec.task {
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
        };
        let run = JobRun {
            started_at,
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
        self.last
            .lock()
            .expect("job runs lock")
            .insert(spec.name, run.clone());
        run
    }

    /// Runs a job now; `None` when no job has that name.
    pub async fn run_now(&self, name: &str) -> Option<JobRun> {
        let index = self.specs.iter().position(|s| s.name == name)?;
        Some(self.run(index).await)
    }

    pub async fn list(&self) -> Vec<JobStatus> {
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
                last_run: self
                    .last
                    .lock()
                    .expect("job runs lock")
                    .get(spec.name)
                    .cloned(),
                next_run,
            });
        }
        out
    }
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
