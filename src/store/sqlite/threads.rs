//! The two kinds of SQLite threads: one writer that group-commits, and a pool
//! of readers. Async callers hand them closures and await the answer, so the
//! runtime never blocks on SQLite.

use crate::domain::{DomainError, DomainResult};
use crossbeam_channel::{Receiver, Sender};
use rusqlite::Connection;
use tokio::sync::oneshot;

/// Most jobs folded into one transaction.
const MAX_GROUP: usize = 512;

/// Hands out change sequence numbers inside the current transaction.
pub struct Seq {
    last: i64,
}

impl Seq {
    pub fn next(&mut self) -> i64 {
        self.last += 1;
        self.last
    }
}

type Completion = Box<dyn FnOnce(DomainResult<()>) + Send>;
/// Runs once per group, after the last job and before COMMIT (derived
/// indexes that are cheaper to update once per group than per request).
pub type BeforeCommit = fn(&Connection) -> rusqlite::Result<()>;
type GroupJob = Box<dyn FnOnce(&Connection, &mut Seq) -> (bool, Completion) + Send>;

/// Work for the writer thread: part of a group transaction, or alone with
/// no transaction open (checkpoints).
enum WriteJob {
    Grouped(GroupJob),
    Alone(Box<dyn FnOnce(&Connection) + Send>),
}
type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

fn gone() -> DomainError {
    DomainError::Unavailable("the storage thread stopped".into())
}

#[derive(Clone)]
pub struct Writer {
    jobs: Sender<WriteJob>,
}

impl Writer {
    pub fn spawn(conn: Connection, before_commit: BeforeCommit) -> std::io::Result<Self> {
        let (jobs, rx) = crossbeam_channel::unbounded();
        std::thread::Builder::new()
            .name("strata-sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx, before_commit))?;
        Ok(Writer { jobs })
    }

    /// Runs `f` inside a transaction shared with other concurrent writes and
    /// answers once that transaction is committed (durable). If `f` fails,
    /// only its own changes are rolled back.
    pub async fn write<T, F>(&self, f: F) -> DomainResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut Seq) -> DomainResult<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: GroupJob = Box::new(move |conn, seq| {
            let result = f(conn, seq);
            let ok = result.is_ok();
            let done: Completion = Box::new(move |commit| {
                let _ = tx.send(commit.and(result));
            });
            (ok, done)
        });
        self.jobs.send(WriteJob::Grouped(job)).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Runs `f` on the writer's connection between group transactions.
    pub async fn outside_transaction<T, F>(&self, f: F) -> DomainResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> DomainResult<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job = WriteJob::Alone(Box::new(move |conn| {
            let _ = tx.send(f(conn));
        }));
        self.jobs.send(job).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

fn writer_loop(conn: Connection, rx: Receiver<WriteJob>, before_commit: BeforeCommit) {
    let mut pending = None;
    loop {
        let first = match pending.take() {
            Some(job) => job,
            None => match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        let first = match first {
            WriteJob::Alone(f) => {
                f(&conn);
                continue;
            }
            WriteJob::Grouped(job) => job,
        };
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(WriteJob::Grouped(job)) => group.push(job),
                Ok(alone) => {
                    pending = Some(alone);
                    break;
                }
                Err(_) => break,
            }
        }
        run_group(&conn, group, before_commit);
    }
}

/// Runs a statement through the statement cache (these run per request).
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn run_group(conn: &Connection, group: Vec<GroupJob>, before_commit: BeforeCommit) {
    // Dropping a job unrun drops its reply channel: the caller sees Unavailable.
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        tracing::error!(error = %e, "cannot begin a write transaction");
        return;
    }
    let start: i64 = match conn.query_row("SELECT value FROM change_seq", [], |r| r.get(0)) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the change sequence");
            let _ = conn.execute_batch("ROLLBACK");
            return;
        }
    };
    let mut seq = Seq { last: start };
    let mut completions = Vec::with_capacity(group.len());
    for job in group {
        if let Err(e) = exec(conn, "SAVEPOINT job") {
            tracing::error!(error = %e, "cannot open a savepoint");
            continue;
        }
        let (ok, done) = job(conn, &mut seq);
        let end = if ok {
            exec(conn, "RELEASE job")
        } else {
            exec(conn, "ROLLBACK TO job").and_then(|()| exec(conn, "RELEASE job"))
        };
        if let Err(e) = end {
            tracing::error!(error = %e, "cannot close a savepoint");
        }
        completions.push(done);
    }
    let committed = commit(conn, start, seq.last, before_commit);
    for done in completions {
        done(committed.clone().map_err(DomainError::Internal));
    }
}

fn commit(
    conn: &Connection,
    start: i64,
    last: i64,
    before_commit: BeforeCommit,
) -> Result<(), String> {
    let result = (|| {
        before_commit(conn)?;
        if last != start {
            conn.execute("UPDATE change_seq SET value = ?1", [last])?;
        }
        conn.execute_batch("COMMIT")
    })();
    result.map_err(|e| {
        tracing::error!(error = %e, "commit failed; the group is rolled back");
        let _ = conn.execute_batch("ROLLBACK");
        format!("commit failed: {e}")
    })
}

#[derive(Clone)]
pub struct Readers {
    jobs: Sender<ReadJob>,
}

impl Readers {
    pub fn spawn(conns: Vec<Connection>) -> std::io::Result<Self> {
        let (jobs, rx) = crossbeam_channel::unbounded::<ReadJob>();
        for (i, conn) in conns.into_iter().enumerate() {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("strata-sqlite-reader-{i}"))
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        job(&conn);
                    }
                })?;
        }
        Ok(Readers { jobs })
    }

    pub async fn read<T, F>(&self, f: F) -> DomainResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> DomainResult<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Box::new(move |conn| {
                let _ = tx.send(f(conn));
            }))
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}
