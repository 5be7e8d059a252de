//! Relationships.

use super::auth::{Authorized, Read, Write};
use super::entities::{write_one, ItemPath, PatchBody, ProjectPath};
use super::error::ApiResult;
use super::extract::{IfMatch, JsonBody, PageParams, Path, Query};
use super::{data, page, AppState};
use crate::domain::*;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
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
    request_body = NewRelationship, responses((status = 201, description = "created"), (status = 422, description = "an end does not exist")))]
async fn create_relationship(
    State(s): State<AppState>,
    who: Authorized<Write>,
    Path(p): Path<ProjectPath>,
    JsonBody(body): JsonBody<NewRelationship>,
) -> ApiResult<Response> {
    let rel = relationship_of(write_one(&s, &p.scope(), who.caller(), body.into_op()?).await?)?;
    Ok(data(StatusCode::CREATED, rel))
}

#[derive(Deserialize)]
struct ListParams {
    from: Option<String>,
    to: Option<String>,
    #[serde(rename = "type")]
    rel_type: Option<String>,
    // Not flattened: serde_urlencoded cannot parse numbers inside a flatten.
    cursor: Option<String>,
    limit: Option<usize>,
}

/// List relationships by end and type, paged.
#[utoipa::path(get, path = "/v1/orgs/{org}/projects/{project}/relationships", tag = "relationships",
    responses((status = 200, description = "a page of relationships")))]
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
    responses((status = 200, description = "the relationship", body = Relationship)))]
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
    request_body = PatchBody, responses((status = 200, description = "updated")))]
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
