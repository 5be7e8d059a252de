//! Entities and their history.

use super::auth::{Authorized, Read, Write};
use super::error::{ApiError, ApiResult};
use super::extract::{page_limit, IfMatch, JsonBody, PageParams, Path, Query};
use super::openapi::{Data, Paged};
use super::{entity_response, page, parse_fields, AppState};
use crate::domain::*;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_entity, list_entities))
        .routes(routes!(get_entity, put_entity, patch_entity, delete_entity))
        .routes(routes!(restore_entity))
        .routes(routes!(revert_entity))
        .routes(routes!(list_versions))
        .routes(routes!(get_version))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ProjectPath {
    /// Org id.
    pub org: String,
    /// Project id.
    pub project: String,
}

impl ProjectPath {
    pub fn scope(&self) -> Scope {
        Scope::new(&self.org, &self.project)
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ItemPath {
    /// Org id.
    pub org: String,
    /// Project id.
    pub project: String,
    /// Entity (or relationship) id.
    pub id: String,
}

impl ItemPath {
    pub fn scope(&self) -> Scope {
        Scope::new(&self.org, &self.project)
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct VersionPath {
    /// Org id.
    org: String,
    /// Project id.
    project: String,
    /// Entity id.
    id: String,
    /// Version number.
    n: i64,
}

/// Applies one write and returns its outcome (errors unwrapped from the
/// batch form).
pub async fn write_one(
    s: &AppState,
    scope: &Scope,
    caller: &Caller,
    op: WriteOp,
) -> ApiResult<WriteOutcome> {
    match s.store.write(scope, caller, vec![op]).await {
        Ok(mut outcomes) => outcomes
            .pop()
            .ok_or_else(|| DomainError::internal("a write returned no outcome").into()),
        Err(DomainError::InBatch { source, .. }) => Err(ApiError::Domain(*source)),
        Err(e) => Err(e.into()),
    }
}

fn entity_of(outcome: WriteOutcome) -> ApiResult<(Entity, bool)> {
    match outcome {
        WriteOutcome::Entity { entity, created } => Ok((entity, created)),
        _ => Err(DomainError::internal("expected an entity outcome").into()),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEntity {
    id: Option<String>,
    #[serde(rename = "type")]
    #[schema(pattern = "^[A-Za-z_][A-Za-z0-9_]{0,62}$")]
    entity_type: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    properties: Properties,
}

impl NewEntity {
    pub fn into_op(self) -> DomainResult<WriteOp> {
        let id = self.id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        validate::id("id", &id)?;
        validate::type_name("type", &self.entity_type)?;
        validate::properties(&self.properties)?;
        Ok(WriteOp::CreateEntity {
            id,
            entity_type: self.entity_type,
            properties: self.properties,
        })
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplaceEntity {
    #[serde(rename = "type")]
    #[schema(pattern = "^[A-Za-z_][A-Za-z0-9_]{0,62}$")]
    entity_type: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    properties: Properties,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchBody {
    /// A JSON merge patch (RFC 7396) applied to the properties.
    #[schema(value_type = Object)]
    pub properties: Value,
    #[serde(rename = "type")]
    #[schema(pattern = "^[A-Za-z_][A-Za-z0-9_]{0,62}$")]
    pub new_type: Option<String>,
}

impl PatchBody {
    pub fn checked(self) -> DomainResult<(Value, Option<String>)> {
        if !self.properties.is_object() {
            return Err(DomainError::BadRequest(
                "properties must be a JSON object (a merge patch)".into(),
            ));
        }
        validate::json_depth(&self.properties, 1)?;
        if let Some(t) = &self.new_type {
            validate::type_name("type", t)?;
        }
        Ok((self.properties, self.new_type))
    }
}

/// Create an entity.
#[utoipa::path(post, path = "/v1/orgs/{org}/projects/{project}/entities", tag = "entities",
    params(ProjectPath), request_body = NewEntity, security(("api_key" = ["write"])),
    responses((status = 201, description = "created; ETag: its version", body = Data<Entity>),
        (status = 409, description = "conflict: the id is taken")))]
async fn create_entity(
    State(s): State<AppState>,
    who: Authorized<Write>,
    Path(p): Path<ProjectPath>,
    JsonBody(body): JsonBody<NewEntity>,
) -> ApiResult<Response> {
    let (entity, _) = entity_of(write_one(&s, &p.scope(), who.caller(), body.into_op()?).await?)?;
    Ok(entity_response(StatusCode::CREATED, entity, None))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct GetParams {
    /// `a,b`: only these top-level properties.
    fields: Option<String>,
    /// That version.
    version: Option<i64>,
    /// RFC 3339 time: the state then.
    as_of: Option<String>,
    /// Also a deleted entity.
    include_deleted: Option<bool>,
}

/// Read one entity (current, at a version, or as of a time).
#[utoipa::path(get, path = "/v1/orgs/{org}/projects/{project}/entities/{id}", tag = "entities",
    params(ItemPath, GetParams), security(("api_key" = ["read"])),
    responses((status = 200, description = "the entity; ETag: its version", body = Data<Entity>)))]
async fn get_entity(
    State(s): State<AppState>,
    _: Authorized<Read>,
    Path(p): Path<ItemPath>,
    Query(q): Query<GetParams>,
) -> ApiResult<Response> {
    let read = EntityRead {
        version: q.version,
        as_of: q
            .as_of
            .as_deref()
            .map(|t| validate::time("as_of", t))
            .transpose()?,
        include_deleted: q.include_deleted.unwrap_or(false),
    };
    let entity = s.store.get_entity(&p.scope(), &p.id, &read).await?;
    Ok(entity_response(
        StatusCode::OK,
        entity,
        parse_fields(&q.fields).as_deref(),
    ))
}

/// Replace an entity, or create it (201).
#[utoipa::path(put, path = "/v1/orgs/{org}/projects/{project}/entities/{id}", tag = "entities",
    params(ItemPath, IfMatch), request_body = ReplaceEntity, security(("api_key" = ["write"])),
    responses((status = 200, description = "replaced; ETag: its version", body = Data<Entity>),
        (status = 201, description = "created; ETag: its version", body = Data<Entity>)))]
async fn put_entity(
    State(s): State<AppState>,
    who: Authorized<Write>,
    Path(p): Path<ItemPath>,
    IfMatch(expected): IfMatch,
    JsonBody(body): JsonBody<ReplaceEntity>,
) -> ApiResult<Response> {
    validate::id("id", &p.id)?;
    validate::type_name("type", &body.entity_type)?;
    validate::properties(&body.properties)?;
    let op = WriteOp::PutEntity {
        id: p.id.clone(),
        entity_type: body.entity_type,
        properties: body.properties,
        expected_version: expected,
    };
    let (entity, created) = entity_of(write_one(&s, &p.scope(), who.caller(), op).await?)?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(entity_response(status, entity, None))
}

/// Merge-patch an entity's properties (and optionally its type).
#[utoipa::path(patch, path = "/v1/orgs/{org}/projects/{project}/entities/{id}", tag = "entities",
    params(ItemPath, IfMatch), request_body = PatchBody, security(("api_key" = ["write"])),
    responses((status = 200, description = "updated; ETag: its version", body = Data<Entity>)))]
async fn patch_entity(
    State(s): State<AppState>,
    who: Authorized<Write>,
    Path(p): Path<ItemPath>,
    IfMatch(expected): IfMatch,
    JsonBody(body): JsonBody<PatchBody>,
) -> ApiResult<Response> {
    let (patch, entity_type) = body.checked()?;
    let op = WriteOp::PatchEntity {
        id: p.id.clone(),
        patch,
        entity_type,
        expected_version: expected,
    };
    let (entity, _) = entity_of(write_one(&s, &p.scope(), who.caller(), op).await?)?;
    Ok(entity_response(StatusCode::OK, entity, None))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DeleteParams {
    /// Erase the entity, its history and its relationships for good.
    purge: Option<bool>,
}

/// Soft-delete an entity, or erase it for good with `purge=true`.
#[utoipa::path(delete, path = "/v1/orgs/{org}/projects/{project}/entities/{id}", tag = "entities",
    params(ItemPath, IfMatch, DeleteParams), security(("api_key" = ["write"])),
    responses((status = 204, description = "deleted")))]
async fn delete_entity(
    State(s): State<AppState>,
    who: Authorized<Write>,
    Path(p): Path<ItemPath>,
    IfMatch(expected): IfMatch,
    Query(q): Query<DeleteParams>,
) -> ApiResult<StatusCode> {
    let op = if q.purge.unwrap_or(false) {
        WriteOp::PurgeEntity { id: p.id.clone() }
    } else {
        WriteOp::DeleteEntity {
            id: p.id.clone(),
            expected_version: expected,
        }
    };
    let scope = p.scope();
    if let WriteOutcome::Purged { docs, blobs, .. } =
        write_one(&s, &scope, who.caller(), op).await?
    {
        // Its documents are gone: their sockets hear so (see `DocHub::close`).
        for doc in &docs {
            s.hub.close(&scope, doc);
        }
        super::delete_blobs(&s, blobs).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Restore a soft-deleted entity (a new version).
#[utoipa::path(post, path = "/v1/orgs/{org}/projects/{project}/entities/{id}/restore", tag = "entities",
    params(ItemPath), security(("api_key" = ["write"])),
    responses((status = 200, description = "restored; ETag: its version", body = Data<Entity>),
        (status = 409, description = "conflict: not deleted")))]
async fn restore_entity(
    State(s): State<AppState>,
    who: Authorized<Write>,
    Path(p): Path<ItemPath>,
) -> ApiResult<Response> {
    let op = WriteOp::RestoreEntity { id: p.id.clone() };
    let (entity, _) = entity_of(write_one(&s, &p.scope(), who.caller(), op).await?)?;
    Ok(entity_response(StatusCode::OK, entity, None))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RevertBody {
    to_version: i64,
}

/// Make a new version equal to an older one (its parent is that version).
#[utoipa::path(post, path = "/v1/orgs/{org}/projects/{project}/entities/{id}/revert", tag = "entities",
    params(ItemPath, IfMatch), request_body = RevertBody, security(("api_key" = ["write"])),
    responses((status = 200, description = "reverted; ETag: its version", body = Data<Entity>),
        (status = 422, description = "unprocessable: the entity has no such version")))]
async fn revert_entity(
    State(s): State<AppState>,
    who: Authorized<Write>,
    Path(p): Path<ItemPath>,
    IfMatch(expected): IfMatch,
    JsonBody(body): JsonBody<RevertBody>,
) -> ApiResult<Response> {
    let op = WriteOp::RevertEntity {
        id: p.id.clone(),
        to_version: body.to_version,
        expected_version: expected,
    };
    let (entity, _) = entity_of(write_one(&s, &p.scope(), who.caller(), op).await?)?;
    Ok(entity_response(StatusCode::OK, entity, None))
}

/// An entity's versions, newest first.
#[utoipa::path(get, path = "/v1/orgs/{org}/projects/{project}/entities/{id}/versions", tag = "entities",
    params(ItemPath, PageParams), security(("api_key" = ["read"])),
    responses((status = 200, description = "versions, newest first", body = Paged<VersionInfo>)))]
async fn list_versions(
    State(s): State<AppState>,
    _: Authorized<Read>,
    Path(p): Path<ItemPath>,
    Query(q): Query<PageParams>,
) -> ApiResult<Response> {
    let req = q.request()?;
    Ok(page(
        s.store.list_versions(&p.scope(), &p.id, &req).await?,
        req.limit,
    ))
}

/// The entity as it was at version n.
#[utoipa::path(get, path = "/v1/orgs/{org}/projects/{project}/entities/{id}/versions/{n}", tag = "entities",
    params(VersionPath), security(("api_key" = ["read"])),
    responses((status = 200, description = "that version; ETag: its number", body = Data<Entity>)))]
async fn get_version(
    State(s): State<AppState>,
    _: Authorized<Read>,
    Path(p): Path<VersionPath>,
) -> ApiResult<Response> {
    let read = EntityRead {
        version: Some(p.n),
        ..Default::default()
    };
    let entity = s
        .store
        .get_entity(&Scope::new(&p.org, &p.project), &p.id, &read)
        .await?;
    Ok(entity_response(StatusCode::OK, entity, None))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListParams {
    /// Only entities of this type.
    #[serde(rename = "type")]
    entity_type: Option<String>,
    /// A JSON object the properties must contain.
    #[serde(rename = "where")]
    where_json: Option<String>,
    /// RFC 3339 time: only entities updated since.
    updated_since: Option<String>,
    /// `a,b`: only these top-level properties.
    fields: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// List entities: by type, property containment and update time, paged.
#[utoipa::path(get, path = "/v1/orgs/{org}/projects/{project}/entities", tag = "entities",
    params(ProjectPath, ListParams), security(("api_key" = ["read"])),
    responses((status = 200, description = "a page of entities", body = Paged<Entity>)))]
async fn list_entities(
    State(s): State<AppState>,
    _: Authorized<Read>,
    Path(p): Path<ProjectPath>,
    Query(q): Query<ListParams>,
) -> ApiResult<Response> {
    let contains = match &q.where_json {
        None => None,
        Some(text) => match crate::domain::json::parse(text.as_bytes()) {
            Ok(Value::Object(m)) => Some(m),
            Ok(_) => return Err(ApiError::bad_request("where must be a JSON object")),
            Err(e) => return Err(ApiError::bad_request(format!("where: {e}"))),
        },
    };
    let filter = EntityFilter {
        entity_type: q.entity_type,
        contains,
        updated_since: q
            .updated_since
            .as_deref()
            .map(|t| validate::time("updated_since", t))
            .transpose()?,
    };
    let req = PageRequest {
        cursor: q.cursor.filter(|c| !c.is_empty()),
        limit: page_limit(q.limit, 100, 1000)?,
    };
    let mut result = s.store.list_entities(&p.scope(), &filter, &req).await?;
    if let Some(fields) = parse_fields(&q.fields) {
        for e in &mut result.items {
            e.properties.retain(|k, _| fields.contains(k));
        }
    }
    Ok(page(result, req.limit))
}
