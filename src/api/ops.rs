//! Operations: health, metrics, the OpenAPI document, scheduled jobs.

use super::auth::GlobalAdmin;
use super::error::ApiResult;
use super::extract::Path;
use super::{data, AppState};
use crate::domain::DomainError;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
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
#[utoipa::path(get, path = "/health/live", tag = "operations", responses((status = 200, description = "alive")))]
async fn live() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

/// 200 when the store answers, else 503 naming what failed.
#[utoipa::path(get, path = "/health/ready", tag = "operations",
    responses((status = 200, description = "ready"), (status = 503, description = "a service failed")))]
async fn ready(State(s): State<AppState>) -> Response {
    match s.store.ping().await {
        Ok(()) => Json(json!({ "status": "ok", "checks": { "store": "ok" } })).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            let body = super::error::error_body(
                "unavailable",
                "store is not answering",
                Some(json!({ "failed": ["store"], "backend": s.store.backend() })),
            );
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

/// Prometheus text.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text")))]
async fn metrics(State(s): State<AppState>) -> Response {
    let text = s.metrics.render(s.store.cache_stats(), s.store.backend());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "OpenAPI 3")))]
async fn openapi(State(s): State<AppState>) -> Response {
    Json(s.openapi.as_ref().clone()).into_response()
}

/// Scheduled jobs: schedule, last run, outcome, next run.
#[utoipa::path(get, path = "/v1/admin/jobs", tag = "operations", responses((status = 200, description = "jobs")))]
async fn list_jobs(State(s): State<AppState>, _: GlobalAdmin) -> ApiResult<Response> {
    Ok(data(StatusCode::OK, s.jobs.list().await))
}

#[derive(Deserialize)]
struct JobPath {
    name: String,
}

/// Run a job now.
#[utoipa::path(post, path = "/v1/admin/jobs/{name}/run", tag = "operations",
    responses((status = 200, description = "the run's outcome"), (status = 404, description = "no such job")))]
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
