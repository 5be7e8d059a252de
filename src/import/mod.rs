//! Imports of NDJSON exports (`domain::export`). The input is spooled to a
//! file and read twice: first every line is parsed and checked
//! (`rules::import`), so a bad line stops the import before anything is
//! stored; then the records are stored in batches, each one transaction.
//! Memory stays bounded at any size: one line, one entity's versions and
//! one batch being filled, with at most `IN_FLIGHT` more being stored.
//! Importing the same file again changes nothing.

mod check;
pub mod flat;

use check::check_all;

use crate::domain::export::{ExportRecord, ProjectRecord};
use crate::domain::rules::import::{self as rules, ImportCounts, Verdict};
use crate::domain::{validate, Caller, DocInfo, DomainError, DomainResult, Org, Project, Scope};
use crate::store::{DynStore, ImportItem, Imported};
use serde::Serialize;
use std::collections::{BTreeSet, VecDeque};
use std::path::Path;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncSeekExt, BufReader};

/// Longest line read (a record with large properties, or a document
/// snapshot: its state is base64, so states up to 48 MiB fit).
pub const MAX_LINE: usize = 64 << 20;
/// Records per store call (one transaction).
const BATCH: usize = 2000;
/// Records per store call into a project that was empty (plain inserts:
/// larger transactions cost less per row).
pub const FRESH_BATCH: usize = 20_000;
/// Bytes of the file per store call at most, whatever the count.
const BATCH_BYTES: u64 = 32 << 20;
/// Failures listed in a report; the count covers them all.
const MAX_LISTED: usize = 100;

/// Where the records go.
#[derive(Debug, Clone)]
pub enum Target {
    /// Into this existing project, whatever the file's project line says.
    Project(Scope),
    /// Into the org and project each `project` line names, made if missing.
    AsExported,
}

/// What an import did.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    #[serde(flatten)]
    pub counts: ImportCounts,
    /// The failed lines (the first 100), each with why.
    pub failures: Vec<LineFailure>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LineFailure {
    pub line: usize,
    pub message: String,
}

impl ImportReport {
    fn fail(&mut self, line: usize, message: String) {
        self.counts.failed += 1;
        if self.failures.len() < MAX_LISTED {
            self.failures.push(LineFailure { line, message });
        }
    }
}

/// Imports the file at `path`. Without `continue_on_error` the first bad
/// line is the error (`DomainError::AtLine`) and nothing is stored; with
/// it, bad lines are reported and the rest is stored.
pub async fn run(
    store: &DynStore,
    target: &Target,
    path: &Path,
    caller: &Caller,
    continue_on_error: bool,
) -> DomainResult<ImportReport> {
    run_with(store, target, path, caller, continue_on_error, &Quiet).await
}

/// Where an import has got to: bytes of the file read by each pass (for a
/// progress bar).
pub trait Progress: Send + Sync {
    fn checked(&self, _bytes: u64) {}
    fn stored(&self, _bytes: u64) {}
}

/// No progress shown.
pub struct Quiet;

impl Progress for Quiet {}

/// `run`, telling `progress` how far each pass has read.
pub async fn run_with(
    store: &DynStore,
    target: &Target,
    path: &Path,
    caller: &Caller,
    continue_on_error: bool,
    progress: &dyn Progress,
) -> DomainResult<ImportReport> {
    check_all(target, path, continue_on_error, progress).await?;
    store_all(store, target, path, caller, progress).await
}

/// Imports a flat nodes-and-edges document (`flat`) into the project of
/// `scope`, made now by `caller`; failures name the node or edge.
pub async fn run_flat(
    store: &DynStore,
    scope: &Scope,
    path: &Path,
    caller: &Caller,
    continue_on_error: bool,
    progress: &dyn Progress,
) -> DomainResult<ImportReport> {
    let (input, actor) = (path.to_owned(), caller.key_id.clone());
    let (lines, converted) = tokio::task::spawn_blocking(move || {
        let input = std::fs::File::open(&input)
            .map_err(|e| DomainError::internal(format!("cannot read the import: {e}")))?;
        let lines = tempfile::NamedTempFile::new().map_err(DomainError::internal)?;
        let mut out = std::io::BufWriter::new(lines.reopen().map_err(DomainError::internal)?);
        let converted = flat::convert(input, &mut out, &actor, &crate::clock::now())?;
        std::io::Write::flush(&mut out).map_err(DomainError::internal)?;
        Ok::<_, DomainError>((lines, converted))
    })
    .await
    .map_err(DomainError::internal)??;
    let target = Target::Project(scope.clone());
    let mut report = run_with(
        store,
        &target,
        lines.path(),
        caller,
        continue_on_error,
        progress,
    )
    .await
    .map_err(|e| match e {
        DomainError::AtLine { line, source } => match *source {
            DomainError::BadRequest(m) => at_line(
                line,
                DomainError::BadRequest(format!("{}: {m}", converted.place(line))),
            ),
            source => at_line(line, source),
        },
        e => e,
    })?;
    for f in &mut report.failures {
        f.message = format!("{}: {}", converted.place(f.line), f.message);
    }
    Ok(report)
}

/// Checks every record of the file at `path` as an import as exported
/// would, storing nothing (a backup's `verify`).
pub async fn check(path: &Path) -> DomainResult<()> {
    check_all(&Target::AsExported, path, false, &Quiet).await
}

/// The second pass: stores every good record, batch by batch. Whatever
/// happens, the store's bulk load is completed (`import_finish`).
async fn store_all(
    store: &DynStore,
    target: &Target,
    path: &Path,
    caller: &Caller,
    progress: &dyn Progress,
) -> DomainResult<ImportReport> {
    let mut out = Storing {
        store,
        caller,
        scope: None,
        as_exported: matches!(target, Target::AsExported),
        fresh: false,
        batch: Vec::new(),
        batch_ids: Default::default(),
        batch_from: 0,
        report: ImportReport::default(),
        changed: BTreeSet::new(),
        pending: VecDeque::new(),
    };
    let stored = store_units(&mut out, target, path, progress).await;
    // After a failure, batches still being stored land before the finish.
    let settled = out.settle().await;
    let finished = store.import_finish().await;
    stored?;
    settled?;
    finished?;
    // The graph projection (AGE) is rebuilt once for what the import changed.
    for (org, project) in &out.changed {
        match store.sync_graph(&Scope::new(org, project)).await {
            Ok(_) | Err(DomainError::NotImplemented(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out.report)
}

async fn store_units(
    out: &mut Storing<'_>,
    target: &Target,
    path: &Path,
    progress: &dyn Progress,
) -> DomainResult<()> {
    let (store, caller) = (out.store, out.caller);
    if let Target::Project(scope) = target {
        out.enter(scope.clone()).await?;
    }
    let mut units = Units::open(path).await?;
    while let Some(unit) = units.next().await {
        progress.stored(units.bytes);
        match unit {
            Err(DomainError::AtLine { line, source }) => {
                out.report.fail(line, source.to_string());
                if std::mem::take(&mut units.project_failed) && out.as_exported {
                    out.flush().await?;
                    out.settle().await?;
                    out.scope = None;
                }
            }
            Err(e) => return Err(e),
            Ok(Unit::Org(line, org)) => {
                if let Target::AsExported = target {
                    out.flush().await?;
                    out.settle().await?;
                    store
                        .import_org(caller, &org)
                        .await
                        .map_err(|e| at_line(line, e))?;
                }
            }
            Ok(Unit::Project(line, p)) => {
                if let Target::AsExported = target {
                    out.flush().await?;
                    out.settle().await?;
                    ensure_project(store, caller, &p)
                        .await
                        .map_err(|e| at_line(line, e))?;
                    out.enter(Scope::new(p.org, p.id)).await?;
                }
            }
            Ok(Unit::Item(line, _)) if out.scope.is_none() => {
                let e = "its project line failed, so it is not stored";
                out.report.fail(line, e.to_owned());
            }
            Ok(Unit::Item(line, item)) => {
                // Batches hold one kind (entities lock before relationships)
                // and each entity or relationship once (a batch's rows are
                // stored together; a document's lines are stored in order).
                let switch = out
                    .batch
                    .last()
                    .is_some_and(|(_, last)| class(last) != class(&item));
                let id = match &item {
                    ImportItem::Entity(e) => Some(&e.entity.id),
                    ImportItem::Relationship(r) => Some(&r.relationship.id),
                    _ => None,
                };
                let again = id.is_some_and(|id| out.batch_ids.contains(id));
                let limit = if out.fresh { FRESH_BATCH } else { BATCH };
                let full = out.batch.len() >= limit || units.bytes - out.batch_from > BATCH_BYTES;
                if switch || full || again {
                    out.flush().await?;
                }
                // A row of a batch still being stored lands before this one.
                if id.is_some_and(|id| out.pending.iter().any(|p| p.ids.contains(id))) {
                    out.settle().await?;
                }
                if out.batch.is_empty() {
                    out.batch_from = units.bytes;
                }
                if let Some(id) = id {
                    out.batch_ids.insert(id.clone());
                }
                out.batch.push((line, item));
            }
        }
    }
    out.flush().await?;
    out.settle().await
}

/// The kinds a batch may not mix: entities, relationships, documents.
fn class(item: &ImportItem) -> u8 {
    match item {
        ImportItem::Entity(_) => 0,
        ImportItem::Relationship(_) => 1,
        ImportItem::Doc(_) | ImportItem::DocSnapshot(_) | ImportItem::DocUpdate(_) => DOCS,
    }
}

/// The class of document lines, which are stored in order, a batch at a
/// time.
const DOCS: u8 = 2;

/// Batches of a fresh project stored at once: one is written while the
/// next goes through the checks and preparation before the writer (SQLite)
/// or is copied on a second connection (PostgreSQL).
const IN_FLIGHT: usize = 2;

/// A batch being stored in a task of its own.
struct Pending {
    /// The lines its items came from.
    lines: Vec<usize>,
    /// Its kind (`class`).
    class: u8,
    /// The ids of its entities or relationships.
    ids: std::collections::HashSet<String>,
    task: tokio::task::JoinHandle<DomainResult<Vec<Imported>>>,
}

/// The second pass's state: where records go, the batch being filled, what
/// was done, and which projects changed.
struct Storing<'a> {
    store: &'a DynStore,
    caller: &'a Caller,
    scope: Option<Scope>,
    /// Records go where their `project` lines say (`Target::AsExported`).
    as_exported: bool,
    /// The project held nothing when the import reached it.
    fresh: bool,
    batch: Vec<(usize, ImportItem)>,
    batch_ids: std::collections::HashSet<String>,
    /// Where in the file the batch began (bytes).
    batch_from: u64,
    report: ImportReport,
    changed: BTreeSet<(String, String)>,
    /// The batches being stored, oldest first.
    pending: VecDeque<Pending>,
}

impl Storing<'_> {
    /// Sends what follows to `scope`.
    async fn enter(&mut self, scope: Scope) -> DomainResult<()> {
        self.fresh = self.store.import_start(&scope).await?;
        self.scope = Some(scope);
        Ok(())
    }

    /// Stores the batch (one transaction) while the caller reads on. Into
    /// a fresh project, batches of one kind with no id in common are
    /// independent and up to `IN_FLIGHT` are stored at once; otherwise the
    /// batches before are awaited first, so batches land in file order.
    async fn flush(&mut self) -> DomainResult<()> {
        let Some((_, first)) = self.batch.first() else {
            return Ok(());
        };
        let class = class(first);
        let overlaps = self.fresh && class != DOCS && self.pending.iter().all(|p| p.class == class);
        if overlaps {
            while self.pending.len() >= IN_FLIGHT {
                self.settle_oldest().await?;
            }
        } else {
            self.settle().await?;
        }
        let scope = self
            .scope
            .clone()
            .expect("pass one found a project line first");
        let ids = std::mem::take(&mut self.batch_ids);
        let (lines, items): (Vec<usize>, Vec<ImportItem>) =
            std::mem::take(&mut self.batch).into_iter().unzip();
        let (store, caller, fresh) = (self.store.clone(), self.caller.clone(), self.fresh);
        let task = tokio::spawn(async move { store.import(&scope, &caller, items, fresh).await });
        self.pending.push_back(Pending {
            lines,
            class,
            ids,
            task,
        });
        Ok(())
    }

    /// Waits for every batch being stored and counts what they did. After
    /// a failure the others are still awaited, so none lands after the
    /// import has answered.
    async fn settle(&mut self) -> DomainResult<()> {
        let mut first_error = None;
        while !self.pending.is_empty() {
            if let Err(e) = self.settle_oldest().await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Waits for the oldest batch being stored and counts what it did.
    async fn settle_oldest(&mut self) -> DomainResult<()> {
        let Some(Pending { lines, task, .. }) = self.pending.pop_front() else {
            return Ok(());
        };
        let scope = self.scope.as_ref().expect("a batch had a project");
        let done = task.await.map_err(DomainError::internal)??;
        for (line, imported) in lines.into_iter().zip(done) {
            match imported.verdict {
                Verdict::Conflict(message) => self.report.fail(line, message),
                verdict => {
                    self.report.counts.add(&verdict);
                    if verdict != Verdict::Unchanged {
                        self.changed
                            .insert((scope.org.clone(), scope.project.clone()));
                    }
                }
            }
        }
        Ok(())
    }
}

/// The org and project of a `project` line, made when missing (an org
/// without an `org` line before it is named by its id).
async fn ensure_project(store: &DynStore, caller: &Caller, p: &ProjectRecord) -> DomainResult<()> {
    let org = Org {
        id: p.org.clone(),
        name: p.org.clone(),
        created_at: p.created_at.clone(),
    };
    store.import_org(caller, &org).await?;
    let project = Project {
        org: p.org.clone(),
        id: p.id.clone(),
        name: p.name.clone(),
        created_at: p.created_at.clone(),
    };
    store.import_project(caller, &project).await.map(drop)
}

/// Checks an org line, its time normalised to the stored form.
fn check_org(org: &mut Org) -> DomainResult<()> {
    validate::id("org id", &org.id)?;
    validate::name("org name", &org.name)?;
    org.created_at = validate::time("created_at", &org.created_at)?;
    Ok(())
}

/// Checks a project line, its time normalised to the stored form.
fn check_project(p: &mut ProjectRecord) -> DomainResult<()> {
    validate::id("org id", &p.org)?;
    validate::id("project id", &p.id)?;
    validate::name("project name", &p.name)?;
    p.created_at = validate::time("created_at", &p.created_at)?;
    Ok(())
}

/// Whether a line that failed to parse says it is a `project` line.
fn declares_project(line: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Kind<'a> {
        #[serde(borrow)]
        kind: std::borrow::Cow<'a, str>,
    }
    serde_json::from_slice::<Kind>(line).is_ok_and(|k| k.kind == "project")
}

fn not_in_doc(kind: &str, doc: &str) -> DomainError {
    DomainError::BadRequest(format!(
        "a {kind} line of document {doc} does not follow a good doc line of it"
    ))
}

fn at_line(line: usize, e: DomainError) -> DomainError {
    DomainError::AtLine {
        line,
        source: Box::new(e),
    }
}

/// A checked record and the line it starts on.
enum Unit {
    Org(usize, Org),
    Project(usize, ProjectRecord),
    Item(usize, ImportItem),
}

/// The records of a file: an entity line and the version lines after it
/// make one unit. A bad record is an `AtLine` error and reading goes on.
struct Units<R> {
    lines: R,
    line: usize,
    ahead: Option<(usize, ExportRecord)>,
    buf: Vec<u8>,
    /// A line was too long to read: what follows cannot be told apart.
    unreadable: bool,
    /// The document whose lines follow (its `doc` line was good).
    doc: Option<DocInfo>,
    /// Bytes read so far.
    bytes: u64,
    /// The last bad line was a `project` line: the records after it
    /// belong to that project, not to the one before.
    project_failed: bool,
}

impl Units<BufReader<tokio::io::Take<tokio::fs::File>>> {
    async fn open(path: &Path) -> DomainResult<Self> {
        Self::open_range(path, 0..u64::MAX).await
    }

    /// The units that start in `range` (bytes of the file; its start is
    /// the start of a line), lines counted from there.
    async fn open_range(path: &Path, range: std::ops::Range<u64>) -> DomainResult<Self> {
        let unreadable = |e| DomainError::internal(format!("cannot read the import: {e}"));
        let mut file = tokio::fs::File::open(path).await.map_err(unreadable)?;
        file.seek(std::io::SeekFrom::Start(range.start))
            .await
            .map_err(unreadable)?;
        let file = file.take(range.end - range.start);
        Ok(Units {
            lines: BufReader::with_capacity(1 << 16, file),
            line: 0,
            ahead: None,
            buf: Vec::new(),
            unreadable: false,
            doc: None,
            bytes: 0,
            project_failed: false,
        })
    }
}

impl<R: AsyncBufRead + Unpin> Units<R> {
    /// The next non-blank line as a record.
    async fn record(&mut self) -> Option<DomainResult<(usize, ExportRecord)>> {
        loop {
            self.buf.clear();
            let read = (&mut self.lines)
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut self.buf)
                .await;
            match read {
                Err(e) => {
                    return Some(Err(DomainError::internal(format!(
                        "reading the import: {e}"
                    ))))
                }
                Ok(0) => return None,
                Ok(_) => {}
            }
            self.line += 1;
            self.bytes += self.buf.len() as u64;
            // At most MAX_LINE bytes and the newline.
            if self.buf.len() > MAX_LINE && self.buf.last() != Some(&b'\n') {
                self.unreadable = true;
                let e = DomainError::BadRequest(format!("a line over {MAX_LINE} bytes"));
                return Some(Err(at_line(self.line, e)));
            }
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let parsed = ExportRecord::from_line(&self.buf).map_err(|e| {
                self.project_failed = declares_project(&self.buf);
                at_line(
                    self.line,
                    DomainError::BadRequest(format!("not an export record: {e}")),
                )
            });
            return Some(parsed.map(|r| (self.line, r)));
        }
    }

    async fn next(&mut self) -> Option<DomainResult<Unit>> {
        let (line, record) = match self.ahead.take() {
            Some(ahead) => ahead,
            None => match self.record().await? {
                Ok(r) => r,
                Err(e) => return Some(Err(e)),
            },
        };
        // Snapshot and update lines belong to the `doc` line before them.
        let doc = match &record {
            ExportRecord::DocSnapshot(_) | ExportRecord::DocUpdate(_) => self.doc.as_ref(),
            _ => {
                self.doc = None;
                None
            }
        };
        let checked = match record {
            ExportRecord::Doc(mut d) => rules::check_doc(&mut d).map(|_| {
                self.doc = Some(d.clone());
                ImportItem::Doc(d)
            }),
            ExportRecord::DocSnapshot(mut snap) => match doc {
                None => Err(not_in_doc("doc_snapshot", &snap.doc)),
                Some(d) => rules::check_doc_snapshot(&mut snap, d)
                    .and_then(|_| crate::crdt::validate_update(&snap.state))
                    .map(|_| ImportItem::DocSnapshot(snap)),
            },
            ExportRecord::DocUpdate(mut u) => match doc {
                None => Err(not_in_doc("doc_update", &u.doc)),
                Some(d) => rules::check_doc_update(&mut u, d)
                    .and_then(|_| crate::crdt::validate_update(&u.update))
                    .map(|_| ImportItem::DocUpdate(u)),
            },
            ExportRecord::Org(mut org) => {
                return Some(
                    check_org(&mut org)
                        .map(|_| Unit::Org(line, org))
                        .map_err(|e| at_line(line, e)),
                )
            }
            ExportRecord::Project(mut p) => {
                return Some(match check_project(&mut p) {
                    Ok(()) => Ok(Unit::Project(line, p)),
                    Err(e) => {
                        self.project_failed = true;
                        Err(at_line(line, e))
                    }
                })
            }
            ExportRecord::Version(v) => Err(DomainError::BadRequest(format!(
                "version {} of {} does not follow its entity",
                v.version, v.entity
            ))),
            ExportRecord::Relationship(mut r) => {
                rules::check_relationship(&mut r).map(|_| ImportItem::Relationship(r))
            }
            ExportRecord::Entity(entity) => {
                let mut e = crate::domain::export::EntityExport {
                    entity,
                    versions: Vec::new(),
                };
                // The entity's versions; after a bad one the rest are
                // passed over, so the entity fails once, at that line.
                let mut bad = None;
                loop {
                    match self.record().await {
                        Some(Ok((_, ExportRecord::Version(v)))) => {
                            if rules::wants_version(&e) {
                                e.versions.push(v);
                            }
                        }
                        Some(Ok(other)) => {
                            self.ahead = Some(other);
                            break;
                        }
                        Some(Err(err)) if self.unreadable => return Some(Err(err)),
                        Some(Err(err)) => {
                            bad.get_or_insert(err);
                        }
                        None => break,
                    }
                }
                if let Some(err) = bad {
                    return Some(Err(err));
                }
                rules::check_entity(&mut e).map(|_| ImportItem::Entity(e))
            }
        };
        Some(
            checked
                .map(|item| Unit::Item(line, item))
                .map_err(|e| at_line(line, e)),
        )
    }
}
