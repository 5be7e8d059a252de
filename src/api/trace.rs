//! One span per request, and its id on every answer.
//!
//! `request` is the outermost layer, so it sees every request, preflights
//! and fallbacks included: it takes the client's `X-Request-Id` when that
//! is a usable id (else makes a UUID), opens the `request` span (the id,
//! the method; later the route, org, project and status), runs the rest
//! inside it, so every event a request causes carries them, and puts the id
//! on the answer. `route` runs after routing, where the matched path
//! template and the path's parameters are known, and records them on the
//! span. When the request ends, one event (target `strata::request`):
//! `debug` normally, `warn` for a 5xx answer.

use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use std::time::Instant;
use tracing::field::Empty;
use tracing::{Instrument, Span};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest client id kept.
const MAX_ID: usize = 128;

/// The request's span, for the layers after routing.
#[derive(Clone)]
struct RequestSpan(Span);

/// A client's id is kept when it is 1 to 128 characters of letters,
/// digits and `-_.:/+=@` (what gateways and tracing systems send), so it
/// is safe in logs and headers as it is.
fn usable(id: &HeaderValue) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_ID
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(b))
}

fn new_id() -> HeaderValue {
    HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()).expect("a UUID is a header value")
}

/// The outermost layer: the id, the span, the closing event.
pub async fn request(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request
        .headers()
        .get(&REQUEST_ID)
        .filter(|v| usable(v))
        .cloned()
        .unwrap_or_else(new_id);
    // Layers and handlers further in see the id that is answered.
    request.headers_mut().insert(REQUEST_ID, id.clone());
    let span = tracing::info_span!(
        "request",
        request_id = id.to_str().unwrap_or_default(),
        method = %request.method(),
        route = Empty,
        org = Empty,
        project = Empty,
        status = Empty,
    );
    request.extensions_mut().insert(RequestSpan(span.clone()));
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("status", status);
    let millis = started.elapsed().as_secs_f64() * 1e3;
    // Inside the span, not only parented to it: JSON lines list the spans
    // entered (`spans`) besides the event's own (`span`).
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!(target: "strata::request", status, millis, "request failed");
        } else {
            tracing::debug!(target: "strata::request", status, millis, "request");
        }
    });
    response.headers_mut().insert(REQUEST_ID, id);
    response
}

/// After routing: the route's template and the path's org and project.
pub async fn route(request: Request, next: Next) -> Response {
    let Some(RequestSpan(span)) = request.extensions().get::<RequestSpan>().cloned() else {
        return next.run(request).await;
    };
    if let Some(path) = request.extensions().get::<MatchedPath>() {
        span.record("route", path.as_str());
    }
    let (mut parts, body) = request.into_parts();
    // No parameters (a fallback, or a path without any): nothing to record.
    if let Ok(params) = RawPathParams::from_request_parts(&mut parts, &()).await {
        for (name, value) in &params {
            if matches!(name, "org" | "project") {
                span.record(name, value);
            }
        }
    }
    next.run(Request::from_parts(parts, body)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_kept_only_when_plain_and_short() {
        for good in [
            "4bf92f35-77b3-4da6-a3ce-929d0e0e4736",
            "req_1",
            "a:b/c+d=e@f.g",
        ] {
            assert!(usable(&HeaderValue::from_static(good)), "{good}");
        }
        let long = "a".repeat(MAX_ID + 1);
        for bad in ["", "two words", "a\"b", "<script>", "é", long.as_str()] {
            let value = HeaderValue::from_bytes(bad.as_bytes()).unwrap();
            assert!(!usable(&value), "{bad}");
        }
        assert!(usable(&new_id()));
    }
}
