//! Search: full-text now; semantic and hybrid need an embedder (501).

use super::auth::{Authorized, Read};
use super::entities::ProjectPath;
use super::error::{ApiError, ApiResult};
use super::extract::{page_limit, Path, Query};
use super::openapi::Data;
use super::{data, AppState};
use crate::domain::{DomainError, SearchHit};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(search))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct SearchParams {
    /// The query text (at most 1024 bytes); never an operator.
    #[param(required = true)]
    q: Option<String>,
    /// `text` (default), `semantic` or `hybrid`.
    mode: Option<String>,
    /// Only entities of this type.
    #[serde(rename = "type")]
    entity_type: Option<String>,
    /// Most hits, 1 to 1000 (default 20).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// Full-text search over string properties (stemming, prefix, bm25 ranking).
#[utoipa::path(get, path = "/v1/orgs/{org}/projects/{project}/search", tag = "search",
    params(ProjectPath, SearchParams), security(("api_key" = ["read"])),
    responses((status = 200, description = "hits, best first", body = Data<Vec<SearchHit>>),
        (status = 501, description = "not_implemented: this mode is not served here")))]
async fn search(
    State(s): State<AppState>,
    _: Authorized<Read>,
    Path(p): Path<ProjectPath>,
    Query(q): Query<SearchParams>,
) -> ApiResult<Response> {
    let text =
        q.q.filter(|t| !t.trim().is_empty())
            .ok_or_else(|| ApiError::bad_request("q is required"))?;
    if text.len() > 1024 {
        return Err(ApiError::bad_request("q is longer than 1024 bytes"));
    }
    let limit = page_limit(q.limit, 20, 1000)?;
    match q.mode.as_deref().unwrap_or("text") {
        "text" => {}
        "semantic" | "hybrid" => {
            return Err(DomainError::NotImplemented(
                "semantic and hybrid search need an embedding service, which this configuration does not have".into(),
            )
            .into());
        }
        _ => {
            return Err(ApiError::bad_request(
                "mode must be text, semantic or hybrid",
            ))
        }
    }
    let hits = s
        .store
        .search_text(&p.scope(), &text, q.entity_type.as_deref(), limit)
        .await?;
    Ok(data(StatusCode::OK, hits))
}
