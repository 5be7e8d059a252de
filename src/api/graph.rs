//! Graph routes: neighbourhoods, dependents/dependencies, shortest paths,
//! and Cypher (501 on the embedded backend).

use super::auth::{Authorized, Read};
use super::entities::{ItemPath, ProjectPath};
use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, Path, Query};
use super::{data, AppState};
use crate::domain::*;
use crate::graph;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(neighbors))
        .routes(routes!(dependents))
        .routes(routes!(dependencies))
        .routes(routes!(shortest_path))
        .routes(routes!(cypher))
}

fn direction(s: Option<&str>, default: Direction) -> ApiResult<Direction> {
    match s {
        None => Ok(default),
        Some(s) => Direction::parse(s)
            .ok_or_else(|| ApiError::bad_request("direction must be out, in or both")),
    }
}

fn include_properties(include: Option<&str>) -> ApiResult<bool> {
    match include {
        None | Some("") => Ok(false),
        Some("properties") => Ok(true),
        Some(_) => Err(ApiError::bad_request("include accepts only: properties")),
    }
}

#[derive(Deserialize)]
struct NeighborParams {
    direction: Option<String>,
    types: Option<String>,
    depth: Option<u32>,
    include: Option<String>,
    limit: Option<usize>,
}

/// Every node within `depth` hops, with the edges walked.
#[utoipa::path(get, path = "/v1/orgs/{org}/projects/{project}/entities/{id}/neighbors", tag = "graph",
    responses((status = 200, description = "nodes and edges")))]
async fn neighbors(
    State(s): State<AppState>,
    _: Authorized<Read>,
    Path(p): Path<ItemPath>,
    Query(q): Query<NeighborParams>,
) -> ApiResult<Response> {
    let t = graph::traversal(
        &p.id,
        direction(q.direction.as_deref(), Direction::Both)?,
        q.types.as_deref(),
        q.depth,
        graph::MAX_NEIGHBOR_DEPTH,
        1,
        q.limit,
        include_properties(q.include.as_deref())?,
    )?;
    Ok(data(
        StatusCode::OK,
        s.store.traverse(&p.scope(), &t).await?,
    ))
}

#[derive(Deserialize)]
struct ClosureParams {
    types: Option<String>,
    max_depth: Option<u32>,
    include: Option<String>,
    limit: Option<usize>,
}

async fn closure(
    s: &AppState,
    p: &ItemPath,
    q: ClosureParams,
    dir: Direction,
) -> ApiResult<Response> {
    let types = q.types.as_deref().or(Some(graph::DEFAULT_DEPENDENCY_TYPE));
    let t = graph::traversal(
        &p.id,
        dir,
        types,
        q.max_depth,
        graph::MAX_CLOSURE_DEPTH,
        graph::DEFAULT_CLOSURE_DEPTH,
        q.limit,
        include_properties(q.include.as_deref())?,
    )?;
    Ok(data(
        StatusCode::OK,
        s.store.traverse(&p.scope(), &t).await?,
    ))
}

/// What depends on this: the closure over incoming edges (default DEPENDS_ON).
#[utoipa::path(get, path = "/v1/orgs/{org}/projects/{project}/entities/{id}/dependents", tag = "graph",
    responses((status = 200, description = "nodes with their shortest depth, and edges")))]
async fn dependents(
    State(s): State<AppState>,
    _: Authorized<Read>,
    Path(p): Path<ItemPath>,
    Query(q): Query<ClosureParams>,
) -> ApiResult<Response> {
    closure(&s, &p, q, Direction::In).await
}

/// What this depends on: the closure over outgoing edges.
#[utoipa::path(get, path = "/v1/orgs/{org}/projects/{project}/entities/{id}/dependencies", tag = "graph",
    responses((status = 200, description = "nodes with their shortest depth, and edges")))]
async fn dependencies(
    State(s): State<AppState>,
    _: Authorized<Read>,
    Path(p): Path<ItemPath>,
    Query(q): Query<ClosureParams>,
) -> ApiResult<Response> {
    closure(&s, &p, q, Direction::Out).await
}

#[derive(Deserialize)]
struct PathParams {
    from: String,
    to: String,
    direction: Option<String>,
    types: Option<String>,
    max_depth: Option<u32>,
}

/// One shortest path between two entities.
#[utoipa::path(get, path = "/v1/orgs/{org}/projects/{project}/paths/shortest", tag = "graph",
    responses((status = 200, description = "nodes and edges in path order"), (status = 404, description = "no_path")))]
async fn shortest_path(
    State(s): State<AppState>,
    _: Authorized<Read>,
    Path(p): Path<ProjectPath>,
    Query(q): Query<PathParams>,
) -> ApiResult<Response> {
    let dir = direction(q.direction.as_deref(), Direction::Out)?;
    if dir == Direction::In {
        return Err(ApiError::bad_request("direction must be out or both"));
    }
    let query = graph::PathQuery {
        from: q.from,
        to: q.to,
        direction: dir,
        types: graph::parse_types(q.types.as_deref())?,
        max_depth: graph::bounded(
            q.max_depth,
            graph::DEFAULT_PATH_DEPTH,
            graph::MAX_CLOSURE_DEPTH,
            "max_depth",
        )?,
    };
    match graph::shortest_path(s.store.as_ref(), &p.scope(), &query).await? {
        Some(path) => Ok(data(StatusCode::OK, path)),
        None => Err(ApiError::NoPath),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CypherBody {
    query: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    params: serde_json::Map<String, serde_json::Value>,
}

/// Read-only openCypher over the project's graph (AGE); 501 without a Cypher engine.
#[utoipa::path(post, path = "/v1/orgs/{org}/projects/{project}/cypher", tag = "graph",
    request_body = CypherBody, responses((status = 200, description = "columns and rows"), (status = 400, description = "a writing clause or invalid query"), (status = 501, description = "no Cypher engine on this backend")))]
async fn cypher(
    State(s): State<AppState>,
    _: Authorized<Read>,
    Path(p): Path<ProjectPath>,
    JsonBody(body): JsonBody<CypherBody>,
) -> ApiResult<Response> {
    s.store.get_project(&p.org, &p.project).await?;
    if body.query.trim().is_empty() {
        return Err(ApiError::bad_request("query must not be empty"));
    }
    let result = s
        .store
        .cypher(&p.scope(), &body.query, &body.params)
        .await?;
    Ok(data(StatusCode::OK, result))
}
