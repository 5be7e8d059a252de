//! Spawning the release `strata` binary on its own temp data dir, free port
//! and admin key, and stopping it again.

use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Daemon {
    child: Child,
    pub addr: String,
    pub key: String,
    pub data_dir: PathBuf,
    /// The temp dir we made (removed on drop), if any.
    own_dir: Option<PathBuf>,
    pub spawned_at: Instant,
}

#[derive(Clone, Debug)]
pub struct DaemonOpts {
    pub bin: PathBuf,
    /// Use (and keep) this data dir instead of a fresh temp one.
    pub data_dir: Option<PathBuf>,
    /// Extra `STRATA_*` settings, e.g. `STRATA_SQLITE_SYNCHRONOUS=normal`.
    pub env: Vec<(String, String)>,
    pub keep: bool,
}

/// The `strata` binary built beside this one (same profile), else
/// `$CARGO_TARGET_DIR/release/strata`.
pub fn default_bin() -> PathBuf {
    let sibling = std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name("strata"));
    if let Some(bin) = sibling.filter(|b| b.exists()) {
        return bin;
    }
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    Path::new(&target).join("release").join("strata")
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn temp_dir() -> Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("strata-bench-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// One `GET /health/ready` on a fresh connection: the status, if any answer.
pub fn probe_ready(addr: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    s.write_all(b"GET /health/ready HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).ok()?;
    std::str::from_utf8(&buf[9..12]).ok()?.parse().ok()
}

impl Daemon {
    pub fn spawn(opts: &DaemonOpts) -> Result<Daemon> {
        anyhow::ensure!(
            opts.bin.exists(),
            "no strata binary at {} (build it: cargo build --release --bin strata, or pass --strata)",
            opts.bin.display()
        );
        let (data_dir, own_dir) = match &opts.data_dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                (d.clone(), None)
            }
            None => {
                let t = temp_dir()?;
                (t.join("data"), if opts.keep { None } else { Some(t) })
            }
        };
        let log_path = data_dir
            .parent()
            .unwrap_or(Path::new("/tmp"))
            .join("strata-bench-daemon.log");
        let log = std::fs::File::create(&log_path)?;
        let addr = format!("127.0.0.1:{}", free_port()?);
        let key = format!("bench-admin-key-{:016x}", rand::random::<u64>());
        let mut cmd = Command::new(&opts.bin);
        cmd.arg("serve");
        // The daemon refuses unknown STRATA_* variables: start from a clean slate.
        for (k, _) in std::env::vars() {
            if k.starts_with("STRATA_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("STRATA_DATA_DIR", &data_dir)
            .env("STRATA_LISTEN", &addr)
            .env("STRATA_ADMIN_KEY", &key)
            .env("STRATA_LOG", "warn");
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        let spawned_at = Instant::now();
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn {}", opts.bin.display()))?;
        Ok(Daemon {
            child,
            addr,
            key,
            data_dir,
            own_dir,
            spawned_at,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls `/health/ready` every `interval` until 200; the time since spawn.
    pub fn wait_ready(&mut self, interval: Duration, timeout: Duration) -> Result<Duration> {
        loop {
            if probe_ready(&self.addr) == Some(200) {
                return Ok(self.spawned_at.elapsed());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "strata exited before it was ready: {status} (see the log next to {})",
                    self.data_dir.display()
                );
            }
            if self.spawned_at.elapsed() > timeout {
                bail!("strata not ready after {timeout:?}");
            }
            std::thread::sleep(interval);
        }
    }

    /// (VmRSS, VmHWM) in KiB from /proc/<pid>/status.
    pub fn rss_kib(&self) -> Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok((field("VmRSS:"), field("VmHWM:")))
    }

    /// SIGKILL: the process gets no chance to finish anything.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
        if let Some(d) = &self.own_dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}
