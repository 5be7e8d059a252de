//! CORS: pages of the configured origins (`STRATA_CORS_ORIGINS`) may call
//! the API from a browser; with none configured (the default) nothing here
//! is installed and no answer carries a CORS header.
//!
//! tower-http's `CorsLayer` answers every `OPTIONS` itself and puts its
//! method, header and `Vary` headers on every answer, whatever the origin.
//! So only requests from an allowed origin go through it: a preflight
//! (`OPTIONS` with `Access-Control-Request-Method`), answered before the
//! router (no key needed: browsers send none on a preflight), and the
//! actual requests, which pass through every check as usual and get the
//! CORS headers on whatever they answer, errors included. Every other
//! request skips it: another origin's preflight is a 405 like any
//! `OPTIONS`, with no CORS header, so the browser refuses the call.

use axum::extract::Request;
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures_util::future::BoxFuture;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{Layer, Service, ServiceExt};
use tower_http::cors::{AllowOrigin, Cors, CorsLayer};

/// The methods the API's routes take (HEAD and GET need no preflight).
const METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

/// The request headers the API reads.
const REQUEST_HEADERS: [HeaderName; 7] = [
    header::AUTHORIZATION,
    header::CONTENT_TYPE,
    header::ACCEPT,
    header::IF_MATCH,
    HeaderName::from_static("x-strata-origin"),
    HeaderName::from_static("last-event-id"),
    HeaderName::from_static("x-request-id"),
];

/// The answer headers beyond the ones browsers always show to scripts.
const RESPONSE_HEADERS: [HeaderName; 4] = [
    header::ETAG,
    header::RETRY_AFTER,
    HeaderName::from_static("x-strata-seq"),
    HeaderName::from_static("x-request-id"),
];

/// How long a browser may reuse a preflight's answer.
const MAX_AGE: Duration = Duration::from_secs(3600);

/// `app` answering CORS for `origins` (as `Config::cors_origins` holds
/// them: browser form, or `*` alone); `app` itself when there are none.
pub fn wrap(app: Router, origins: &[String]) -> Router {
    if origins.is_empty() {
        return app;
    }
    let allowed = Arc::new(Allowed::new(origins));
    let allow_origin = match &*allowed {
        Allowed::Any => AllowOrigin::any(),
        Allowed::List(list) => AllowOrigin::list(list.iter().cloned()),
    };
    let layer = CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods(METHODS)
        .allow_headers(REQUEST_HEADERS)
        .expose_headers(RESPONSE_HEADERS)
        .max_age(MAX_AGE);
    Router::new().fallback_service(Steer {
        allowed,
        cors: layer.layer(app.clone()),
        plain: app,
    })
}

enum Allowed {
    Any,
    List(Vec<HeaderValue>),
}

impl Allowed {
    fn new(origins: &[String]) -> Self {
        if origins.iter().any(|o| o == "*") {
            return Allowed::Any;
        }
        Allowed::List(
            origins
                .iter()
                .map(|o| HeaderValue::from_str(o).expect("the configuration checked the origin"))
                .collect(),
        )
    }

    /// A request that gets CORS answers: from an allowed origin, and
    /// either a preflight or not an `OPTIONS` at all.
    fn wants(&self, request: &Request) -> bool {
        let Some(origin) = request.headers().get(header::ORIGIN) else {
            return false;
        };
        let allowed = match self {
            Allowed::Any => true,
            Allowed::List(list) => list.contains(origin),
        };
        allowed
            && (request.method() != Method::OPTIONS
                || request
                    .headers()
                    .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD))
    }
}

/// Sends a request through the CORS layer or around it.
#[derive(Clone)]
struct Steer {
    allowed: Arc<Allowed>,
    cors: Cors<Router>,
    plain: Router,
}

impl Service<Request> for Steer {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Both are routers, always ready; each call is driven by `oneshot`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if self.allowed.wants(&request) {
            let cors = self.cors.clone();
            Box::pin(async move { Ok(cors.oneshot(request).await?.into_response()) })
        } else {
            let plain = self.plain.clone();
            Box::pin(async move {
                let mut response = plain.oneshot(request).await?;
                // The answer differs by Origin: caches must not reuse this
                // one for a request from an allowed origin.
                response
                    .headers_mut()
                    .append(header::VARY, HeaderValue::from_static("origin"));
                Ok(response)
            })
        }
    }
}
