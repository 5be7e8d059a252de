//! Scheduled jobs across daemons sharing PostgreSQL: three built daemons
//! schedule the same job every two seconds; each tick is run by one of
//! them (the store's record and each daemon's own count agree), any daemon
//! shows the cluster's newest run, and when the daemon that ran the newest
//! tick is killed (SIGKILL) the next ticks run on the others.

use crate::faults::{start_with, Daemon, ADMIN};
use serde_json::Value;
use std::time::Duration;

const JOB: &str = "compact_docs";

/// A scheduled run as the store recorded it.
#[derive(Debug, Clone)]
struct Run {
    tick: i64,
    daemon: String,
    finished: bool,
}

async fn runs(db: &tokio_postgres::Client, since: i64) -> Vec<Run> {
    db.query(
        "SELECT extract(epoch FROM tick)::bigint, daemon, finished_at IS NOT NULL
         FROM strata.job_runs WHERE job = $1 AND tick IS NOT NULL
           AND extract(epoch FROM tick)::bigint > $2
         ORDER BY tick",
        &[&JOB, &since],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| Run {
        tick: r.get(0),
        daemon: r.get(1),
        finished: r.get(2),
    })
    .collect()
}

/// The runs of the job the daemon counts in `/metrics`, whatever their end.
async fn counted_runs(client: &reqwest::Client, daemon: &Daemon) -> u64 {
    let text = client
        .get(format!("{}/metrics", daemon.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    ["ok", "failed"]
        .iter()
        .filter_map(|outcome| {
            let sample =
                format!("strata_job_runs_total{{scheduled_job=\"{JOB}\",outcome=\"{outcome}\"}} ");
            let line = text.lines().find(|l| l.starts_with(&sample))?;
            line[sample.len()..].parse::<u64>().ok()
        })
        .sum()
}

/// `host:pid` names a daemon in job runs.
fn pid_of(run: &Run) -> u32 {
    run.daemon.rsplit(':').next().unwrap().parse().unwrap()
}

/// The job's last run as a daemon's `/v1/admin/jobs` shows it.
async fn shown_last_run(client: &reqwest::Client, daemon: &Daemon) -> Value {
    let jobs: Value = client
        .get(format!("{}/v1/admin/jobs", daemon.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job = jobs["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == JOB)
        .unwrap();
    job["last_run"].clone()
}

#[tokio::test]
async fn three_daemons_run_each_tick_once_and_the_job_moves_when_its_runner_dies() {
    if crate::support::skip_without(crate::support::PG) {
        return;
    }
    let url = crate::support::fresh_pg_database().await;
    let settings = [("STRATA_COMPACT_SCHEDULE", "*/2 * * * * *")];
    // A data directory each (no document is stored: compaction needs no
    // shared blob store here).
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut daemons = Vec::new();
    for dir in &dirs {
        let port = crate::pgbackrest::free_port();
        daemons.push(start_with(dir.path(), port, Some(&url), &settings).await);
    }
    let (db, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let client = reqwest::Client::new();

    crate::support::eventually(Duration::from_secs(60), || async {
        runs(&db, 0).await.len() >= 6
    })
    .await;
    // Each daemon ran the job exactly as often as the store says it did: a
    // daemon that ran a tick another had claimed would count more. Read at a
    // moment with no run in flight (runs take milliseconds, ticks are 2 s).
    crate::support::eventually(Duration::from_secs(30), || async {
        let before = runs(&db, 0).await;
        let mut counted = Vec::new();
        for d in &daemons {
            counted.push(counted_runs(&client, d).await);
        }
        let after = runs(&db, 0).await;
        let settled = before.len() == after.len() && after.iter().all(|r| r.finished);
        settled
            && daemons.iter().zip(&counted).all(|(d, n)| {
                let pid = d.child.id().unwrap();
                *n == after.iter().filter(|r| pid_of(r) == pid).count() as u64
            })
    })
    .await;
    let before_kill = runs(&db, 0).await;
    let runners: std::collections::HashSet<u32> = before_kill.iter().map(pid_of).collect();
    assert!(
        runners
            .iter()
            .all(|pid| daemons.iter().any(|d| d.child.id() == Some(*pid))),
        "every run is by one of the three daemons: {before_kill:?}"
    );

    // Any daemon shows the cluster's newest run, whichever daemon ran it.
    crate::support::eventually(Duration::from_secs(30), || async {
        let newest = runs(&db, 0).await.last().cloned().unwrap();
        let mut shown = Vec::new();
        for d in &daemons {
            shown.push(shown_last_run(&client, d).await);
        }
        newest.finished && shown.iter().all(|s| s["daemon"] == newest.daemon.as_str())
    })
    .await;

    // The daemon that ran the newest tick dies; the ticks after its death
    // run on the other two, once each.
    let newest = runs(&db, 0).await.last().cloned().unwrap();
    let leader = daemons
        .iter()
        .position(|d| d.child.id() == Some(pid_of(&newest)))
        .unwrap();
    let dead_pid = pid_of(&newest);
    daemons[leader].child.kill().await.unwrap();
    // Ticks from the next whole second on: the dead daemon fired none.
    let killed_at: i64 = db
        .query_one("SELECT extract(epoch FROM now())::bigint", &[])
        .await
        .unwrap()
        .get(0);
    crate::support::eventually(Duration::from_secs(60), || async {
        runs(&db, killed_at).await.len() >= 4
    })
    .await;
    let after = runs(&db, killed_at).await;
    assert!(
        after.iter().all(|r| pid_of(r) != dead_pid),
        "no run after the kill is by the killed daemon: {after:?}"
    );
    let mut ticks: Vec<i64> = after.iter().map(|r| r.tick).collect();
    ticks.dedup();
    assert_eq!(ticks.len(), after.len(), "one run per tick: {after:?}");
}
