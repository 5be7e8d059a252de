//! Physical, point-in-time backups of PostgreSQL with real pgBackRest,
//! driven through the operator's runbook `ops/pgbackrest.sh` (so the script
//! itself is what is tested).
//!
//! On a throw-away PostgreSQL 15 cluster of its own (never the shared one of
//! the test stack), archiving WAL through pgBackRest into a repository in a
//! temporary directory, the test shows: `configure`, `stanza-create`, `check`
//! and a `full` backup work; 100 rows written after it, then a target time
//! taken from the server, then 100 more rows and an `incr` backup; a
//! `restore --target-time` into a new data directory picks the full backup
//! (the incremental one ended after the target), replays the archived WAL up
//! to the target and promotes: the new cluster, started on another port,
//! holds exactly the first 100 rows while the original still holds 200.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub(crate) const PGBIN: &str = "/usr/lib/postgresql/15/bin";

#[tokio::test]
async fn point_in_time_restore_into_a_new_cluster() {
    if crate::support::skip_without(crate::support::PG) {
        return;
    }
    assert!(
        Command::new("pgbackrest").arg("version").output().is_ok(),
        "pgbackrest is not installed: ops/test-stack.sh start installs it"
    );
    let started = Instant::now();
    let step = |what: &str| eprintln!("pgbackrest: {what} at {:?}", started.elapsed());

    // Everything lives in one temporary directory the postgres user can
    // enter; what the server or pgBackRest writes belongs to postgres.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = |name: &str| postgres_dir(&tmp.path().join(name));
    let (repo, logs, lock, sockets) = (dir("repo"), dir("log"), dir("lock"), dir("sockets"));
    let runbook = Runbook {
        conf: tmp.path().join("pgbackrest.conf"),
    };

    // The original cluster, archiving through pgBackRest.
    let data = dir("original").join("data");
    initdb(&data);
    let port = free_port();
    let printed = runbook.run(&[
        "configure",
        "--pg-path",
        path(&data),
        "--pg-port",
        &port.to_string(),
        "--pg-socket",
        path(&sockets),
        "--repo-path",
        path(&repo),
        "--log-path",
        path(&logs),
        "--lock-path",
        path(&lock),
        "--retention-full",
        "2",
    ]);
    // The postgresql.conf lines `configure` prints are the ones used here.
    assert!(printed.contains("archive_command = 'pgbackrest --config="));
    let settings: String = printed
        .lines()
        .filter(|l| {
            ["wal_level", "archive_mode", "archive_command"]
                .iter()
                .any(|k| l.starts_with(k))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(settings.lines().count(), 3, "configure printed:\n{printed}");
    append(&data.join("postgresql.conf"), &settings);
    let original = Cluster::start(&data, port, &sockets, &logs.join("original.log"));
    step("original cluster up");

    runbook.run(&["stanza-create"]);
    runbook.run(&["check"]);
    runbook.run(&["backup", "full"]);
    step("stanza created, checked, full backup taken");

    // 100 rows, then the target time, then 100 more.
    original.sql(
        "CREATE TABLE items (n int PRIMARY KEY); INSERT INTO items SELECT generate_series(1, 100)",
    );
    original.sql("SELECT pg_switch_wal()");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let target = original.sql("SET TimeZone = 'UTC'; SELECT now()::text");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    original.sql("INSERT INTO items SELECT generate_series(101, 200)");
    original.sql("SELECT pg_switch_wal()");
    runbook.run(&["backup", "incr"]);
    let info = runbook.run(&["info"]);
    assert!(
        info.contains("full backup:") && info.contains("incr backup:"),
        "info:\n{info}"
    );
    runbook.run(&["expire"]);
    step(&format!(
        "200 rows written around the target time {target}, incr backup taken"
    ));

    // Point-in-time restore into a new data directory.
    let restored_data = tmp.path().join("restored");
    let restore = runbook.run(&[
        "restore",
        "--target-time",
        &target,
        "--to",
        path(&restored_data),
    ]);
    let set = restore
        .split("restore backup set ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("no backup set named in the restore output:\n{restore}"));
    assert!(
        set.ends_with('F'),
        "restored {set}, not the full backup before the target"
    );
    step(&format!("restored backup set {set}"));

    let restored_log = logs.join("restored.log");
    let restored = Cluster::start(&restored_data, free_port(), &sockets, &restored_log);
    // The server accepts connections once consistent, still replaying: wait
    // until it reached the target and promoted.
    let deadline = Instant::now() + Duration::from_secs(60);
    while restored.sql("SELECT pg_is_in_recovery()") != "f" {
        assert!(
            Instant::now() < deadline,
            "the restored cluster did not promote within 60s; its log:\n{}",
            std::fs::read_to_string(&restored_log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    step("restored cluster promoted");

    assert_eq!(
        restored.sql("SELECT count(*), min(n), max(n) FROM items"),
        "100|1|100"
    );
    assert_eq!(
        original.sql("SELECT count(*), min(n), max(n) FROM items"),
        "200|1|200"
    );
    step("done");
}

/// `ops/pgbackrest.sh` with one configuration file and the stanza "strata".
struct Runbook {
    conf: PathBuf,
}

impl Runbook {
    /// Runs a subcommand; panics with its output when it fails, returns
    /// its output (stdout, then stderr) otherwise.
    fn run(&self, args: &[&str]) -> String {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("ops/pgbackrest.sh");
        let mut command = Command::new(script);
        command
            .arg("--config")
            .arg(&self.conf)
            .args(["--stanza", "strata"])
            .args(args);
        run(
            &mut command,
            &format!("ops/pgbackrest.sh {}", args.join(" ")),
        )
    }
}

/// A running PostgreSQL 15 cluster, stopped (immediate mode) when dropped,
/// also when the test fails half-way.
pub(crate) struct Cluster {
    data: PathBuf,
    port: u16,
}

impl Cluster {
    pub(crate) fn start(data: &Path, port: u16, sockets: &Path, log: &Path) -> Cluster {
        let cluster = Cluster {
            data: data.to_path_buf(),
            port,
        };
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1",
            path(sockets)
        );
        run(
            as_postgres(&format!("{PGBIN}/pg_ctl"))
                .arg("-D")
                .arg(data)
                .arg("-l")
                .arg(log)
                .args(["-w", "-t", "60", "-o", &options, "start"]),
            &format!("pg_ctl start (log: {})", log.display()),
        );
        cluster
    }

    /// One psql command (several statements: the last one's rows), its
    /// output with fields separated by `|`.
    pub(crate) fn sql(&self, sql: &str) -> String {
        let output = Command::new(format!("{PGBIN}/psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args([
                "-d",
                "postgres",
                "-X",
                "-A",
                "-t",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .output()
            .expect("run psql");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "psql -c {sql:?} failed: {stderr}");
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_postgres(&format!("{PGBIN}/pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

pub(crate) fn initdb(data: &Path) {
    run(
        as_postgres(&format!("{PGBIN}/initdb"))
            .arg("-D")
            .arg(data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync"]),
        "initdb",
    );
}

/// The server refuses to run as root: as root, commands run as postgres.
fn as_postgres(program: &str) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--", program]);
        command
    } else {
        Command::new(program)
    }
}

pub(crate) fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// A new directory owned by postgres (when running as root).
pub(crate) fn postgres_dir(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    if is_root() {
        run(Command::new("chown").arg("postgres:").arg(dir), "chown");
    }
    dir.to_path_buf()
}

/// Runs a command to its end; panics with its output unless it succeeded.
fn run(command: &mut Command, what: &str) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{text}",
        output.status
    );
    text
}

fn append(file: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(file).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

pub(crate) fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}
