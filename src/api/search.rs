//! Search: `text` (Meilisearch when configured, else the database's own
//! index), `semantic` (the entity vectors the embedding consumer keeps, the
//! query embedded by the same model) and `hybrid` (both, fused by rank).

use super::auth::{Authorized, Read};
use super::entities::ProjectPath;
use super::error::{ApiError, ApiResult};
use super::extract::{page_limit, Path, Query};
use super::openapi::Data;
use super::{data, AppState};
use crate::domain::{DomainError, DomainResult, Scope, SearchHit};
use crate::search::{hits, semantic};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
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

/// Hits asked of Meilisearch beyond the limit (see `text_hits`).
const MEILI_SPARE: usize = 16;

/// Names the half a hybrid search answered without.
const DEGRADED: &str = "x-strata-degraded";

/// Candidates each engine gives hybrid search before fusion.
const HYBRID_DEPTH: usize = 50;

/// Search live entities. `text`: full-text over string properties
/// (Meilisearch when configured: typo-tolerant; else the daemon's own
/// index, which follows every write before it answers: stemming, prefix,
/// BM25). `semantic`: by meaning, cosine similarity of
/// embeddings (the local model or Ollama). `hybrid`: reciprocal rank fusion
/// of both, each filtered by `type` inside its engine. Semantic results
/// follow the change feed (a new entity is found once embedded).
#[utoipa::path(get, path = "/v1/orgs/{org}/projects/{project}/search", tag = "search",
    params(ProjectPath, SearchParams), security(("api_key" = ["read"])),
    responses((status = 200, description = "hits, best first", body = Data<Vec<SearchHit>>,
            headers(("X-Strata-Degraded" = String, description = "`semantic` on a hybrid search whose embedding service did not answer: the hits are the text half's alone (in its order, scored as fused)"))),
        (status = 501, description = "not_implemented: no embedding model for semantic or hybrid search"),
        (status = 503, description = "unavailable: the embedding service does not answer (semantic)")))]
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
    let scope = p.scope();
    let entity_type = q.entity_type.as_deref();
    let mut degraded = false;
    let hits = match q.mode.as_deref().unwrap_or("text") {
        "text" => text_hits(&s, &scope, &text, entity_type, limit).await?,
        "semantic" => {
            let embedder = embedder(&s)?;
            // An unknown project is a 404, as in the other modes (and no
            // vector state is made for it).
            s.store.get_project(&scope.org, &scope.project).await?;
            semantic::semantic(&s.store, embedder, &scope, &text, entity_type, limit).await?
        }
        "hybrid" => {
            let embedder = embedder(&s)?;
            let depth = limit.max(HYBRID_DEPTH);
            let by_text = text_hits(&s, &scope, &text, entity_type, depth).await?;
            let store = &s.store;
            match semantic::semantic(store, embedder, &scope, &text, entity_type, depth).await {
                Ok(by_meaning) => semantic::fuse(by_text, by_meaning, limit),
                // What still works: the text half, in its own order and
                // scored as fused hits are, and a header saying so.
                Err(DomainError::Unavailable(why)) => {
                    tracing::warn!(%why, "hybrid search without its semantic half");
                    degraded = true;
                    semantic::fuse(by_text, Vec::new(), limit)
                }
                Err(e) => return Err(e.into()),
            }
        }
        _ => {
            return Err(ApiError::bad_request(
                "mode must be text, semantic or hybrid",
            ))
        }
    };
    let mut response = data(StatusCode::OK, hits);
    if degraded {
        response
            .headers_mut()
            .insert(DEGRADED, HeaderValue::from_static("semantic"));
    }
    Ok(response)
}

/// The configured embedder, or 501 saying how to get one.
fn embedder(s: &AppState) -> Result<&dyn crate::embed::Embedder, DomainError> {
    s.embedder
        .as_deref()
        .ok_or_else(|| DomainError::NotImplemented(crate::embed::missing_model_hint().into()))
}

/// Full-text hits: Meilisearch when configured (the database's index while
/// it fails), else the daemon's text index (the database's while it is
/// built or behind).
async fn text_hits(
    s: &AppState,
    scope: &Scope,
    text: &str,
    entity_type: Option<&str>,
    limit: usize,
) -> DomainResult<Vec<SearchHit>> {
    // The store path answers what it refuses (NUL, a query without words:
    // 400; an unknown project: 404), so every engine gives the same answer
    // to bad input.
    let store_answers = text.contains('\0')
        || entity_type.is_some_and(|t| t.contains('\0'))
        || crate::search::query_terms(text).is_empty();
    if store_answers {
        return s.store.search_text(scope, text, entity_type, limit).await;
    }
    let project = s.store.get_project(&scope.org, &scope.project).await?;
    if let Some(index) = s.meili.as_ref() {
        // Meilisearch follows the feed: hits of entities deleted or retyped
        // since are left out by the load, and spare ones fill the page.
        match index
            .search(scope, text, entity_type, limit + MEILI_SPARE)
            .await
        {
            Ok(ranked) => {
                return hits::load(&s.store, scope, text, entity_type, ranked, limit).await
            }
            // Text search still works without Meilisearch: the database's
            // own index answers (no typo tolerance) until it is back.
            Err(e) => {
                tracing::warn!(error = %e, "Meilisearch failed; text search falls back to the database")
            }
        }
    } else if let Some(index) = s.text_index.as_ref() {
        let tenant = (scope, project.created_at.as_str());
        if let Some(ranked) = index.search(tenant, text, entity_type, limit).await {
            return hits::load(&s.store, scope, text, entity_type, ranked, limit).await;
        }
    }
    s.store.search_text(scope, text, entity_type, limit).await
}
