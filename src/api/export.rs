//! Exports as NDJSON (`crate::export`): a project's rows, or every project
//! of an org, history and deleted rows included, streamed.

use super::auth::{Authorized, Read};
use super::entities::ProjectPath;
use super::error::ApiResult;
use super::extract::Path;
use super::tenancy::OrgPath;
use super::AppState;
use crate::domain::export::ExportRecord;
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(export_project))
        .routes(routes!(export_org))
}

const NDJSON: &str = "application/x-ndjson";

/// The project as NDJSON, one record per line: the project, each entity
/// followed by its versions, then the relationships (`kind` names each).
#[utoipa::path(get, path = "/v1/orgs/{org}/projects/{project}/export", tag = "export",
    params(ProjectPath),
    security(("api_key" = ["read"])),
    responses((status = 200, description = "the project's records, one JSON object per line",
        content((ExportRecord = "application/x-ndjson")))))]
async fn export_project(
    State(s): State<AppState>,
    _: Authorized<Read>,
    Path(p): Path<ProjectPath>,
) -> ApiResult<Response> {
    let lines = crate::export::project(&s.store, s.blobs.clone(), &p.org, &p.project).await?;
    Ok(ndjson(lines))
}

/// The org as NDJSON: its `org` line, then every project (by id), each in
/// the shape of the project export.
#[utoipa::path(get, path = "/v1/orgs/{org}/export", tag = "export",
    params(OrgPath),
    security(("api_key" = ["read"])),
    responses((status = 200, description = "the org's records, one JSON object per line",
        content((ExportRecord = "application/x-ndjson")))))]
async fn export_org(
    State(s): State<AppState>,
    _: Authorized<Read>,
    Path(p): Path<OrgPath>,
) -> ApiResult<Response> {
    let lines = crate::export::org(&s.store, s.blobs.clone(), &p.org).await?;
    Ok(ndjson(lines))
}

/// A streamed body: a store error midway ends it early (the status is sent).
fn ndjson<S, E>(lines: S) -> Response
where
    S: Stream<Item = Result<bytes::Bytes, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    ([(header::CONTENT_TYPE, NDJSON)], Body::from_stream(lines)).into_response()
}
