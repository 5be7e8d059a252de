//! The two kinds of SQLite threads: one writer that group-commits, and a pool
//! of readers. Async callers hand them closures and await the answer, so the
//! runtime never blocks on SQLite.
//!
//! Closing is ordered: `Writer::close` queues a stop behind every job
//! already sent, so the writer runs and commits those (answering each), then
//! ends its thread, which closes the connection; a job sent after the stop
//! is answered `unavailable`, never acknowledged. The caller joins the thread.

use crate::domain::{DomainError, DomainResult};
use crate::store::WriterStats;
use crossbeam_channel::{Receiver, Sender};
use rusqlite::Connection;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
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
    /// Commit what came before and end the thread.
    Stop,
}
type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

/// Threads joined on close; shared by the handles' clones.
type Threads = Arc<Mutex<Vec<JoinHandle<()>>>>;

/// Joins `threads` off the async runtime, logging any that panicked.
async fn join(threads: &Threads) {
    let handles = std::mem::take(&mut *threads.lock().expect("thread list lock"));
    let joined = tokio::task::spawn_blocking(move || {
        for handle in handles {
            let name = handle.thread().name().unwrap_or("?").to_owned();
            if handle.join().is_err() {
                tracing::error!(thread = name, "a storage thread panicked");
            }
        }
    })
    .await;
    if let Err(e) = joined {
        tracing::error!(error = %e, "could not join the storage threads");
    }
}

fn gone() -> DomainError {
    DomainError::Unavailable("the storage thread stopped".into())
}

#[derive(Clone)]
pub struct Writer {
    jobs: Sender<WriteJob>,
    thread: Threads,
    groups: Arc<GroupCounts>,
}

/// What the writer thread has committed, for `/metrics`.
#[derive(Default)]
struct GroupCounts {
    groups: AtomicU64,
    writes: AtomicU64,
    last: AtomicU64,
}

impl GroupCounts {
    fn record(&self, size: usize) {
        self.groups.fetch_add(1, Relaxed);
        self.writes.fetch_add(size as u64, Relaxed);
        self.last.store(size as u64, Relaxed);
    }
}

impl Writer {
    pub fn spawn(conn: Connection, before_commit: BeforeCommit) -> std::io::Result<Self> {
        let (jobs, rx) = crossbeam_channel::unbounded();
        let groups = Arc::new(GroupCounts::default());
        let counts = groups.clone();
        let thread = std::thread::Builder::new()
            .name("strata-sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx, before_commit, &counts))?;
        Ok(Writer {
            jobs,
            thread: Arc::new(Mutex::new(vec![thread])),
            groups,
        })
    }

    /// Writes waiting for the thread, and the groups it has committed.
    pub fn stats(&self) -> WriterStats {
        WriterStats {
            queued: self.jobs.len() as u64,
            groups: self.groups.groups.load(Relaxed),
            grouped_writes: self.groups.writes.load(Relaxed),
            last_group: self.groups.last.load(Relaxed),
        }
    }

    /// Lets the writer commit every job sent before this call, then joins
    /// its thread (closing the connection). Later jobs answer `unavailable`.
    pub async fn close(&self) {
        // Fails only when the thread is already gone.
        let _ = self.jobs.send(WriteJob::Stop);
        join(&self.thread).await;
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

fn writer_loop(
    conn: Connection,
    rx: Receiver<WriteJob>,
    before_commit: BeforeCommit,
    counts: &GroupCounts,
) {
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
            // Every job sent before the stop has been answered; those
            // behind it are dropped with the channel (`unavailable`).
            WriteJob::Stop => return,
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
        counts.record(group.len());
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
        done(committed.clone().map_err(|failed| failed.error()));
    }
}

/// Why a group's commit failed, told to each of its writes.
#[derive(Clone)]
enum CommitFailed {
    DiskFull,
    Other(String),
}

impl CommitFailed {
    fn error(self) -> DomainError {
        match self {
            CommitFailed::DiskFull => DomainError::DiskFull,
            CommitFailed::Other(why) => DomainError::Internal(why),
        }
    }
}

fn commit(
    conn: &Connection,
    start: i64,
    last: i64,
    before_commit: BeforeCommit,
) -> Result<(), CommitFailed> {
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
        if super::is_disk_full(&e) {
            CommitFailed::DiskFull
        } else {
            CommitFailed::Other(format!("commit failed: {e}"))
        }
    })
}

/// A read, or `None`: the thread that takes it ends.
type ReadMessage = Option<ReadJob>;

#[derive(Clone)]
pub struct Readers {
    jobs: Sender<ReadMessage>,
    threads: Threads,
}

impl Readers {
    pub fn spawn(conns: Vec<Connection>) -> std::io::Result<Self> {
        let (jobs, rx) = crossbeam_channel::unbounded::<ReadMessage>();
        let mut threads = Vec::new();
        for (i, conn) in conns.into_iter().enumerate() {
            let rx = rx.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("strata-sqlite-reader-{i}"))
                    .spawn(move || {
                        while let Ok(Some(job)) = rx.recv() {
                            job(&conn);
                        }
                    })?,
            );
        }
        Ok(Readers {
            jobs,
            threads: Arc::new(Mutex::new(threads)),
        })
    }

    /// Serves the reads already sent, then ends and joins every reader.
    pub async fn close(&self) {
        let count = self.threads.lock().expect("thread list lock").len();
        for _ in 0..count {
            let _ = self.jobs.send(None);
        }
        join(&self.threads).await;
    }

    pub async fn read<T, F>(&self, f: F) -> DomainResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> DomainResult<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Some(Box::new(move |conn| {
                let _ = tx.send(f(conn));
            })))
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::poll;

    fn rows(path: &std::path::Path) -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    /// Writes queued behind a busy writer when `close` is called are all
    /// committed and answered; a write queued after the stop is refused.
    #[tokio::test]
    async fn close_commits_what_was_queued_before_it_and_refuses_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE change_seq (value INTEGER NOT NULL);
             INSERT INTO change_seq VALUES (0);
             CREATE TABLE t (x INTEGER NOT NULL);",
        )
        .unwrap();
        let writer = Writer::spawn(conn, |_| Ok(())).unwrap();
        // Hold the writer busy until everything below is queued.
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let mut busy = Box::pin(writer.outside_transaction(move |_| {
            let _ = gate.recv();
            Ok(())
        }));
        assert!(poll!(&mut busy).is_pending());
        let mut queued = Vec::new();
        for i in 0..50 {
            let mut write = Box::pin(writer.write(move |c, seq| {
                seq.next();
                c.execute("INSERT INTO t VALUES (?1)", [i])
                    .map(|_| ())
                    .map_err(|e| DomainError::Internal(e.to_string()))
            }));
            assert!(poll!(&mut write).is_pending());
            queued.push(write);
        }
        let mut close = Box::pin(writer.close());
        assert!(poll!(&mut close).is_pending());
        let mut late = Box::pin(writer.write(|_, _| Ok(())));
        assert!(poll!(&mut late).is_pending());
        release.send(()).unwrap();
        close.await;
        busy.await.unwrap();
        for write in queued {
            write.await.unwrap();
        }
        assert!(matches!(late.await, Err(DomainError::Unavailable(_))));
        assert!(matches!(
            writer.write(|_, _| Ok(())).await,
            Err(DomainError::Unavailable(_))
        ));
        assert_eq!(rows(&path), 50);
    }
}
