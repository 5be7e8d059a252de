//! A physical copy of the embedded store (`strata backup create --physical`):
//! SQLite's online backup API copies every page of the database into a new
//! file in one step, inside one read transaction, so the copy is the store
//! at one moment while the daemon goes on writing (in WAL mode a reader
//! never blocks the writer). The copy is written beside its destination,
//! checked (`PRAGMA integrity_check`), synced, then renamed into place, so
//! a file at the destination is always whole. PostgreSQL stores are copied
//! physically by pgBackRest (`ops/pgbackrest.sh`).

use anyhow::{bail, ensure, Context};
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::Duration;

/// Copies the SQLite database at `source` to the new file `out`; returns
/// its size in bytes.
pub fn copy_sqlite(source: &Path, out: &Path) -> anyhow::Result<u64> {
    ensure!(
        !out.exists(),
        "{} exists: a copy is written to a new file",
        out.display()
    );
    let src = Connection::open_with_flags(source, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("opening {}", source.display()))?;
    src.busy_timeout(Duration::from_secs(5))?;
    let partial = out.with_extension("partial");
    let _ = std::fs::remove_file(&partial);
    let mut dst =
        Connection::open(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let copied = (|| -> anyhow::Result<()> {
        {
            let backup = Backup::new(&src, &mut dst)?;
            // All pages in one step: one read transaction, one moment.
            let mut tries = 0;
            loop {
                match backup.step(-1)? {
                    StepResult::Done => break,
                    StepResult::Busy | StepResult::Locked if tries < 50 => {
                        tries += 1;
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    other => bail!("the copy did not finish: {other:?}"),
                }
            }
        }
        let check: String = dst.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        ensure!(check == "ok", "the copy fails its integrity check: {check}");
        Ok(())
    })();
    drop(dst);
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::File::open(&partial)?.sync_all()?;
    std::fs::rename(&partial, out)?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(std::fs::metadata(out)?.len())
}
