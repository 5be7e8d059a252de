//! Every client-visible failure, mapped to one status and one stable code.
//! Storage faults become a bare 500 whose cause is logged, never sent.

use super::openapi::{ErrorBody, ErrorInfo};
use crate::domain::DomainError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("missing or unknown API key")]
    Unauthorized,
    /// A bearer token that looks like a JWT and was refused (the reason is
    /// one of `oidc::Refusal`'s short ones).
    #[error("bearer token refused: {0}")]
    BadToken(&'static str),
    #[error("this key lacks the {0} scope")]
    Forbidden(&'static str),
    #[error("request body exceeds {0} bytes")]
    PayloadTooLarge(usize),
    /// The body limit layer refused the body (it does not say the limit).
    #[error("request body exceeds the server's body limit (STRATA_BODY_LIMIT)")]
    BodyTooLarge,
    #[error("{0}")]
    RateLimited(u64),
    #[error("no path between the two entities within max_depth")]
    NoPath,
    /// The body's Content-Type is not one the route takes.
    #[error("{0}")]
    UnsupportedMediaType(String),
}

impl ApiError {
    pub fn bad_request(msg: impl Into<String>) -> Self {
        ApiError::Domain(DomainError::BadRequest(msg.into()))
    }

    fn parts(&self) -> (StatusCode, &'static str, String, Option<Value>) {
        match self {
            ApiError::Unauthorized | ApiError::BadToken(_) => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                self.to_string(),
                None,
            ),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", self.to_string(), None),
            ApiError::PayloadTooLarge(_) | ApiError::BodyTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                self.to_string(),
                None,
            ),
            ApiError::NoPath => (StatusCode::NOT_FOUND, "no_path", self.to_string(), None),
            ApiError::UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                self.to_string(),
                None,
            ),
            ApiError::RateLimited(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests".into(),
                None,
            ),
            ApiError::Domain(e) => {
                let (status, _) = e.status_and_code();
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let message = if status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED {
                    // The whole cause (SQLSTATE, detail) goes to the log only.
                    tracing::error!(error = %e, cause = ?std::error::Error::source(e), "request failed");
                    match status {
                        StatusCode::SERVICE_UNAVAILABLE if e.is_contended() => {
                            "concurrent writes to the same data kept colliding; retry".into()
                        }
                        // Ours, and it tells the operator what to do.
                        StatusCode::SERVICE_UNAVAILABLE if e.is_disk_full() => {
                            DomainError::DiskFull.to_string()
                        }
                        StatusCode::SERVICE_UNAVAILABLE => {
                            "a storage service is unavailable".into()
                        }
                        _ => "internal error".into(),
                    }
                } else {
                    match e {
                        DomainError::InBatch { index, source } => {
                            format!("operation {index}: {source}")
                        }
                        e => e.to_string(),
                    }
                };
                (status, e.code(), message, e.details())
            }
        }
    }
}

/// The contract's error body.
pub fn error_body(code: &str, message: &str, details: Option<Value>) -> Value {
    json!(ErrorBody {
        error: ErrorInfo {
            code: code.into(),
            message: message.into(),
            details,
        },
    })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message, details) = self.parts();
        let mut response = (status, Json(error_body(code, &message, details))).into_response();
        let retry_after = match &self {
            ApiError::RateLimited(secs) => Some(*secs),
            // A contended or unavailable store: worth another try shortly.
            _ if status == StatusCode::SERVICE_UNAVAILABLE => Some(1),
            _ => None,
        };
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
