//! Backups (global admin): take one, list them, read one, verify one.
//! Restores are a CLI operation into an empty store, never through the API.

use super::auth::GlobalAdmin;
use super::error::ApiResult;
use super::extract::{JsonBody, Path};
use super::openapi::Data;
use super::{data, AppState};
use crate::backup::manifest::Kind;
use crate::backup::{BackupInfo, Verification};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_backup, list_backups))
        .routes(routes!(get_backup))
        .routes(routes!(verify_backup))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewBackup {
    /// `full`, or `incr`: what changed since the newest backup (a full
    /// backup when there is none or the change feed no longer reaches it).
    #[serde(rename = "type")]
    kind: Kind,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
struct BackupPath {
    /// Backup id.
    id: String,
}

/// Start a backup; it runs in the background (see its state).
#[utoipa::path(post, path = "/v1/admin/backups", tag = "backups", request_body = NewBackup,
    security(("api_key" = ["global_admin"])),
    responses((status = 202, description = "started", body = Data<BackupInfo>),
        (status = 409, description = "conflict: a backup is running already")))]
async fn create_backup(
    State(s): State<AppState>,
    _: GlobalAdmin,
    JsonBody(body): JsonBody<NewBackup>,
) -> ApiResult<Response> {
    Ok(data(
        StatusCode::ACCEPTED,
        s.backups.start(body.kind).await?,
    ))
}

/// Every complete backup, and this daemon's running and failed ones, oldest first.
#[utoipa::path(get, path = "/v1/admin/backups", tag = "backups",
    security(("api_key" = ["global_admin"])),
    responses((status = 200, description = "the backups", body = Data<Vec<BackupInfo>>)))]
async fn list_backups(State(s): State<AppState>, _: GlobalAdmin) -> ApiResult<Response> {
    Ok(data(StatusCode::OK, s.backups.list().await?))
}

/// One backup.
#[utoipa::path(get, path = "/v1/admin/backups/{id}", tag = "backups", params(BackupPath),
    security(("api_key" = ["global_admin"])),
    responses((status = 200, description = "the backup", body = Data<BackupInfo>)))]
async fn get_backup(
    State(s): State<AppState>,
    _: GlobalAdmin,
    Path(p): Path<BackupPath>,
) -> ApiResult<Response> {
    Ok(data(StatusCode::OK, s.backups.get(&p.id).await?))
}

/// Check a backup and the chain it needs: manifests, every chunk's size,
/// checksum and lines, and every record as an import would check it.
#[utoipa::path(post, path = "/v1/admin/backups/{id}/verify", tag = "backups", params(BackupPath),
    security(("api_key" = ["global_admin"])),
    responses((status = 200, description = "what was found", body = Data<Verification>)))]
async fn verify_backup(
    State(s): State<AppState>,
    _: GlobalAdmin,
    Path(p): Path<BackupPath>,
) -> ApiResult<Response> {
    Ok(data(StatusCode::OK, s.backups.verify(&p.id).await?))
}
