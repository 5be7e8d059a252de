//! Tenancy and abuse tests through the public HTTP API: org isolation over
//! every route in the OpenAPI document, scopes, revocation, audit, limits.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use strata::config::Config;
use tower::ServiceExt;

const ADMIN: &str = "test-admin-key-0123456789";

struct Api {
    router: axum::Router,
    _dir: tempfile::TempDir,
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

impl Api {
    async fn new() -> Api {
        Api::with(|_| {}).await
    }

    async fn with(tune: impl FnOnce(&mut Config)) -> Api {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::embedded(dir.path());
        tune(&mut config);
        let daemon = strata::server::build(config, ADMIN).await.unwrap();
        Api {
            router: daemon.router,
            _dir: dir,
        }
    }

    async fn raw(&self, method: Method, path: &str, key: Option<&str>, body: Vec<u8>) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        let req = req
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn call(&self, method: Method, path: &str, key: &str, body: Option<Value>) -> Reply {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        self.raw(method, path, Some(key), bytes).await
    }

    async fn ok(&self, method: Method, path: &str, body: Value) -> Value {
        let r = self.call(method, path, ADMIN, Some(body)).await;
        assert!(r.status.is_success(), "{path}: {} {}", r.status, r.body);
        r.body
    }

    async fn new_key(&self, org: &str, scopes: &[&str]) -> (String, String) {
        let r = self
            .ok(
                Method::POST,
                &format!("/v1/orgs/{org}/keys"),
                json!({"name": "k", "scopes": scopes}),
            )
            .await;
        (
            r["data"]["id"].as_str().unwrap().to_owned(),
            r["data"]["key"].as_str().unwrap().to_owned(),
        )
    }
}

const P: &str = "/v1/orgs/acme/projects/app";

/// acme/app with two entities and a relationship; evil/app empty.
async fn two_tenants(api: &Api) {
    for org in ["acme", "evil"] {
        api.ok(Method::POST, "/v1/orgs", json!({"id": org, "name": org}))
            .await;
        api.ok(
            Method::POST,
            &format!("/v1/orgs/{org}/projects"),
            json!({"id": "app", "name": "App"}),
        )
        .await;
    }
    for id in ["e1", "e2"] {
        api.ok(
            Method::POST,
            &format!("{P}/entities"),
            json!({"id": id, "type": "task", "properties": {"title": "secret plans"}}),
        )
        .await;
    }
    api.ok(
        Method::POST,
        &format!("{P}/relationships"),
        json!({"id": "r1", "type": "DEPENDS_ON", "from": "e2", "to": "e1"}),
    )
    .await;
}

/// Everything an admin can read about acme, to compare before and after.
async fn acme_state(api: &Api) -> Value {
    let mut state = serde_json::Map::new();
    for path in [
        format!("{P}/entities?include_deleted=true"),
        format!("{P}/relationships"),
        format!("{P}/entities/e1/versions"),
        format!("{P}/entities/e2/versions"),
        "/v1/orgs/acme/projects".to_string(),
        "/v1/orgs/acme/keys".to_string(),
        "/v1/orgs/acme/audit?limit=1000".to_string(),
    ] {
        let r = api.call(Method::GET, &path, ADMIN, None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        state.insert(path, r.body["data"].clone());
    }
    Value::Object(state)
}

/// A body that would be accepted by the route if the caller were allowed.
fn plausible_body(method: &Method, path: &str) -> Option<Value> {
    if *method == Method::GET || *method == Method::DELETE {
        return None;
    }
    Some(if path.ends_with("/keys") {
        json!({"name": "stolen", "scopes": ["admin"]})
    } else if path.ends_with("/projects") {
        json!({"id": "planted", "name": "x"})
    } else if path.ends_with("/relationships") {
        json!({"type": "LINK", "from": "e1", "to": "e2"})
    } else if path.ends_with("/batch") {
        json!({"operations": [{"op": "delete_entity", "id": "e1"}]})
    } else if path.ends_with("/revert") {
        json!({"to_version": 1})
    } else if path.ends_with("/cypher") {
        json!({"query": "MATCH (n) RETURN n"})
    } else if path.ends_with("/entities") {
        json!({"id": "planted", "type": "task"})
    } else if path.contains("/relationships/") || path.ends_with("/e1") {
        json!({"type": "task", "properties": {"title": "overwritten"}})
    } else {
        json!({})
    })
}

#[tokio::test]
async fn a_foreign_org_key_sees_nothing_on_any_route() {
    let api = Api::new().await;
    two_tenants(&api).await;
    let (acme_key_id, _) = api.new_key("acme", &["read"]).await;
    let (_, evil) = api.new_key("evil", &["admin"]).await;
    let before = acme_state(&api).await;

    let doc = api
        .call(Method::GET, "/openapi.json", ADMIN, None)
        .await
        .body;
    let paths = doc["paths"].as_object().expect("openapi paths");
    let mut checked = 0;
    for (template, ops) in paths {
        if !template.contains("{org}") {
            continue;
        }
        for method in ops.as_object().unwrap().keys() {
            let method: Method = method.to_uppercase().parse().unwrap();
            let id = if template.contains("/keys/") {
                acme_key_id.as_str()
            } else if template.contains("/relationships/") {
                "r1"
            } else {
                "e1"
            };
            let path = template
                .replace("{org}", "acme")
                .replace("{project}", "app")
                .replace("{id}", id)
                .replace("{n}", "1")
                .replace("{doc}", "d1");
            let path = if template.ends_with("/shortest") {
                format!("{path}?from=e1&to=e2")
            } else if template.ends_with("/search") {
                format!("{path}?q=secret")
            } else {
                path
            };
            let r = api
                .call(method.clone(), &path, &evil, plausible_body(&method, &path))
                .await;
            assert_eq!(
                r.status,
                StatusCode::NOT_FOUND,
                "{method} {path}: {}",
                r.body
            );
            assert_eq!(r.body["error"]["code"], "not_found", "{method} {path}");
            checked += 1;
        }
    }
    assert!(
        checked >= 25,
        "only {checked} org routes found in the OpenAPI document"
    );

    // Routes without an org: only the key's own org, and no global admin powers.
    let orgs = api.call(Method::GET, "/v1/orgs", &evil, None).await;
    assert_eq!(orgs.status, StatusCode::OK);
    assert_eq!(orgs.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(orgs.body["data"][0]["id"], "evil");
    for (method, path) in [
        (Method::POST, "/v1/orgs"),
        (Method::GET, "/v1/admin/jobs"),
        (Method::POST, "/v1/admin/jobs/checkpoint/run"),
    ] {
        let r = api
            .call(method, path, &evil, Some(json!({"id": "x", "name": "x"})))
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
    }

    assert_eq!(
        acme_state(&api).await,
        before,
        "a foreign key changed acme's data"
    );
}

/// A key limited to some projects of its org: every route of the org's
/// other projects, and the org's own routes (listings, keys, trail,
/// export), answer 404 as for a key of another org, with nothing changed;
/// in its project it works with its scopes.
#[tokio::test]
async fn a_key_limited_to_projects_sees_only_them() {
    let api = Api::new().await;
    two_tenants(&api).await;
    api.ok(
        Method::POST,
        "/v1/orgs/acme/projects",
        json!({"id": "side", "name": "Side"}),
    )
    .await;
    let (acme_key_id, _) = api.new_key("acme", &["read"]).await;
    let made = api
        .ok(
            Method::POST,
            "/v1/orgs/acme/keys",
            json!({"name": "side only", "scopes": ["admin"], "projects": ["side"]}),
        )
        .await;
    assert_eq!(made["data"]["projects"], json!(["side"]));
    let limited = made["data"]["key"].as_str().unwrap().to_owned();
    let before = acme_state(&api).await;

    let doc = api
        .call(Method::GET, "/openapi.json", ADMIN, None)
        .await
        .body;
    let mut checked = 0;
    for (template, ops) in doc["paths"].as_object().unwrap() {
        if !template.contains("{org}") {
            continue;
        }
        for method in ops.as_object().unwrap().keys() {
            let method: Method = method.to_uppercase().parse().unwrap();
            let id = if template.contains("/keys/") {
                acme_key_id.as_str()
            } else if template.contains("/relationships/") {
                "r1"
            } else {
                "e1"
            };
            let path = template
                .replace("{org}", "acme")
                .replace("{project}", "app")
                .replace("{id}", id)
                .replace("{n}", "1")
                .replace("{doc}", "d1");
            let r = api
                .call(
                    method.clone(),
                    &path,
                    &limited,
                    plausible_body(&method, &path),
                )
                .await;
            assert_eq!(
                r.status,
                StatusCode::NOT_FOUND,
                "{method} {path}: {}",
                r.body
            );
            checked += 1;
        }
    }
    assert!(checked >= 25, "only {checked} org routes checked");
    assert_eq!(
        acme_state(&api).await,
        before,
        "a limited key changed acme's data"
    );

    // In its own project it works.
    let side = "/v1/orgs/acme/projects/side";
    let body = json!({"id": "s1", "type": "task"});
    let r = api
        .call(
            Method::POST,
            &format!("{side}/entities"),
            &limited,
            Some(body),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = api
        .call(Method::GET, &format!("{side}/entities/s1"), &limited, None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // Its projects must exist, and a list must name one.
    for (projects, status) in [
        (json!(["nope"]), StatusCode::NOT_FOUND),
        (json!([]), StatusCode::BAD_REQUEST),
        (json!(["bad/id"]), StatusCode::BAD_REQUEST),
    ] {
        let body = json!({"name": "k", "scopes": ["read"], "projects": projects});
        let r = api
            .call(Method::POST, "/v1/orgs/acme/keys", ADMIN, Some(body))
            .await;
        assert_eq!(r.status, status, "{projects}: {}", r.body);
    }
}

#[tokio::test]
async fn ids_of_another_tenant_do_not_exist_in_ones_own_project() {
    let api = Api::new().await;
    two_tenants(&api).await;
    let (_, evil) = api.new_key("evil", &["write"]).await;
    let mine = "/v1/orgs/evil/projects/app";
    let r = api
        .call(Method::GET, &format!("{mine}/entities/e1"), &evil, None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = api
        .call(
            Method::POST,
            &format!("{mine}/relationships"),
            &evil,
            Some(json!({"type": "LINK", "from": "e1", "to": "e2"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = api
        .call(Method::GET, &format!("{mine}/search?q=secret"), &evil, None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["data"], json!([]));
    let r = api
        .call(
            Method::GET,
            &format!("{mine}/entities/e1/neighbors"),
            &evil,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Same id, own data: creating e1 in evil's project is independent of acme's.
    let r = api
        .call(
            Method::POST,
            &format!("{mine}/entities"),
            &evil,
            Some(json!({"id": "e1", "type": "t"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let acme_e1 = api
        .call(Method::GET, &format!("{P}/entities/e1"), ADMIN, None)
        .await;
    assert_eq!(acme_e1.body["data"]["properties"]["title"], "secret plans");
}

#[tokio::test]
async fn scopes_are_enforced_and_admin_implies_write_implies_read() {
    let api = Api::new().await;
    two_tenants(&api).await;
    let (_, read) = api.new_key("acme", &["read"]).await;
    let (_, write) = api.new_key("acme", &["write"]).await;
    let (_, admin) = api.new_key("acme", &["admin"]).await;
    let create = json!({"type": "task"});
    let cases = [
        (
            &read,
            Method::GET,
            format!("{P}/entities/e1"),
            None,
            StatusCode::OK,
        ),
        (
            &read,
            Method::POST,
            format!("{P}/entities"),
            Some(create.clone()),
            StatusCode::FORBIDDEN,
        ),
        (
            &write,
            Method::POST,
            format!("{P}/entities"),
            Some(create.clone()),
            StatusCode::CREATED,
        ),
        (
            &write,
            Method::GET,
            "/v1/orgs/acme/keys".to_string(),
            None,
            StatusCode::FORBIDDEN,
        ),
        (
            &write,
            Method::GET,
            "/v1/orgs/acme/audit".to_string(),
            None,
            StatusCode::FORBIDDEN,
        ),
        (
            &admin,
            Method::POST,
            format!("{P}/entities"),
            Some(create.clone()),
            StatusCode::CREATED,
        ),
        (
            &admin,
            Method::GET,
            "/v1/orgs/acme/keys".to_string(),
            None,
            StatusCode::OK,
        ),
        (
            &admin,
            Method::GET,
            format!("{P}/entities/e1"),
            None,
            StatusCode::OK,
        ),
    ];
    for (key, method, path, body, want) in cases {
        let r = api.call(method.clone(), &path, key, body).await;
        assert_eq!(r.status, want, "{method} {path}: {}", r.body);
        if want == StatusCode::FORBIDDEN {
            assert_eq!(r.body["error"]["code"], "forbidden");
        }
    }
}

#[tokio::test]
async fn unknown_malformed_and_revoked_keys_get_401() {
    let api = Api::new().await;
    two_tenants(&api).await;
    let (id, key) = api.new_key("acme", &["read"]).await;
    let path = format!("{P}/entities/e1");
    assert_eq!(
        api.call(Method::GET, &path, &key, None).await.status,
        StatusCode::OK
    );
    for bad in [
        "",
        "nonsense",
        "sk_0123456789abcdef_wrong",
        &key[..key.len() - 1],
    ] {
        let r = api.call(Method::GET, &path, bad, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{bad:?}");
        assert_eq!(r.body["error"]["code"], "unauthorized");
    }
    let r = api.raw(Method::GET, &path, None, Vec::new()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let listed = api
        .call(Method::GET, "/v1/orgs/acme/keys", ADMIN, None)
        .await
        .body;
    assert!(
        !listed.to_string().contains(&key),
        "a listing shows a secret"
    );
    let r = api
        .call(
            Method::DELETE,
            &format!("/v1/orgs/acme/keys/{id}"),
            ADMIN,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        api.call(Method::GET, &path, &key, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Revoking again, or from another org, is a 404.
    let r = api
        .call(
            Method::DELETE,
            &format!("/v1/orgs/acme/keys/{id}"),
            ADMIN,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_query_token_is_accepted_only_on_websocket_upgrades() {
    let api = Api::new().await;
    two_tenants(&api).await;
    let (_, key) = api.new_key("acme", &["read"]).await;
    let path = format!("{P}/entities/e1?token={key}");
    let r = api.raw(Method::GET, &path, None, Vec::new()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn every_write_is_audited_with_who_what_where() {
    let api = Api::new().await;
    two_tenants(&api).await;
    let (_, writer) = api.new_key("acme", &["write"]).await;
    let e = format!("{P}/entities/e1");
    let steps = [
        (
            Method::PATCH,
            e.clone(),
            Some(json!({"properties": {"n": 1}})),
        ),
        (
            Method::PUT,
            e.clone(),
            Some(json!({"type": "task", "properties": {"n": 2}})),
        ),
        (
            Method::POST,
            format!("{e}/revert"),
            Some(json!({"to_version": 1})),
        ),
        (Method::DELETE, e.clone(), None),
        (Method::POST, format!("{e}/restore"), None),
        (
            Method::PATCH,
            format!("{P}/relationships/r1"),
            Some(json!({"properties": {"w": 1}})),
        ),
        (Method::DELETE, format!("{P}/relationships/r1"), None),
        (Method::DELETE, format!("{P}/entities/e2?purge=true"), None),
    ];
    for (method, path, body) in steps {
        let r = api.call(method.clone(), &path, &writer, body).await;
        assert!(r.status.is_success(), "{method} {path}: {}", r.body);
    }
    let audit = api
        .call(Method::GET, "/v1/orgs/acme/audit?limit=1000", ADMIN, None)
        .await
        .body;
    let events = audit["data"].as_array().unwrap();
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for want in [
        "org.create",
        "project.create",
        "key.create",
        "entity.create",
        "relationship.create",
        "entity.update",
        "entity.replace",
        "entity.revert",
        "entity.delete",
        "entity.restore",
        "relationship.update",
        "relationship.delete",
        "entity.purge",
    ] {
        assert!(actions.contains(&want), "no {want} event in {actions:?}");
    }
    let purge = events
        .iter()
        .find(|e| e["action"] == "entity.purge")
        .unwrap();
    assert_eq!(purge["target"], "e2");
    assert_eq!(purge["project"], "app");
    assert!(
        !purge.to_string().contains("secret plans"),
        "the audit kept purged content"
    );
    let by_writer = events
        .iter()
        .find(|e| e["action"] == "entity.update")
        .unwrap();
    assert_ne!(by_writer["actor"], "admin");
    // Filters.
    let only = api
        .call(
            Method::GET,
            "/v1/orgs/acme/audit?action=entity.purge",
            ADMIN,
            None,
        )
        .await
        .body;
    assert_eq!(only["data"].as_array().unwrap().len(), 1);
    let target = api
        .call(Method::GET, "/v1/orgs/acme/audit?target=r1", ADMIN, None)
        .await
        .body;
    assert!(target["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["target"] == "r1"));
    // A failed write leaves no event.
    let before = events.len();
    let r = api
        .call(
            Method::POST,
            &format!("{P}/entities"),
            &writer,
            Some(json!({"id": "e1", "type": "x"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let after = api
        .call(Method::GET, "/v1/orgs/acme/audit?limit=1000", ADMIN, None)
        .await
        .body;
    assert_eq!(after["data"].as_array().unwrap().len(), before);
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after_per_key() {
    let api = Api::with(|c| {
        c.rate_limit_per_sec = 2;
        c.rate_limit_burst = 2;
    })
    .await;
    two_tenants(&api).await;
    let (_, key) = api.new_key("acme", &["read"]).await;
    let (_, other) = api.new_key("acme", &["read"]).await;
    let path = format!("{P}/entities/e1");
    let mut limited = None;
    for _ in 0..5 {
        let r = api.call(Method::GET, &path, &key, None).await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("no 429 after 5 requests at 2/s");
    assert_eq!(r.body["error"]["code"], "rate_limited");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
    // Another key is not affected, nor is the bootstrap admin.
    assert_eq!(
        api.call(Method::GET, &path, &other, None).await.status,
        StatusCode::OK
    );
    for _ in 0..5 {
        assert_eq!(
            api.call(Method::GET, &path, ADMIN, None).await.status,
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn abusive_bodies_get_4xx_and_the_daemon_stays_healthy() {
    let api = Api::new().await;
    two_tenants(&api).await;
    let before = acme_state(&api).await;
    let entities = format!("{P}/entities");
    let mut deep = "1".to_string();
    for _ in 0..5000 {
        deep = format!("[{deep}]");
    }
    let bodies: Vec<(Vec<u8>, StatusCode)> = vec![
        (vec![b'x'; 9 << 20], StatusCode::PAYLOAD_TOO_LARGE),
        (
            format!("{{\"type\":\"t\",\"properties\":{{\"a\":{deep}}}}}").into_bytes(),
            StatusCode::BAD_REQUEST,
        ),
        (
            b"{\"type\": \"t\", \"properties\": ".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (vec![0xff, 0xfe, 0x00], StatusCode::BAD_REQUEST),
        (b"{\"type\": 5}".to_vec(), StatusCode::BAD_REQUEST),
        (
            b"{\"type\": \"t\", \"propertes\": {}}".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (b"[]".to_vec(), StatusCode::BAD_REQUEST),
    ];
    for (body, want) in bodies {
        let len = body.len();
        let r = api.raw(Method::POST, &entities, Some(ADMIN), body).await;
        assert_eq!(r.status, want, "body of {len} bytes: {}", r.body);
        assert!(
            r.body["error"]["code"].is_string(),
            "not the error shape: {}",
            r.body
        );
    }
    let big_batch = json!({"operations": vec![json!({"op": "create_entity", "type": "t"}); 1001]});
    let r = api
        .call(Method::POST, &format!("{P}/batch"), ADMIN, Some(big_batch))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let live = api.raw(Method::GET, "/health/live", None, Vec::new()).await;
    assert_eq!(live.status, StatusCode::OK);
    let ready = api
        .raw(Method::GET, "/health/ready", None, Vec::new())
        .await;
    assert_eq!(ready.status, StatusCode::OK);
    let mut after = acme_state(&api).await;
    // The audit may not grow either: nothing was written.
    assert_eq!(
        after.as_object_mut().unwrap().len(),
        before.as_object().unwrap().len()
    );
    assert_eq!(after, before);
}

#[tokio::test]
async fn auth_off_acts_as_the_local_admin() {
    let api = Api::with(|c| c.auth_disabled = true).await;
    let r = api
        .raw(
            Method::POST,
            "/v1/orgs",
            None,
            br#"{"id":"dev","name":"Dev"}"#.to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}
