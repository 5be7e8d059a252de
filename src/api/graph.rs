//! Graph routes: neighbourhoods, dependents/dependencies, shortest paths,
//! and Cypher (501 on the embedded backend).

use super::auth::{Authorized, Read};
use super::entities::{ItemPath, ProjectPath};
use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, Path, Query};
use super::openapi::Data;
use super::{data, AppState};
use crate::domain::*;
use crate::graph;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use utoipa::IntoParams;
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

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct NeighborParams {
    /// `out`, `in` or `both` (default).
    direction: Option<String>,
    /// `A,B`: only edges of these types.
    types: Option<String>,
    /// Hops, 1 (default) to 10.
    depth: Option<u32>,
    /// `properties`: nodes carry their properties.
    include: Option<String>,
    /// Most nodes to return, the start included (at most 10000).
    limit: Option<usize>,
}

/// Every node within `depth` hops, with the edges walked.
#[utoipa::path(get, path = "/v1/orgs/{org}/projects/{project}/entities/{id}/neighbors", tag = "graph",
    params(ItemPath, NeighborParams), security(("api_key" = ["read"])),
    responses((status = 200, description = "nodes and edges", body = Data<Subgraph>)))]
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

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ClosureParams {
    /// `A,B`: edge types to follow (default `DEPENDS_ON`).
    types: Option<String>,
    /// Hops to follow at most.
    max_depth: Option<u32>,
    /// `properties`: nodes carry their properties.
    include: Option<String>,
    /// Most nodes to return, the start included (at most 10000).
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
    params(ItemPath, ClosureParams), security(("api_key" = ["read"])),
    responses((status = 200, description = "nodes with their shortest depth, and edges", body = Data<Subgraph>)))]
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
    params(ItemPath, ClosureParams), security(("api_key" = ["read"])),
    responses((status = 200, description = "nodes with their shortest depth, and edges", body = Data<Subgraph>)))]
async fn dependencies(
    State(s): State<AppState>,
    _: Authorized<Read>,
    Path(p): Path<ItemPath>,
    Query(q): Query<ClosureParams>,
) -> ApiResult<Response> {
    closure(&s, &p, q, Direction::Out).await
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PathParams {
    /// Start entity id.
    from: String,
    /// End entity id.
    to: String,
    /// `out` (default) or `both`.
    direction: Option<String>,
    /// `A,B`: only edges of these types.
    types: Option<String>,
    /// Longest path searched (default 6).
    max_depth: Option<u32>,
}

/// One shortest path between two entities.
#[utoipa::path(get, path = "/v1/orgs/{org}/projects/{project}/paths/shortest", tag = "graph",
    params(ProjectPath, PathParams), security(("api_key" = ["read"])),
    responses((status = 200, description = "nodes and edges in path order", body = Data<graph::GraphPath>),
        (status = 404, description = "not_found (an end) or no_path (none within max_depth)"),
        (status = 409, description = "conflict: an edge of the path was deleted during the search; retry")))]
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
    params(ProjectPath), request_body = CypherBody, security(("api_key" = ["read"])),
    responses((status = 200, description = "columns and rows", body = Data<CypherResult>),
        (status = 400, description = "bad_request: a writing clause or an invalid query"),
        (status = 501, description = "not_implemented: no Cypher engine on this backend")))]
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
