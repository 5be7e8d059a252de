//! Gateway ingest: Yjs updates for several documents of a project in one
//! binary body (`crdt::batch`), stored all or none through the group commit
//! (`crdt::commit`: one transaction, one fsync for them and for other
//! writers' updates) and relayed to each document's live connections once
//! durable.

use super::auth::{Authorized, Write};
use super::docs::{origin, Appended};
use super::entities::ProjectPath;
use super::error::{ApiError, ApiResult};
use super::extract::{body_error, media_type, Path};
use super::openapi::Data;
use super::{data, AppState};
use crate::crdt::{self, batch};
use crate::domain::{validate, DocAppend, DomainError};
use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
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
    let appends = docs
        .into_iter()
        .map(|d| DocAppend {
            scope: scope.clone(),
            doc: d.doc,
            updates: d.updates,
            origin: origin.clone(),
        })
        .collect::<Vec<_>>();
    let names: Vec<String> = appends.iter().map(|a| a.doc.clone()).collect();
    let seqs = s.commits.append(appends, 0).await?;
    let appended: Vec<_> = names
        .into_iter()
        .zip(seqs)
        .map(|(doc, (first, last))| Appended {
            doc,
            first_seq: first,
            last_seq: last,
        })
        .collect();
    Ok(data(StatusCode::CREATED, appended))
}

/// An error about one document of the batch, named.
fn at_doc(index: usize, doc: &str, e: DomainError) -> DomainError {
    DomainError::BadRequest(format!("document {index} ({doc:?}): {e}"))
}
