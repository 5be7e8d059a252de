//! Operations: health, metrics, the OpenAPI document, scheduled jobs.

use super::auth::GlobalAdmin;
use super::error::ApiResult;
use super::extract::Path;
use super::openapi::Data;
use super::{data, AppState};
use crate::domain::DomainError;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(live))
        .routes(routes!(ready))
        .routes(routes!(metrics))
        .routes(routes!(openapi))
        .routes(routes!(list_jobs))
        .routes(routes!(run_job))
}

/// 200 while the process runs.
/// A health answer.
#[derive(Serialize, utoipa::ToSchema)]
struct Health {
    /// `ok`.
    status: &'static str,
    /// Each service checked (`store`, `meilisearch` when configured): `ok`; `consumers`: each change-feed
    /// consumer's leadership, position and lag as this daemon sees it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    checks: Option<serde_json::Value>,
}

#[utoipa::path(get, path = "/health/live", tag = "operations", responses((status = 200, description = "alive", body = Health)))]
async fn live() -> Response {
    Json(Health {
        status: "ok",
        checks: None,
    })
    .into_response()
}

/// 200 when the store and each configured service answer, else 503 naming
/// what failed.
#[utoipa::path(get, path = "/health/ready", tag = "operations",
    responses((status = 200, description = "ready", body = Health),
        (status = 503, description = "unavailable: details.failed names what failed")))]
async fn ready(State(s): State<AppState>) -> Response {
    let mut checks = serde_json::Map::new();
    let mut failed = Vec::new();
    match s.store.ping().await {
        Ok(()) => {
            checks.insert("store".into(), json!("ok"));
        }
        Err(e) => {
            tracing::warn!(error = %e, "readiness: the store is not answering");
            failed.push("store");
        }
    }
    if let Some(index) = &s.meili {
        match index.health().await {
            Ok(()) => {
                checks.insert("meilisearch".into(), json!("ok"));
            }
            Err(e) => {
                tracing::warn!(error = %e, "readiness: Meilisearch is not answering");
                failed.push("meilisearch");
            }
        }
    }
    if failed.is_empty() {
        checks.insert("consumers".into(), json!(s.feed.report()));
        return Json(Health {
            status: "ok",
            checks: Some(checks.into()),
        })
        .into_response();
    }
    let body = super::error::error_body(
        "unavailable",
        &format!("not answering: {}", failed.join(", ")),
        Some(json!({ "failed": failed, "backend": s.store.backend() })),
    );
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

/// Prometheus text.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text", content_type = "text/plain", body = String)))]
async fn metrics(State(s): State<AppState>) -> Response {
    let text_index = s.text_index.as_ref().map(|i| i.report());
    let text = s.metrics.render(
        s.store.cache_stats(),
        &s.feed.report(),
        text_index,
        s.store.backend(),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1", body = Object)))]
async fn openapi(State(s): State<AppState>) -> Response {
    Json(s.openapi.as_ref().clone()).into_response()
}

/// Scheduled jobs: schedule, last run, outcome, next run.
#[utoipa::path(get, path = "/v1/admin/jobs", tag = "operations", security(("api_key" = ["global_admin"])),
    responses((status = 200, description = "each job", body = Data<Vec<crate::jobs::JobStatus>>)))]
async fn list_jobs(State(s): State<AppState>, _: GlobalAdmin) -> ApiResult<Response> {
    Ok(data(StatusCode::OK, s.jobs.list().await))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
struct JobPath {
    /// Job name (`compact_docs`, `checkpoint`, ...).
    name: String,
}

/// Run a job now.
#[utoipa::path(post, path = "/v1/admin/jobs/{name}/run", tag = "operations", params(JobPath),
    security(("api_key" = ["global_admin"])),
    responses((status = 200, description = "the run's outcome", body = Data<crate::jobs::JobRun>),
        (status = 404, description = "not_found: no such job")))]
async fn run_job(
    State(s): State<AppState>,
    _: GlobalAdmin,
    Path(p): Path<JobPath>,
) -> ApiResult<Response> {
    let run = s
        .jobs
        .run_now(&p.name)
        .await
        .ok_or_else(|| DomainError::not_found(format!("job {}", p.name)))?;
    Ok(data(StatusCode::OK, run))
}
