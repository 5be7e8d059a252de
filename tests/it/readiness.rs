//! `GET /health/ready` asks every service the daemon is configured to use,
//! all at once and each for at most `CHECK_TIMEOUT`: the store, the blob
//! store, AGE when the store keeps a graph (age.rs, on PGlite), Meilisearch
//! (meili.rs, compose.rs) and Ollama when configured. A failure is a 503
//! whose `details.failed` names the service and `details.checks` says what
//! each answered; one that does not answer in time is named as timed out,
//! long before its own client would give up.

use axum::http::StatusCode;
use serde_json::Value;
use std::time::{Duration, Instant};
use strata::config::Config;
use strata::server::Daemon;

const ADMIN: &str = "test-admin-key-0123456789";

async fn ready(daemon: &Daemon) -> (StatusCode, Value) {
    let (status, text) =
        crate::support::admin(&daemon.router, ADMIN, "GET", "/health/ready", Value::Null).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The names a 503 says failed.
fn failed(body: &Value) -> Vec<&str> {
    body["error"]["details"]["failed"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// A loopback port nothing listens on (it was free a moment ago).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

on_both_configs!(the_store_and_the_blob_store_are_checked);

async fn the_store_and_the_blob_store_are_checked(config: Config) {
    let daemon = strata::server::build(config, ADMIN).await.unwrap();
    let (status, body) = ready(&daemon).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let checks = &body["checks"];
    assert_eq!(checks["store"], "ok", "{body}");
    assert_eq!(checks["blob_store"], "ok", "{body}");
    // Only what this daemon uses: no AGE here, nothing else configured.
    for absent in ["age", "meilisearch", "ollama"] {
        assert!(checks.get(absent).is_none(), "{absent}: {body}");
    }
}

#[tokio::test]
async fn a_blob_directory_that_is_gone_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = strata::server::build(Config::embedded(dir.path()), ADMIN)
        .await
        .unwrap();
    let blobs = dir.path().join("blobs");
    // Its volume gone, something else in its place.
    std::fs::remove_dir_all(&blobs).unwrap();
    std::fs::write(&blobs, b"not a directory").unwrap();
    let (status, body) = ready(&daemon).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    assert_eq!(failed(&body), ["blob_store"], "{body}");
    assert_eq!(body["error"]["details"]["checks"]["store"], "ok", "{body}");
    assert_eq!(
        body["error"]["details"]["checks"]["blob_store"], "failed",
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("blob_store"),
        "{body}"
    );
    // Nothing about the cause is sent (it is in the log).
    assert!(!body.to_string().contains("not a directory"), "{body}");

    std::fs::remove_file(&blobs).unwrap();
    std::fs::create_dir(&blobs).unwrap();
    assert_eq!(ready(&daemon).await.0, StatusCode::OK);
}

/// A daemon whose embeddings come from Ollama at `url`, for `model`.
async fn with_ollama(dir: &std::path::Path, url: &str, model: &str) -> Daemon {
    let mut config = Config::embedded(dir);
    config.embed.ollama_url = Some(url.to_string());
    config.embed.model = model.to_string();
    config.embed.dimensions = 384;
    strata::server::build(config, ADMIN).await.unwrap()
}

#[tokio::test]
async fn an_unreachable_ollama_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}", closed_port());
    let daemon = with_ollama(dir.path(), &url, "all-minilm").await;
    let (status, body) = ready(&daemon).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(failed(&body), ["ollama"], "{body}");
    let checks = &body["error"]["details"]["checks"];
    assert_eq!(checks["ollama"], "failed", "{body}");
    assert_eq!(checks["store"], "ok", "{body}");
}

/// A service that takes connections and never answers: readiness names
/// it as timed out after its short timeout, where Ollama's own client
/// would wait a minute.
#[tokio::test]
async fn a_service_that_does_not_answer_is_named_within_the_check_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let daemon = with_ollama(dir.path(), &url, "all-minilm").await;
    let started = Instant::now();
    let (status, body) = ready(&daemon).await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(failed(&body), ["ollama"], "{body}");
    assert_eq!(
        body["error"]["details"]["checks"]["ollama"], "timed out",
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ollama (timed out)"),
        "{body}"
    );
    assert!(
        took >= strata::api::READY_CHECK_TIMEOUT && took < Duration::from_secs(30),
        "answered after {took:?}"
    );
    held.abort();
}

/// Through the Ollama stand-in: ready while it serves the configured
/// model, not ready (naming Ollama) when the model is not pulled.
#[tokio::test]
async fn ollama_is_ready_only_with_the_configured_model() {
    if crate::support::skip_without(&["STRATA_TEST_MODEL_DIR"]) {
        return;
    }
    let dir = std::path::PathBuf::from(std::env::var_os("STRATA_TEST_MODEL_DIR").unwrap());
    let model =
        tokio::task::spawn_blocking(move || strata::embed::LocalEmbedder::load(&dir).unwrap())
            .await
            .unwrap();
    let standin = crate::support::ollama_standin::start("all-minilm", model).await;

    let dir = tempfile::tempdir().unwrap();
    let daemon = with_ollama(dir.path(), &standin.url, "all-minilm").await;
    let (status, body) = ready(&daemon).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["checks"]["ollama"], "ok", "{body}");

    let dir = tempfile::tempdir().unwrap();
    let daemon = with_ollama(dir.path(), &standin.url, "nomic-embed-text").await;
    let (status, body) = ready(&daemon).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(failed(&body), ["ollama"], "{body}");
}

/// PostgreSQL: the daemon's database dropped under it; readiness names the
/// store.
#[tokio::test]
async fn a_database_that_is_gone_is_named() {
    if crate::support::skip_without(crate::support::PG) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = crate::support::fresh_pg_database().await;
    let daemon = strata::server::build(crate::support::pg_config(dir.path(), &url), ADMIN)
        .await
        .unwrap();
    assert_eq!(ready(&daemon).await.0, StatusCode::OK);
    let (admin, connection) =
        tokio_postgres::connect(&crate::support::pg_admin_url(), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(connection);
    let name = url.rsplit_once('/').unwrap().1;
    admin
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await
        .unwrap();
    let (status, body) = ready(&daemon).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(failed(&body).contains(&"store"), "{body}");
    assert_eq!(body["error"]["details"]["backend"], "postgres", "{body}");
    assert_eq!(
        body["error"]["details"]["checks"]["blob_store"], "ok",
        "{body}"
    );
}
