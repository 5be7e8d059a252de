//! The batch route: up to `MAX_BATCH` entity and relationship writes
//! applied atomically, one result per operation.

use super::auth::{Authorized, Write};
use super::entities::{NewEntity, PatchBody, ProjectPath};
use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, Path};
use super::relationships::NewRelationship;
use super::AppState;
use crate::domain::*;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(batch))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(tag = "op", rename_all = "snake_case")]
enum BatchOp {
    CreateEntity(#[schema(inline)] NewEntity),
    UpdateEntity {
        id: String,
        #[schema(value_type = Object)]
        properties: Value,
        #[serde(rename = "type")]
        new_type: Option<String>,
        /// Like `If-Match` on the single call.
        if_match: Option<i64>,
    },
    DeleteEntity {
        id: String,
        if_match: Option<i64>,
    },
    CreateRelationship(#[schema(inline)] NewRelationship),
    DeleteRelationship {
        id: String,
        if_match: Option<i64>,
    },
}

impl BatchOp {
    fn into_op(self) -> DomainResult<WriteOp> {
        Ok(match self {
            BatchOp::CreateEntity(e) => e.into_op()?,
            BatchOp::UpdateEntity {
                id,
                properties,
                new_type,
                if_match,
            } => {
                let (patch, entity_type) = PatchBody {
                    properties,
                    new_type,
                }
                .checked()?;
                WriteOp::PatchEntity {
                    id,
                    patch,
                    entity_type,
                    expected_version: if_match,
                }
            }
            BatchOp::DeleteEntity { id, if_match } => WriteOp::DeleteEntity {
                id,
                expected_version: if_match,
            },
            BatchOp::CreateRelationship(r) => r.into_op()?,
            BatchOp::DeleteRelationship { id, if_match } => WriteOp::DeleteRelationship {
                id,
                expected_version: if_match,
            },
        })
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    /// 1 to 1000 operations, parsed one by one (a bad one is named by its index).
    #[schema(value_type = Vec<BatchOp>)]
    operations: Vec<Value>,
}

/// `{"data": [one result per operation]}`.
#[derive(Serialize, utoipa::ToSchema)]
struct BatchAnswer {
    data: Vec<BatchResult>,
}

/// One operation's result: the entity or relationship written, or
/// `{"id", "deleted": true}`.
#[derive(Serialize)]
#[serde(untagged)]
enum BatchResult {
    Entity(Entity),
    Relationship(Relationship),
    Deleted { id: String, deleted: bool },
}

// By hand: an untagged enum derives `oneOf`, but a relationship also matches
// the entity schema.
impl utoipa::PartialSchema for BatchResult {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Type};
        use utoipa::openapi::Ref;
        let deleted = ObjectBuilder::new()
            .property("id", String::schema())
            .property("deleted", bool::schema())
            .required("id")
            .required("deleted");
        AnyOfBuilder::new()
            .item(Ref::from_schema_name("Entity"))
            .item(Ref::from_schema_name("Relationship"))
            .item(deleted.schema_type(Type::Object))
            .into()
    }
}

impl utoipa::ToSchema for BatchResult {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        use utoipa::PartialSchema;
        schemas.push(("Entity".into(), Entity::schema()));
        schemas.push(("Relationship".into(), Relationship::schema()));
    }
}

pub const MAX_BATCH: usize = 1000;

/// Apply up to 1000 operations atomically: all or nothing.
#[utoipa::path(post, path = "/v1/orgs/{org}/projects/{project}/batch", tag = "entities",
    params(ProjectPath), request_body = BatchBody, security(("api_key" = ["write"])),
    responses((status = 200, description = "one result per operation", body = BatchAnswer),
        (status = 409, description = "conflict (error.details.index names the operation)"),
        (status = 412, description = "precondition_failed: an operation's if_match is stale (error.details.index)"),
        (status = 422, description = "unprocessable: a relationship end is missing (error.details.index)")))]
async fn batch(
    State(s): State<AppState>,
    who: Authorized<Write>,
    Path(p): Path<ProjectPath>,
    JsonBody(body): JsonBody<BatchBody>,
) -> ApiResult<Response> {
    if body.operations.is_empty() || body.operations.len() > MAX_BATCH {
        return Err(ApiError::bad_request(format!(
            "a batch holds 1 to {MAX_BATCH} operations"
        )));
    }
    let in_batch = |index, e: DomainError| DomainError::InBatch {
        index,
        source: Box::new(e),
    };
    let ops = body
        .operations
        .into_iter()
        .enumerate()
        .map(|(i, raw)| {
            serde_json::from_value::<BatchOp>(raw)
                .map_err(|e| DomainError::BadRequest(format!("invalid operation: {e}")))
                .and_then(BatchOp::into_op)
                .map_err(|e| in_batch(i, e))
        })
        .collect::<DomainResult<Vec<_>>>()?;
    let outcomes = s.store.write(&p.scope(), who.caller(), ops).await?;
    let results: Vec<BatchResult> = outcomes
        .into_iter()
        .map(|o| match o {
            WriteOutcome::Entity { entity, .. } => BatchResult::Entity(entity),
            WriteOutcome::Relationship(r) => BatchResult::Relationship(r),
            WriteOutcome::Deleted { id } | WriteOutcome::Purged { id, .. } => {
                BatchResult::Deleted { id, deleted: true }
            }
        })
        .collect();
    Ok(axum::Json(BatchAnswer { data: results }).into_response())
}
