//! Operations: health (liveness, and readiness: each configured service
//! asked at once with a short timeout), metrics, the OpenAPI document,
//! scheduled jobs.

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
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::future::Future;
use std::time::Duration;
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

/// A health answer.
#[derive(Serialize, utoipa::ToSchema)]
struct Health {
    /// `ok`.
    status: &'static str,
    /// Each service checked: `store`, `blob_store`, `age` (PostgreSQL with
    /// AGE), `meilisearch` and `ollama` (when configured), each `ok`; and
    /// `consumers`: each change-feed consumer's leadership, position and
    /// lag as this daemon sees it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    checks: Option<serde_json::Value>,
}

/// 200 while the process runs.
#[utoipa::path(get, path = "/health/live", tag = "operations", responses((status = 200, description = "alive", body = Health)))]
async fn live() -> Response {
    Json(Health {
        status: "ok",
        checks: None,
    })
    .into_response()
}

/// How long readiness waits for each service; they are asked at once, so
/// a readiness answer takes at most about this long.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What one service's check found.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Found {
    Ok,
    Failed,
    TimedOut,
    /// The service is not part of this daemon (AGE on a store without it).
    Absent,
}

impl Found {
    fn as_str(self) -> &'static str {
        match self {
            Found::Ok => "ok",
            Found::Failed => "failed",
            Found::TimedOut => "timed out",
            Found::Absent => "absent",
        }
    }
}

/// A check's answer: `None` when the service is absent, else its outcome
/// with the cause of a failure (for the log only).
type Answer = Option<Result<(), String>>;

/// Runs one check within `CHECK_TIMEOUT`; a failure's cause is logged,
/// never sent.
async fn check(name: &'static str, answer: impl Future<Output = Answer>) -> (&'static str, Found) {
    let found = match tokio::time::timeout(CHECK_TIMEOUT, answer).await {
        Ok(None) => Found::Absent,
        Ok(Some(Ok(()))) => Found::Ok,
        Ok(Some(Err(error))) => {
            tracing::warn!(service = name, error, "readiness: not answering");
            Found::Failed
        }
        Err(_) => {
            tracing::warn!(
                service = name,
                timeout_secs = CHECK_TIMEOUT.as_secs(),
                "readiness: no answer in time"
            );
            Found::TimedOut
        }
    };
    (name, found)
}

/// 200 when the store and each configured service answer, else 503 naming
/// what failed. Every service is asked at once, each for at most
/// `CHECK_TIMEOUT`.
#[utoipa::path(get, path = "/health/ready", tag = "operations",
    responses((status = 200, description = "ready", body = Health),
        (status = 503, description = "unavailable: details.failed names what failed, details.checks what each service answered (`ok`, `failed`, `timed out`)")))]
async fn ready(State(s): State<AppState>) -> Response {
    let text = |e: &dyn std::fmt::Display| e.to_string();
    let mut checks: Vec<BoxFuture<'_, (&'static str, Found)>> = vec![
        Box::pin(check("store", async {
            Some(s.store.ping().await.map_err(|e| text(&e)))
        })),
        Box::pin(check("blob_store", async {
            Some(s.blobs.ping().await.map_err(|e| text(&e)))
        })),
        Box::pin(check("age", async {
            s.store.ping_age().await.map(|r| r.map_err(|e| text(&e)))
        })),
    ];
    if let Some(index) = &s.meili {
        checks.push(Box::pin(check("meilisearch", async {
            Some(index.health().await.map_err(|e| text(&e)))
        })));
    }
    // The local model runs in the process: only Ollama is a service.
    if let (Some(_), Some(embedder)) = (&s.config.embed.ollama_url, &s.embedder) {
        checks.push(Box::pin(check("ollama", async {
            Some(embedder.ping().await.map_err(|e| text(&e)))
        })));
    }
    let found = futures_util::future::join_all(checks).await;
    let mut states = serde_json::Map::new();
    let mut failed = Vec::new();
    for (name, f) in found.into_iter().filter(|(_, f)| *f != Found::Absent) {
        states.insert(name.into(), json!(f.as_str()));
        match f {
            Found::Ok | Found::Absent => {}
            Found::Failed => failed.push((name, name.to_string())),
            Found::TimedOut => failed.push((name, format!("{name} (timed out)"))),
        }
    }
    if failed.is_empty() {
        states.insert("consumers".into(), json!(s.feed.report()));
        return Json(Health {
            status: "ok",
            checks: Some(states.into()),
        })
        .into_response();
    }
    let said: Vec<String> = failed.iter().map(|(_, said)| said.clone()).collect();
    let names: Vec<&str> = failed.iter().map(|(name, _)| *name).collect();
    let body = super::error::error_body(
        "unavailable",
        &format!("not answering: {}", said.join(", ")),
        Some(json!({ "failed": names, "checks": states, "backend": s.store.backend() })),
    );
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

/// Prometheus text.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text", content_type = "text/plain", body = String)))]
async fn metrics(State(s): State<AppState>) -> Response {
    let text_index = s.text_index.as_ref().map(|i| i.report());
    let consumers = s.feed.report();
    let text = s.metrics.render(&super::metrics::Scrape {
        cache: s.store.cache_stats(),
        runtime: s.store.runtime_stats(),
        consumers: &consumers,
        text_index,
        jobs: s.jobs.stats().snapshot(),
        live_docs: s.hub.live(),
        backend: s.store.backend(),
    });
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1", body = Object)))]
async fn openapi(State(s): State<AppState>) -> Response {
    Json(s.openapi.as_ref().clone()).into_response()
}

/// Scheduled jobs: schedule, the newest run on any daemon sharing the
/// store (outcome, which daemon), next run.
#[utoipa::path(get, path = "/v1/admin/jobs", tag = "operations", security(("api_key" = ["global_admin"])),
    responses((status = 200, description = "each job", body = Data<Vec<crate::jobs::JobStatus>>)))]
async fn list_jobs(State(s): State<AppState>, _: GlobalAdmin) -> ApiResult<Response> {
    Ok(data(StatusCode::OK, s.jobs.list().await?))
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
        .await?
        .ok_or_else(|| DomainError::not_found(format!("job {}", p.name)))?;
    Ok(data(StatusCode::OK, run))
}
