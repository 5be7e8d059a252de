//! The first pass of an import: every line parsed and checked before
//! anything is stored. A large file is checked in two halves side by side,
//! so both cores parse (the pass was a seventh of a 1M-entity load). The
//! halves meet at a line that starts a unit (a record other than a
//! `version`, `doc_snapshot` or `doc_update` line, which belong to the unit
//! before them), so each half reads whole units, and the answer is the one
//! a single reader gives: the first problem in file order.

use super::{at_line, Progress, Target, Unit, Units};
use crate::domain::export::ExportRecord;
use crate::domain::{DomainError, DomainResult};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Files smaller than this are checked by one reader.
const SPLIT_FROM: u64 = 8 << 20;

/// Checks every line of the file at `path`.
pub(super) async fn check_all(
    target: &Target,
    path: &Path,
    continue_on_error: bool,
    progress: &dyn Progress,
) -> DomainResult<()> {
    let split = split_point(path).await?;
    let second_read = Arc::new(AtomicU64::new(0));
    let second = split.map(|at| {
        let (path, target, read) = (path.to_owned(), target.clone(), second_read.clone());
        tokio::spawn(async move {
            let on_read = move |bytes| read.store(bytes, Relaxed);
            check_range(&target, &path, at..u64::MAX, continue_on_error, &on_read).await
        })
    });
    let on_read = |bytes| progress.checked(bytes + second_read.load(Relaxed));
    let end = split.unwrap_or(u64::MAX);
    let first = check_range(target, path, 0..end, continue_on_error, &on_read).await?;
    let second = match second {
        Some(task) => Some(task.await.map_err(DomainError::internal)??),
        None => None,
    };
    first.combine(second, target)
}

/// What one reader found in its range of the file.
struct Checked {
    /// Lines read (blank ones too).
    lines: usize,
    projects: usize,
    /// The first record line before any project line of the range.
    orphan: Option<usize>,
    /// The first problem that stops the import.
    failed: Option<DomainError>,
}

impl Checked {
    /// The answer for the whole file, `self` being its first range.
    fn combine(self, second: Option<Checked>, target: &Target) -> DomainResult<()> {
        let as_exported = matches!(target, Target::AsExported);
        let orphan = |line| {
            let e = DomainError::BadRequest("a project line must come first".into());
            at_line(line, e)
        };
        // Within the first range an orphan comes before any later failure
        // (the range stops at its first failure).
        if let (true, Some(line)) = (as_exported, self.orphan) {
            return Err(orphan(line));
        }
        if let Some(e) = self.failed {
            return Err(e);
        }
        let mut projects = self.projects;
        if let Some(second) = second {
            let shift = |line: usize| line + self.lines;
            // The second range's orphans count when no project line came before.
            let orphaned = second.orphan.filter(|_| as_exported && projects == 0);
            let failed = second.failed.map(|e| match e {
                DomainError::AtLine { line, source } => DomainError::AtLine {
                    line: shift(line),
                    source,
                },
                e => e,
            });
            // A range stops at its first failure: an orphan it found came before.
            if let Some(line) = orphaned {
                return Err(orphan(shift(line)));
            }
            if let Some(e) = failed {
                return Err(e);
            }
            projects += second.projects;
        }
        if matches!(target, Target::Project(_)) && projects > 1 {
            return Err(DomainError::BadRequest(format!(
                "the file holds {projects} projects; import it into one project each, or as exported"
            )));
        }
        Ok(())
    }
}

/// Checks the units that start in `range` (bytes of the file), counting
/// lines from the range's start.
async fn check_range(
    target: &Target,
    path: &Path,
    range: std::ops::Range<u64>,
    continue_on_error: bool,
    on_read: &(dyn Fn(u64) + Send + Sync),
) -> DomainResult<Checked> {
    let mut units = Units::open_range(path, range).await?;
    let mut checked = Checked {
        lines: 0,
        projects: 0,
        orphan: None,
        failed: None,
    };
    let as_exported = matches!(target, Target::AsExported);
    while let Some(unit) = units.next().await {
        on_read(units.bytes);
        match unit {
            Ok(Unit::Project(..)) => checked.projects += 1,
            Ok(Unit::Item(line, _)) if checked.projects == 0 && as_exported => {
                checked.orphan.get_or_insert(line);
            }
            Ok(_) => {}
            // A line too long to read, or a failing read, stops any import.
            Err(e) if units.unreadable || !matches!(e, DomainError::AtLine { .. }) => {
                checked.failed = Some(e);
                break;
            }
            Err(_) if continue_on_error => {}
            Err(e) => {
                checked.failed = Some(e);
                break;
            }
        }
    }
    checked.lines = units.line;
    Ok(checked)
}

/// Where the second half begins: the first line after the one the middle
/// of the file falls in that starts a unit. None for a small file, or when
/// no such line is found (then one reader checks it all).
async fn split_point(path: &Path) -> DomainResult<Option<u64>> {
    let size = tokio::fs::metadata(path)
        .await
        .map_err(|e| DomainError::internal(format!("cannot read the import: {e}")))?
        .len();
    if size < SPLIT_FROM {
        return Ok(None);
    }
    let middle = size / 2;
    let mut lines = Units::open_range(path, middle..u64::MAX).await?;
    // The line the middle falls in belongs to the first half.
    lines.record().await;
    loop {
        let at = middle + lines.bytes;
        match lines.record().await {
            None => return Ok(None),
            Some(_) if lines.unreadable => return Ok(None),
            Some(Ok((
                _,
                ExportRecord::Version(_)
                | ExportRecord::DocSnapshot(_)
                | ExportRecord::DocUpdate(_),
            )))
            | Some(Err(_)) => {}
            Some(Ok(_)) => return Ok(Some(at)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Scope;
    use std::io::Write;

    const AT: &str = "2026-12-04T00:00:00.000000Z";

    fn entity(i: usize) -> String {
        let props = serde_json::json!({"name": format!("thing {i}"), "pad": "x".repeat(200)});
        let e = serde_json::json!({"kind": "entity", "id": format!("e{i}"), "type": "t",
            "properties": props, "version": 1, "created_at": AT, "updated_at": AT,
            "created_by": "a", "updated_by": "a"});
        let v = serde_json::json!({"kind": "version", "entity": format!("e{i}"), "version": 1,
            "parent": null, "op": "create", "type": "t", "deleted": false, "actor": "a",
            "at": AT, "patch": props, "snapshot": props, "chain": 0});
        format!("{e}\n{v}\n")
    }

    /// A file of twice `SPLIT_FROM`: a project line, entities, and `bad`
    /// as line `at` (1-based and even: entities start on even lines).
    fn file(at: usize, bad: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let mut text = String::from(
            r#"{"kind":"project","org":"o","id":"p","name":"p","created_at":"2026-12-04T00:00:00.000000Z"}"#,
        );
        text.push('\n');
        let mut i = 0;
        while (text.len() as u64) < 2 * SPLIT_FROM {
            if 2 + 2 * i == at {
                text.push_str(bad);
                text.push('\n');
            }
            text.push_str(&entity(i));
            i += 1;
        }
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    async fn check(f: &tempfile::NamedTempFile, target: &Target, go_on: bool) -> DomainResult<()> {
        check_all(target, f.path(), go_on, &super::super::Quiet).await
    }

    #[tokio::test]
    async fn a_split_file_is_checked_whole_and_its_lines_numbered_from_the_top() {
        let good = file(0, "");
        assert!(split_point(good.path()).await.unwrap().is_some());
        check(&good, &Target::AsExported, false).await.unwrap();

        // A bad line far in the second half.
        let lines = good.path().metadata().unwrap().len() as usize / entity(0).len() * 2;
        let at = (lines * 3 / 4) & !1;
        let bad = file(at, "{not json");
        match check(&bad, &Target::AsExported, false).await {
            Err(DomainError::AtLine { line, .. }) => assert_eq!(line, at),
            other => panic!("{other:?}"),
        }
        check(&bad, &Target::AsExported, true).await.unwrap();

        // A second project in the second half.
        let project = r#"{"kind":"project","org":"o","id":"q","name":"q","created_at":"2026-12-04T00:00:00.000000Z"}"#;
        let two = file(at, project);
        check(&two, &Target::AsExported, false).await.unwrap();
        let into = Target::Project(Scope::new("o", "p"));
        let e = check(&two, &into, false).await.unwrap_err();
        assert!(e.to_string().contains("2 projects"), "{e}");
    }
}
