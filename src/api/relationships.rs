//! Relationships.

use super::auth::{Authorized, Read, Write};
use super::entities::{write_one, ItemPath, PatchBody, ProjectPath};
use super::error::ApiResult;
use super::extract::{IfMatch, JsonBody, PageParams, Path, Query};
use super::openapi::{Data, Paged};
use super::{data, page, AppState};
use crate::domain::*;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_relationship, list_relationships))
        .routes(routes!(
            get_relationship,
            patch_relationship,
            delete_relationship
        ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRelationship {
    id: Option<String>,
    #[serde(rename = "type")]
    #[schema(pattern = "^[A-Za-z_][A-Za-z0-9_]{0,62}$")]
    rel_type: String,
    from: String,
    to: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    properties: Properties,
}

impl NewRelationship {
    pub fn into_op(self) -> DomainResult<WriteOp> {
        let id = self.id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        validate::id("id", &id)?;
        validate::type_name("type", &self.rel_type)?;
        validate::id("from", &self.from)?;
        validate::id("to", &self.to)?;
        validate::properties(&self.properties)?;
        Ok(WriteOp::CreateRelationship {
            id,
            rel_type: self.rel_type,
            from: self.from,
            to: self.to,
            properties: self.properties,
        })
    }
}

fn relationship_of(outcome: WriteOutcome) -> ApiResult<Relationship> {
    match outcome {
        WriteOutcome::Relationship(r) => Ok(r),
        _ => Err(DomainError::internal("expected a relationship outcome").into()),
    }
}

/// Create a relationship between two live entities of the project.
#[utoipa::path(post, path = "/v1/orgs/{org}/projects/{project}/relationships", tag = "relationships",
    params(ProjectPath), request_body = NewRelationship, security(("api_key" = ["write"])),
    responses((status = 201, description = "created", body = Data<Relationship>),
        (status = 409, description = "conflict: the id is taken"),
        (status = 422, description = "unprocessable: an end does not exist in this project")))]
async fn create_relationship(
    State(s): State<AppState>,
    who: Authorized<Write>,
    Path(p): Path<ProjectPath>,
    JsonBody(body): JsonBody<NewRelationship>,
) -> ApiResult<Response> {
    let rel = relationship_of(write_one(&s, &p.scope(), who.caller(), body.into_op()?).await?)?;
    Ok(data(StatusCode::CREATED, rel))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListParams {
    /// Only relationships from this entity.
    from: Option<String>,
    /// Only relationships to this entity.
    to: Option<String>,
    /// Only relationships of this type.
    #[serde(rename = "type")]
    rel_type: Option<String>,
    // Not flattened: serde_urlencoded cannot parse numbers inside a flatten.
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// List relationships by end and type, paged.
#[utoipa::path(get, path = "/v1/orgs/{org}/projects/{project}/relationships", tag = "relationships",
    params(ProjectPath, ListParams), security(("api_key" = ["read"])),
    responses((status = 200, description = "a page of relationships", body = Paged<Relationship>)))]
async fn list_relationships(
    State(s): State<AppState>,
    _: Authorized<Read>,
    Path(p): Path<ProjectPath>,
    Query(q): Query<ListParams>,
) -> ApiResult<Response> {
    let req = PageParams {
        cursor: q.cursor,
        limit: q.limit,
    }
    .request()?;
    let filter = RelationshipFilter {
        from: q.from,
        to: q.to,
        rel_type: q.rel_type,
    };
    Ok(page(
        s.store
            .list_relationships(&p.scope(), &filter, &req)
            .await?,
        req.limit,
    ))
}

/// One relationship.
#[utoipa::path(get, path = "/v1/orgs/{org}/projects/{project}/relationships/{id}", tag = "relationships",
    params(ItemPath), security(("api_key" = ["read"])),
    responses((status = 200, description = "the relationship", body = Data<Relationship>)))]
async fn get_relationship(
    State(s): State<AppState>,
    _: Authorized<Read>,
    Path(p): Path<ItemPath>,
) -> ApiResult<Response> {
    Ok(data(
        StatusCode::OK,
        s.store.get_relationship(&p.scope(), &p.id).await?,
    ))
}

/// Merge-patch a relationship's properties (and optionally its type).
#[utoipa::path(patch, path = "/v1/orgs/{org}/projects/{project}/relationships/{id}", tag = "relationships",
    params(ItemPath, IfMatch), request_body = PatchBody, security(("api_key" = ["write"])),
    responses((status = 200, description = "updated", body = Data<Relationship>)))]
async fn patch_relationship(
    State(s): State<AppState>,
    who: Authorized<Write>,
    Path(p): Path<ItemPath>,
    IfMatch(expected): IfMatch,
    JsonBody(body): JsonBody<PatchBody>,
) -> ApiResult<Response> {
    let (patch, rel_type) = body.checked()?;
    let op = WriteOp::PatchRelationship {
        id: p.id.clone(),
        patch,
        rel_type,
        expected_version: expected,
    };
    let rel = relationship_of(write_one(&s, &p.scope(), who.caller(), op).await?)?;
    Ok(data(StatusCode::OK, rel))
}

/// Delete a relationship.
#[utoipa::path(delete, path = "/v1/orgs/{org}/projects/{project}/relationships/{id}", tag = "relationships",
    params(ItemPath, IfMatch), security(("api_key" = ["write"])),
    responses((status = 204, description = "deleted")))]
async fn delete_relationship(
    State(s): State<AppState>,
    who: Authorized<Write>,
    Path(p): Path<ItemPath>,
    IfMatch(expected): IfMatch,
) -> ApiResult<StatusCode> {
    let op = WriteOp::DeleteRelationship {
        id: p.id.clone(),
        expected_version: expected,
    };
    write_one(&s, &p.scope(), who.caller(), op).await?;
    Ok(StatusCode::NO_CONTENT)
}
