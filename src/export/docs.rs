//! A document's export lines, a page at a time: its row, each snapshot
//! (the state read from the blob store when it is kept there, its checksum
//! verified), then its retained updates by sequence. Exports and backups
//! both write them; memory holds one snapshot or one page of updates.

use super::line;
use crate::blob::BlobStore;
use crate::domain::export::{DocSnapshotRecord, DocUpdateRecord, ExportRecord};
use crate::domain::{DocInfo, DocSnapshot, DomainResult, Scope};
use crate::store::Snapshot;
use std::collections::VecDeque;

/// Updates read per call (each up to the update size limit).
const UPDATES_PAGE: usize = 100;

pub struct DocLines {
    scope: Scope,
    doc: String,
    step: Step,
}

enum Step {
    Row(DocInfo),
    Snapshots(VecDeque<DocSnapshot>),
    Updates { after: i64 },
    Done,
}

impl DocLines {
    pub fn new(scope: Scope, doc: DocInfo) -> Self {
        DocLines {
            scope,
            doc: doc.id.clone(),
            step: Step::Row(doc),
        }
    }

    /// The document's id.
    pub fn doc(&self) -> &str {
        &self.doc
    }

    /// The next lines, None once all are written.
    pub async fn next(
        &mut self,
        snapshot: &dyn Snapshot,
        blobs: &dyn BlobStore,
    ) -> DomainResult<Option<Vec<u8>>> {
        let mut out = Vec::new();
        match std::mem::replace(&mut self.step, Step::Done) {
            Step::Done => return Ok(None),
            Step::Row(info) => {
                line(&mut out, &ExportRecord::Doc(info));
                let kept = snapshot.doc_snapshots(&self.scope, &self.doc).await?;
                self.step = Step::Snapshots(kept.into());
            }
            Step::Snapshots(mut kept) => match kept.pop_front() {
                None => self.step = Step::Updates { after: 0 },
                Some(s) => {
                    let state = crate::crdt::snapshot_bytes(blobs, &s).await?;
                    let record = DocSnapshotRecord {
                        doc: self.doc.clone(),
                        covers_seq: s.covers_seq,
                        covers_at: s.covers_at,
                        created_at: s.created_at,
                        sha256: s.sha256,
                        state,
                    };
                    line(&mut out, &ExportRecord::DocSnapshot(record));
                    self.step = Step::Snapshots(kept);
                }
            },
            Step::Updates { after } => {
                let page = snapshot
                    .doc_updates(&self.scope, &self.doc, after, UPDATES_PAGE)
                    .await?;
                if let Some(last) = page.last().filter(|_| page.len() == UPDATES_PAGE) {
                    self.step = Step::Updates { after: last.seq };
                }
                for u in page {
                    let record = DocUpdateRecord {
                        doc: self.doc.clone(),
                        seq: u.seq,
                        update: u.bytes,
                        origin: u.origin,
                        at: u.at,
                    };
                    line(&mut out, &ExportRecord::DocUpdate(record));
                }
            }
        }
        Ok(Some(out))
    }
}
