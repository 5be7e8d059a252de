//! The OpenAPI document tells the truth.
//!
//! `schemathesis_finds_nothing_against_the_document` serves a fresh embedded
//! daemon on a socket (an org, a project, entities, a relationship, a
//! document and a key already in it, so path parameters reach real data) and
//! runs schemathesis against the document it serves: generated requests,
//! valid and invalid, each answer checked for no server error, a declared
//! status, a declared content type, a body matching its schema and the
//! declared headers (`ETag`, `Retry-After`, `X-Strata-Seq`, and
//! `X-Request-Id` on every answer). ops/test.sh
//! installs schemathesis and names its `st` in STRATA_TEST_SCHEMATHESIS.
//!
//! The other test checks the document's shape without it.

use crate::support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tower::ServiceExt;

const ADMIN: &str = "test-admin-key-0123456789";

/// Examples per operation and phase (the run stays within a minute or
/// two), and the seed; STRATA_TEST_SCHEMATHESIS_EXAMPLES and
/// STRATA_TEST_SCHEMATHESIS_SEED override them for a longer search.
fn knob(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

async fn call(router: &axum::Router, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {ADMIN}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn document(router: &axum::Router) -> Value {
    let (status, doc) = call(router, "GET", "/openapi.json", Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    doc
}

/// Creates what the fixed path parameters name; returns the id and the
/// secret of a read-scoped key of the org.
async fn seed(router: &axum::Router) -> (String, String) {
    let p = "/v1/orgs/acme/projects/app";
    let calls = [
        (
            "POST",
            "/v1/orgs".to_string(),
            json!({"id": "acme", "name": "Acme"}),
        ),
        (
            "POST",
            "/v1/orgs".into(),
            json!({"id": "scratch", "name": "Scratch"}),
        ),
        (
            "POST",
            "/v1/orgs/acme/projects".into(),
            json!({"id": "app", "name": "App"}),
        ),
        (
            "POST",
            "/v1/orgs/scratch/projects".into(),
            json!({"id": "scratch", "name": "S"}),
        ),
        (
            "POST",
            format!("{p}/entities"),
            json!({"id": "e1", "type": "task", "properties": {"title": "one"}}),
        ),
        (
            "POST",
            format!("{p}/entities"),
            json!({"id": "e2", "type": "task", "properties": {"title": "two"}}),
        ),
        (
            "POST",
            format!("{p}/relationships"),
            json!({"id": "r1", "type": "DEPENDS_ON", "from": "e1", "to": "e2"}),
        ),
        ("PUT", format!("{p}/docs/d1"), json!({"entity_id": "e1"})),
    ];
    for (method, path, body) in calls {
        let (status, answer) = call(router, method, &path, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {answer}");
    }
    let (status, key) = call(
        router,
        "POST",
        "/v1/orgs/acme/keys",
        json!({"name": "fuzzed", "scopes": ["read"]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let field = |name: &str| key["data"][name].as_str().unwrap().to_owned();
    (field("id"), field("key"))
}

/// Fixed path parameters: the seeded resources. Deleting an org or a project
/// aims at `scratch`, so the rest keeps its data.
fn config(key_id: &str) -> String {
    format!(
        r#"
[parameters]
"path.org" = "acme"
"path.project" = "app"
"path.doc" = "d1"
"path.n" = 1
"path.name" = "checkpoint"

# 501 is the contract's answer for what a backend does not serve (Cypher on
# SQLite, semantic search); the document declares it.
[checks.not_a_server_error]
expected-statuses = ["2xx", "3xx", "4xx", "501"]

[[operations]]
include-path-regex = '^/v1/orgs/\{{org\}}(/projects/\{{project\}})?$'
include-method = "DELETE"
parameters = {{ "path.org" = "scratch", "path.project" = "scratch" }}

[[operations]]
include-path-regex = '/entities/\{{id\}}'
parameters = {{ "path.id" = "e1" }}

[[operations]]
include-path-regex = '/relationships/\{{id\}}'
parameters = {{ "path.id" = "r1" }}

[[operations]]
include-path-regex = '/keys/\{{id\}}'
parameters = {{ "path.id" = "{key_id}" }}
"#
    )
}

/// Runs schemathesis with `key` against the daemon at `addr`; panics with
/// its report if it found anything.
async fn schemathesis(
    addr: std::net::SocketAddr,
    settings: &std::path::Path,
    key: &str,
    examples: &str,
) {
    let st = std::env::var("STRATA_TEST_SCHEMATHESIS").expect(
        "STRATA_TEST_SCHEMATHESIS is not set: run the tests through ops/test.sh, which installs schemathesis",
    );
    let started = Instant::now();
    let output = tokio::time::timeout(
        Duration::from_secs(600),
        tokio::process::Command::new(&st)
            .env(
                "SCHEMATHESIS_HOOKS",
                concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/schemathesis_hooks.py"),
            )
            .arg("--config-file")
            .arg(settings)
            .arg("run")
            .arg(format!("http://{addr}/openapi.json"))
            .args(["--header", &format!("Authorization: Bearer {key}")])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance",
            ])
            .args(["--phases", "examples,coverage,fuzzing"])
            .args(["--max-examples", examples])
            .args(["--seed", &knob("STRATA_TEST_SCHEMATHESIS_SEED", "7")])
            .args(["--workers", "2", "--request-timeout", "30", "--no-color"])
            .current_dir(settings.parent().unwrap())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("schemathesis finishes within 10 minutes")
    .unwrap_or_else(|e| panic!("cannot run {st}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}\nschemathesis ran {:?}", started.elapsed());
    assert!(
        output.status.success(),
        "schemathesis found something:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("Tested: 57"), "{stdout}");
}

/// With the admin key every request reaches its handler; with an org key
/// of read scope, the scope and org checks answer (403, 404) as declared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_against_the_document() {
    if support::skip_without(&["STRATA_TEST_SCHEMATHESIS"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let daemon = strata::server::build(strata::config::Config::embedded(dir.path()), ADMIN)
        .await
        .unwrap();
    let (key_id, read_key) = seed(&daemon.router).await;
    let settings = dir.path().join("schemathesis.toml");
    std::fs::write(&settings, config(&key_id)).unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(strata::server::run(listener, daemon, async {
        let _ = stopped.await;
    }));
    let examples = knob("STRATA_TEST_SCHEMATHESIS_EXAMPLES", "25");
    schemathesis(addr, &settings, ADMIN, &examples).await;
    schemathesis(addr, &settings, &read_key, "5").await;
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// Every `{name}` of a path is a declared path parameter, every operation
/// with a key declares 401 and every error answer has the error schema.
#[tokio::test]
async fn every_operation_declares_its_parameters_and_error_answers() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = strata::server::build(strata::config::Config::embedded(dir.path()), ADMIN)
        .await
        .unwrap();
    let doc = document(&daemon.router).await;
    let mut operations = 0;
    for (template, item) in doc["paths"].as_object().unwrap() {
        let names: Vec<&str> = template
            .split('{')
            .skip(1)
            .filter_map(|s| s.split_once('}').map(|(n, _)| n))
            .collect();
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            let at = format!("{method} {template}");
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let mut declared: Vec<&str> = params
                .iter()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            declared.sort_unstable();
            let mut wanted = names.clone();
            wanted.sort_unstable();
            assert_eq!(declared, wanted, "{at}: path parameters");
            let responses = op["responses"].as_object().unwrap();
            if op.get("security").is_some() {
                assert!(responses.contains_key("401"), "{at}: no 401");
            }
            if !op["requestBody"]["content"]["application/json"].is_null() {
                assert!(responses.contains_key("415"), "{at}: no 415");
            }
            for (status, response) in responses {
                assert_eq!(
                    response["headers"]["X-Request-Id"]["required"], true,
                    "{at} {status}: every answer has its request id"
                );
                if status.as_str() >= "400" {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{at} {status}"
                    );
                } else if status != "204" && status != "101" {
                    assert!(response.get("content").is_some(), "{at} {status}: no body");
                }
            }
        }
    }
    assert_eq!(operations, 58);
}

/// A plain GET of the WebSocket route answers in the error shape.
#[tokio::test]
async fn a_websocket_route_without_an_upgrade_answers_400_json() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = strata::server::build(strata::config::Config::embedded(dir.path()), ADMIN)
        .await
        .unwrap();
    seed(&daemon.router).await;
    let (status, body) = call(
        &daemon.router,
        "GET",
        "/v1/orgs/acme/projects/app/docs/d1/ws",
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "bad_request");
}
