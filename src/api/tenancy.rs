//! Orgs and projects.

use super::auth::{Admin, Authorized, GlobalAdmin, Principal, Read};
use super::entities::ProjectPath;
use super::error::ApiResult;
use super::extract::{JsonBody, PageParams, Path, Query};
use super::openapi::{Data, Paged};
use super::{data, page, AppState};
use crate::domain::{validate, DomainError, Org, Page, Project, Scope};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use std::time::Duration;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_org, list_orgs))
        .routes(routes!(get_org, delete_org))
        .routes(routes!(create_project, list_projects))
        .routes(routes!(get_project, delete_project))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewNamed {
    id: Option<String>,
    name: String,
}

impl NewNamed {
    fn checked(self, what: &str) -> ApiResult<(String, String)> {
        let id = self.id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        validate::id(&format!("{what} id"), &id)?;
        validate::name(&format!("{what} name"), &self.name)?;
        Ok((id, self.name))
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct OrgPath {
    /// Org id.
    pub org: String,
}

/// Create an org (global admin).
#[utoipa::path(post, path = "/v1/orgs", tag = "tenancy", request_body = NewNamed,
    security(("api_key" = ["global_admin"])),
    responses((status = 201, description = "created", body = Data<Org>),
        (status = 409, description = "conflict: the id is taken")))]
async fn create_org(
    State(s): State<AppState>,
    who: GlobalAdmin,
    JsonBody(body): JsonBody<NewNamed>,
) -> ApiResult<Response> {
    let (id, name) = body.checked("org")?;
    Ok(data(
        StatusCode::CREATED,
        s.store.create_org(&who.caller, &id, &name).await?,
    ))
}

/// List orgs: all of them for the global admin, its own for an org key.
#[utoipa::path(get, path = "/v1/orgs", tag = "tenancy", params(PageParams), security(("api_key" = [])),
    responses((status = 200, description = "orgs", body = Paged<Org>),
        (status = 404, description = "not_found: the key's org was deleted (its key still cached)")))]
async fn list_orgs(
    State(s): State<AppState>,
    who: Principal,
    Query(p): Query<PageParams>,
) -> ApiResult<Response> {
    let req = p.request()?;
    let result = match (&who.org, &who.grants) {
        // A token: every org under `*`, else those it names that exist,
        // in one page (a token names few).
        (_, Some(grants)) if grants.every.is_some() => s.store.list_orgs(&req).await?,
        (_, Some(grants)) => {
            let mut items = Vec::new();
            for org in grants.orgs.keys() {
                match s.store.get_org(org).await {
                    Ok(found) => items.push(found),
                    Err(DomainError::NotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Page {
                items,
                next_cursor: None,
            }
        }
        (None, None) => s.store.list_orgs(&req).await?,
        (Some(org), None) => Page {
            items: vec![s.store.get_org(org).await?],
            next_cursor: None,
        },
    };
    Ok(page(result, req.limit))
}

/// One org.
#[utoipa::path(get, path = "/v1/orgs/{org}", tag = "tenancy", params(OrgPath), security(("api_key" = ["read"])),
    responses((status = 200, description = "the org", body = Data<Org>)))]
async fn get_org(
    State(s): State<AppState>,
    _: Authorized<Read>,
    Path(p): Path<OrgPath>,
) -> ApiResult<Response> {
    Ok(data(StatusCode::OK, s.store.get_org(&p.org).await?))
}

/// Delete an org and everything in it (admin).
#[utoipa::path(delete, path = "/v1/orgs/{org}", tag = "tenancy", params(OrgPath), security(("api_key" = ["admin"])),
    responses((status = 204, description = "deleted")))]
async fn delete_org(
    State(s): State<AppState>,
    who: Authorized<Admin>,
    Path(p): Path<OrgPath>,
) -> ApiResult<StatusCode> {
    // Listed before they go, for Meilisearch (unlisted, they wait for the
    // daily reconciliation).
    let projects = if s.meili.is_some() {
        crate::feed::reads::projects_of(&s.store, &p.org)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %format!("{e:#}"), org = %p.org, "cannot list the org's projects; the daily reconciliation removes their Meilisearch documents");
                Vec::new()
            })
    } else {
        Vec::new()
    };
    s.store.delete_org(&who.caller, &p.org).await?;
    let scopes: Vec<Scope> = projects.iter().map(|q| Scope::new(&p.org, &q.id)).collect();
    forget_in_meilisearch(&s, &scopes).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Most time a deletion waits for Meilisearch to drop a project's documents.
const MEILI_FORGET: Duration = Duration::from_secs(5);

/// Drops the Meilisearch documents of deleted projects at once: deleting a
/// project deletes its changes, so the consumer never hears of it, and a
/// project made again under its id would find them. If Meilisearch fails
/// or is slow, the daily reconciliation removes them.
async fn forget_in_meilisearch(s: &AppState, scopes: &[Scope]) {
    let Some(index) = s.meili.as_ref() else {
        return;
    };
    for scope in scopes {
        let outcome = tokio::time::timeout(MEILI_FORGET, index.delete_tenant(scope)).await;
        if !matches!(outcome, Ok(Ok(()))) {
            tracing::warn!(org = %scope.org, project = %scope.project, "Meilisearch kept a deleted project's documents; the daily reconciliation removes them");
        }
    }
}

/// Create a project in an org.
#[utoipa::path(post, path = "/v1/orgs/{org}/projects", tag = "tenancy", params(OrgPath), request_body = NewNamed,
    security(("api_key" = ["admin"])),
    responses((status = 201, description = "created", body = Data<Project>),
        (status = 409, description = "conflict: the id is taken")))]
async fn create_project(
    State(s): State<AppState>,
    who: Authorized<Admin>,
    Path(p): Path<OrgPath>,
    JsonBody(body): JsonBody<NewNamed>,
) -> ApiResult<Response> {
    let (id, name) = body.checked("project")?;
    Ok(data(
        StatusCode::CREATED,
        s.store
            .create_project(&who.caller, &p.org, &id, &name)
            .await?,
    ))
}

/// List the projects of an org.
#[utoipa::path(get, path = "/v1/orgs/{org}/projects", tag = "tenancy", params(OrgPath, PageParams),
    security(("api_key" = ["read"])), responses((status = 200, description = "projects", body = Paged<Project>)))]
async fn list_projects(
    State(s): State<AppState>,
    _: Authorized<Read>,
    Path(p): Path<OrgPath>,
    Query(q): Query<PageParams>,
) -> ApiResult<Response> {
    let req = q.request()?;
    Ok(page(s.store.list_projects(&p.org, &req).await?, req.limit))
}

/// One project.
#[utoipa::path(get, path = "/v1/orgs/{org}/projects/{project}", tag = "tenancy", params(ProjectPath),
    security(("api_key" = ["read"])), responses((status = 200, description = "the project", body = Data<Project>)))]
async fn get_project(
    State(s): State<AppState>,
    _: Authorized<Read>,
    Path(p): Path<ProjectPath>,
) -> ApiResult<Response> {
    Ok(data(
        StatusCode::OK,
        s.store.get_project(&p.org, &p.project).await?,
    ))
}

/// Delete a project and everything in it.
#[utoipa::path(delete, path = "/v1/orgs/{org}/projects/{project}", tag = "tenancy", params(ProjectPath),
    security(("api_key" = ["admin"])), responses((status = 204, description = "deleted")))]
async fn delete_project(
    State(s): State<AppState>,
    who: Authorized<Admin>,
    Path(p): Path<ProjectPath>,
) -> ApiResult<StatusCode> {
    s.store
        .delete_project(&who.caller, &p.org, &p.project)
        .await?;
    forget_in_meilisearch(&s, &[p.scope()]).await;
    Ok(StatusCode::NO_CONTENT)
}
