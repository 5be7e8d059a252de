//! Runs of scheduled jobs (`JobStore`): claimed by the unique index on
//! (job, tick), so a tick runs once even if several callers race for it.

use super::{sql_err, SqliteStore};
use crate::clock;
use crate::domain::DomainResult;
use crate::store::{JobRunEnd, JobRunRecord, JobStore, Lease, JOB_RUNS_KEPT_DAYS};
use async_trait::async_trait;
use rusqlite::params;

#[async_trait]
impl JobStore for SqliteStore {
    async fn claim_job_run(
        &self,
        job: &str,
        tick: Option<&str>,
        daemon: &str,
    ) -> DomainResult<Option<i64>> {
        let (job, tick, daemon) = (job.to_owned(), tick.map(str::to_owned), daemon.to_owned());
        let kept_from =
            clock::format(chrono::Utc::now() - chrono::Duration::days(JOB_RUNS_KEPT_DAYS));
        self.writer
            .write(move |conn, _| {
                conn.prepare_cached("DELETE FROM job_runs WHERE job = ?1 AND started_at < ?2")
                    .and_then(|mut st| st.execute(params![job, kept_from]))
                    .map_err(sql_err)?;
                let made = conn
                    .prepare_cached(
                        "INSERT INTO job_runs (job, tick, daemon, started_at) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (job, tick) DO NOTHING",
                    )
                    .and_then(|mut st| st.execute(params![job, tick, daemon, clock::now()]))
                    .map_err(sql_err)?;
                Ok((made == 1).then(|| conn.last_insert_rowid()))
            })
            .await
    }

    async fn finish_job_run(&self, id: i64, ended: &JobRunEnd) -> DomainResult<()> {
        let ended = ended.clone();
        self.writer
            .write(move |conn, _| {
                conn.prepare_cached(
                    "UPDATE job_runs SET finished_at = ?2, duration_ms = ?3, ok = ?4, outcome = ?5
                     WHERE id = ?1",
                )
                .and_then(|mut st| {
                    st.execute(params![
                        id,
                        clock::now(),
                        ended.duration_ms as i64,
                        ended.ok,
                        ended.outcome
                    ])
                })
                .map_err(sql_err)?;
                Ok(())
            })
            .await
    }

    async fn last_job_runs(&self) -> DomainResult<Vec<JobRunRecord>> {
        self.read(|conn| {
            let mut st = conn
                .prepare_cached(
                    "SELECT job, daemon, started_at, duration_ms, ok, outcome FROM job_runs r
                     WHERE id = (SELECT id FROM job_runs WHERE job = r.job AND finished_at IS NOT NULL
                                 ORDER BY started_at DESC LIMIT 1)",
                )
                .map_err(sql_err)?;
            let runs = st
                .query_map([], |r| {
                    Ok(JobRunRecord {
                        job: r.get(0)?,
                        daemon: r.get(1)?,
                        started_at: r.get(2)?,
                        end: JobRunEnd {
                            duration_ms: r.get::<_, i64>(3)? as u64,
                            ok: r.get(4)?,
                            outcome: r.get(5)?,
                        },
                    })
                })
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(sql_err)?;
            Ok(runs)
        })
        .await
    }

    async fn lease_job(&self, job: &str) -> DomainResult<Option<Lease>> {
        let key = crate::store::lease_key::job(job);
        Ok(super::lease::LocalLease::take(&self.leases, key).map(Lease::new))
    }
}
