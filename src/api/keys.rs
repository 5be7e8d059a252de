//! Per-org API keys and the audit trail.

use super::auth::{new_key, Admin, Authorized};
use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, PageParams, Path, Query};
use super::{data, page, AppState};
use crate::domain::*;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_key, list_keys))
        .routes(routes!(revoke_key))
        .routes(routes!(list_audit))
}

#[derive(Deserialize)]
struct OrgPath {
    org: String,
}

#[derive(Deserialize)]
struct KeyPath {
    org: String,
    id: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewKey {
    name: String,
    scopes: Vec<KeyScope>,
}

/// Create a key; its secret is in this answer only.
#[utoipa::path(post, path = "/v1/orgs/{org}/keys", tag = "tenancy", request_body = NewKey,
    responses((status = 201, description = "{id, key, scopes}: the key is shown only here")))]
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
    let (id, token, secret_hash) = new_key();
    let stored = StoredKey {
        info: ApiKeyInfo {
            id,
            org: p.org,
            name: body.name,
            scopes,
            created_at: crate::clock::now(),
            created_by: who.caller.key_id.clone(),
            revoked_at: None,
        },
        secret_hash,
    };
    let info = s.store.create_key(&who.caller, stored).await?;
    let mut body = serde_json::to_value(&info).map_err(DomainError::internal)?;
    body["key"] = json!(token);
    Ok(data(StatusCode::CREATED, body))
}

/// List an org's keys (never their secrets).
#[utoipa::path(get, path = "/v1/orgs/{org}/keys", tag = "tenancy", responses((status = 200, description = "keys")))]
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
#[utoipa::path(delete, path = "/v1/orgs/{org}/keys/{id}", tag = "tenancy", responses((status = 204, description = "revoked")))]
async fn revoke_key(
    State(s): State<AppState>,
    who: Authorized<Admin>,
    Path(p): Path<KeyPath>,
) -> ApiResult<StatusCode> {
    s.store.revoke_key(&who.caller, &p.org, &p.id).await?;
    s.auth.forget(&p.id).await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct AuditParams {
    action: Option<String>,
    target: Option<String>,
    // Not flattened: serde_urlencoded cannot parse numbers inside a flatten.
    cursor: Option<String>,
    limit: Option<usize>,
}

/// The org's audit events, newest first.
#[utoipa::path(get, path = "/v1/orgs/{org}/audit", tag = "tenancy", responses((status = 200, description = "audit events")))]
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
