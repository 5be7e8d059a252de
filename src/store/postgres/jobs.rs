//! Runs of scheduled jobs (`JobStore`), shared by every daemon on this
//! database: the unique index on (job, tick) lets one daemon claim each
//! scheduled run; a job's leadership while it runs is an advisory lock.

use super::rows::{self, execute};
use super::PgStore;
use crate::domain::DomainResult;
use crate::store::{JobRunEnd, JobRunRecord, JobStore, Lease, JOB_RUNS_KEPT_DAYS};
use async_trait::async_trait;

#[async_trait]
impl JobStore for PgStore {
    async fn claim_job_run(
        &self,
        job: &str,
        tick: Option<&str>,
        daemon: &str,
    ) -> DomainResult<Option<i64>> {
        let c = self.client().await?;
        execute(
            &c,
            "DELETE FROM job_runs WHERE job = $1 AND started_at < now() - make_interval(days => $2)",
            &[&job, &(JOB_RUNS_KEPT_DAYS as i32)],
        )
        .await?;
        let row = rows::query_opt(
            &c,
            "INSERT INTO job_runs (job, tick, daemon, started_at)
             VALUES ($1, $2::text::timestamptz, $3, now())
             ON CONFLICT (job, tick) DO NOTHING RETURNING id",
            &[&job, &tick, &daemon],
        )
        .await?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn finish_job_run(&self, id: i64, ended: &JobRunEnd) -> DomainResult<()> {
        let c = self.client().await?;
        execute(
            &c,
            "UPDATE job_runs SET finished_at = now(), duration_ms = $2, ok = $3, outcome = $4
             WHERE id = $1",
            &[&id, &(ended.duration_ms as i64), &ended.ok, &ended.outcome],
        )
        .await?;
        Ok(())
    }

    async fn last_job_runs(&self) -> DomainResult<Vec<JobRunRecord>> {
        let c = self.client().await?;
        let found = rows::query(
            &c,
            "SELECT DISTINCT ON (job) job, daemon, started_at, duration_ms, ok, outcome
             FROM job_runs WHERE finished_at IS NOT NULL ORDER BY job, started_at DESC",
            &[],
        )
        .await?;
        Ok(found
            .iter()
            .map(|r| JobRunRecord {
                job: r.get(0),
                daemon: r.get(1),
                started_at: rows::time(r.get(2)),
                end: JobRunEnd {
                    duration_ms: r.get::<_, i64>(3) as u64,
                    ok: r.get(4),
                    outcome: r.get(5),
                },
            })
            .collect())
    }

    async fn lease_job(&self, job: &str) -> DomainResult<Option<Lease>> {
        self.try_lease(crate::store::lease_key::job(job)).await
    }
}
