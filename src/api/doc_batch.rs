//! Gateway ingest: Yjs updates for several documents of a project in one
//! binary body (`crdt::batch`), stored in one transaction (one commit, one
//! fsync for all of them) and relayed to each document's live connections
//! once durable.

use super::auth::{Authorized, Write};
use super::docs::{origin, Appended};
use super::entities::ProjectPath;
use super::error::{ApiError, ApiResult};
use super::extract::{body_error, media_type, Path};
use super::openapi::Data;
use super::{data, AppState};
use crate::crdt::{self, batch, sync};
use crate::domain::{validate, DomainError};
use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The batch's media type.
pub const BATCH_TYPE: &str = "application/vnd.strata.yjs-batch";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(append_batch))
}

/// Append updates to several documents at once (gateways). The body is
/// frames of lib0 encoding, `varString(doc) varUint8Array(update)`, at
/// most 10,000; each document's updates keep their order. All are checked
/// before any is stored, and all are stored in one transaction.
#[utoipa::path(post, path = "/v1/orgs/{org}/projects/{project}/doc-updates", tag = "docs",
    params(ProjectPath, ("X-Strata-Origin" = Option<String>, Header, description = "the gateway the updates come from")),
    request_body(description = "frames of varString(doc) varUint8Array(Yjs update v1)",
        content(("application/vnd.strata.yjs-batch"))),
    security(("api_key" = ["write"])),
    responses((status = 201, description = "durable: each document's sequence numbers, in the order each first appears", body = Data<Vec<Appended>>),
        (status = 400, description = "bad_request: a frame is malformed, names a bad document id or holds an invalid update (the message names the frame); nothing stored"),
        (status = 415, description = "unsupported_media_type: the body is not application/vnd.strata.yjs-batch")))]
async fn append_batch(
    State(s): State<AppState>,
    _: Authorized<Write>,
    Path(p): Path<ProjectPath>,
    req: Request,
) -> ApiResult<Response> {
    let scope = p.scope();
    if media_type(req.headers()).as_deref() != Some(BATCH_TYPE) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "send the frames as {BATCH_TYPE}"
        )));
    }
    let origin = origin(req.headers());
    let body = Bytes::from_request(req, &s).await.map_err(body_error)?;
    let docs = batch::decode(&body, s.crdt.max_update_bytes)
        .map_err(|e| DomainError::BadRequest(format!("the batch: {e}")))?;
    for (i, d) in docs.iter().enumerate() {
        validate::id("doc", &d.doc).map_err(|e| at_doc(i, &d.doc, e))?;
        for u in &d.updates {
            crdt::validate_update(u).map_err(|e| at_doc(i, &d.doc, e))?;
        }
    }
    let stored: usize = docs.iter().map(|d| d.updates.len()).sum();
    let pairs = docs
        .iter()
        .map(|d| (d.doc.clone(), d.updates.clone()))
        .collect();
    let seqs = s.store.append_batch(&scope, pairs, origin).await?;
    crdt::UPDATES_STORED.fetch_add(stored as u64, Relaxed);
    let mut appended = Vec::with_capacity(docs.len());
    for (d, (first, last)) in docs.into_iter().zip(seqs) {
        for update in d.updates {
            let relay = sync::Relay {
                from: 0,
                message: Arc::new(sync::update(update)),
            };
            s.hub.publish(&scope, &d.doc, relay);
        }
        appended.push(Appended {
            doc: d.doc,
            first_seq: first,
            last_seq: last,
        });
    }
    Ok(data(StatusCode::CREATED, appended))
}

/// An error about one document of the batch, named.
fn at_doc(index: usize, doc: &str, e: DomainError) -> DomainError {
    DomainError::BadRequest(format!("document {index} ({doc:?}): {e}"))
}
