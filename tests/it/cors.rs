//! CORS (`STRATA_CORS_ORIGINS`): off by default; for a configured origin a
//! preflight is answered without a key, naming the methods and headers the
//! API uses, and actual answers (errors too) carry the CORS headers; for
//! any other origin no answer carries a CORS header.

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use serde_json::json;
use tower::ServiceExt;

const ADMIN: &str = "test-admin-key-0123456789";
const APP: &str = "https://app.example";
const P: &str = "/v1/orgs/acme/projects/app";

/// A daemon with org `acme`, project `app` and entity `e1`, answering
/// CORS for `origins` (none: the default).
async fn daemon(origins: &[&str]) -> (axum::Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = strata::config::Config::embedded(dir.path());
    config.cors_origins = origins.iter().map(|o| o.to_string()).collect();
    let daemon = strata::server::build(config, ADMIN).await.unwrap();
    for (uri, body) in [
        (
            "/v1/orgs".to_string(),
            json!({"id": "acme", "name": "Acme"}),
        ),
        (
            "/v1/orgs/acme/projects".into(),
            json!({"id": "app", "name": "App"}),
        ),
        (format!("{P}/entities"), json!({"id": "e1", "type": "task"})),
    ] {
        let (status, text) = crate::support::admin(&daemon.router, ADMIN, "POST", &uri, body).await;
        assert!(status.is_success(), "{uri}: {status} {text}");
    }
    (daemon.router, dir)
}

async fn send(router: &axum::Router, request: Request<Body>) -> (StatusCode, HeaderMap) {
    let response = router.clone().oneshot(request).await.unwrap();
    (response.status(), response.headers().clone())
}

/// What a browser sends before a PATCH with a key and a JSON body.
fn preflight(origin: &str, path: &str) -> Request<Body> {
    Request::builder()
        .method(Method::OPTIONS)
        .uri(path)
        .header("origin", origin)
        .header("access-control-request-method", "PATCH")
        .header(
            "access-control-request-headers",
            "authorization, content-type, if-match",
        )
        .body(Body::empty())
        .unwrap()
}

fn get(origin: &str, path: &str, key: Option<&str>) -> Request<Body> {
    let mut request = Request::builder().uri(path).header("origin", origin);
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    request.body(Body::empty()).unwrap()
}

fn cors_headers(headers: &HeaderMap) -> Vec<String> {
    headers
        .keys()
        .map(|k| k.as_str().to_owned())
        .filter(|k| k.starts_with("access-control-"))
        .collect()
}

/// A header's comma-separated values, lowercase.
fn listed(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|v| v.to_str().unwrap().split(','))
        .map(|v| v.trim().to_ascii_lowercase())
        .collect()
}

#[tokio::test]
async fn without_configured_origins_no_answer_carries_cors_headers() {
    let (router, _dir) = daemon(&[]).await;
    let (status, headers) = send(&router, preflight(APP, &format!("{P}/entities/e1"))).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(cors_headers(&headers), Vec::<String>::new());
    let (status, headers) = send(&router, get(APP, &format!("{P}/entities/e1"), Some(ADMIN))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cors_headers(&headers), Vec::<String>::new());
}

#[tokio::test]
async fn a_configured_origin_gets_its_preflight_answered_without_a_key() {
    let (router, _dir) = daemon(&[APP, "http://localhost:3000"]).await;
    for path in [format!("{P}/entities/e1"), "/v1/orgs".into()] {
        let (status, headers) = send(&router, preflight(APP, &path)).await;
        assert!(status.is_success(), "{path}: {status}");
        assert_eq!(headers["access-control-allow-origin"], APP);
        let methods = listed(&headers, "access-control-allow-methods");
        for method in ["get", "post", "put", "patch", "delete"] {
            assert!(methods.iter().any(|m| m == method), "{method}: {methods:?}");
        }
        let allowed = listed(&headers, "access-control-allow-headers");
        for name in [
            "authorization",
            "content-type",
            "if-match",
            "x-strata-origin",
            "last-event-id",
            "x-request-id",
        ] {
            assert!(allowed.iter().any(|h| h == name), "{name}: {allowed:?}");
        }
        assert!(headers.contains_key("access-control-max-age"));
    }
    let (_, headers) = send(&router, preflight("http://localhost:3000", "/v1/orgs")).await;
    assert_eq!(
        headers["access-control-allow-origin"],
        "http://localhost:3000"
    );
}

#[tokio::test]
async fn answers_to_a_configured_origin_carry_cors_headers_errors_included() {
    let (router, _dir) = daemon(&[APP]).await;
    let (status, headers) = send(&router, get(APP, &format!("{P}/entities/e1"), Some(ADMIN))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["access-control-allow-origin"], APP);
    let exposed = listed(&headers, "access-control-expose-headers");
    for name in ["etag", "x-request-id", "retry-after", "x-strata-seq"] {
        assert!(exposed.iter().any(|h| h == name), "{name}: {exposed:?}");
    }
    // The page can read why it was refused.
    let (status, headers) = send(&router, get(APP, &format!("{P}/entities/e1"), None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["access-control-allow-origin"], APP);
    let (status, headers) = send(&router, get(APP, "/v1/nowhere", Some(ADMIN))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers["access-control-allow-origin"], APP);
}

#[tokio::test]
async fn another_origin_gets_no_cors_headers() {
    let (router, _dir) = daemon(&[APP]).await;
    for other in ["https://evil.example", "https://app.example:8443", "null"] {
        let (status, headers) = send(&router, preflight(other, &format!("{P}/entities/e1"))).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{other}");
        assert_eq!(cors_headers(&headers), Vec::<String>::new(), "{other}");
        let (status, headers) = send(
            &router,
            get(other, &format!("{P}/entities/e1"), Some(ADMIN)),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{other}");
        assert_eq!(cors_headers(&headers), Vec::<String>::new(), "{other}");
        // The answer depends on the origin: caches keep them apart.
        assert!(listed(&headers, "vary").iter().any(|v| v == "origin"));
    }
    // An OPTIONS that is not a preflight is not answered as one.
    let plain = Request::builder()
        .method(Method::OPTIONS)
        .uri("/v1/orgs")
        .header("origin", APP)
        .body(Body::empty())
        .unwrap();
    let (status, headers) = send(&router, plain).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(cors_headers(&headers), Vec::<String>::new());
}

#[tokio::test]
async fn a_star_allows_every_origin() {
    let (router, _dir) = daemon(&["*"]).await;
    let (status, headers) = send(&router, preflight("https://anywhere.example", "/v1/orgs")).await;
    assert!(status.is_success(), "{status}");
    assert_eq!(headers["access-control-allow-origin"], "*");
    let (status, headers) = send(
        &router,
        get("https://anywhere.example", "/v1/orgs", Some(ADMIN)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["access-control-allow-origin"], "*");
}
