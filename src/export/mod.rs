//! Exports as NDJSON (`domain::export`): a project's, an org's or the whole
//! store's rows, read through one `Snapshot` (so the lines agree with each
//! other however long the stream takes) and streamed a page at a time, so
//! memory stays constant at any size. The HTTP routes, `strata export` and
//! backups all write these streams.

mod docs;

pub use docs::DocLines;

use crate::blob::BlobStore;
use crate::domain::export::{ExportRecord, ProjectRecord};
use crate::domain::{DomainResult, Org, Project, Scope};
use crate::store::{DynStore, Snapshot, Which};
use bytes::Bytes;
use futures_util::stream::{self, Stream};
use std::sync::Arc;

/// Rows read per store call.
const PAGE: usize = 500;

/// What an export holds, in order: an org line, or a project and its rows.
#[derive(Debug, Clone)]
pub enum Part {
    Org(Org),
    Project(Project),
}

/// One project's lines (no org line: a project export goes into any org).
pub async fn project(
    store: &DynStore,
    blobs: Arc<dyn BlobStore>,
    org: &str,
    project: &str,
) -> DomainResult<impl Stream<Item = DomainResult<Bytes>>> {
    // Answers for the project (404) before the stream starts.
    let p = store.get_project(org, project).await?;
    let snapshot: Arc<dyn Snapshot> = store.snapshot().await?.into();
    Ok(lines(snapshot, blobs, vec![Part::Project(p)]))
}

/// The org line, then every project of the org (by id).
pub async fn org(
    store: &DynStore,
    blobs: Arc<dyn BlobStore>,
    org: &str,
) -> DomainResult<impl Stream<Item = DomainResult<Bytes>>> {
    store.get_org(org).await?;
    let snapshot: Arc<dyn Snapshot> = store.snapshot().await?.into();
    let parts = parts(snapshot.as_ref(), Some(org)).await?;
    Ok(lines(snapshot, blobs, parts))
}

/// What the snapshot holds: each org (all, or the one named) followed by
/// its projects.
pub async fn parts(snapshot: &dyn Snapshot, only: Option<&str>) -> DomainResult<Vec<Part>> {
    let mut parts = Vec::new();
    for org in snapshot.orgs().await? {
        if only.is_some_and(|o| o != org.id) {
            continue;
        }
        let projects = snapshot.projects(&org.id).await?;
        parts.push(Part::Org(org));
        parts.extend(projects.into_iter().map(Part::Project));
    }
    Ok(parts)
}

/// Where the export has got to.
enum Next {
    Part,
    Entities(Scope, String),
    Relationships(Scope, String),
    /// The document after this id.
    Docs(Scope, String),
    Doc(Scope, DocLines),
}

/// The lines of `parts`, each stream item a page of them.
pub fn lines(
    snapshot: Arc<dyn Snapshot>,
    blobs: Arc<dyn BlobStore>,
    parts: Vec<Part>,
) -> impl Stream<Item = DomainResult<Bytes>> {
    let state = (snapshot, blobs, parts.into_iter(), Some(Next::Part));
    stream::unfold(state, |(snapshot, blobs, mut parts, next)| async move {
        let mut out = Vec::new();
        let step = match next? {
            Next::Part => match parts.next() {
                None => return None,
                Some(Part::Org(org)) => {
                    line(&mut out, &ExportRecord::Org(org));
                    Ok(Some(Next::Part))
                }
                Some(Part::Project(p)) => {
                    let scope = Scope::new(p.org.clone(), p.id.clone());
                    line(
                        &mut out,
                        &ExportRecord::Project(ProjectRecord {
                            org: p.org,
                            id: p.id,
                            name: p.name,
                            created_at: p.created_at,
                        }),
                    );
                    Ok(Some(Next::Entities(scope, String::new())))
                }
            },
            Next::Entities(scope, after) => snapshot
                .entities(&scope, &Which::After(after, PAGE))
                .await
                .map(|page| {
                    let next = match page.last() {
                        Some(last) if page.len() == PAGE => {
                            Next::Entities(scope.clone(), last.entity.id.clone())
                        }
                        _ => Next::Relationships(scope.clone(), String::new()),
                    };
                    for e in page {
                        line(&mut out, &ExportRecord::Entity(e.entity));
                        for v in e.versions {
                            line(&mut out, &ExportRecord::Version(v));
                        }
                    }
                    Some(next)
                }),
            Next::Relationships(scope, after) => snapshot
                .relationships(&scope, &Which::After(after, PAGE))
                .await
                .map(|page| {
                    let next = match page.last() {
                        Some(last) if page.len() == PAGE => {
                            Next::Relationships(scope.clone(), last.relationship.id.clone())
                        }
                        _ => Next::Docs(scope.clone(), String::new()),
                    };
                    for r in page {
                        line(&mut out, &ExportRecord::Relationship(r));
                    }
                    Some(next)
                }),
            Next::Docs(scope, after) => {
                snapshot
                    .docs(&scope, &Which::After(after, 1))
                    .await
                    .map(|mut found| match found.pop() {
                        Some(doc) => Some(Next::Doc(scope.clone(), DocLines::new(scope, doc))),
                        None => Some(Next::Part),
                    })
            }
            Next::Doc(scope, mut doc) => match doc.next(snapshot.as_ref(), blobs.as_ref()).await {
                Ok(Some(lines)) => {
                    out = lines;
                    Ok(Some(Next::Doc(scope, doc)))
                }
                Ok(None) => Ok(Some(Next::Docs(scope, doc.doc().to_owned()))),
                Err(e) => Err(e),
            },
        };
        Some(match step {
            Ok(next) => (Ok(Bytes::from(out)), (snapshot, blobs, parts, next)),
            // An error ends the stream after it is passed on.
            Err(e) => (Err(e), (snapshot, blobs, parts, None)),
        })
    })
}

/// Appends `record` as one NDJSON line (exports, backups, restores).
pub fn line<T: serde::Serialize>(out: &mut Vec<u8>, record: &T) {
    serde_json::to_writer(&mut *out, record).expect("records serialise");
    out.push(b'\n');
}
