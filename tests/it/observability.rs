//! What an operator reads: every answer has an `X-Request-Id` (the
//! client's when usable, else a new UUID), errors, fallbacks and CORS
//! preflights included; with `STRATA_LOG_FORMAT=json` the daemon's log is
//! JSON lines, and a request's lines carry its span: the id, method, route
//! template, org, project and status.

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use serde_json::{json, Value};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncBufReadExt;
use tower::ServiceExt;

const ADMIN: &str = "test-admin-key-0123456789";
const P: &str = "/v1/orgs/acme/projects/app";

async fn router(cors: &[&str]) -> (axum::Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = strata::config::Config::embedded(dir.path());
    config.cors_origins = cors.iter().map(|o| o.to_string()).collect();
    let daemon = strata::server::build(config, ADMIN).await.unwrap();
    (daemon.router, dir)
}

async fn send(router: &axum::Router, request: Request<Body>) -> (StatusCode, HeaderMap) {
    let response = router.clone().oneshot(request).await.unwrap();
    (response.status(), response.headers().clone())
}

fn request(method: &str, uri: &str, key: Option<&str>, id: Option<&str>) -> Request<Body> {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    if let Some(id) = id {
        request = request.header("x-request-id", id);
    }
    let body = if method == "POST" {
        json!({"id": "acme", "name": "Acme"}).to_string()
    } else {
        String::new()
    };
    request.body(Body::from(body)).unwrap()
}

fn request_id(headers: &HeaderMap) -> String {
    let ids: Vec<_> = headers.get_all("x-request-id").iter().collect();
    assert_eq!(ids.len(), 1, "one X-Request-Id: {headers:?}");
    ids[0].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn every_answer_has_a_request_id_of_its_own() {
    let (router, _dir) = router(&["https://app.example"]).await;
    let preflight = Request::builder()
        .method("OPTIONS")
        .uri("/v1/orgs")
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .body(Body::empty())
        .unwrap();
    let cases = [
        (
            request("POST", "/v1/orgs", Some(ADMIN), None),
            StatusCode::CREATED,
        ),
        (
            request("GET", "/v1/orgs/acme", Some(ADMIN), None),
            StatusCode::OK,
        ),
        (
            request("GET", "/v1/orgs/acme", None, None),
            StatusCode::UNAUTHORIZED,
        ),
        (
            request("GET", "/v1/orgs/nope", Some(ADMIN), None),
            StatusCode::NOT_FOUND,
        ),
        (
            request("POST", "/v1/orgs", Some(ADMIN), None),
            StatusCode::CONFLICT,
        ),
        // The fallbacks: no such path, and a path without that method.
        (
            request("GET", "/v1/nowhere", Some(ADMIN), None),
            StatusCode::NOT_FOUND,
        ),
        (
            request("PUT", "/v1/orgs", Some(ADMIN), None),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (request("GET", "/health/live", None, None), StatusCode::OK),
        (preflight, StatusCode::OK),
    ];
    let mut seen = std::collections::HashSet::new();
    for (request, expected) in cases {
        let what = format!("{} {}", request.method(), request.uri());
        let (status, headers) = send(&router, request).await;
        assert_eq!(status, expected, "{what}");
        let id = request_id(&headers);
        uuid::Uuid::parse_str(&id).unwrap_or_else(|e| panic!("{what}: {id:?}: {e}"));
        assert!(seen.insert(id), "{what}: an id answered twice");
    }
}

#[tokio::test]
async fn a_usable_client_id_is_answered_back_and_another_replaced() {
    let (router, _dir) = router(&[]).await;
    for (given, status) in [
        ("4bf92f35-77b3-4da6-a3ce-929d0e0e4736", StatusCode::OK),
        ("gateway:req/42", StatusCode::NOT_FOUND),
    ] {
        let uri = if status == StatusCode::OK {
            "/v1/orgs"
        } else {
            "/v1/orgs/nope"
        };
        let (answered, headers) =
            send(&router, request("GET", uri, Some(ADMIN), Some(given))).await;
        assert_eq!(answered, status);
        assert_eq!(request_id(&headers), given);
    }
    let long = "a".repeat(129);
    for bad in ["two words", "<script>", long.as_str()] {
        let (_, headers) = send(&router, request("GET", "/v1/orgs", Some(ADMIN), Some(bad))).await;
        let id = request_id(&headers);
        assert_ne!(id, bad);
        uuid::Uuid::parse_str(&id).unwrap();
    }
}

/// The built binary serving on a free loopback port; its standard error,
/// line by line, as it comes.
struct Served {
    child: tokio::process::Child,
    base: String,
    log: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

async fn serve_binary(env: &[(&str, &str)]) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("serve")
        .env_clear()
        .env("STRATA_DATA_DIR", dir.path())
        .env("STRATA_LISTEN", format!("127.0.0.1:{port}"))
        .env("STRATA_ADMIN_KEY", ADMIN)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let sink = log.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    crate::support::eventually(Duration::from_secs(60), || async {
        client
            .get(format!("{base}/health/live"))
            .send()
            .await
            .is_ok()
    })
    .await;
    Served {
        child,
        base,
        log,
        _dir: dir,
    }
}

/// The log line of the request that `id` names, once written.
async fn line_of(served: &Served, id: &str) -> Value {
    let mut found = Value::Null;
    crate::support::eventually(Duration::from_secs(10), || {
        let lines = served.log.lock().unwrap().clone();
        found = lines
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["span"]["request_id"] == id && v["target"] == "strata::request")
            .unwrap_or(Value::Null);
        std::future::ready(!found.is_null())
    })
    .await;
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_request_span() {
    let mut served = serve_binary(&[
        ("STRATA_LOG_FORMAT", "json"),
        ("STRATA_LOG", "info,strata::request=debug"),
    ])
    .await;
    let client = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, id: &str, body: Option<Value>| {
        let mut request = client
            .request(method, format!("{}{path}", served.base))
            .bearer_auth(ADMIN)
            .header("x-request-id", id);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send()
    };
    let post = reqwest::Method::POST;
    let r = call(
        post.clone(),
        "/v1/orgs",
        "seed-1",
        Some(json!({"id": "acme", "name": "A"})),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let r = call(
        post,
        "/v1/orgs/acme/projects",
        "seed-2",
        Some(json!({"id": "app", "name": "A"})),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let r = call(
        reqwest::Method::GET,
        &format!("{P}/entities/missing"),
        "ops-404",
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["x-request-id"], "ops-404");

    let line = line_of(&served, "ops-404").await;
    let span = &line["span"];
    assert_eq!(span["name"], "request", "{line}");
    assert_eq!(span["method"], "GET", "{line}");
    assert_eq!(
        span["route"], "/v1/orgs/{org}/projects/{project}/entities/{id}",
        "{line}"
    );
    assert_eq!(
        (&span["org"], &span["project"]),
        (&json!("acme"), &json!("app")),
        "{line}"
    );
    assert_eq!(span["status"], 404, "{line}");
    assert_eq!(line["status"], 404, "{line}");
    assert!(line["millis"].is_number(), "{line}");
    assert!(
        line["timestamp"].is_string() && line["level"] == "DEBUG",
        "{line}"
    );
    assert!(
        line["spans"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["request_id"] == "ops-404")),
        "{line}"
    );
    // A generated id is in the log as answered, and a path without org
    // has none.
    let r = client
        .get(format!("{}/v1/nowhere", served.base))
        .send()
        .await
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let line = line_of(&served, &id).await;
    assert_eq!(line["span"]["status"], 404, "{line}");
    assert!(line["span"].get("org").is_none(), "{line}");

    // Everything the daemon wrote is JSON, start-up included.
    let log = served.log.lock().unwrap().clone();
    assert!(log.iter().any(|l| l.contains("strata is ready")), "{log:?}");
    for l in &log {
        serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"));
    }
    served.child.kill().await.unwrap();
}

#[tokio::test]
async fn an_unknown_log_format_stops_the_binary() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["health", "--url", "http://127.0.0.1:9"])
        .env_clear()
        .env("STRATA_LOG_FORMAT", "xml")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("STRATA_LOG_FORMAT"), "{err}");
}

/// The value of one sample of `/metrics` (name with its labels as written).
fn sample(text: &str, series: &str) -> Option<f64> {
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{series} ")))?;
    line[series.len() + 1..].parse().ok()
}

/// `/metrics` tells an operator what each part of the daemon does: latency
/// per route template (not per path, and one label for paths no route
/// has), the SQLite writer's groups and queue, job runs, stored Yjs
/// updates and blob store failures.
#[tokio::test]
async fn metrics_show_routes_the_writer_jobs_documents_and_blob_failures() {
    let dir = tempfile::tempdir().unwrap();
    let config = strata::config::Config::embedded(dir.path());
    let daemon = strata::server::build(config, ADMIN).await.unwrap();
    let router = daemon.router.clone();
    let call = |method: &'static str, uri: String, body: Value| {
        let router = router.clone();
        async move { crate::support::admin(&router, ADMIN, method, &uri, body).await }
    };
    call(
        "POST",
        "/v1/orgs".into(),
        json!({"id": "acme", "name": "Acme"}),
    )
    .await;
    let project = json!({"id": "app", "name": "app"});
    call("POST", "/v1/orgs/acme/projects".into(), project).await;
    for id in ["a", "b", "c"] {
        let (status, _) = call("GET", format!("{P}/entities/{id}"), Value::Null).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    call("GET", "/v1/nowhere/1".into(), Value::Null).await;
    let update = {
        use yrs::{Text, Transact};
        let doc = yrs::Doc::new();
        let text = doc.get_or_insert_text("t");
        let mut txn = doc.transact_mut();
        text.insert(&mut txn, 0, "hello");
        txn.encode_update_v1()
    };
    let (status, body) = crate::support::request(
        &router,
        ADMIN,
        "POST",
        &format!("{P}/docs/board/updates"),
        "application/octet-stream",
        update,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = call("POST", "/v1/admin/jobs/checkpoint/run".into(), Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A blob the store cannot read: a failed `get` is counted.
    let failures = |text: &str| sample(text, "strata_blob_failures_total{op=\"get\"}").unwrap();
    let (_, before) = call("GET", "/metrics".into(), Value::Null).await;
    let blobs = dir.path().join("blobs");
    std::fs::create_dir_all(blobs.join("unreadable")).unwrap();
    assert!(daemon.blobs.get("unreadable").await.is_err());

    let (status, text) = call("GET", "/metrics".into(), Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    let route = "method=\"GET\",route=\"/v1/orgs/{org}/projects/{project}/entities/{id}\"";
    assert_eq!(
        sample(
            &text,
            &format!("strata_http_request_duration_seconds_count{{{route}}}")
        ),
        Some(3.0),
        "three reads of one route template: {text}"
    );
    let unmatched =
        "strata_http_request_duration_seconds_count{method=\"GET\",route=\"unmatched\"}";
    assert_eq!(sample(&text, unmatched), Some(1.0));
    assert!(!text.contains("/v1/nowhere"), "paths are not labels");
    assert!(sample(&text, "strata_sqlite_writer_groups_total").unwrap() >= 3.0);
    assert!(
        sample(&text, "strata_sqlite_writer_grouped_writes_total").unwrap()
            >= sample(&text, "strata_sqlite_writer_groups_total").unwrap()
    );
    assert!(sample(&text, "strata_sqlite_writer_queue_depth").is_some());
    let runs = "strata_job_runs_total{scheduled_job=\"checkpoint\",outcome=\"ok\"}";
    assert_eq!(sample(&text, runs), Some(1.0));
    assert!(sample(&text, "strata_crdt_updates_stored_total").unwrap() >= 1.0);
    assert!(failures(&text) > failures(&before));
    daemon.shutdown().await;
}
