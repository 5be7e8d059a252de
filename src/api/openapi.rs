//! The OpenAPI document's shared parts: the envelopes every answer is
//! serialised through (`Data`, `Paged`, `ErrorBody`), the API key scheme,
//! and `complete`, which gives each operation the error answers that follow
//! from what it declares.
//!
//! Each handler's `#[utoipa::path]` names the `IntoParams` structs it parses,
//! its bodies, its success answers, its scope (`security`) and the errors
//! only its own logic gives (409, 410, 422, 501, ...). The rest comes from
//! the extractors and layers every route shares, so `complete` derives it
//! from the operation instead of each handler repeating it.

use super::extract::IfMatch;
use serde::Serialize;
use serde_json::{json, Map, Value};
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi, Required};
use utoipa::{IntoParams, Modify, PartialSchema, ToSchema};

/// One item: `{"data": ...}`.
#[derive(Serialize, ToSchema)]
pub struct Data<T> {
    pub data: T,
}

/// One page of a list.
#[derive(Serialize, ToSchema)]
pub struct Paged<T> {
    pub data: Vec<T>,
    pub pagination: Pagination,
}

#[derive(Serialize, ToSchema)]
pub struct Pagination {
    /// Pass it back as `cursor=` for the next page; null on the last one.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
    pub limit: usize,
}

/// Every error answer: `{"error": {"code", "message", "details"?}}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorInfo,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorInfo {
    /// Stable: `bad_request`, `unauthorized`, `forbidden`, `not_found`,
    /// `no_path`, `conflict`, `precondition_failed`, `payload_too_large`,
    /// `unsupported_media_type`, `unprocessable`, `rate_limited`, `gone`,
    /// `not_implemented`, `unavailable`, `internal`.
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub details: Option<Value>,
}

impl IntoParams for IfMatch {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![ParameterBuilder::new()
            .name("If-Match")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "`\"<version>\"` (or `*`): a stale version answers 412 and changes nothing",
            ))
            .schema(Some(String::schema()))
            .build()]
    }
}

/// The API key scheme: `Authorization: Bearer <key>`. Operations name the
/// scope they need as the requirement's role: `read`, `write`, `admin`
/// (on the org in the path) or `global_admin` (the bootstrap key); an empty
/// list means any valid key.
pub struct ApiKey;

impl Modify for ApiKey {
    fn modify(&self, doc: &mut OpenApi) {
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "api_key",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(
                            "the bootstrap admin key or an org key `sk_<id>_<secret>`",
                        ))
                        .build(),
                ),
            );
        // Accepted only when the daemon is configured for an issuer
        // (STRATA_OIDC_*); `complete` offers it beside each key requirement.
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "oidc",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .description(Some(
                            "an OIDC access token of the configured issuer; the same roles, granted per org by its `<org>:read|write|admin` claim entries (`*` for every org, `strata:global_admin`)",
                        ))
                        .build(),
                ),
            );
    }
}

/// The answers every operation can give because of what it declares: its
/// parameters and body are parsed (400), its key checked (401, 403, 429),
/// its path names a resource (404), its body is limited and typed (413,
/// 415), and every request runs under the timeout layer (503). Each error
/// answer, added here or declared by the handler, gets the error schema;
/// each answer of one entity declares its `ETag`, and every answer its
/// `X-Request-Id`.
pub fn complete(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for item in paths.values_mut().filter_map(Value::as_object_mut) {
        for op in item.values_mut().filter_map(Value::as_object_mut) {
            offer_tokens(op);
            let implied = implied_errors(op);
            let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
                continue;
            };
            for (status, description) in implied {
                responses
                    .entry(status.to_string())
                    .or_insert_with(|| json!({ "description": description }));
            }
            for (status, response) in responses.iter_mut() {
                if status.as_str() >= "400" && response.get("content").is_none() {
                    response["content"] = json!({ "application/json": {
                        "schema": { "$ref": "#/components/schemas/ErrorBody" }
                    }});
                }
                // One entity is only ever sent by `entity_response`, with its ETag.
                if response["content"]["application/json"]["schema"]["$ref"]
                    == "#/components/schemas/Data_Entity"
                {
                    response["headers"] = json!({ "ETag": {
                        "description": "the entity's version, quoted: `\"<version>\"`",
                        "required": true,
                        "schema": { "type": "string" }
                    }});
                }
            }
            if let Some(limited) = responses.get_mut("429") {
                limited["headers"] = json!({ "Retry-After": {
                    "description": "seconds until the key may call again",
                    "required": true,
                    "schema": { "type": "integer" }
                }});
            }
            if let Some(unavailable) = responses.get_mut("503") {
                unavailable["headers"] = json!({ "Retry-After": {
                    "description": "seconds after which the request is worth sending again",
                    "required": false,
                    "schema": { "type": "integer" }
                }});
            }
            // Every answer has its request id (`trace::request`).
            for response in responses.values_mut() {
                response["headers"]["X-Request-Id"] = json!({
                    "description": "the request's id: the client's `X-Request-Id` when usable (1 to 128 of letters, digits and `-_.:/+=@`), else a new UUID; logs carry it",
                    "required": true,
                    "schema": { "type": "string" }
                });
            }
        }
    }
}

/// Each API key requirement gets an OIDC token alternative with the same
/// roles (requirements in the list are alternatives).
fn offer_tokens(op: &mut Map<String, Value>) {
    let Some(reqs) = op.get_mut("security").and_then(Value::as_array_mut) else {
        return;
    };
    let tokens: Vec<Value> = reqs
        .iter()
        .filter_map(|r| r.get("api_key"))
        .map(|roles| json!({ "oidc": roles }))
        .collect();
    reqs.extend(tokens);
}

fn implied_errors(op: &Map<String, Value>) -> Vec<(u16, &'static str)> {
    let params = op
        .get("parameters")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let body = op.get("requestBody");
    let json_body = body.is_some_and(|b| b["content"].get("application/json").is_some());
    // Roles of the `api_key` requirement; None for an open route.
    let roles: Option<Vec<&str>> = op.get("security").and_then(Value::as_array).map(|reqs| {
        reqs.iter()
            .filter_map(|r| r.get("api_key").and_then(Value::as_array))
            .flatten()
            .filter_map(Value::as_str)
            .collect()
    });
    let mut out = Vec::new();
    if !params.is_empty() || body.is_some() {
        out.push((400, "bad_request: a parameter or the body is invalid"));
    }
    if let Some(roles) = &roles {
        out.push((
            401,
            "unauthorized: missing or unknown API key, or a refused bearer token",
        ));
        if roles.iter().any(|r| *r != "read") {
            out.push((403, "forbidden: the key lacks the scope"));
        }
        if roles.iter().any(|r| *r == "write" || *r == "admin") {
            out.push((
                409,
                "conflict: the resource exists already, or is not in the state the write needs",
            ));
        }
        out.push((429, "rate_limited: too many requests for this key"));
    }
    if params.iter().any(|p| p["in"] == "path") {
        out.push((404, "not_found: no such resource here (or of another org)"));
    }
    if params.iter().any(|p| p["name"] == "If-Match") {
        out.push((412, "precondition_failed: If-Match names a stale version"));
    }
    if body.is_some() {
        out.push((413, "payload_too_large: the body exceeds the limit"));
    }
    if json_body {
        out.push((
            415,
            "unsupported_media_type: a JSON body needs Content-Type application/json",
        ));
    }
    if roles.is_some() {
        out.push((500, "internal: a storage fault (logged, not described)"));
    }
    out.push((
        503,
        "unavailable: the request timed out, a storage service is down, or concurrent writes kept colliding (retry)",
    ));
    out
}
