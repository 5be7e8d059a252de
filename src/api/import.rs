//! Imports of NDJSON exports into a project (`crate::import`): the body is
//! streamed to a temporary file (up to `STRATA_IMPORT_LIMIT`: the body
//! limit and the request timeout do not apply to this route), checked
//! whole, then stored.

use super::auth::{Authorized, Write};
use super::entities::ProjectPath;
use super::error::{ApiError, ApiResult};
use super::extract::{Path, Query};
use super::openapi::Data;
use super::{data, AppState};
use crate::import::{ImportReport, Target};
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(import_project))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ImportParams {
    /// Store the good lines and report each bad one (by default a bad line
    /// is a 400 and nothing is stored).
    continue_on_error: Option<bool>,
    /// `ndjson` (the default): export records. `flat`: one JSON object
    /// `{"nodes": [...], "edges": [...]}`, nodes with `id`, `type` and
    /// properties, edges with `from`, `to`, `type` (README, Moving data).
    format: Option<ImportFormat>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
enum ImportFormat {
    Ndjson,
    Flat,
}

/// Import an export (NDJSON, the shape `GET .../export` streams) into the
/// project: rows it lacks are created, rows it holds at an older version
/// are brought up to the file's, rows it holds already are unchanged, and
/// rows it holds at a newer or different version fail (reported by line).
/// Idempotent: importing the same file again changes nothing.
#[utoipa::path(post, path = "/v1/orgs/{org}/projects/{project}/import", tag = "export",
    params(ProjectPath, ImportParams),
    request_body(description = "export records, one JSON object per line; with `format=flat`, one nodes-and-edges object",
        content((String = "application/x-ndjson"), (Object = "application/json"))),
    security(("api_key" = ["write"])),
    responses((status = 200, description = "what the import did", body = Data<ImportReport>),
        (status = 400, description = "bad_request: a bad line (`details.line`); nothing stored"),
        (status = 413, description = "payload_too_large: the body is over STRATA_IMPORT_LIMIT")))]
async fn import_project(
    State(s): State<AppState>,
    who: Authorized<Write>,
    Path(p): Path<ProjectPath>,
    Query(q): Query<ImportParams>,
    body: Body,
) -> ApiResult<Response> {
    s.store.get_project(&p.org, &p.project).await?;
    let spooled = spool(body, s.config.import_limit).await?;
    let continue_on_error = q.continue_on_error.unwrap_or(false);
    let (store, scope, caller) = (s.store.clone(), p.scope(), who.caller().clone());
    let format = q.format.unwrap_or(ImportFormat::Ndjson);
    // The import runs to its end in a task of its own: a client that goes
    // away drops this handler, which must not cut the import between two
    // batches or skip its finish (which builds deferred indexes).
    let import = tokio::spawn(async move {
        match format {
            ImportFormat::Ndjson => {
                let target = Target::Project(scope);
                crate::import::run(&store, &target, &spooled, &caller, continue_on_error).await
            }
            ImportFormat::Flat => {
                let quiet = &crate::import::Quiet;
                crate::import::run_flat(&store, &scope, &spooled, &caller, continue_on_error, quiet)
                    .await
            }
        }
    });
    let report = import
        .await
        .map_err(crate::domain::DomainError::internal)??;
    Ok(data(StatusCode::OK, report))
}

/// Writes the body to a temporary file, deleted when dropped; a body over
/// `limit` bytes is refused (413) before it fills the disk.
async fn spool(body: Body, limit: u64) -> ApiResult<tempfile::TempPath> {
    let internal = |e: std::io::Error| ApiError::from(crate::domain::DomainError::internal(e));
    let path = tempfile::NamedTempFile::new()
        .map_err(internal)?
        .into_temp_path();
    let mut file = tokio::fs::File::create(&path).await.map_err(internal)?;
    let mut chunks = body.into_data_stream();
    let mut written = 0u64;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
        written += chunk.len() as u64;
        if written > limit {
            return Err(ApiError::PayloadTooLarge(
                usize::try_from(limit).unwrap_or(usize::MAX),
            ));
        }
        file.write_all(&chunk).await.map_err(internal)?;
    }
    file.flush().await.map_err(internal)?;
    Ok(path)
}
