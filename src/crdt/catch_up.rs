//! What a live connection is sent when it starts, and when it falls behind
//! its document's relays: the updates after its position in the log, as
//! one update, rather than the document's whole state (which a busy
//! document would otherwise rebuild and resend for every straggler).

use super::{merge, run_blocking, state};
use crate::blob::BlobStore;
use crate::domain::{DomainError, DomainResult, Scope};
use crate::store::Store;

/// Updates a catch-up reads from the log at most; further behind, the
/// whole state is cheaper (and bounded by the document's size).
const LOG_PAGE: usize = 1000;

/// A catch-up: one update, and the last sequence number it covers.
#[derive(Debug)]
pub struct CatchUp {
    /// None when the connection lacks nothing.
    pub update: Option<Vec<u8>>,
    pub through: i64,
}

/// The document's whole state and the last sequence number it includes;
/// the empty document (seq 0) if never written.
pub async fn whole(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    scope: &Scope,
    doc: &str,
) -> DomainResult<(Vec<u8>, i64)> {
    match store.doc_log(scope, doc, None).await {
        Ok(log) => Ok((state(store, blobs, scope, doc, &log).await?, log.last_seq)),
        Err(DomainError::NotFound(_)) => Ok((vec![0, 0], 0)),
        Err(e) => Err(e),
    }
}

/// What a connection that has every update through `after` (or an unknown
/// part, `None`) lacks: from the log when it holds every update after
/// `after` within one page; otherwise the whole state. Its own updates come
/// along (Yjs ignores what it has): an origin is no proof of whose they
/// are, since HTTP writers name their own.
pub async fn catch_up(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    scope: &Scope,
    doc: &str,
    after: Option<i64>,
) -> DomainResult<CatchUp> {
    if let Some(after) = after {
        let page = store.list_doc_updates(scope, doc, after, LOG_PAGE).await?;
        // A gap (pruned or quarantined updates) or more than a page: the
        // log cannot say everything the connection lacks.
        let contiguous = page.first().is_none_or(|u| u.seq == after + 1);
        if contiguous && page.len() < LOG_PAGE {
            let through = page.last().map_or(after, |u| u.seq);
            let parts: Vec<Vec<u8>> = page.into_iter().map(|u| u.bytes).collect();
            let update = match parts.len() {
                0 => None,
                1 => parts.into_iter().next(),
                _ => Some(run_blocking(move || merge(parts)).await?),
            };
            return Ok(CatchUp { update, through });
        }
    }
    let (state, through) = whole(store, blobs, scope, doc).await?;
    Ok(CatchUp {
        update: Some(state),
        through,
    })
}
