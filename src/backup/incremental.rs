//! What an incremental backup holds: the change feed between its parent's
//! position and its own names what changed; each changed row is written as
//! the snapshot has it (an entity with all its versions), and each purged
//! entity as a `purged` line. Every org and project line is written too, so
//! a restore learns which were deleted (absent) or made again (another
//! creation time). The feed is read up to its head as of just after the
//! snapshot opened, so every row the snapshot holds changed since the
//! parent is written, as the snapshot has it: the backup is one moment. The
//! manifest's window ends at the position read before the snapshot, so the
//! rows changed in between come again in the next backup: storing a row
//! twice changes nothing.
//!
//! Documents are not in the feed: each keeps the time it last changed, and
//! a document changed since shortly before the parent started is written
//! whole (row, snapshots, retained updates); every other document is named
//! by a `doc_kept` line, so a restore learns which documents were deleted.

use super::chunks::ChunkWriter;
use crate::blob::BlobStore;
use crate::domain::{DomainResult, Scope};
use crate::export::{line, DocLines, Part};
use crate::store::{DynStore, Snapshot, Which};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Changes read from the feed per call.
const FEED_PAGE: usize = 5000;
/// Rows read from the snapshot per call.
const IDS_PAGE: usize = 500;

/// A purged entity, in the project of the `project` line before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename = "purged")]
pub struct Purged {
    pub entity: String,
    /// When it was purged.
    pub at: String,
}

impl Purged {
    /// Whether an NDJSON line is a `purged` record (as `line` writes it).
    pub fn is(line: &[u8]) -> bool {
        line.starts_with(br#"{"kind":"purged""#)
    }
}

/// A document the backup holds as its parent chain has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename = "doc_kept")]
pub struct DocKept {
    pub doc: String,
}

impl DocKept {
    /// Whether an NDJSON line is a `doc_kept` record (as `line` writes it).
    pub fn is(line: &[u8]) -> bool {
        line.starts_with(br#"{"kind":"doc_kept""#)
    }
}

/// How long before its parent started a change not in the feed (a
/// document's, an audit event) still counts: a change's time is taken inside
/// its transaction, which may commit after the parent's snapshot, and
/// daemons' clocks differ a little.
const MARGIN: chrono::Duration = chrono::Duration::minutes(10);

/// Documents changed and audit events made at or after this time are in
/// the backup.
pub fn changed_since(parent_started_at: &str) -> anyhow::Result<String> {
    let t = chrono::DateTime::parse_from_rfc3339(parent_started_at)?.to_utc();
    Ok(crate::clock::format(t - MARGIN))
}

/// What changed in one project within the window.
#[derive(Debug, Default)]
pub struct Changed {
    entities: BTreeSet<String>,
    relationships: BTreeSet<String>,
    /// Purged ids, each with the time of its (last) purge.
    purged: BTreeMap<String, String>,
}

/// The changes after feed position `after` up to `upto`, by project.
pub async fn changed(
    store: &DynStore,
    after: i64,
    upto: i64,
) -> DomainResult<BTreeMap<Scope, Changed>> {
    let mut out: BTreeMap<Scope, Changed> = BTreeMap::new();
    let mut at = after;
    while at < upto {
        let page = store.read_feed(at, FEED_PAGE).await?;
        let Some(last) = page.last() else { break };
        at = last.change.seq;
        for c in page.into_iter().filter(|c| c.change.seq <= upto) {
            let into = out.entry(c.scope).or_default();
            match (c.change.kind.as_str(), c.change.op.as_str()) {
                ("entity", "purge") => {
                    into.purged.insert(c.change.id, c.change.at);
                }
                ("entity", _) => {
                    into.entities.insert(c.change.id);
                }
                _ => {
                    into.relationships.insert(c.change.id);
                }
            }
        }
    }
    Ok(out)
}

/// Writes the incremental lines of `parts` (every org and project), one
/// page of lines at a time.
pub async fn write(
    snapshot: &dyn Snapshot,
    documents: &dyn BlobStore,
    parts: Vec<Part>,
    changed: &BTreeMap<Scope, Changed>,
    since: &str,
    to: &mut ChunkWriter<'_>,
) -> anyhow::Result<()> {
    use crate::domain::export::{ExportRecord, ProjectRecord};
    for part in parts {
        let mut out = Vec::new();
        let project = match part {
            Part::Org(org) => {
                line(&mut out, &ExportRecord::Org(org));
                to.push(&out).await?;
                continue;
            }
            Part::Project(p) => p,
        };
        let scope = Scope::new(project.org.clone(), project.id.clone());
        line(
            &mut out,
            &ExportRecord::Project(ProjectRecord {
                org: project.org,
                id: project.id,
                name: project.name,
                created_at: project.created_at,
            }),
        );
        if let Some(changes) = changed.get(&scope) {
            write_rows(snapshot, &scope, changes, out, to).await?;
        } else {
            to.push(&out).await?;
        }
        write_docs(snapshot, documents, &scope, since, to).await?;
    }
    Ok(())
}

/// The purged, then changed entities and relationships of one project,
/// after `out` (its project line).
async fn write_rows(
    snapshot: &dyn Snapshot,
    scope: &Scope,
    changes: &Changed,
    mut out: Vec<u8>,
    to: &mut ChunkWriter<'_>,
) -> anyhow::Result<()> {
    use crate::domain::export::ExportRecord;
    for (id, at) in &changes.purged {
        let purged = Purged {
            entity: id.clone(),
            at: at.clone(),
        };
        line(&mut out, &purged);
    }
    to.push(&out).await?;
    let entities: Vec<String> = changes.entities.iter().cloned().collect();
    for ids in entities.chunks(IDS_PAGE) {
        let mut out = Vec::new();
        for e in snapshot.entities(scope, &Which::Ids(ids.to_vec())).await? {
            line(&mut out, &ExportRecord::Entity(e.entity));
            for v in e.versions {
                line(&mut out, &ExportRecord::Version(v));
            }
        }
        to.push(&out).await?;
    }
    let relationships: Vec<String> = changes.relationships.iter().cloned().collect();
    for ids in relationships.chunks(IDS_PAGE) {
        let mut out = Vec::new();
        for r in snapshot
            .relationships(scope, &Which::Ids(ids.to_vec()))
            .await?
        {
            line(&mut out, &ExportRecord::Relationship(r));
        }
        to.push(&out).await?;
    }
    Ok(())
}

/// Every document of the project: whole when changed since `since`, else
/// a `doc_kept` line.
async fn write_docs(
    snapshot: &dyn Snapshot,
    documents: &dyn BlobStore,
    scope: &Scope,
    since: &str,
    to: &mut ChunkWriter<'_>,
) -> anyhow::Result<()> {
    let changed: BTreeSet<String> = snapshot
        .docs_changed(scope, since)
        .await?
        .into_iter()
        .collect();
    let mut after = String::new();
    loop {
        let page = snapshot
            .docs(scope, &Which::After(after.clone(), IDS_PAGE))
            .await?;
        let Some(last) = page.last() else { break };
        after = last.id.clone();
        let full = page.len() == IDS_PAGE;
        let mut out = Vec::new();
        for doc in page {
            if !changed.contains(&doc.id) {
                line(&mut out, &DocKept { doc: doc.id });
                continue;
            }
            to.push(&std::mem::take(&mut out)).await?;
            let mut lines = DocLines::new(scope.clone(), doc);
            while let Some(page) = lines.next(snapshot, documents).await? {
                to.push(&page).await?;
            }
        }
        to.push(&out).await?;
        if !full {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purged_lines_are_known_by_their_start() {
        let mut out = Vec::new();
        line(
            &mut out,
            &Purged {
                entity: "e1".into(),
                at: "2026-12-04T00:00:00.000000Z".into(),
            },
        );
        assert!(Purged::is(&out));
        assert_eq!(serde_json::from_slice::<Purged>(&out).unwrap().entity, "e1");
        assert!(!Purged::is(br#"{"kind":"entity","id":"purged"}"#));
    }
}
