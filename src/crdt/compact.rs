//! Compaction: fold a document's log into one snapshot (a merge: see
//! `fold::snapshot`), store it, record it, then prune.
//!
//! Each step is idempotent and ordered so that a crash between any two loses
//! nothing and leaves nothing a rerun would apply twice: the snapshot is
//! stored before it is recorded (an unrecorded blob is only an orphan), and
//! updates are pruned only after a recorded snapshot covers them.

use super::{yrs_fault, CrdtConfig};
use crate::blob::{BlobError, BlobStore};
use crate::digest::sha256_hex;
use crate::domain::*;
use crate::store::Store;
use serde::Serialize;

/// The points between steps, for fault injection in tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Encoded,
    Stored,
    Recorded,
    Pruned,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Compacted {
    pub snapshot_seq: i64,
    pub bytes: i64,
    /// `inline` or `blob:<key>`.
    pub location: String,
    /// Stored updates that failed the update check and were moved to
    /// quarantine instead of being compacted.
    pub quarantined: usize,
}

/// The snapshot of many updates (see `fold::snapshot`).
pub fn snapshot_state(parts: Vec<Vec<u8>>) -> DomainResult<Vec<u8>> {
    super::fold::snapshot(parts).map_err(yrs_fault)
}

pub fn blob_key(scope: &Scope, doc: &str, covers_seq: i64) -> String {
    format!(
        "crdt/{}/{}/{}/{covers_seq:020}.ysnap",
        scope.org, scope.project, doc
    )
}

fn ago(d: std::time::Duration) -> String {
    crate::clock::format(chrono::Utc::now() - chrono::Duration::from_std(d).unwrap_or_default())
}

/// Compacts one document now. `fault` is called after each step (tests
/// inject crashes there; production passes `|_| Ok(())`).
pub async fn compact(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    config: &CrdtConfig,
    caller: &Caller,
    scope: &Scope,
    doc: &str,
    fault: &(dyn Fn(Step) -> DomainResult<()> + Sync),
) -> DomainResult<Compacted> {
    let log = store.doc_log(scope, doc, None).await?;
    let newest = log.snapshot.clone();
    let compacted = match (&newest, log.updates.last()) {
        // Nothing new since the newest snapshot: only pruning remains.
        (Some(s), None) => Compacted {
            snapshot_seq: s.covers_seq,
            bytes: s.size,
            location: location(&s.data),
            quarantined: 0,
        },
        (_, None) => {
            return Err(DomainError::not_found(format!(
                "document {doc} has no updates"
            )))
        }
        (_, Some(last)) => {
            let (covers_seq, covers_at) = (last.seq, last.at.clone());
            let folded = super::fold_log(store, blobs, scope, doc, &log, snapshot_state).await?;
            let (state, quarantined) = (folded.state, folded.quarantined);
            fault(Step::Encoded)?;
            let mut sha = sha256_hex(&state);
            let mut size = state.len() as i64;
            let data = if state.len() <= config.inline_max_bytes {
                SnapshotData::Inline(state)
            } else {
                let key = blob_key(scope, doc, covers_seq);
                match blobs.put(&key, state).await {
                    Ok(_) => {}
                    // A crashed earlier run stored it: use what is there.
                    Err(BlobError::Exists(_)) => {
                        let existing = blobs.get(&key).await.map_err(DomainError::internal)?;
                        sha = sha256_hex(&existing);
                        size = existing.len() as i64;
                    }
                    Err(e) => return Err(DomainError::Unavailable(format!("blob store: {e}"))),
                }
                SnapshotData::Blob(key)
            };
            fault(Step::Stored)?;
            let snapshot = DocSnapshot {
                covers_seq,
                covers_at,
                created_at: crate::clock::now(),
                size,
                sha256: sha,
                data,
            };
            let location = location(&snapshot.data);
            store.record_snapshot(scope, caller, doc, snapshot).await?;
            fault(Step::Recorded)?;
            Compacted {
                snapshot_seq: covers_seq,
                bytes: size,
                location,
                quarantined,
            }
        }
    };
    let unused = store
        .prune_doc(
            scope,
            doc,
            &ago(config.retention),
            &ago(config.keep_snapshots),
        )
        .await?;
    for key in unused {
        match blobs.delete(&key).await {
            Ok(()) | Err(BlobError::NotFound(_)) => {}
            Err(e) => tracing::warn!(key, error = %e, "could not delete an unused snapshot blob"),
        }
    }
    fault(Step::Pruned)?;
    Ok(compacted)
}

fn location(data: &SnapshotData) -> String {
    match data {
        SnapshotData::Inline(_) => "inline".into(),
        SnapshotData::Blob(key) => format!("blob:{key}"),
    }
}

/// What one pass of the compaction job did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CompactionRun {
    pub documents: usize,
    pub quarantined: usize,
    pub failed: usize,
}

impl std::fmt::Display for CompactionRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "compacted {} document(s), quarantined {} update(s), {} failed",
            self.documents, self.quarantined, self.failed
        )
    }
}

/// Compacts every document with uncompacted updates.
pub async fn compact_all(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    config: &CrdtConfig,
) -> DomainResult<CompactionRun> {
    let caller = Caller::new("compactor");
    let mut run = CompactionRun::default();
    for (scope, doc) in store.docs_to_compact(10_000).await? {
        // Another daemon is on it: skip, it is done either way.
        let Some(_lease) = store.lease_doc(&scope, &doc).await? else {
            continue;
        };
        match compact(store, blobs, config, &caller, &scope, &doc, &|_| Ok(())).await {
            Ok(c) => {
                run.documents += 1;
                run.quarantined += c.quarantined;
            }
            Err(DomainError::NotFound(_)) => {}
            Err(e) => {
                run.failed += 1;
                tracing::warn!(org = scope.org, project = scope.project, doc, error = %e, "compaction failed")
            }
        }
    }
    Ok(run)
}
