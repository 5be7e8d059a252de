//! Exports as NDJSON (`domain::export`): a project's or a whole org's rows
//! streamed a page at a time, so memory stays constant at any size. The
//! HTTP routes and `strata export` both write these streams.

use crate::domain::export::{ExportRecord, ProjectRecord};
use crate::domain::{DomainResult, PageRequest, Project, Scope};
use crate::store::DynStore;
use bytes::Bytes;
use futures_util::stream::{self, Stream, StreamExt};

/// Rows read per store call.
const PAGE: usize = 500;

/// Where a project's export has got to.
enum Next {
    Project(Project),
    Entities(String),
    Relationships(String),
    Done,
}

/// One project's lines, each chunk a page of them.
pub fn project(store: DynStore, project: Project) -> impl Stream<Item = DomainResult<Bytes>> {
    let scope = Scope::new(project.org.clone(), project.id.clone());
    stream::unfold(Next::Project(project), move |next| {
        let (store, scope) = (store.clone(), scope.clone());
        async move {
            let mut out = Vec::new();
            let step = match next {
                Next::Done => return None,
                Next::Project(p) => {
                    line(
                        &mut out,
                        &ExportRecord::Project(ProjectRecord {
                            org: p.org,
                            id: p.id,
                            name: p.name,
                            created_at: p.created_at,
                        }),
                    );
                    Ok(Next::Entities(String::new()))
                }
                Next::Entities(after) => {
                    store
                        .export_entities(&scope, &after, PAGE)
                        .await
                        .map(|page| {
                            let next = match page.last() {
                                Some(last) if page.len() == PAGE => {
                                    Next::Entities(last.entity.id.clone())
                                }
                                _ => Next::Relationships(String::new()),
                            };
                            for e in page {
                                line(&mut out, &ExportRecord::Entity(e.entity));
                                for v in e.versions {
                                    line(&mut out, &ExportRecord::Version(v));
                                }
                            }
                            next
                        })
                }
                Next::Relationships(after) => store
                    .export_relationships(&scope, &after, PAGE)
                    .await
                    .map(|page| {
                        let next = match page.last() {
                            Some(last) if page.len() == PAGE => {
                                Next::Relationships(last.relationship.id.clone())
                            }
                            _ => Next::Done,
                        };
                        for r in page {
                            line(&mut out, &ExportRecord::Relationship(r));
                        }
                        next
                    }),
            };
            Some(match step {
                // An error ends the stream after it is passed on.
                Ok(next) => (Ok(Bytes::from(out)), next),
                Err(e) => (Err(e), Next::Done),
            })
        }
    })
}

/// Every project of an org, one after another (by id).
pub async fn org(
    store: DynStore,
    org: &str,
) -> DomainResult<impl Stream<Item = DomainResult<Bytes>>> {
    store.get_org(org).await?;
    let mut projects = Vec::new();
    let mut page = PageRequest {
        cursor: None,
        limit: 1000,
    };
    loop {
        let found = store.list_projects(org, &page).await?;
        projects.extend(found.items);
        match found.next_cursor {
            Some(cursor) => page.cursor = Some(cursor),
            None => break,
        }
    }
    Ok(stream::iter(projects).flat_map(move |p| project(store.clone(), p)))
}

fn line(out: &mut Vec<u8>, record: &ExportRecord) {
    serde_json::to_writer(&mut *out, record).expect("records serialise");
    out.push(b'\n');
}
