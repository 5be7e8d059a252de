//! The HTTP contract (../shared/API.md) through the in-process router, on
//! both backends: shapes, status codes, headers, version trees, pagination,
//! graph and search routes, operations, and bad input.

use crate::support::{self, urlencode};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

const ADMIN: &str = "test-admin-key-0123456789";
const P: &str = "/v1/orgs/acme/projects/app";

struct Api {
    router: axum::Router,
    _dir: tempfile::TempDir,
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
    text: String,
}

impl Api {
    async fn new(backend: &str) -> Api {
        let dir = tempfile::tempdir().unwrap();
        let config = match backend {
            "sqlite" => strata::config::Config::embedded(dir.path()),
            _ => support::pg_config(dir.path(), &support::fresh_pg_database().await),
        };
        let daemon = strata::server::build(config, ADMIN).await.unwrap();
        let api = Api {
            router: daemon.router,
            _dir: dir,
        };
        api.ok("POST", "/v1/orgs", json!({"id": "acme", "name": "Acme"}))
            .await;
        api.ok(
            "POST",
            "/v1/orgs/acme/projects",
            json!({"id": "app", "name": "App"}),
        )
        .await;
        api
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {ADMIN}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = self
            .router
            .clone()
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let (status, headers) = (res.status(), res.headers().clone());
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).to_string();
        Reply {
            status,
            headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            text,
        }
    }

    async fn call(&self, method: &str, path: &str, body: Value) -> Reply {
        let bytes = if body.is_null() {
            vec![]
        } else {
            body.to_string().into_bytes()
        };
        self.send(method, path, &[("content-type", "application/json")], bytes)
            .await
    }

    async fn ok(&self, method: &str, path: &str, body: Value) -> Value {
        let r = self.call(method, path, body).await;
        assert!(
            r.status.is_success(),
            "{method} {path}: {} {}",
            r.status,
            r.text
        );
        r.body
    }

    async fn status(&self, method: &str, path: &str, body: Value) -> (StatusCode, String) {
        let r = self.call(method, path, body).await;
        if !r.status.is_success() {
            assert!(
                r.body["error"]["code"].is_string() && r.body["error"]["message"].is_string(),
                "{method} {path}: not the error shape: {}",
                r.text
            );
        }
        (
            r.status,
            r.body["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    }
}

macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $case() {
                super::$case(&super::Api::new("sqlite").await).await
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $case() {
                if super::support::skip_without(super::support::PG) {
                    return;
                }
                super::$case(&super::Api::new("postgres").await).await
            })*
        }
    };
}

on_both_backends!(
    entity_routes_shapes_and_headers,
    version_routes_and_trees,
    lists_page_to_the_end,
    batch_route,
    relationship_routes,
    graph_routes,
    search_routes,
    bad_input_is_a_clear_4xx_and_writes_nothing,
    operations_routes,
    nul_text_is_refused_before_any_statement,
    json_bodies_need_a_json_content_type,
    duplicate_keys_are_refused_and_nothing_applied,
    numbers_are_kept_exactly_or_refused,
    change_feed_pages_and_streams,
);

async fn entity_routes_shapes_and_headers(api: &Api) {
    let r = api
        .call(
            "POST",
            &format!("{P}/entities"),
            json!({"type": "task", "properties": {"title": "t", "n": 1, "keep": true}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let e = &r.body["data"];
    let id = e["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 36, "the server makes UUIDs");
    for field in [
        "id",
        "type",
        "properties",
        "version",
        "created_at",
        "updated_at",
        "created_by",
        "updated_by",
    ] {
        assert!(!e[field].is_null(), "missing {field}");
    }
    assert!(e.get("deleted_at").is_none());
    assert_eq!(r.headers["etag"], "\"1\"");
    let path = format!("{P}/entities/{id}");
    let r = api
        .call("GET", &format!("{path}?fields=title,n"), Value::Null)
        .await;
    assert_eq!(r.body["data"]["properties"], json!({"title": "t", "n": 1}));
    assert_eq!(r.headers["etag"], "\"1\"");

    // If-Match: a stale version is 412 and changes nothing.
    let stale = api
        .send(
            "PATCH",
            &path,
            &[("if-match", "\"5\""), ("content-type", "application/json")],
            br#"{"properties": {"n": 9}}"#.to_vec(),
        )
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(stale.body["error"]["code"], "precondition_failed");
    assert_eq!(stale.body["error"]["details"]["current"], 1);
    let fresh = api
        .send(
            "PATCH",
            &path,
            &[("if-match", "\"1\""), ("content-type", "application/json")],
            br#"{"properties": {"n": 2, "keep": null}}"#.to_vec(),
        )
        .await;
    assert_eq!(fresh.status, StatusCode::OK);
    assert_eq!(
        fresh.body["data"]["properties"],
        json!({"title": "t", "n": 2})
    );
    assert_eq!(fresh.headers["etag"], "\"2\"");
    let r = api
        .send("DELETE", &path, &[("if-match", "\"1\"")], vec![])
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);

    // PUT creates (201) then replaces (200).
    let put = api
        .call(
            "PUT",
            &format!("{P}/entities/given-id"),
            json!({"type": "note", "properties": {"a": 1}}),
        )
        .await;
    assert_eq!(put.status, StatusCode::CREATED);
    let put = api
        .call(
            "PUT",
            &format!("{P}/entities/given-id"),
            json!({"type": "note", "properties": {"b": 2}}),
        )
        .await;
    assert_eq!(
        (put.status, put.body["data"]["properties"].clone()),
        (StatusCode::OK, json!({"b": 2}))
    );
    assert_eq!(
        api.status(
            "POST",
            &format!("{P}/entities"),
            json!({"id": "given-id", "type": "x"})
        )
        .await,
        (StatusCode::CONFLICT, "conflict".into())
    );

    // Soft delete, include_deleted, restore, purge.
    assert_eq!(
        api.call("DELETE", &path, Value::Null).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.status("GET", &path, Value::Null).await.0,
        StatusCode::NOT_FOUND
    );
    let hidden = api
        .call("GET", &format!("{path}?include_deleted=true"), Value::Null)
        .await;
    assert!(hidden.body["data"]["deleted_at"].is_string());
    let restored = api
        .call("POST", &format!("{path}/restore"), Value::Null)
        .await;
    assert_eq!(
        (restored.status, restored.body["data"]["version"].clone()),
        (StatusCode::OK, json!(4))
    );
    assert_eq!(
        api.call("DELETE", &format!("{path}?purge=true"), Value::Null)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.status("GET", &format!("{path}?include_deleted=true"), Value::Null)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.status("GET", &format!("{path}/versions"), Value::Null)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.status("GET", &format!("{P}/entities/nope"), Value::Null)
            .await,
        (StatusCode::NOT_FOUND, "not_found".into())
    );
    assert_eq!(
        api.status("GET", "/v1/orgs/acme/projects/nope/entities", Value::Null)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

async fn version_routes_and_trees(api: &Api) {
    let path = format!("{P}/entities/v");
    api.ok(
        "POST",
        &format!("{P}/entities"),
        json!({"id": "v", "type": "t", "properties": {"s": "one"}}),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let between = strata::clock::now();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    api.ok("PATCH", &path, json!({"properties": {"s": "two"}}))
        .await;
    api.ok("PATCH", &path, json!({"properties": {"s": "three"}}))
        .await;
    let r = api
        .ok("POST", &format!("{path}/revert"), json!({"to_version": 1}))
        .await;
    assert_eq!(
        (
            r["data"]["version"].clone(),
            r["data"]["properties"]["s"].clone()
        ),
        (json!(4), json!("one"))
    );
    let versions = api
        .ok("GET", &format!("{path}/versions"), Value::Null)
        .await;
    let list = versions["data"].as_array().unwrap();
    assert_eq!(list.len(), 4);
    assert_eq!(list[0]["version"], 4);
    assert_eq!(list[0]["parent_version"], 1);
    assert_eq!(list[0]["op"], "revert");
    assert_eq!(list[2]["patch"], json!({"s": "two"}));
    assert!(list
        .iter()
        .all(|v| v["actor"] == "admin" && v["at"].is_string()));
    assert!(versions["pagination"]["next_cursor"].is_null());
    assert_eq!(
        api.ok("GET", &format!("{path}/versions/2"), Value::Null)
            .await["data"]["properties"]["s"],
        "two"
    );
    assert_eq!(
        api.ok("GET", &format!("{path}?version=3"), Value::Null)
            .await["data"]["properties"]["s"],
        "three"
    );
    assert_eq!(
        api.ok("GET", &format!("{path}?as_of={between}"), Value::Null)
            .await["data"]["properties"]["s"],
        "one"
    );
    assert_eq!(
        api.status("GET", &format!("{path}/versions/9"), Value::Null)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.status("GET", &format!("{path}?as_of=yesterday"), Value::Null)
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        api.status("POST", &format!("{path}/revert"), json!({"to_version": 40}))
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

async fn collect(api: &Api, path: &str, limit: usize) -> Vec<Value> {
    let mut items = Vec::new();
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut next = format!("{path}{sep}limit={limit}");
    loop {
        let page = api.ok("GET", &next, Value::Null).await;
        assert_eq!(page["pagination"]["limit"], limit);
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= limit);
        items.extend(data.iter().cloned());
        match page["pagination"]["next_cursor"].as_str() {
            Some(c) => next = format!("{path}{sep}limit={limit}&cursor={c}"),
            None => return items,
        }
    }
}

async fn lists_page_to_the_end(api: &Api) {
    let ops: Vec<Value> = (0..23).map(|i| json!({"op": "create_entity", "id": format!("e{i:02}"), "type": if i % 2 == 0 { "even" } else { "odd" }, "properties": {"i": i, "g": {"m": i % 3}}})).collect();
    api.ok("POST", &format!("{P}/batch"), json!({"operations": ops}))
        .await;
    let all = collect(api, &format!("{P}/entities"), 5).await;
    let ids: Vec<&str> = all.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, (0..23).map(|i| format!("e{i:02}")).collect::<Vec<_>>());
    assert_eq!(
        collect(api, &format!("{P}/entities?type=odd"), 4)
            .await
            .len(),
        11
    );
    let filter = urlencode(&json!({"g": {"m": 1}}).to_string());
    assert_eq!(
        collect(api, &format!("{P}/entities?where={filter}"), 2)
            .await
            .len(),
        8
    );
    let fields = collect(api, &format!("{P}/entities?fields=i&type=even"), 100).await;
    assert!(fields
        .iter()
        .all(|e| e["properties"].as_object().unwrap().keys().eq(["i"].iter())));
    let rels: Vec<Value> = (1..23).map(|i| json!({"op": "create_relationship", "id": format!("r{i:02}"), "type": "NEXT", "from": format!("e{:02}", i - 1), "to": format!("e{i:02}")})).collect();
    api.ok("POST", &format!("{P}/batch"), json!({"operations": rels}))
        .await;
    assert_eq!(
        collect(api, &format!("{P}/relationships"), 6).await.len(),
        22
    );
    for i in 0..7 {
        api.ok(
            "POST",
            "/v1/orgs/acme/projects",
            json!({"id": format!("p{i}"), "name": "p"}),
        )
        .await;
    }
    assert_eq!(collect(api, "/v1/orgs/acme/projects", 3).await.len(), 8);
    assert_eq!(collect(api, "/v1/orgs", 1).await.len(), 1);
    for bad in [
        "limit=0",
        "limit=1001",
        "cursor=%%%",
        "cursor=bm90LWEtY3Vyc29y",
    ] {
        assert_eq!(
            api.status("GET", &format!("{P}/entities?{bad}"), Value::Null)
                .await,
            (StatusCode::BAD_REQUEST, "bad_request".into()),
            "{bad}"
        );
    }
    assert_eq!(
        api.status("GET", &format!("{P}/entities?where=%5B1%5D"), Value::Null)
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        api.status("GET", &format!("{P}/entities?where=nope"), Value::Null)
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
}

async fn batch_route(api: &Api) {
    let r = api
        .ok(
            "POST",
            &format!("{P}/batch"),
            json!({"operations": [
                {"op": "create_entity", "id": "a", "type": "t", "properties": {"v": 1}},
                {"op": "create_entity", "id": "b", "type": "t"},
                {"op": "update_entity", "id": "a", "properties": {"v": 2}},
                {"op": "create_relationship", "id": "ab", "type": "L", "from": "a", "to": "b"},
                {"op": "delete_relationship", "id": "ab"},
                {"op": "delete_entity", "id": "b"},
            ]}),
        )
        .await;
    let results = r["data"].as_array().unwrap();
    assert_eq!(results.len(), 6);
    assert_eq!(results[2]["properties"]["v"], 2);
    assert_eq!(results[3]["from"], "a");
    let failing = api
        .call(
            "POST",
            &format!("{P}/batch"),
            json!({"operations": [
                {"op": "create_entity", "id": "c", "type": "t"},
                {"op": "create_relationship", "type": "L", "from": "c", "to": "missing"},
            ]}),
        )
        .await;
    assert_eq!(failing.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(failing.body["error"]["details"]["index"], 1);
    assert_eq!(
        api.status("GET", &format!("{P}/entities/c"), Value::Null)
            .await
            .0,
        StatusCode::NOT_FOUND,
        "nothing of a failed batch is applied"
    );
    let bad_op = api
        .call(
            "POST",
            &format!("{P}/batch"),
            json!({"operations": [{"op": "create_entity", "type": "t"}, {"op": "explode"}]}),
        )
        .await;
    assert_eq!(
        (
            bad_op.status,
            bad_op.body["error"]["details"]["index"].clone()
        ),
        (StatusCode::BAD_REQUEST, json!(1))
    );
    let too_many: Vec<Value> = (0..1001)
        .map(|_| json!({"op": "create_entity", "type": "t"}))
        .collect();
    assert_eq!(
        api.status(
            "POST",
            &format!("{P}/batch"),
            json!({"operations": too_many})
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        api.status("POST", &format!("{P}/batch"), json!({"operations": []}))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    // A full batch with a few KB of properties per operation (over 4 MB in
    // all) fits the default body limit.
    let full: Vec<Value> = (0..1000)
        .map(|i| {
            json!({"op": "create_entity", "id": format!("big{i:04}"), "type": "t",
                   "properties": {"text": "x".repeat(4000)}})
        })
        .collect();
    let r = api
        .ok("POST", &format!("{P}/batch"), json!({"operations": full}))
        .await;
    assert_eq!(r["data"].as_array().unwrap().len(), 1000);
}

async fn relationship_routes(api: &Api) {
    for id in ["a", "b"] {
        api.ok(
            "POST",
            &format!("{P}/entities"),
            json!({"id": id, "type": "t"}),
        )
        .await;
    }
    let r = api
        .call(
            "POST",
            &format!("{P}/relationships"),
            json!({"type": "DEPENDS_ON", "from": "a", "to": "b", "properties": {"w": 1}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let rel = &r.body["data"];
    for field in [
        "id",
        "type",
        "from",
        "to",
        "properties",
        "created_at",
        "updated_at",
        "created_by",
        "updated_by",
    ] {
        assert!(!rel[field].is_null(), "missing {field}");
    }
    let path = format!("{P}/relationships/{}", rel["id"].as_str().unwrap());
    let patched = api
        .ok("PATCH", &path, json!({"properties": {"w": 2, "x": true}}))
        .await;
    assert_eq!(patched["data"]["properties"], json!({"w": 2, "x": true}));
    assert_eq!(
        api.ok(
            "GET",
            &format!("{P}/relationships?from=a&type=DEPENDS_ON"),
            Value::Null
        )
        .await["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        api.ok("GET", &format!("{P}/relationships?to=a"), Value::Null)
            .await["data"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    for (body, want) in [
        (
            json!({"type": "L", "from": "a", "to": "zz"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"type": "bad type", "from": "a", "to": "b"}),
            StatusCode::BAD_REQUEST,
        ),
        (json!({"type": "L", "from": "a"}), StatusCode::BAD_REQUEST),
    ] {
        assert_eq!(
            api.status("POST", &format!("{P}/relationships"), body)
                .await
                .0,
            want
        );
    }
    api.ok("DELETE", &format!("{P}/entities/b"), Value::Null)
        .await;
    assert_eq!(
        api.status("GET", &path, Value::Null).await.0,
        StatusCode::NOT_FOUND,
        "an end's delete hides the edge"
    );
    assert_eq!(
        api.status(
            "POST",
            &format!("{P}/relationships"),
            json!({"type": "L", "from": "a", "to": "b"})
        )
        .await
        .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    api.ok("POST", &format!("{P}/entities/b/restore"), Value::Null)
        .await;
    assert_eq!(
        api.call("DELETE", &path, Value::Null).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.status("DELETE", &path, Value::Null).await.0,
        StatusCode::NOT_FOUND
    );
}

async fn graph_routes(api: &Api) {
    let ops: Vec<Value> = ["a", "b", "c", "d"]
        .iter()
        .map(|id| json!({"op": "create_entity", "id": id, "type": "n", "properties": {"name": id}}))
        .collect();
    api.ok("POST", &format!("{P}/batch"), json!({"operations": ops}))
        .await;
    let rels = [
        ("ab", "DEPENDS_ON", "a", "b"),
        ("bc", "DEPENDS_ON", "b", "c"),
        ("ca", "DEPENDS_ON", "c", "a"),
        ("dc", "LINKS", "d", "c"),
    ];
    let ops: Vec<Value> = rels.iter().map(|(id, t, f, to)| json!({"op": "create_relationship", "id": id, "type": t, "from": f, "to": to})).collect();
    api.ok("POST", &format!("{P}/batch"), json!({"operations": ops}))
        .await;
    let depth_of = |v: &Value| -> Vec<(String, u64)> {
        v["data"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["id"].as_str().unwrap().to_string(),
                    n["depth"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let n = api
        .ok("GET", &format!("{P}/entities/a/neighbors"), Value::Null)
        .await;
    assert_eq!(
        depth_of(&n),
        [("a".into(), 0), ("b".into(), 1), ("c".into(), 1)],
        "default: depth 1, both directions"
    );
    assert!(n["data"]["nodes"][0].get("properties").is_none());
    let n = api
        .ok(
            "GET",
            &format!("{P}/entities/a/neighbors?direction=out&depth=10&include=properties"),
            Value::Null,
        )
        .await;
    assert_eq!(
        depth_of(&n),
        [("a".into(), 0), ("b".into(), 1), ("c".into(), 2)],
        "the cycle terminates"
    );
    assert_eq!(n["data"]["nodes"][1]["properties"]["name"], "b");
    assert_eq!(n["data"]["edges"].as_array().unwrap().len(), 3);
    let n = api
        .ok(
            "GET",
            &format!("{P}/entities/c/neighbors?direction=in&types=LINKS"),
            Value::Null,
        )
        .await;
    assert_eq!(depth_of(&n), [("c".into(), 0), ("d".into(), 1)]);
    let deps = api
        .ok("GET", &format!("{P}/entities/c/dependents"), Value::Null)
        .await;
    assert_eq!(
        depth_of(&deps),
        [("c".into(), 0), ("b".into(), 1), ("a".into(), 2)],
        "DEPENDS_ON by default; LINKS is not followed"
    );
    let deps = api
        .ok(
            "GET",
            &format!("{P}/entities/a/dependencies?max_depth=1"),
            Value::Null,
        )
        .await;
    assert_eq!(depth_of(&deps), [("a".into(), 0), ("b".into(), 1)]);
    let path = api
        .ok(
            "GET",
            &format!("{P}/paths/shortest?from=a&to=c"),
            Value::Null,
        )
        .await;
    let order: Vec<&str> = path["data"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["a", "b", "c"]);
    assert_eq!(path["data"]["edges"][1]["id"], "bc");
    assert_eq!(
        api.status(
            "GET",
            &format!("{P}/paths/shortest?from=a&to=d"),
            Value::Null
        )
        .await,
        (StatusCode::NOT_FOUND, "no_path".into())
    );
    assert_eq!(
        api.ok(
            "GET",
            &format!("{P}/paths/shortest?from=a&to=d&direction=both"),
            Value::Null
        )
        .await["data"]["edges"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    for bad in [
        "entities/a/neighbors?depth=11",
        "entities/a/neighbors?depth=0",
        "entities/a/neighbors?direction=up",
        "entities/a/neighbors?types=no-good",
        "entities/a/neighbors?limit=10001",
        "paths/shortest?from=a",
        "paths/shortest?from=a&to=c&direction=in",
    ] {
        assert_eq!(
            api.status("GET", &format!("{P}/{bad}"), Value::Null)
                .await
                .0,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
    assert_eq!(
        api.status("GET", &format!("{P}/entities/zz/neighbors"), Value::Null)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (status, code) = api
        .status(
            "POST",
            &format!("{P}/cypher"),
            json!({"query": "MATCH (n) RETURN n"}),
        )
        .await;
    // Without AGE (SQLite, or PostgreSQL without the extension): 501.
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_IMPLEMENTED, "not_implemented")
    );
}

async fn search_routes(api: &Api) {
    api.ok(
        "POST",
        &format!("{P}/entities"),
        json!({"id": "v", "type": "doc", "properties": {"title": "Vehicles and running"}}),
    )
    .await;
    api.ok(
        "POST",
        &format!("{P}/entities"),
        json!({"id": "w", "type": "note", "properties": {"title": "vehicle"}}),
    )
    .await;
    let hits = api
        .ok(
            "GET",
            &format!("{P}/search?q=vehicl&mode=text"),
            Value::Null,
        )
        .await;
    let hits = hits["data"].as_array().unwrap();
    assert_eq!(hits.len(), 2);
    assert!(hits[0]["score"].as_f64().unwrap() >= hits[1]["score"].as_f64().unwrap());
    assert!(hits[0]["entity"]["id"].is_string());
    assert_eq!(
        api.ok("GET", &format!("{P}/search?q=run&type=doc"), Value::Null)
            .await["data"][0]["entity"]["id"],
        "v"
    );
    for mode in ["semantic", "hybrid"] {
        assert_eq!(
            api.status("GET", &format!("{P}/search?q=car&mode={mode}"), Value::Null)
                .await
                .0,
            StatusCode::NOT_IMPLEMENTED
        );
    }
    assert_eq!(
        api.status("GET", &format!("{P}/search?q=car&mode=magic"), Value::Null)
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        api.status("GET", &format!("{P}/search"), Value::Null)
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        api.status("GET", &format!("{P}/search?q=%22%2A%28"), Value::Null)
            .await
            .0,
        StatusCode::BAD_REQUEST,
        "no words in the query"
    );
}

async fn bad_input_is_a_clear_4xx_and_writes_nothing(api: &Api) {
    let entities = format!("{P}/entities");
    let mut deep = json!(1);
    for _ in 0..40 {
        deep = json!({"d": deep});
    }
    let cases: Vec<(Vec<u8>, StatusCode)> = vec![
        (b"{not json".to_vec(), StatusCode::BAD_REQUEST),
        (br#"{"type": 12}"#.to_vec(), StatusCode::BAD_REQUEST),
        (
            br#"{"type": "t", "properties": []}"#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            br#"{"type": "t", "colour": "unknown field"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"type": "t", "id": "x".repeat(300)})
                .to_string()
                .into_bytes(),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"type": "t", "id": "a\u{0007}b"})
                .to_string()
                .into_bytes(),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"type": "t", "id": "a/b"}).to_string().into_bytes(),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"type": "9lives"}).to_string().into_bytes(),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"type": "has space"}).to_string().into_bytes(),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"type": "x".repeat(64)}).to_string().into_bytes(),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"type": "t", "properties": {"deep": deep}})
                .to_string()
                .into_bytes(),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"type": "t", "properties": {"big": "x".repeat(9 << 20)}})
                .to_string()
                .into_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (body, want) in cases {
        let r = api
            .send(
                "POST",
                &entities,
                &[("content-type", "application/json")],
                body,
            )
            .await;
        assert_eq!(r.status, want, "{}", r.text);
        assert!(
            r.body["error"]["code"].is_string(),
            "not the error shape: {}",
            r.text
        );
    }
    let listed = api.ok("GET", &entities, Value::Null).await;
    assert_eq!(listed["data"], json!([]), "nothing was written");
    let patch_bad = api
        .call(
            "PATCH",
            &format!("{entities}/nope"),
            json!({"properties": 5}),
        )
        .await;
    assert_eq!(patch_bad.status, StatusCode::BAD_REQUEST);
    let bad_if_match = api
        .send(
            "PATCH",
            &format!("{entities}/nope"),
            &[("if-match", "soon")],
            br#"{"properties": {}}"#.to_vec(),
        )
        .await;
    assert_eq!(bad_if_match.status, StatusCode::BAD_REQUEST);
    // Missing key, wrong key, unknown route, wrong method.
    let req = Request::builder()
        .uri(&entities)
        .body(Body::empty())
        .unwrap();
    let res = api.router.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        api.status("GET", "/v1/nothing/here", Value::Null).await,
        (StatusCode::NOT_FOUND, "not_found".into())
    );
    assert_eq!(
        api.status("PUT", "/v1/orgs", json!({})).await,
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed".into())
    );
}

async fn operations_routes(api: &Api) {
    let r = api.call("GET", "/health/live", Value::Null).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = api.call("GET", "/health/ready", Value::Null).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.body["checks"]["consumers"].is_array(),
        "the feed's consumers are reported: {}",
        r.text
    );
    api.ok(
        "POST",
        &format!("{P}/entities"),
        json!({"id": "m", "type": "t"}),
    )
    .await;
    api.ok("GET", &format!("{P}/entities/m"), Value::Null).await;
    let metrics = api.call("GET", "/metrics", Value::Null).await.text;
    for name in [
        "strata_http_requests_total",
        "strata_http_request_duration_seconds_bucket",
        "strata_entity_cache_hits_total",
        "strata_entity_cache_misses_total",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    let doc = api.ok("GET", "/openapi.json", Value::Null).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for route in [
        "/v1/orgs",
        "/v1/orgs/{org}",
        "/v1/orgs/{org}/projects",
        "/v1/orgs/{org}/projects/{project}",
        "/v1/orgs/{org}/keys",
        "/v1/orgs/{org}/keys/{id}",
        "/v1/orgs/{org}/audit",
        "/v1/orgs/{org}/projects/{project}/entities",
        "/v1/orgs/{org}/projects/{project}/entities/{id}",
        "/v1/orgs/{org}/projects/{project}/entities/{id}/restore",
        "/v1/orgs/{org}/projects/{project}/entities/{id}/versions",
        "/v1/orgs/{org}/projects/{project}/entities/{id}/versions/{n}",
        "/v1/orgs/{org}/projects/{project}/entities/{id}/revert",
        "/v1/orgs/{org}/projects/{project}/batch",
        "/v1/orgs/{org}/projects/{project}/relationships",
        "/v1/orgs/{org}/projects/{project}/relationships/{id}",
        "/v1/orgs/{org}/projects/{project}/entities/{id}/neighbors",
        "/v1/orgs/{org}/projects/{project}/entities/{id}/dependents",
        "/v1/orgs/{org}/projects/{project}/entities/{id}/dependencies",
        "/v1/orgs/{org}/projects/{project}/paths/shortest",
        "/v1/orgs/{org}/projects/{project}/cypher",
        "/v1/orgs/{org}/projects/{project}/search",
        "/v1/orgs/{org}/projects/{project}/docs/{doc}",
        "/v1/orgs/{org}/projects/{project}/docs/{doc}/updates",
        "/v1/orgs/{org}/projects/{project}/docs/{doc}/ws",
        "/v1/orgs/{org}/projects/{project}/docs/{doc}/compact",
        "/v1/orgs/{org}/projects/{project}/docs/{doc}/snapshots",
        "/health/live",
        "/health/ready",
        "/metrics",
        "/openapi.json",
        "/v1/admin/jobs",
        "/v1/admin/jobs/{name}/run",
    ] {
        assert!(
            paths.contains_key(route),
            "the OpenAPI document lacks {route}"
        );
    }
    let jobs = api.ok("GET", "/v1/admin/jobs", Value::Null).await;
    let names: Vec<&str> = jobs["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"compact_docs") && names.contains(&"checkpoint"));
    let run = api
        .ok("POST", "/v1/admin/jobs/optimize/run", Value::Null)
        .await;
    assert_eq!(run["data"]["ok"], true);
    let listed = api.ok("GET", "/v1/admin/jobs", Value::Null).await;
    let optimize = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "optimize")
        .unwrap()
        .clone();
    assert!(optimize["last_run"]["started_at"].is_string());
    assert_eq!(
        api.status("POST", "/v1/admin/jobs/nope/run", Value::Null)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

/// Everything a refused request must leave as it was: entities (deleted
/// ones too), relationships, one entity's history and the audit trail.
async fn snapshot(api: &Api) -> Value {
    let mut all = vec![];
    for path in [
        format!("{P}/entities?limit=1000"),
        format!("{P}/relationships?limit=1000"),
        format!("{P}/entities/e1/versions"),
        format!("{P}/entities/e1?include_deleted=true"),
        "/v1/orgs/acme/audit?limit=1000".to_string(),
        "/v1/orgs?limit=1000".to_string(),
        "/v1/orgs/acme/projects?limit=1000".to_string(),
        "/v1/orgs/acme/keys?limit=1000".to_string(),
    ] {
        all.push(api.ok("GET", &path, Value::Null).await["data"].clone());
    }
    Value::Array(all)
}

/// A cursor as the server makes them (base64url JSON), forged.
fn forged_cursor(json: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

/// Issue 9 item 5: NUL (U+0000) reaching PostgreSQL was a 500 there while
/// SQLite answered; now both refuse it with 400 before any statement,
/// naming the field, and change nothing.
async fn nul_text_is_refused_before_any_statement(api: &Api) {
    api.ok(
        "POST",
        &format!("{P}/entities"),
        json!({"id": "e1", "type": "t", "properties": {"title": "hello"}}),
    )
    .await;
    api.ok(
        "POST",
        &format!("{P}/entities"),
        json!({"id": "e2", "type": "t"}),
    )
    .await;
    api.ok(
        "POST",
        &format!("{P}/relationships"),
        json!({"id": "r1", "type": "KNOWS", "from": "e1", "to": "e2"}),
    )
    .await;
    let cursor = forged_cursor(r#"{"id":"x\u0000"}"#);
    let e = format!("{P}/entities");
    let r = format!("{P}/relationships");
    // (method, path, body, a word the message must hold)
    let cases: Vec<(&str, String, &str, &str)> = vec![
        ("GET", format!("{e}/a%00b"), "", "id"),
        (
            "PATCH",
            format!("{e}/a%00b"),
            r#"{"properties": {"x": 1}}"#,
            "id",
        ),
        ("DELETE", format!("{e}/a%00b"), "", "id"),
        ("DELETE", format!("{e}/a%00b?purge=true"), "", "id"),
        ("PUT", format!("{e}/a%00b"), r#"{"type": "t"}"#, "id"),
        ("POST", format!("{e}/a%00b/restore"), "", "id"),
        (
            "POST",
            format!("{e}/a%00b/revert"),
            r#"{"to_version": 1}"#,
            "id",
        ),
        ("GET", format!("{e}/a%00b/versions"), "", "id"),
        ("GET", format!("{e}/a%00b/versions/1"), "", "id"),
        ("GET", format!("{e}/a%00b/neighbors"), "", "id"),
        ("GET", format!("{e}/a%00b/dependents"), "", "id"),
        ("GET", format!("{e}/a%00b/dependencies"), "", "id"),
        (
            "GET",
            format!("{P}/paths/shortest?from=e1&to=e%002"),
            "",
            "id",
        ),
        (
            "GET",
            format!("{e}/e1/neighbors?types=KN%00OWS"),
            "",
            "types",
        ),
        ("GET", "/v1/orgs/ac%00me".into(), "", "org"),
        ("GET", "/v1/orgs/ac%00me/projects".into(), "", "org"),
        (
            "GET",
            "/v1/orgs/ac%00me/projects/app/entities".into(),
            "",
            "org",
        ),
        ("GET", "/v1/orgs/acme/projects/ap%00p".into(), "", "project"),
        (
            "GET",
            "/v1/orgs/acme/projects/ap%00p/entities/e1".into(),
            "",
            "project",
        ),
        (
            "DELETE",
            "/v1/orgs/acme/projects/ap%00p".into(),
            "",
            "project",
        ),
        ("GET", "/v1/orgs/ac%00me/keys".into(), "", "org"),
        ("DELETE", "/v1/orgs/acme/keys/k%00".into(), "", "key id"),
        ("GET", format!("{e}?type=t%00"), "", "type"),
        ("GET", format!("{P}/search?q=hello&type=t%00"), "", "type"),
        ("GET", format!("{P}/search?q=hel%00lo"), "", "q"),
        ("GET", format!("{r}?type=K%00"), "", "type"),
        ("GET", format!("{r}?from=e%001"), "", "from"),
        ("GET", format!("{r}?to=e%002"), "", "to"),
        ("GET", format!("{r}/r%001"), "", "id"),
        ("DELETE", format!("{r}/r%001"), "", "id"),
        ("PATCH", format!("{r}/r%001"), r#"{"properties": {}}"#, "id"),
        // where= is JSON: \u0000 escapes in values and keys.
        (
            "GET",
            format!("{e}?where=%7B%22title%22%3A%22a%5Cu0000%22%7D"),
            "",
            "where.title",
        ),
        (
            "GET",
            format!("{e}?where=%7B%22ti%5Cu0000tle%22%3A1%7D"),
            "",
            "where key",
        ),
        ("GET", format!("{e}?cursor={cursor}"), "", "cursor"),
        ("GET", format!("{r}?cursor={cursor}"), "", "cursor"),
        ("GET", format!("/v1/orgs?cursor={cursor}"), "", "cursor"),
        (
            "GET",
            format!("/v1/orgs/acme/projects?cursor={cursor}"),
            "",
            "cursor",
        ),
        (
            "GET",
            format!("/v1/orgs/acme/keys?cursor={cursor}"),
            "",
            "cursor",
        ),
        (
            "GET",
            format!(
                "{e}/e1/versions?cursor={}",
                forged_cursor(r#"{"v":1,"x":"\u0000"}"#)
            ),
            "",
            "cursor",
        ),
        (
            "GET",
            "/v1/orgs/acme/audit?action=entity.create%00".into(),
            "",
            "action",
        ),
        (
            "GET",
            "/v1/orgs/acme/audit?target=e%001".into(),
            "",
            "target",
        ),
        // Bodies: property keys and values at any depth, names, ends.
        (
            "POST",
            e.clone(),
            r#"{"type": "t", "properties": {"k\u0000ey": 1}}"#,
            "properties key",
        ),
        (
            "POST",
            e.clone(),
            r#"{"type": "t", "properties": {"title": "a\u0000b"}}"#,
            "properties.title",
        ),
        (
            "POST",
            e.clone(),
            r#"{"type": "t", "properties": {"a": [{"b": "\u0000"}]}}"#,
            "properties.a[0].b",
        ),
        ("POST", e.clone(), r#"{"id": "x\u0000", "type": "t"}"#, "id"),
        (
            "PUT",
            format!("{e}/e1"),
            r#"{"type": "t", "properties": {"title": "\u0000"}}"#,
            "properties.title",
        ),
        (
            "PATCH",
            format!("{e}/e1"),
            r#"{"properties": {"title": "x\u0000"}}"#,
            "properties.title",
        ),
        (
            "PATCH",
            format!("{e}/e1"),
            r#"{"properties": {"n\u0000": {"deep": 1}}}"#,
            "properties key",
        ),
        (
            "POST",
            r.clone(),
            r#"{"type": "KNOWS", "from": "e1", "to": "e\u00002"}"#,
            "to",
        ),
        (
            "POST",
            r.clone(),
            r#"{"type": "KNOWS", "from": "e\u00001", "to": "e2"}"#,
            "from",
        ),
        (
            "POST",
            r.clone(),
            r#"{"type": "KNOWS", "from": "e1", "to": "e2", "properties": {"w": "\u0000"}}"#,
            "properties.w",
        ),
        (
            "PATCH",
            format!("{r}/r1"),
            r#"{"properties": {"w": "\u0000"}}"#,
            "properties.w",
        ),
        (
            "POST",
            "/v1/orgs".into(),
            r#"{"id": "o2", "name": "N\u0000"}"#,
            "name",
        ),
        (
            "POST",
            "/v1/orgs".into(),
            r#"{"id": "o\u00002", "name": "N"}"#,
            "id",
        ),
        (
            "POST",
            "/v1/orgs/acme/projects".into(),
            r#"{"id": "p2", "name": "N\u0000"}"#,
            "name",
        ),
        (
            "POST",
            "/v1/orgs/acme/keys".into(),
            r#"{"name": "k\u0000", "scopes": ["read"]}"#,
            "name",
        ),
        ("PUT", format!("{P}/docs/d%001"), r#"{}"#, "doc"),
        ("GET", format!("{P}/docs/d%001"), "", "doc"),
        (
            "PUT",
            format!("{P}/docs/d1"),
            r#"{"entity_id": "e\u00001"}"#,
            "entity_id",
        ),
        (
            "POST",
            format!("{P}/cypher"),
            r#"{"query": "MATCH (n) RETURN n.x\u0000"}"#,
            "query",
        ),
        (
            "POST",
            format!("{P}/cypher"),
            r#"{"query": "MATCH (n) RETURN n.x", "params": {"p": "\u0000"}}"#,
            "params.p",
        ),
    ];
    let before = snapshot(api).await;
    for (method, path, body, field) in &cases {
        let r = api
            .send(
                method,
                path,
                &[("content-type", "application/json")],
                body.as_bytes().to_vec(),
            )
            .await;
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("bad_request")),
            "{method} {path} {body}: {}",
            r.text
        );
        let message = r.body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(field),
            "{method} {path} {body}: the message should name {field}: {message}"
        );
    }
    // A batch: the failing operation is named by its index, nothing applied.
    let r = api
        .call(
            "POST",
            &format!("{P}/batch"),
            serde_json::from_str(
                r#"{"operations": [
                    {"op": "create_entity", "id": "b1", "type": "t"},
                    {"op": "update_entity", "id": "e1", "properties": {"title": "\u0000"}}
                ]}"#,
            )
            .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.body["error"]["code"], "bad_request");
    assert_eq!(r.body["error"]["details"]["index"], 1);
    assert_eq!(
        snapshot(api).await,
        before,
        "a refused request changed something"
    );
}

/// Issue 9 item 6: a JSON route refuses bodies that are not declared JSON
/// (415), so a web page cannot POST to the daemon without a preflight.
async fn json_bodies_need_a_json_content_type(api: &Api) {
    let entities = format!("{P}/entities");
    let body = br#"{"id": "ct", "type": "t", "properties": {"a": 1}}"#.to_vec();
    for (path, content_type, body) in [
        (entities.clone(), Some("text/plain"), body.clone()),
        (
            entities.clone(),
            Some("text/plain;charset=UTF-8"),
            body.clone(),
        ),
        (
            entities.clone(),
            Some("application/x-www-form-urlencoded"),
            body.clone(),
        ),
        (
            entities.clone(),
            Some("multipart/form-data; boundary=x"),
            body.clone(),
        ),
        (entities.clone(), None, body.clone()),
        (entities.clone(), Some("application/jsonx"), body.clone()),
        (entities.clone(), Some("application/+json"), body.clone()),
        (
            format!("{P}/batch"),
            Some("text/plain"),
            br#"{"operations": [{"op": "create_entity", "id": "ct", "type": "t"}]}"#.to_vec(),
        ),
        (
            "/v1/orgs".to_string(),
            Some("application/x-www-form-urlencoded"),
            br#"{"id": "o2", "name": "O"}"#.to_vec(),
        ),
        (
            "/v1/orgs/acme/keys".to_string(),
            Some("text/plain"),
            br#"{"name": "k", "scopes": ["admin"]}"#.to_vec(),
        ),
        (
            format!("{P}/docs/d1/updates"),
            Some("text/plain"),
            br#"{"updates": []}"#.to_vec(),
        ),
        (format!("{P}/docs/d1/updates"), None, vec![0, 0]),
    ] {
        let mut headers = vec![];
        if let Some(ct) = content_type {
            headers.push(("content-type", ct));
        }
        let r = api.send("POST", &path, &headers, body).await;
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Some("unsupported_media_type")
            ),
            "POST {path} as {content_type:?}: {}",
            r.text
        );
    }
    let listed = api.ok("GET", &entities, Value::Null).await;
    assert_eq!(listed["data"], json!([]), "nothing was stored");
    assert_eq!(
        api.ok("GET", "/v1/orgs", Value::Null).await["data"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "no org was created"
    );
    assert_eq!(
        api.call("GET", &format!("{P}/docs/d1"), Value::Null)
            .await
            .status,
        StatusCode::NOT_FOUND,
        "no document was written"
    );
    // JSON under any of its names, with parameters, in any case.
    for (i, content_type) in [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/merge-patch+json",
        "application/vnd.strata+json; charset=utf-8",
    ]
    .into_iter()
    .enumerate()
    {
        let r = api
            .send(
                "POST",
                &entities,
                &[("content-type", content_type)],
                json!({"id": format!("ok{i}"), "type": "t"})
                    .to_string()
                    .into_bytes(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{content_type}: {}", r.text);
    }
}

/// Issue 9 item 6: a key given twice is refused (serde_json kept the last:
/// a batch `op` given twice ran the second), at any depth, in every body.
async fn duplicate_keys_are_refused_and_nothing_applied(api: &Api) {
    api.ok(
        "POST",
        &format!("{P}/entities"),
        json!({"id": "e1", "type": "t", "properties": {"title": "hello"}}),
    )
    .await;
    let e = format!("{P}/entities");
    let cases: Vec<(String, &str, String, &str)> = vec![
        (
            "POST".into(),
            "op",
            format!("{P}/batch"),
            r#"{"operations": [{"op": "create_entity", "op": "delete_entity", "id": "e1", "type": "t"}]}"#,
        ),
        (
            "POST".into(),
            "type",
            e.clone(),
            r#"{"type": "t", "type": "u", "id": "d1"}"#,
        ),
        (
            "POST".into(),
            "a",
            e.clone(),
            r#"{"type": "t", "id": "d1", "properties": {"x": [{"a": 1, "a": 2}]}}"#,
        ),
        (
            "PATCH".into(),
            "title",
            format!("{e}/e1"),
            r#"{"properties": {"title": "x", "title": null}}"#,
        ),
        (
            "POST".into(),
            "operations",
            format!("{P}/batch"),
            r#"{"operations": [], "operations": [{"op": "delete_entity", "id": "e1"}]}"#,
        ),
        (
            "POST".into(),
            "name",
            "/v1/orgs".into(),
            r#"{"id": "o2", "name": "a", "name": "b"}"#,
        ),
        (
            "POST".into(),
            "updates",
            format!("{P}/docs/d1/updates"),
            r#"{"updates": ["AAA="], "updates": []}"#,
        ),
    ];
    let before = snapshot(api).await;
    for (method, key, path, body) in &cases {
        let r = api
            .send(
                method,
                path,
                &[("content-type", "application/json")],
                body.as_bytes().to_vec(),
            )
            .await;
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("bad_request")),
            "{method} {path} {body}: {}",
            r.text
        );
        let message = r.body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("duplicate key \"{key}\"")),
            "{body}: the message should name {key}: {message}"
        );
    }
    // serde_json's RawValue key would parse the string under it again, past
    // the duplicate-key and number rules: refused.
    let r = api
        .send(
            "POST",
            &e,
            &[("content-type", "application/json")],
            br#"{"id": "d2", "type": "t", "properties": {"x": {"$serde_json::private::RawValue": "{\"a\": 1, \"a\": 2}"}}}"#.to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.text.contains("is reserved"), "{}", r.text);
    // where= is JSON too.
    let r = api
        .call(
            "GET",
            &format!("{e}?where=%7B%22a%22%3A1%2C%22a%22%3A2%7D"),
            Value::Null,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.text.contains("duplicate key"), "{}", r.text);
    assert_eq!(
        snapshot(api).await,
        before,
        "a refused request changed something"
    );
    let e1 = api.ok("GET", &format!("{e}/e1"), Value::Null).await;
    assert_eq!(e1["data"]["version"], 1, "the batch delete did not run");
}

/// Issue 9 item 6: numbers are kept exactly as sent, or refused: an integer
/// must fit in i64, a decimal must read back as the same decimal.
async fn numbers_are_kept_exactly_or_refused(api: &Api) {
    let e = format!("{P}/entities");
    for (body, number) in [
        (
            r#"{"type": "t", "properties": {"big": 1180591620717411303424}}"#,
            "1180591620717411303424",
        ),
        (
            r#"{"type": "t", "properties": {"u": 18446744073709551615}}"#,
            "18446744073709551615",
        ),
        (
            r#"{"type": "t", "properties": {"pi": 3.14159265358979323846264338327950288}}"#,
            "3.14159265358979323846",
        ),
        (
            r#"{"type": "t", "properties": {"x": [1, {"y": 0.1000000000000000000001}]}}"#,
            "0.1000000000000000000001",
        ),
        (
            r#"{"type": "t", "properties": {"f": 1180591620717411303424.0}}"#,
            "1180591620717411303424.0",
        ),
    ] {
        let r = api
            .send(
                "POST",
                &e,
                &[("content-type", "application/json")],
                body.as_bytes().to_vec(),
            )
            .await;
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("bad_request")),
            "{body}: {}",
            r.text
        );
        assert!(
            r.text.contains(number),
            "{body}: name the number: {}",
            r.text
        );
    }
    let listed = api.ok("GET", &e, Value::Null).await;
    assert_eq!(listed["data"], json!([]), "nothing was stored");
    // What is accepted reads back exactly, on every read path.
    let sent = r#"{"id": "n1", "type": "t", "properties": {"max": 9223372036854775807, "min": -9223372036854775808, "tenth": 0.1, "big": 1.5e300, "tiny": 5e-324, "f": 0.30000000000000004, "huge": 1e21}}"#;
    let r = api
        .send(
            "POST",
            &e,
            &[("content-type", "application/json")],
            sent.as_bytes().to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let want: Value = serde_json::from_str(sent).unwrap();
    for text in [
        r.text.clone(),
        api.call("GET", &format!("{e}/n1"), Value::Null).await.text,
        api.call("GET", &format!("{e}/n1/versions/1"), Value::Null)
            .await
            .text,
        api.call(
            "GET",
            &format!("{e}?where=%7B%22max%22%3A9223372036854775807%7D"),
            Value::Null,
        )
        .await
        .text,
    ] {
        assert!(text.contains("9223372036854775807"), "{text}");
        assert!(text.contains("-9223372036854775808"), "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        let data = if v["data"].is_array() {
            v["data"][0].clone()
        } else {
            v["data"].clone()
        };
        assert_eq!(data["properties"], want["properties"], "{text}");
    }
    // where= compares numbers exactly on both backends (jsonb's numeric
    // does; SQLite's filter compared through f64, where 2^53 + 1 = 2^53).
    api.ok(
        "POST",
        &e,
        json!({"id": "n2", "type": "t", "properties": {"k": 9007199254740993_i64}}),
    )
    .await;
    for (k, want) in [
        ("9007199254740993", json!(["n2"])),
        ("9007199254740992", json!([])),
        ("9007199254740992.0", json!([])),
    ] {
        let listed = api
            .ok(
                "GET",
                &format!("{e}?where=%7B%22k%22%3A{k}%7D"),
                Value::Null,
            )
            .await;
        let ids: Vec<Value> = listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["id"].clone())
            .collect();
        assert_eq!(Value::Array(ids), want, "where k = {k}");
    }
}

/// (kind, id, op, version) of each change of a page.
fn change_list(page: &Value) -> Vec<(String, String, String, Value)> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let text = |k: &str| c[k].as_str().unwrap().to_string();
            (text("kind"), text("id"), text("op"), c["version"].clone())
        })
        .collect()
}

async fn change_feed_pages_and_streams(api: &Api) {
    let entity = |id: &str| json!({"id": id, "type": "t", "properties": {"n": 1}});
    api.ok("POST", &format!("{P}/entities"), entity("a")).await;
    api.ok(
        "PATCH",
        &format!("{P}/entities/a"),
        json!({"properties": {"n": 2}}),
    )
    .await;
    api.ok("POST", &format!("{P}/entities"), entity("b")).await;
    let rel = json!({"id": "r", "type": "knows", "from": "a", "to": "b"});
    api.ok("POST", &format!("{P}/relationships"), rel).await;
    let r = api
        .call("DELETE", &format!("{P}/entities/b"), Value::Null)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let r = api
        .call("DELETE", &format!("{P}/entities/a?purge=true"), Value::Null)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);

    let all = api.ok("GET", &format!("{P}/changes"), Value::Null).await;
    let c = |kind: &str, id: &str, op: &str, v: Value| (kind.into(), id.into(), op.into(), v);
    assert_eq!(
        change_list(&all),
        vec![
            c("entity", "a", "create", json!(1)),
            c("entity", "a", "update", json!(2)),
            c("entity", "b", "create", json!(1)),
            c("relationship", "r", "create", json!(1)),
            c("entity", "b", "delete", json!(2)),
            c("entity", "a", "purge", Value::Null),
        ]
    );
    let seqs: Vec<i64> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["seq"].as_i64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert!(all["data"][0]["at"].is_string());
    assert_eq!(all["pagination"]["next_cursor"], Value::Null);

    // Pages: the cursor is the last seq; `after` is exclusive.
    let first = api
        .ok("GET", &format!("{P}/changes?limit=4"), Value::Null)
        .await;
    assert_eq!(change_list(&first).len(), 4);
    let cursor = first["pagination"]["next_cursor"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(cursor, seqs[3].to_string());
    let rest = api
        .ok(
            "GET",
            &format!("{P}/changes?limit=4&cursor={cursor}"),
            Value::Null,
        )
        .await;
    assert_eq!(change_list(&rest), change_list(&all)[4..].to_vec());
    let after = api
        .ok(
            "GET",
            &format!("{P}/changes?after={}", seqs[5]),
            Value::Null,
        )
        .await;
    assert!(change_list(&after).is_empty());

    // Bad input: a clear 400; another project: 404.
    for bad in ["after=-1", "limit=0", "limit=1001", "cursor=x", "after=x"] {
        let r = api
            .call("GET", &format!("{P}/changes?{bad}"), Value::Null)
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text);
    }
    let r = api
        .send(
            "GET",
            &format!("{P}/changes"),
            &[("last-event-id", "x")],
            vec![],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = api
        .call("GET", "/v1/orgs/acme/projects/nope/changes", Value::Null)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);

    // Server-sent events: resumes after Last-Event-ID, then carries a change
    // made while the stream is open.
    let req = Request::builder()
        .uri(format!("{P}/changes"))
        .header("authorization", format!("Bearer {ADMIN}"))
        .header("accept", "text/event-stream")
        .header("last-event-id", seqs[3].to_string())
        .body(Body::empty())
        .unwrap();
    let res = api.router.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut body = res.into_body();
    let mut events: Vec<(i64, Value)> = Vec::new();
    let mut text = String::new();
    let mut wrote = false;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while events.len() < 3 {
        if events.len() == 2 && !wrote {
            api.ok("POST", &format!("{P}/entities"), entity("c")).await;
            wrote = true;
        }
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .expect("an event in time")
            .expect("the stream stays open")
            .unwrap();
        let Ok(data) = frame.into_data() else {
            continue;
        };
        text.push_str(&String::from_utf8_lossy(&data));
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name).map(str::to_string))
            };
            if let (Some(id), Some(data)) = (field("id: "), field("data: ")) {
                events.push((id.parse().unwrap(), serde_json::from_str(&data).unwrap()));
            }
        }
    }
    assert_eq!(events[0].0, seqs[4]);
    assert_eq!(events[1].0, seqs[5]);
    assert_eq!(events[0].1["op"], "delete");
    assert_eq!(
        (events[2].1["id"].as_str(), events[2].1["op"].as_str()),
        (Some("c"), Some("create"))
    );
    assert!(events[2].0 > seqs[5]);
}
