//! Reading backups back: checking a backup's records, and restoring a chain
//! (a full backup and the incremental ones after it) into an empty store.
//! Each backup's chunks are spooled to a file and stored by the import
//! (`crate::import`), which keeps every row's versions, times and actors
//! and creates orgs and projects as they were; an incremental backup first
//! deletes what it no longer lists (orgs and projects, or ones made again
//! since) and purges its `purged` entities; of documents, it deletes those
//! it does not list (neither written whole nor `doc_kept`) and those it
//! writes whole, which the import then makes as written.

use super::audit::AuditLine;
use super::chunks;
use super::cipher::ChunkKey;
use super::incremental::{DocKept, Purged};
use super::keys::{self, KeyLine};
use super::manifest::{Kind, Manifest};
use super::Backups;
use crate::blob::BlobStore;
use crate::domain::export::{DocExport, ExportRecord};
use crate::domain::rules::as_of;
use crate::domain::rules::import::ImportCounts;
use crate::domain::{Caller, DomainError, Org, PageRequest, Project, Scope, WriteOp};
use crate::feed::reads::{all_orgs, projects_of};
use crate::import::Target;
use crate::store::{DynStore, Which};
use anyhow::{bail, Context};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

/// The longest chain of backups a restore or a verify follows (a longer
/// one loops: each link is a backup).
pub const MAX_CHAIN: usize = 100_000;

/// What a restore did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreReport {
    /// The backups replayed, oldest first.
    pub backups: Vec<String>,
    pub counts: ImportCounts,
    pub purged: u64,
    pub deleted_projects: u64,
    /// API keys made (with their exported hashes) and revoked.
    pub keys_made: u64,
    pub keys_revoked: u64,
    /// Audit events stored (an event in two backups of the chain counts once).
    pub audit_events: u64,
}

/// One backup's records, spooled: the import's lines in a file, and what
/// the import does not do (the tenancy listed, the purges).
struct Spooled {
    file: tempfile::NamedTempFile,
    orgs: BTreeMap<String, Org>,
    projects: BTreeMap<(String, String), Project>,
    purged: Vec<(Scope, String)>,
    keys: Vec<KeyLine>,
    /// Every document the backup names, and whether it writes it whole.
    docs: BTreeMap<(Scope, String), bool>,
    /// Its audit events, one `audit` line each.
    audit: tempfile::NamedTempFile,
    /// The orgs (project `None`) and projects its audit events say were
    /// deleted (up to the time restored to).
    deleted: BTreeSet<(String, Option<String>)>,
    /// The API keys its audit events say were revoked (up to that time).
    revoked: BTreeSet<String>,
}

/// Spools one backup's records; with `to`, as they were at that time
/// (`rules::as_of`).
async fn spool(
    blobs: &dyn BlobStore,
    m: &Manifest,
    key: Option<&ChunkKey>,
    to: Option<&str>,
) -> anyhow::Result<Spooled> {
    let file = tempfile::NamedTempFile::new().context("a spool file for the restore")?;
    let mut out = std::io::BufWriter::new(file.reopen()?);
    let audit = tempfile::NamedTempFile::new().context("a spool file for the audit trail")?;
    let mut audit_out = std::io::BufWriter::new(audit.reopen()?);
    let mut spooled = Spooled {
        file,
        orgs: BTreeMap::new(),
        projects: BTreeMap::new(),
        purged: Vec::new(),
        keys: Vec::new(),
        docs: BTreeMap::new(),
        audit,
        deleted: BTreeSet::new(),
        revoked: BTreeSet::new(),
    };
    let mut scope: Option<Scope> = None;
    let mut past = to.map(AsOf::new);
    for chunk in &m.chunks {
        let plain = chunks::read(blobs, chunk, key).await?;
        for line in plain.split_inclusive(|b| *b == b'\n') {
            if KeyLine::is(line) {
                let key =
                    KeyLine::parse(line).with_context(|| format!("a key line in {}", chunk.key))?;
                if to.is_none_or(|t| key.info.created_at.as_str() <= t) {
                    spooled.keys.push(key);
                }
                continue;
            }
            if AuditLine::is(line) {
                let event = AuditLine::parse(line)
                    .with_context(|| format!("an audit line in {}", chunk.key))?;
                if to.is_none_or(|t| event.event.at.as_str() <= t) {
                    audit_out.write_all(line)?;
                    let e = &event.event;
                    match e.action.as_str() {
                        "org.delete" => {
                            spooled.deleted.insert((e.target.clone(), None));
                        }
                        "project.delete" => {
                            spooled
                                .deleted
                                .insert((event.org.clone(), Some(e.target.clone())));
                        }
                        "key.revoke" => {
                            spooled.revoked.insert(e.target.clone());
                        }
                        _ => {}
                    }
                }
                continue;
            }
            if Purged::is(line) {
                let purged: Purged = serde_json::from_slice(line)
                    .with_context(|| format!("a purged line in {}", chunk.key))?;
                let Some(scope) = &scope else {
                    bail!("a purged line before any project in {}", chunk.key)
                };
                // A purge after the time restored to had not happened yet.
                if to.is_none_or(|t| purged.at.as_str() <= t) {
                    spooled.purged.push((scope.clone(), purged.entity));
                }
                continue;
            }
            if DocKept::is(line) {
                let kept: DocKept = serde_json::from_slice(line)
                    .with_context(|| format!("a doc_kept line in {}", chunk.key))?;
                let Some(scope) = &scope else {
                    bail!("a doc_kept line before any project in {}", chunk.key)
                };
                spooled.docs.insert((scope.clone(), kept.doc), false);
                continue;
            }
            if line.starts_with(br#"{"kind":"doc","#) {
                if let (Some(scope), Ok(ExportRecord::Doc(d))) =
                    (&scope, serde_json::from_slice(line))
                {
                    // Made after the time restored to: not listed, so gone.
                    if to.is_none_or(|t| d.created_at.as_str() <= t) {
                        spooled.docs.insert((scope.clone(), d.id), true);
                    }
                }
            }
            if line.starts_with(br#"{"kind":"org""#) || line.starts_with(br#"{"kind":"project""#) {
                match serde_json::from_slice(line) {
                    Ok(ExportRecord::Org(org))
                        if to.is_none_or(|t| org.created_at.as_str() <= t) =>
                    {
                        spooled.orgs.insert(org.id.clone(), org);
                    }
                    Ok(ExportRecord::Project(p)) => {
                        scope = Some(Scope::new(p.org.clone(), p.id.clone()));
                        let project = Project {
                            org: p.org,
                            id: p.id,
                            name: p.name,
                            created_at: p.created_at,
                        };
                        if to.is_none_or(|t| project.created_at.as_str() <= t) {
                            spooled
                                .projects
                                .insert((project.org.clone(), project.id.clone()), project);
                        }
                    }
                    // The import's check names the line.
                    _ => {}
                }
            }
            match &mut past {
                Some(past) => past.line(line, &mut out)?,
                None => out.write_all(line)?,
            }
        }
    }
    if let Some(past) = &mut past {
        past.flush(&mut out)?;
    }
    out.flush()?;
    audit_out.flush()?;
    Ok(spooled)
}

/// Rewrites a backup's lines as they were at time `t`: orgs and projects
/// made later are left out with all their rows; each entity (its line and
/// the version lines after it, which may cross chunks) and relationship
/// goes through `rules::as_of`.
struct AsOf {
    t: String,
    /// Inside an org or project made after `t`.
    skipping: bool,
    org_skipped: bool,
    entity: Option<crate::domain::export::EntityExport>,
    doc: Option<DocExport>,
}

impl AsOf {
    fn new(t: &str) -> Self {
        AsOf {
            t: t.to_owned(),
            skipping: false,
            org_skipped: false,
            entity: None,
            doc: None,
        }
    }

    fn line(&mut self, line: &[u8], out: &mut impl Write) -> anyhow::Result<()> {
        let mut record: ExportRecord = match serde_json::from_slice(line) {
            Ok(r) => r,
            // Passed on for the import's check to name.
            Err(_) => return Ok(out.write_all(line)?),
        };
        if let ExportRecord::Version(v) = record {
            if let Some(e) = &mut self.entity {
                e.versions.push(v);
            } else if !self.skipping {
                out.write_all(line)?;
            }
            return Ok(());
        }
        match (record, &mut self.doc) {
            (ExportRecord::DocSnapshot(s), Some(d)) => {
                d.snapshots.push(s);
                return Ok(());
            }
            (ExportRecord::DocUpdate(u), Some(d)) => {
                d.updates.push(u);
                return Ok(());
            }
            (ExportRecord::DocSnapshot(_) | ExportRecord::DocUpdate(_), None) => {
                if !self.skipping {
                    out.write_all(line)?;
                }
                return Ok(());
            }
            (other, _) => record = other,
        }
        self.flush(out)?;
        match &record {
            ExportRecord::Org(org) => {
                self.org_skipped = org.created_at > self.t;
                self.skipping = self.org_skipped;
            }
            ExportRecord::Project(p) => self.skipping = self.org_skipped || p.created_at > self.t,
            _ => {}
        }
        if self.skipping {
            return Ok(());
        }
        match record {
            ExportRecord::Entity(entity) => {
                self.entity = Some(crate::domain::export::EntityExport {
                    entity,
                    versions: Vec::new(),
                });
            }
            ExportRecord::Relationship(r) => {
                if let Some(r) = as_of::relationship(r, &self.t) {
                    write_record(out, &ExportRecord::Relationship(r))?;
                }
            }
            ExportRecord::Doc(doc) => {
                self.doc = Some(DocExport {
                    doc,
                    snapshots: Vec::new(),
                    updates: Vec::new(),
                });
            }
            _ => out.write_all(line)?,
        }
        Ok(())
    }

    /// Writes the entity or document being gathered, as it was at `t` (if
    /// it was).
    fn flush(&mut self, out: &mut impl Write) -> anyhow::Result<()> {
        if let Some(d) = self.doc.take().and_then(|d| as_of::doc(d, &self.t)) {
            write_record(out, &ExportRecord::Doc(d.doc))?;
            for s in d.snapshots {
                write_record(out, &ExportRecord::DocSnapshot(s))?;
            }
            for u in d.updates {
                write_record(out, &ExportRecord::DocUpdate(u))?;
            }
        }
        let Some(e) = self.entity.take() else {
            return Ok(());
        };
        if let Some(e) = as_of::entity(e, &self.t)? {
            write_record(out, &ExportRecord::Entity(e.entity))?;
            for v in e.versions {
                write_record(out, &ExportRecord::Version(v))?;
            }
        }
        Ok(())
    }
}

fn write_record(out: &mut impl Write, record: &ExportRecord) -> anyhow::Result<()> {
    let mut bytes = Vec::new();
    crate::export::line(&mut bytes, record);
    Ok(out.write_all(&bytes)?)
}

/// Checks every record of one backup as an import would (storing nothing).
pub async fn check_records(
    blobs: &dyn BlobStore,
    m: &Manifest,
    key: Option<&ChunkKey>,
) -> anyhow::Result<()> {
    let spooled = spool(blobs, m, key, None).await?;
    crate::import::check(spooled.file.path())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}

impl Backups {
    /// The chain `id` restores from, its full backup first.
    pub async fn chain(&self, id: &str) -> anyhow::Result<Vec<Manifest>> {
        let mut chain = Vec::new();
        let mut next = Some(id.to_owned());
        while let Some(id) = next.take() {
            let m = self
                .manifest(&id)
                .await
                .with_context(|| format!("backup {id} of the chain"))?;
            next = m.parent.clone();
            if m.kind == Kind::Incr && next.is_none() {
                bail!("incremental backup {id} names no parent");
            }
            chain.push(m);
            if chain.len() > MAX_CHAIN {
                bail!("the chain of backup {id} does not end");
            }
        }
        chain.reverse();
        Ok(chain)
    }

    /// Restores backup `id` (and the chain before it) into `target`, which
    /// must be empty; with `to`, the state at that time (RFC 3339): the
    /// chain up to its first backup started at or after it, each row as it
    /// was then.
    pub async fn restore(
        &self,
        id: &str,
        target: &DynStore,
        to: Option<&str>,
    ) -> anyhow::Result<RestoreReport> {
        let mut chain = self.chain(id).await?;
        let to = to
            .map(|t| crate::domain::validate::time("--to", t))
            .transpose()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if let Some(t) = &to {
            let Some(holds) = chain
                .iter()
                .position(|m| m.started_at.as_str() >= t.as_str())
            else {
                bail!(
                    "backup {id} was taken before {t}: it cannot hold the state at that time (restore a later backup, or leave out --to)"
                );
            };
            chain.truncate(holds + 1);
        }
        let first = PageRequest {
            cursor: None,
            limit: 1,
        };
        if !target.list_orgs(&first).await?.items.is_empty() {
            bail!("the target store is not empty: a backup is restored only into an empty store");
        }
        // The restore's own writes leave no trail: the trail is restored.
        let caller = Caller::replaying("restore");
        let mut report = RestoreReport::default();
        for m in &chain {
            let spooled = spool(self.blobs.as_ref(), m, self.key_for(m)?, to.as_deref()).await?;
            // A backup begun after the time restored to lists what was
            // there when it began: what it leaves out may have gone after
            // that time, so only deletions its audit events place at or
            // before it are applied (org.delete, project.delete,
            // key.revoke; documents have no such events: they stay as the
            // backups before had them).
            let after_to = to.as_deref().is_some_and(|t| m.started_at.as_str() > t);
            if m.kind == Kind::Incr {
                report.deleted_projects +=
                    forget_unlisted(target, &caller, &spooled, after_to).await?;
                forget_docs(target, &caller, &spooled, after_to).await?;
                for (scope, entity) in &spooled.purged {
                    let purge = vec![WriteOp::PurgeEntity { id: entity.clone() }];
                    match target.write(scope, &caller, purge).await {
                        Ok(_) => report.purged += 1,
                        Err(DomainError::NotFound(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            let done = crate::import::run(
                target,
                &Target::AsExported,
                spooled.file.path(),
                &caller,
                false,
            )
            .await
            .map_err(|e| anyhow::anyhow!("backup {}: {e}", m.id))?;
            if let Some(f) = done.failures.first() {
                bail!(
                    "backup {}: line {} was refused: {}",
                    m.id,
                    f.line,
                    f.message
                );
            }
            let revoke = if after_to {
                keys::Revoke::Placed(&spooled.revoked)
            } else if m.kind == Kind::Incr {
                keys::Revoke::Unlisted
            } else {
                keys::Revoke::None
            };
            let (made, revoked) = keys::apply(target, &caller, &spooled.keys, revoke).await?;
            report.keys_made += made;
            report.keys_revoked += revoked;
            report.audit_events += super::audit::store(target, spooled.audit.path()).await?;
            report.counts.created += done.counts.created;
            report.counts.updated += done.counts.updated;
            report.counts.unchanged += done.counts.unchanged;
            report.backups.push(m.id.clone());
        }
        Ok(report)
    }
}

/// Deletes the target's orgs and projects an incremental backup does not
/// list, or lists as made at another time (deleted and made again since the
/// parent); the import then makes them as listed. With `placed_only`, only
/// those the backup's audit events say were deleted. Returns how many
/// projects went.
async fn forget_unlisted(
    target: &DynStore,
    caller: &Caller,
    spooled: &Spooled,
    placed_only: bool,
) -> anyhow::Result<u64> {
    let mut gone = 0;
    let placed = |org: &str, project: Option<&str>| {
        !placed_only
            || spooled.deleted.contains(&(org.to_owned(), None))
            || project.is_some_and(|p| {
                spooled
                    .deleted
                    .contains(&(org.to_owned(), Some(p.to_owned())))
            })
    };
    for org in all_orgs(target).await? {
        let listed = spooled.orgs.get(&org.id);
        if listed.is_none_or(|o| o.created_at != org.created_at) && placed(&org.id, None) {
            target.delete_org(caller, &org.id).await?;
            continue;
        }
        for p in projects_of(target, &org.id).await? {
            let listed = spooled.projects.get(&(p.org.clone(), p.id.clone()));
            if listed.is_none_or(|l| l.created_at != p.created_at) && placed(&p.org, Some(&p.id)) {
                target.delete_project(caller, &p.org, &p.id).await?;
                gone += 1;
            }
        }
    }
    Ok(gone)
}

/// Deletes the target's documents an incremental backup does not list, and
/// those it writes whole (the import makes them as written); with
/// `written_only`, only the latter. A document hidden by its deleted owner
/// cannot be deleted: the import merges into it.
async fn forget_docs(
    target: &DynStore,
    caller: &Caller,
    spooled: &Spooled,
    written_only: bool,
) -> anyhow::Result<()> {
    let snapshot = target.snapshot().await?;
    let mut gone = Vec::new();
    for org in all_orgs(target).await? {
        for p in projects_of(target, &org.id).await? {
            let scope = Scope::new(p.org, p.id);
            let mut after = String::new();
            loop {
                let page = snapshot.docs(&scope, &Which::After(after, 500)).await?;
                let Some(last) = page.last() else { break };
                after = last.id.clone();
                for d in page {
                    let key = (scope.clone(), d.id);
                    let forget = match spooled.docs.get(&key) {
                        Some(written) => *written,
                        None => !written_only,
                    };
                    if forget {
                        gone.push(key);
                    }
                }
            }
        }
    }
    drop(snapshot);
    for (scope, doc) in gone {
        match target.delete_doc(&scope, caller, &doc).await {
            Ok(_) | Err(DomainError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
