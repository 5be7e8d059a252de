//! Search: full-text now (Meilisearch when configured, else the database's
//! own index); semantic and hybrid need an embedder (501).

use super::auth::{Authorized, Read};
use super::entities::ProjectPath;
use super::error::{ApiError, ApiResult};
use super::extract::{page_limit, Path, Query};
use super::openapi::Data;
use super::{data, AppState};
use crate::domain::{DomainError, EntityRead, Scope, SearchHit};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use futures_util::StreamExt;
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

/// Full-text search over string properties (Meilisearch when configured: typo-tolerant).
///
/// Without Meilisearch, or while it fails, the database's index answers
/// (stemming, prefix, bm25 ranking).
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
    let scope = p.scope();
    let entity_type = q.entity_type.as_deref();
    // The store path answers what it refuses (NUL, a query without words:
    // 400), so both engines give the same answer to bad input.
    let store_answers = text.contains('\0')
        || entity_type.is_some_and(|t| t.contains('\0'))
        || crate::search::query_terms(&text).is_empty();
    if let Some(index) = s.meili.as_ref().filter(|_| !store_answers) {
        match index.search(&scope, &text, entity_type, limit).await {
            Ok(ranked) => {
                let hits = load_hits(&s, &scope, &text, entity_type, ranked).await?;
                return Ok(data(StatusCode::OK, hits));
            }
            // Text search still works without Meilisearch: the database's
            // own index answers (no typo tolerance) until it is back.
            Err(e) => {
                tracing::warn!(error = %e, "Meilisearch failed; text search falls back to the database")
            }
        }
    }
    let hits = s
        .store
        .search_text(&scope, &text, entity_type, limit)
        .await?;
    Ok(data(StatusCode::OK, hits))
}

/// Meilisearch's hits as the store has them now, in Meilisearch's order:
/// an entity deleted (or retyped) since it was indexed is left out, so a
/// lagging index never shows stale or deleted data.
async fn load_hits(
    s: &AppState,
    scope: &Scope,
    text: &str,
    entity_type: Option<&str>,
    ranked: Vec<(String, f64)>,
) -> Result<Vec<SearchHit>, DomainError> {
    let terms = crate::search::query_terms(text);
    let read = EntityRead {
        version: None,
        as_of: None,
        include_deleted: false,
    };
    let loaded: Vec<_> = futures_util::stream::iter(ranked)
        .map(|(id, score)| {
            let read = &read;
            async move { (s.store.get_entity(scope, &id, read).await, score) }
        })
        .buffered(16)
        .collect()
        .await;
    let mut hits = Vec::with_capacity(loaded.len());
    for (entity, score) in loaded {
        let entity = match entity {
            Ok(e) => e,
            Err(DomainError::NotFound(_)) => continue,
            Err(e) => return Err(e),
        };
        if entity.deleted_at.is_some() || entity_type.is_some_and(|t| t != entity.entity_type) {
            continue;
        }
        hits.push(SearchHit {
            highlights: crate::search::highlights(&entity.properties, &terms),
            entity,
            score,
        });
    }
    Ok(hits)
}
