//! Semantic and hybrid search through the daemon, on both backends: the
//! embedding consumer follows the feed with the local model, "automobile"
//! finds the car, `type` filters inside the engine, deletions leave the
//! results, hybrid fuses both engines; without a model both modes answer
//! 501 saying how to get one; an embedding service that does not answer is
//! a 503 for `semantic` while `hybrid` still answers from text.

use crate::support::{admin, eventually};
use axum::http::StatusCode;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;
use strata::config::Config;
use strata::server::Daemon;

const ADMIN: &str = "test-admin-key-0123456789";
const MODEL: &[&str] = &["STRATA_TEST_MODEL_DIR"];
const P: &str = "/v1/orgs/acme/projects/app";

fn model_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("STRATA_TEST_MODEL_DIR").unwrap())
}

/// A started daemon with the local model installed, org `acme`, project `app`.
async fn daemon(config: Config) -> Daemon {
    strata::embed::files::copy_from(&model_dir(), &strata::embed::local_model_dir(&config))
        .await
        .unwrap();
    let daemon = with_project(config).await;
    daemon.start().await.unwrap();
    daemon
}

/// A daemon (not started) with org `acme` and project `app`.
async fn with_project(config: Config) -> Daemon {
    let daemon = strata::server::build(config, ADMIN).await.unwrap();
    for (uri, body) in [
        ("/v1/orgs", json!({"id": "acme", "name": "Acme"})),
        (
            "/v1/orgs/acme/projects",
            json!({"id": "app", "name": "App"}),
        ),
    ] {
        let (status, text) = admin(&daemon.router, ADMIN, "POST", uri, body).await;
        assert!(status.is_success(), "{uri}: {status} {text}");
    }
    daemon
}

async fn search(d: &Daemon, mode: &str, q: &str, extra: &str) -> (StatusCode, Value) {
    let uri = format!("{P}/search?mode={mode}&q={q}{extra}");
    let (status, text) = admin(&d.router, ADMIN, "GET", &uri, Value::Null).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn ids(body: &Value) -> Vec<String> {
    body["data"]
        .as_array()
        .map(|hits| {
            hits.iter()
                .map(|h| h["entity"]["id"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

on_both_configs!(needs super::MODEL;semantic_search_finds_meaning_and_hybrid_fuses);

async fn semantic_search_finds_meaning_and_hybrid_fuses(config: Config) {
    let d = daemon(config).await;
    let entities = [
        ("car", "thing", "a red car parked on the street"),
        ("fruit", "thing", "a ripe yellow banana"),
        (
            "doctor",
            "person",
            "the physician who treats patients at the clinic",
        ),
        ("sofa", "thing", "a comfortable couch in the living room"),
        ("note", "memo", "remember to service the car before winter"),
    ];
    for (id, t, text) in entities {
        let body = json!({"id": id, "type": t, "properties": {"text": text}});
        let (status, reply) = admin(&d.router, ADMIN, "POST", &format!("{P}/entities"), body).await;
        assert_eq!(status, StatusCode::CREATED, "{reply}");
    }
    // The embedding consumer follows the feed: wait for the last one.
    eventually(Duration::from_secs(60), || async {
        ids(&search(&d, "semantic", "sofa", "&limit=1").await.1) == ["sofa"]
    })
    .await;

    // Words the entities do not contain: meaning, not text.
    let (status, body) = search(&d, "semantic", "automobile", "&limit=2").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(ids(&body)[0], "car", "{body}");
    let score = body["data"][0]["score"].as_f64().unwrap();
    assert!(score > 0.3 && score <= 1.0 + 1e-6, "cosine: {body}");
    let (_, body) = search(&d, "semantic", "medical%20doctor", "&limit=1").await;
    assert_eq!(ids(&body), ["doctor"]);
    // Text search knows no synonyms.
    let (_, body) = search(&d, "text", "automobile", "").await;
    assert!(ids(&body).is_empty(), "{body}");
    // The type filter runs inside the engine: the note about the car.
    let (_, body) = search(&d, "semantic", "automobile", "&type=memo").await;
    assert_eq!(ids(&body), ["note"]);

    // Hybrid: both engines' candidates, fused by rank.
    let (status, body) = search(&d, "hybrid", "car", "&limit=3").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let hybrid = ids(&body);
    assert!(
        hybrid.contains(&"car".to_string()) && hybrid.contains(&"note".to_string()),
        "{body}"
    );
    let scores: Vec<f64> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["score"].as_f64().unwrap())
        .collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "best first: {body}"
    );
    let (_, body) = search(&d, "hybrid", "automobile", "&limit=1").await;
    assert_eq!(ids(&body), ["car"], "the semantic half finds it: {body}");

    // A deleted entity leaves the results (at once: hits are read as they
    // are now) and its vector goes with the consumer.
    let (status, _) = admin(
        &d.router,
        ADMIN,
        "DELETE",
        &format!("{P}/entities/car"),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, body) = search(&d, "semantic", "automobile", "&limit=1").await;
    assert_ne!(ids(&body), ["car"], "{body}");
    // Query text is text: syntax characters are words or nothing.
    for q in ["%22car%22%20OR%20*", "NEAR(car)%20-banana", "%5E%3A()"] {
        for mode in ["semantic", "hybrid"] {
            let (status, body) = search(&d, mode, q, "").await;
            assert!(
                status == StatusCode::OK || status == StatusCode::BAD_REQUEST,
                "{mode} {q}: {status} {body}"
            );
        }
    }
    // A project that does not exist is a 404 in every mode.
    for mode in ["text", "semantic", "hybrid"] {
        let uri = format!("/v1/orgs/acme/projects/nowhere/search?mode={mode}&q=car");
        let (status, text) = admin(&d.router, ADMIN, "GET", &uri, Value::Null).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{mode}: {text}");
    }
    d.shutdown().await;
}

#[tokio::test]
async fn without_a_model_semantic_and_hybrid_answer_501_saying_how_to_get_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = with_project(Config::embedded(dir.path())).await;
    for mode in ["semantic", "hybrid"] {
        let (status, body) = search(&d, mode, "car", "").await;
        assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("strata model fetch"),
            "{body}"
        );
    }
    let (status, _) = search(&d, "text", "car", "").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn an_unreachable_ollama_is_a_503_for_semantic_and_hybrid_still_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::embedded(dir.path());
    // Nothing listens here.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    config.embed.ollama_url = Some(format!("http://127.0.0.1:{port}"));
    let d = with_project(config).await;
    let body = json!({"id": "car", "type": "thing", "properties": {"text": "a red car"}});
    admin(&d.router, ADMIN, "POST", &format!("{P}/entities"), body).await;
    let (status, body) = search(&d, "semantic", "car", "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let (status, body) = search(&d, "hybrid", "car", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(ids(&body), ["car"]);
    // The answer says it lacks its semantic half, and scores as fused hits do.
    let req = axum::http::Request::get(format!("{P}/search?mode=hybrid&q=car"))
        .header("authorization", format!("Bearer {ADMIN}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let res = tower::ServiceExt::oneshot(d.router.clone(), req)
        .await
        .unwrap();
    assert_eq!(res.headers()["x-strata-degraded"], "semantic");
    let score = body["data"][0]["score"].as_f64().unwrap();
    assert!(
        score > 0.0 && score < 0.1,
        "a reciprocal-rank score: {score}"
    );
}
