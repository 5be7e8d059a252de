//! Extractors whose rejections speak the contract's error shape: JSON bodies
//! (with the size limit as 413), query strings, paths and `If-Match`.

use super::error::ApiError;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use bytes::Bytes;
use serde::de::DeserializeOwned;

/// A JSON request body: `Content-Type: application/json` (or
/// `application/*+json`) is required, else 415 before the body is read (a
/// web page can send text/plain or a form without a CORS preflight, never
/// JSON). The body is parsed strictly (`domain::json`: no duplicate keys,
/// numbers kept exactly or refused).
///
/// Hand-written rather than `#[derive(FromRequest)]` via `axum::Json`:
/// `axum::Json` parses with plain serde_json (the last of two duplicate keys
/// wins, big numbers are rounded), and its rejection does not tell the body
/// limit (413) from a malformed body.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType(
                "this route takes a JSON body: send Content-Type: application/json".into(),
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(body_error)?;
        let value = crate::domain::json::parse(&bytes)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
        serde_json::from_value(value)
            .map(JsonBody)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    }
}

/// The media type of a request body, lowercased, without parameters.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next().unwrap_or_default().trim();
    Some(essence.to_ascii_lowercase())
}

/// `application/json` or `application/<something>+json`, any parameters.
pub fn is_json(headers: &HeaderMap) -> bool {
    media_type(headers).is_some_and(|m| {
        m == "application/json"
            || m.strip_prefix("application/")
                .and_then(|sub| sub.strip_suffix("+json"))
                .is_some_and(|name| !name.is_empty() && !name.contains('/'))
    })
}

pub fn body_error(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::BodyTooLarge
    } else {
        ApiError::bad_request(format!("cannot read the request body: {e}"))
    }
}

/// Query parameters; a malformed query string is a 400 in the contract's
/// error shape.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::bad_request(e.body_text())
    }
}

/// Path parameters; ones that do not parse are a 400 in the contract's
/// error shape.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        ApiError::bad_request(e.body_text())
    }
}

/// `If-Match: "<version>"`; absent or `*` means any version. Hand-written:
/// `headers::IfMatch` only compares against an ETag, and this wants the
/// version number out of it (and a 400 naming the form when it is not one).
pub struct IfMatch(pub Option<i64>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(axum::http::header::IF_MATCH) else {
            return Ok(IfMatch(None));
        };
        let text = value
            .to_str()
            .map_err(|_| ApiError::bad_request("If-Match must be ASCII"))?
            .trim();
        if text == "*" {
            return Ok(IfMatch(None));
        }
        let bare = text.trim_start_matches("W/").trim_matches('"');
        bare.parse::<i64>().map(|v| IfMatch(Some(v))).map_err(|_| {
            ApiError::bad_request("If-Match must be a quoted version number, e.g. \"3\"")
        })
    }
}

/// Page parameters shared by every list.
#[derive(Debug, serde::Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

impl PageParams {
    pub fn request(&self) -> Result<crate::domain::PageRequest, ApiError> {
        Ok(crate::domain::PageRequest {
            cursor: self.cursor.clone().filter(|c| !c.is_empty()),
            limit: page_limit(self.limit, DEFAULT_LIMIT, MAX_LIMIT)?,
        })
    }
}

/// Checks a `limit` parameter against its bounds.
pub fn page_limit(limit: Option<usize>, default: usize, max: usize) -> Result<usize, ApiError> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::bad_request(format!(
            "limit must be between 1 and {max}"
        ))),
    }
}
