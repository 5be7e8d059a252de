//! Per-org API keys and the audit trail.

use super::auth::{new_key, Admin, Authorized};
use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, PageParams, Path, Query};
use super::openapi::{Data, Paged};
use super::tenancy::OrgPath;
use super::{data, page, AppState};
use crate::domain::*;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_key, list_keys))
        .routes(routes!(revoke_key))
        .routes(routes!(list_audit))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
struct KeyPath {
    /// Org id.
    org: String,
    /// Key id.
    id: String,
}

/// A new key with its secret, shown only in the answer that created it.
#[derive(Serialize, utoipa::ToSchema)]
struct CreatedKey {
    #[serde(flatten)]
    info: ApiKeyInfo,
    /// `sk_<id>_<secret>`: the whole key, for `Authorization: Bearer`.
    key: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewKey {
    name: String,
    scopes: Vec<KeyScope>,
    /// Limits the key to these projects of the org (each must exist): it
    /// sees the others, and the org's own routes, as a key of another org
    /// would. Absent: every project.
    projects: Option<Vec<String>>,
}

/// Create a key; its secret is in this answer only.
#[utoipa::path(post, path = "/v1/orgs/{org}/keys", tag = "tenancy", params(OrgPath), request_body = NewKey,
    security(("api_key" = ["admin"])),
    responses((status = 201, description = "the key with its secret, shown only here", body = Data<CreatedKey>),
        (status = 404, description = "not_found: the org, or a project listed in `projects`")))]
async fn create_key(
    State(s): State<AppState>,
    who: Authorized<Admin>,
    Path(p): Path<OrgPath>,
    JsonBody(body): JsonBody<NewKey>,
) -> ApiResult<Response> {
    validate::name("key name", &body.name)?;
    if body.scopes.is_empty() {
        return Err(ApiError::bad_request(
            "scopes must name at least one of read, write, admin",
        ));
    }
    let mut scopes = body.scopes;
    scopes.sort();
    scopes.dedup();
    let projects = match body.projects {
        None => None,
        Some(list) if list.is_empty() => {
            return Err(ApiError::bad_request(
                "projects must name at least one project (leave it out for all)",
            ))
        }
        Some(mut list) => {
            list.sort();
            list.dedup();
            for project in &list {
                validate::id("project", project)?;
                s.store.get_project(&p.org, project).await?;
            }
            Some(list)
        }
    };
    let (id, token, secret_hash) = new_key();
    let stored = StoredKey {
        info: ApiKeyInfo {
            id,
            org: p.org,
            name: body.name,
            scopes,
            projects,
            created_at: crate::clock::now(),
            created_by: who.caller.key_id.clone(),
            revoked_at: None,
        },
        secret_hash,
    };
    let info = s.store.create_key(&who.caller, stored).await?;
    Ok(data(StatusCode::CREATED, CreatedKey { info, key: token }))
}

/// List an org's keys (never their secrets).
#[utoipa::path(get, path = "/v1/orgs/{org}/keys", tag = "tenancy", params(OrgPath, PageParams),
    security(("api_key" = ["admin"])), responses((status = 200, description = "keys", body = Paged<ApiKeyInfo>)))]
async fn list_keys(
    State(s): State<AppState>,
    _: Authorized<Admin>,
    Path(p): Path<OrgPath>,
    Query(q): Query<PageParams>,
) -> ApiResult<Response> {
    let req = q.request()?;
    Ok(page(s.store.list_keys(&p.org, &req).await?, req.limit))
}

/// Revoke a key: refused from the next request on.
#[utoipa::path(delete, path = "/v1/orgs/{org}/keys/{id}", tag = "tenancy", params(KeyPath),
    security(("api_key" = ["admin"])), responses((status = 204, description = "revoked")))]
async fn revoke_key(
    State(s): State<AppState>,
    who: Authorized<Admin>,
    Path(p): Path<KeyPath>,
) -> ApiResult<StatusCode> {
    s.store.revoke_key(&who.caller, &p.org, &p.id).await?;
    s.auth.forget(&p.id).await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditParams {
    /// Only events of this action (`entity.create`, ...).
    action: Option<String>,
    /// Only events on this target.
    target: Option<String>,
    // Not flattened: serde_urlencoded cannot parse numbers inside a flatten.
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// The org's audit events, newest first.
#[utoipa::path(get, path = "/v1/orgs/{org}/audit", tag = "tenancy", params(OrgPath, AuditParams),
    security(("api_key" = ["admin"])), responses((status = 200, description = "audit events, newest first", body = Paged<AuditEvent>)))]
async fn list_audit(
    State(s): State<AppState>,
    _: Authorized<Admin>,
    Path(p): Path<OrgPath>,
    Query(q): Query<AuditParams>,
) -> ApiResult<Response> {
    let req = PageParams {
        cursor: q.cursor,
        limit: q.limit,
    }
    .request()?;
    let filter = AuditFilter {
        action: q.action,
        target: q.target,
    };
    Ok(page(
        s.store.list_audit(&p.org, &filter, &req).await?,
        req.limit,
    ))
}
