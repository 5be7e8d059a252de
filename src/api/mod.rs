//! The HTTP layer (axum). Knows nothing of SQL: handlers parse, authorise,
//! call the store/graph/search modules and shape the contract's JSON.

mod auth;
mod backups;
mod batch;
mod changes;
mod cors;
mod doc_batch;
mod docs;
mod entities;
pub mod error;
mod export;
mod extract;
mod graph;
mod hocuspocus;
mod import;
mod keys;
pub mod metrics;
mod oidc;
mod openapi;
mod ops;
mod relationships;
mod search;
mod tenancy;
mod trace;

pub use auth::{new_key, AuthSettings, Authenticator};
pub use ops::CHECK_TIMEOUT as READY_CHECK_TIMEOUT;

use crate::config::Config;
use crate::domain::{Entity, Page};
use crate::store::DynStore;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use error::{error_body, ApiError};
use openapi::ApiKey;
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

/// The long-lived services the HTTP layer is built on.
pub struct Services {
    pub store: DynStore,
    pub blobs: Arc<dyn crate::blob::BlobStore>,
    pub jobs: crate::jobs::Jobs,
    /// The change feed's consumers (their status, for health and metrics).
    pub feed: crate::feed::Feed,
    /// The daemon's lifetime: WebSocket sessions and other background
    /// tasks run on it and stop when it is cancelled.
    pub lifecycle: crate::lifecycle::Lifecycle,
    /// Meilisearch for `mode=text`, when configured.
    pub meili: Option<Arc<crate::search::meili::MeiliIndex>>,
    /// Embeds search queries (semantic and hybrid search), when configured.
    pub embedder: Option<Arc<dyn crate::embed::Embedder>>,
    /// The daemon's own text index (`mode=text` without Meilisearch).
    pub text_index: Option<crate::search::text_index::TextIndex>,
    pub backups: crate::backup::Backups,
}

/// Everything a handler needs; cheap to clone (handles only).
#[derive(Clone)]
pub struct AppState {
    pub store: DynStore,
    pub auth: Arc<Authenticator>,
    pub metrics: Arc<metrics::Metrics>,
    pub config: Arc<Config>,
    pub jobs: crate::jobs::Jobs,
    pub feed: crate::feed::Feed,
    pub blobs: Arc<dyn crate::blob::BlobStore>,
    pub backups: crate::backup::Backups,
    pub hub: Arc<crate::crdt::sync::DocHub>,
    /// The durable append path of live updates (group commit).
    pub commits: crate::crdt::commit::Committer,
    pub crdt: crate::crdt::CrdtConfig,
    pub lifecycle: crate::lifecycle::Lifecycle,
    pub meili: Option<Arc<crate::search::meili::MeiliIndex>>,
    pub embedder: Option<Arc<dyn crate::embed::Embedder>>,
    pub text_index: Option<crate::search::text_index::TextIndex>,
    openapi: Arc<Value>,
}

/// Deletes blobs whose rows are gone; a failure leaves an orphan, logged.
pub async fn delete_blobs(s: &AppState, keys: Vec<String>) {
    for key in keys {
        if let Err(e) = s.blobs.delete(&key).await {
            tracing::warn!(key, error = %e, "could not delete a blob");
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Strata",
        description = "Versioned JSON entities, relationships, graph queries and search."
    ),
    components(schemas(openapi::ErrorBody)),
    modifiers(&ApiKey)
)]
struct ApiDoc;

/// The router and its OpenAPI document, built from the same route list.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(tenancy::router())
        .merge(keys::router())
        .merge(entities::router())
        .merge(batch::router())
        .merge(relationships::router())
        .merge(graph::router())
        .merge(search::router())
        .merge(changes::router())
        .merge(backups::router())
        .merge(export::router())
        .merge(import::router())
        .merge(docs::router())
        .merge(doc_batch::router())
        .merge(hocuspocus::router())
        .merge(ops::router())
}

/// The whole HTTP application, ready to serve.
pub fn app(services: Services, auth: AuthSettings, config: Arc<Config>) -> Router {
    let (router, doc) = routes().split_for_parts();
    let mut doc = serde_json::to_value(doc).expect("OpenAPI serialises");
    openapi::complete(&mut doc);
    let hub = Arc::new(crate::crdt::sync::DocHub::default());
    let commits = crate::crdt::commit::Committer::start(
        services.store.clone(),
        hub.clone(),
        crate::crdt::commit::SHARDS,
    );
    let state = AppState {
        auth: Arc::new(Authenticator::new(
            services.store.clone(),
            auth,
            config.oidc.clone(),
            &services.lifecycle,
        )),
        store: services.store,
        metrics: Arc::new(metrics::Metrics::default()),
        openapi: Arc::new(doc),
        crdt: config.crdt.clone(),
        config: config.clone(),
        jobs: services.jobs,
        feed: services.feed,
        blobs: services.blobs,
        backups: services.backups,
        hub,
        commits,
        lifecycle: services.lifecycle,
        meili: services.meili,
        embedder: services.embedder,
        text_index: services.text_index,
    };
    let app = router
        .fallback(|| async { not_found_route() })
        .method_not_allowed_fallback(|| async { method_not_allowed() })
        .layer(axum::middleware::from_fn(trace::route))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(tower::limit::ConcurrencyLimitLayer::new(
            config.max_concurrency,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Duration::from_secs(config.request_timeout_secs),
            timeout,
        ))
        .layer(DefaultBodyLimit::max(config.body_limit))
        .with_state(state);
    // Outermost: every answer, a preflight's too, has its request id.
    cors::wrap(app, &config.cors_origins).layer(axum::middleware::from_fn(trace::request))
}

/// The per-request timeout: 503 in the contract's error shape.
async fn timeout(
    axum::extract::State(limit): axum::extract::State<Duration>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    // An import takes as long as its body takes to arrive and be stored.
    if request.method() == axum::http::Method::POST && request.uri().path().ends_with("/import") {
        return next.run(request).await;
    }
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(error_body(
                "unavailable",
                "the request timed out (STRATA_REQUEST_TIMEOUT_SECS)",
                None,
            )),
        )
            .into_response(),
    }
}

/// 405: a code of its own, not `bad_request` (the request is well formed;
/// the path does not take that method).
fn method_not_allowed() -> Response {
    let body = error_body(
        "method_not_allowed",
        "method not allowed on this path",
        None,
    );
    (StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response()
}

fn not_found_route() -> Response {
    ApiError::Domain(crate::domain::DomainError::not_found("route")).into_response()
}

/// `{"data": ...}` with a status.
pub fn data<T: Serialize>(status: StatusCode, value: T) -> Response {
    (status, axum::Json(openapi::Data { data: value })).into_response()
}

/// `{"data": [...], "pagination": {...}}`.
pub fn page<T: Serialize>(page: Page<T>, limit: usize) -> Response {
    axum::Json(openapi::Paged {
        data: page.items,
        pagination: openapi::Pagination {
            next_cursor: page.next_cursor,
            limit,
        },
    })
    .into_response()
}

/// One entity with its `ETag`, optionally cut down to some properties.
pub fn entity_response(
    status: StatusCode,
    mut entity: Entity,
    fields: Option<&[String]>,
) -> Response {
    if let Some(fields) = fields {
        entity
            .properties
            .retain(|k, _| fields.iter().any(|f| f == k));
    }
    let etag = HeaderValue::from_str(&format!("\"{}\"", entity.version)).expect("digits are ASCII");
    let mut response = data(status, entity);
    response.headers_mut().insert(header::ETAG, etag);
    response
}

/// `fields=a,b` as a list.
pub fn parse_fields(fields: &Option<String>) -> Option<Vec<String>> {
    fields.as_ref().map(|f| {
        f.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn answer(router: axum::Router, method: &str) -> (StatusCode, serde_json::Value) {
        let request = axum::http::Request::builder()
            .method(method)
            .uri("/slow")
            .body(Body::empty())
            .unwrap();
        let response = router.oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    /// A request past its time answers 503 with the contract's JSON error,
    /// not an empty body.
    #[tokio::test]
    async fn a_timed_out_request_answers_503_with_the_json_error() {
        let slow = axum::routing::get(|| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "late"
        });
        let router =
            axum::Router::new()
                .route("/slow", slow)
                .layer(axum::middleware::from_fn_with_state(
                    Duration::from_millis(20),
                    timeout,
                ));
        let (status, body) = answer(router, "GET").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "unavailable", "{body}");
    }

    #[tokio::test]
    async fn a_method_the_path_does_not_take_is_405_method_not_allowed() {
        let router = axum::Router::new()
            .route("/slow", axum::routing::get(|| async { "ok" }))
            .method_not_allowed_fallback(|| async { method_not_allowed() });
        let (status, body) = answer(router, "PUT").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
    }
}
