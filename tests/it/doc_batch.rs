//! Gateway ingest in binary batches (`POST P/doc-updates`), on both
//! backends: updates for several documents in one body land in one
//! transaction, each document's in order; a bad frame, document id or
//! update refuses the whole batch (nothing stored); the wrong media type
//! is 415; the updates reach the documents' live y-websocket connections.

use crate::support;
use serde_json::Value;
use strata::crdt::batch::encode;
use yrs::{GetString, Text, Transact};

const ADMIN: &str = "test-admin-key-0123456789";
const P: &str = "/v1/orgs/acme/projects/app";
const BATCH: &str = "application/vnd.strata.yjs-batch";

/// One client's edit of the text `t`, appended at its end.
fn edit(doc: &yrs::Doc, text: &str) -> Vec<u8> {
    let t = doc.get_or_insert_text("t");
    let mut txn = doc.transact_mut();
    let len = t.len(&txn);
    t.insert(&mut txn, len, text);
    txn.encode_update_v1()
}

async fn call(
    router: &axum::Router,
    method: &str,
    uri: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let (status, text) = support::request(router, ADMIN, method, uri, content_type, body).await;
    (
        status.as_u16(),
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

/// The document's text as the daemon loads it.
async fn text_of(router: &axum::Router, doc: &str) -> String {
    use tower::ServiceExt;
    let req = axum::http::Request::get(format!("{P}/docs/{doc}"))
        .header("authorization", format!("Bearer {ADMIN}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let res = router.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200, "{doc}");
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    let loaded = yrs::Doc::new();
    {
        use yrs::updates::decoder::Decode;
        let mut txn = loaded.transact_mut();
        txn.apply_update(yrs::Update::decode_v1(&bytes).unwrap())
            .unwrap();
    }
    let t = loaded.get_or_insert_text("t");
    let txn = loaded.transact();
    t.get_string(&txn)
}

async fn batches_land_whole_or_not_at_all(config: strata::config::Config) {
    let daemon = strata::server::build(config, ADMIN).await.unwrap();
    let router = daemon.router.clone();
    let json = "application/json";
    let org = serde_json::json!({"id": "acme", "name": "Acme"}).to_string();
    assert_eq!(
        call(&router, "POST", "/v1/orgs", json, org.into_bytes())
            .await
            .0,
        201
    );
    let project = serde_json::json!({"id": "app", "name": "app"}).to_string();
    let uri = "/v1/orgs/acme/projects";
    assert_eq!(
        call(&router, "POST", uri, json, project.into_bytes())
            .await
            .0,
        201
    );

    // Two clients' edits of two documents, interleaved in one body.
    let (a, b) = (yrs::Doc::new(), yrs::Doc::new());
    let updates = [
        ("board-a", edit(&a, "one ")),
        ("board-b", edit(&b, "uno ")),
        ("board-a", edit(&a, "two")),
        ("board-b", edit(&b, "dos")),
    ];
    let body = encode(updates.iter().map(|(d, u)| (*d, u.as_slice())));
    let uri = format!("{P}/doc-updates");
    let (status, answer) = call(&router, "POST", &uri, BATCH, body.clone()).await;
    assert_eq!(status, 201, "{answer}");
    let data = answer["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["doc"], "board-a");
    assert_eq!(
        (data[0]["first_seq"].as_i64(), data[0]["last_seq"].as_i64()),
        (Some(1), Some(2))
    );
    assert_eq!(data[1]["doc"], "board-b");
    assert_eq!(
        (data[1]["first_seq"].as_i64(), data[1]["last_seq"].as_i64()),
        (Some(1), Some(2))
    );
    assert_eq!(text_of(&router, "board-a").await, "one two");
    assert_eq!(text_of(&router, "board-b").await, "uno dos");

    // Whole or nothing: a good update for a new document beside a bad one.
    let good = edit(&yrs::Doc::new(), "never");
    let refused = [
        encode([
            ("fresh", good.as_slice()),
            ("fresh", &[0xff, 0xff, 0x01][..]),
        ]),
        encode([("fresh", good.as_slice()), ("bad/id", good.as_slice())]),
        encode([("fresh", good.as_slice())])[..3].to_vec(),
        vec![],
    ];
    for body in refused {
        let (status, answer) = call(&router, "POST", &uri, BATCH, body).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"]["code"], "bad_request");
    }
    let (status, _) = call(&router, "GET", &format!("{P}/docs/fresh"), json, vec![]).await;
    assert_eq!(status, 404, "nothing of a refused batch is stored");
    let (status, answer) = call(&router, "POST", &uri, "application/octet-stream", body).await;
    assert_eq!(status, 415, "{answer}");
    let other = "/v1/orgs/acme/projects/nope/doc-updates";
    let (status, _) = call(
        &router,
        "POST",
        other,
        BATCH,
        encode([("x", good.as_slice())]),
    )
    .await;
    assert_eq!(status, 404);
    daemon.shutdown().await;
}

#[tokio::test]
async fn sqlite_batches_land_whole_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    batches_land_whole_or_not_at_all(strata::config::Config::embedded(dir.path())).await;
}

#[tokio::test]
async fn postgres_batches_land_whole_or_not_at_all() {
    if support::skip_without(support::PG) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = support::fresh_pg_database().await;
    batches_land_whole_or_not_at_all(support::pg_config(dir.path(), &url)).await;
}
