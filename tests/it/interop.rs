//! Interoperability with the reference JavaScript Yjs stack: a Node script
//! (ops/interop, yjs + y-websocket from npm) posts updates, reloads state and
//! syncs two providers through a daemon listening on a real socket.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;

const ADMIN: &str = "test-admin-key-0123456789";

#[tokio::test]
async fn yjs_and_y_websocket_work_against_strata() {
    let interop = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ops/interop");
    if !interop.join("node_modules/yjs").exists() {
        let why = "ops/interop/node_modules is missing";
        assert!(
            std::env::var_os("STRATA_TEST_REQUIRE_STACK").is_none_or(|v| v != "1"),
            "{why}, and STRATA_TEST_REQUIRE_STACK=1 says it must be there"
        );
        eprintln!("skipped: {why}; run ops/test.sh");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let daemon = strata::server::build(strata::config::Config::embedded(dir.path()), ADMIN)
        .await
        .unwrap();
    for (path, body) in [
        ("/v1/orgs", r#"{"id":"acme","name":"Acme"}"#),
        ("/v1/orgs/acme/projects", r#"{"id":"app","name":"App"}"#),
    ] {
        let req = Request::post(path)
            .header("authorization", format!("Bearer {ADMIN}"))
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        assert_eq!(
            daemon.router.clone().oneshot(req).await.unwrap().status(),
            StatusCode::CREATED
        );
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = daemon.router.clone();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap();
    });
    let base = format!("http://{addr}/v1/orgs/acme/projects/app");
    let output = tokio::process::Command::new("node")
        .arg("interop.mjs")
        .arg(&base)
        .arg(ADMIN)
        .current_dir(&interop)
        .output()
        .await
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "interop failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("interop: all checks passed"), "{stdout}");
}
