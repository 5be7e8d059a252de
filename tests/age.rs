//! Server mode with Apache AGE (PGlite: real AGE 1.7 on PostgreSQL 18, one
//! connection, so one daemon and one sequential test per process): the graph
//! projection stays in step with the tables, read-only Cypher through HTTP,
//! injection attempts through every input, isolation between projects, and
//! a differential check of the recursive-CTE graph queries against Cypher.

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use strata::domain::*;
use strata::store::DynStore;
use tower::ServiceExt;

const ADMIN: &str = "test-admin-key-0123456789";

struct Api {
    router: axum::Router,
    store: DynStore,
}

impl Api {
    async fn call(&self, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {ADMIN}"))
            .header("content-type", "application/json")
            .body(Body::from(if body.is_null() {
                String::new()
            } else {
                body.to_string()
            }))
            .unwrap();
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn ok(&self, method: &str, path: &str, body: Value) -> Value {
        let (status, reply) = self.call(method, path, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {reply}");
        reply
    }

    async fn cypher(&self, project: &str, query: &str, params: Value) -> (StatusCode, Value) {
        let path = format!("/v1/orgs/acme/projects/{project}/cypher");
        self.call("POST", &path, json!({"query": query, "params": params}))
            .await
    }

    async fn rows(&self, project: &str, query: &str, params: Value) -> Vec<Vec<Value>> {
        let (status, reply) = self.cypher(project, query, params).await;
        assert_eq!(status, StatusCode::OK, "{query}: {reply}");
        serde_json::from_value(reply["data"]["rows"].clone()).unwrap()
    }
}

fn caller() -> Caller {
    Caller::new("tester")
}

#[tokio::test]
async fn age_projection_cypher_and_differential() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = strata::server::build(support::pglite_config(dir.path()), ADMIN)
        .await
        .unwrap();
    let api = Api {
        router: daemon.router,
        store: daemon.store,
    };
    api.ok("POST", "/v1/orgs", json!({"id": "acme", "name": "Acme"}))
        .await;
    for p in ["app", "other"] {
        api.ok(
            "POST",
            "/v1/orgs/acme/projects",
            json!({"id": p, "name": p}),
        )
        .await;
    }
    projection_follows_every_write(&api).await;
    cypher_is_read_only_and_parameterised(&api).await;
    projects_see_only_their_graph(&api).await;
    sync_rebuilds_the_graph(&api).await;
    cte_answers_equal_cypher_answers(&api).await;
}

async fn projection_follows_every_write(api: &Api) {
    let p = "/v1/orgs/acme/projects/app";
    for (id, ty) in [("a", "task"), ("b", "task"), ("c", "note")] {
        let body = json!({"id": id, "type": ty, "properties": {"title": format!("t-{id}"), "id": "not-the-id"}});
        api.ok("POST", &format!("{p}/entities"), body).await;
    }
    api.ok(
        "POST",
        &format!("{p}/relationships"),
        json!({"id": "r1", "type": "DEPENDS_ON", "from": "b", "to": "a", "properties": {"w": 1}}),
    )
    .await;
    api.ok(
        "POST",
        &format!("{p}/relationships"),
        json!({"id": "r2", "type": "LINKS", "from": "c", "to": "b"}),
    )
    .await;

    let vertices = api
        .rows("app", "MATCH (n) RETURN n ORDER BY n.id", json!({}))
        .await;
    assert_eq!(vertices.len(), 3);
    assert_eq!(
        vertices[0][0],
        json!({"id": "a", "label": "task", "properties": {"title": "t-a"}})
    );
    let edge = api
        .rows(
            "app",
            "MATCH (x)-[e:DEPENDS_ON]->(y) RETURN x.id, e, y.id",
            json!({}),
        )
        .await;
    assert_eq!(
        edge,
        vec![vec![
            json!("b"),
            json!({"id": "r1", "label": "DEPENDS_ON", "properties": {"w": 1}}),
            json!("a")
        ]]
    );

    // Update, type change (label rebuilt with its edges), delete, restore, purge.
    api.ok(
        "PATCH",
        &format!("{p}/entities/a"),
        json!({"properties": {"title": "changed"}}),
    )
    .await;
    api.ok(
        "PATCH",
        &format!("{p}/entities/a"),
        json!({"properties": {}, "type": "bug"}),
    )
    .await;
    let a = api
        .rows(
            "app",
            "MATCH (n {id: 'a'}) RETURN labels(n), n.title",
            json!({}),
        )
        .await;
    assert_eq!(a, vec![vec![json!(["bug"]), json!("changed")]]);
    let into_a = api
        .rows("app", "MATCH (x)-[e]->(n:bug) RETURN x.id", json!({}))
        .await;
    assert_eq!(
        into_a,
        vec![vec![json!("b")]],
        "edges survive a label change"
    );

    api.ok("DELETE", &format!("{p}/entities/b"), Value::Null)
        .await;
    let ids = api
        .rows("app", "MATCH (n) RETURN n.id ORDER BY n.id", json!({}))
        .await;
    assert_eq!(ids, vec![vec![json!("a")], vec![json!("c")]]);
    let edges = api
        .rows("app", "MATCH ()-[e]->() RETURN count(e)", json!({}))
        .await;
    assert_eq!(
        edges,
        vec![vec![json!(0)]],
        "a deleted entity's edges leave the graph"
    );
    api.ok("POST", &format!("{p}/entities/b/restore"), Value::Null)
        .await;
    let edges = api
        .rows(
            "app",
            "MATCH ()-[e]->() RETURN e.id ORDER BY e.id",
            json!({}),
        )
        .await;
    assert_eq!(edges, vec![vec![json!("r1")], vec![json!("r2")]]);

    api.ok(
        "PATCH",
        &format!("{p}/relationships/r1"),
        json!({"properties": {"w": 2}}),
    )
    .await;
    let w = api
        .rows("app", "MATCH ()-[e {id: 'r1'}]->() RETURN e.w", json!({}))
        .await;
    assert_eq!(w, vec![vec![json!(2)]]);
    api.ok("DELETE", &format!("{p}/relationships/r2"), Value::Null)
        .await;
    api.ok("DELETE", &format!("{p}/entities/c?purge=true"), Value::Null)
        .await;
    let ids = api
        .rows("app", "MATCH (n) RETURN n.id ORDER BY n.id", json!({}))
        .await;
    assert_eq!(ids, vec![vec![json!("a")], vec![json!("b")]]);
    let edges = api
        .rows("app", "MATCH ()-[e]->() RETURN e.id", json!({}))
        .await;
    assert_eq!(edges, vec![vec![json!("r1")]]);
}

async fn cypher_is_read_only_and_parameterised(api: &Api) {
    let rows = api
        .rows(
            "app",
            "MATCH (n {id: $id}) RETURN n.title AS title",
            json!({"id": "a"}),
        )
        .await;
    assert_eq!(rows, vec![vec![json!("changed")]]);
    let (status, reply) = api
        .cypher(
            "app",
            "MATCH (n) RETURN n.id AS id, 1 AS one LIMIT 1",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(reply["data"]["columns"], json!(["id", "one"]));

    // Writing clauses, escapes from the literal, SQL functions: all 400.
    for q in [
        "CREATE (n:x) RETURN n",
        "MATCH (n) SET n.title = 'x' RETURN n",
        "MATCH (n) DETACH DELETE n RETURN 1",
        "MATCH (n) REMOVE n.title RETURN n",
        "MERGE (n:x {id: 'z'}) RETURN n",
        "RETURN 1 $$) AS (a agtype); DROP TABLE entities; --",
        "MATCH (n) RETURN n; DROP TABLE entities",
        "MATCH (n) RETURN pg_catalog.pg_read_file('/etc/passwd')",
        "MATCH (n RETURN n",
        "MATCH (n) RETURN nonexistent_function(n)",
    ] {
        let (status, reply) = api.cypher("app", q, json!({})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}: {reply}");
        assert_eq!(reply["error"]["code"], "bad_request");
    }
    // Hostile values travel as parameters: matched literally, never executed.
    for hostile in [
        "a' OR 1=1 --",
        "$$; DROP TABLE entities; --",
        "a}) DETACH DELETE (n",
        "`",
    ] {
        let rows = api
            .rows(
                "app",
                "MATCH (n {id: $id}) RETURN n.id",
                json!({"id": hostile}),
            )
            .await;
        assert!(rows.is_empty(), "{hostile}");
    }
    // Hostile property keys and values in writes land as data.
    let p = "/v1/orgs/acme/projects/app";
    let nasty = json!({"id": "evil", "type": "task", "properties": {"x`}) DETACH DELETE (n) //": "$$ DROP $$", "ok": "'; --"}});
    api.ok("POST", &format!("{p}/entities"), nasty).await;
    let rows = api
        .rows("app", "MATCH (n {id: 'evil'}) RETURN n", json!({}))
        .await;
    assert_eq!(
        rows[0][0]["properties"],
        json!({"x`}) DETACH DELETE (n) //": "$$ DROP $$", "ok": "'; --"})
    );
    let count = api
        .rows("app", "MATCH (n) RETURN count(n)", json!({}))
        .await;
    assert_eq!(count, vec![vec![json!(3)]], "nothing was deleted");
    api.ok(
        "DELETE",
        &format!("{p}/entities/evil?purge=true"),
        Value::Null,
    )
    .await;
}

async fn projects_see_only_their_graph(api: &Api) {
    let other = "/v1/orgs/acme/projects/other";
    api.ok(
        "POST",
        &format!("{other}/entities"),
        json!({"id": "a", "type": "secret", "properties": {"s": 1}}),
    )
    .await;
    let mine = api
        .rows(
            "app",
            "MATCH (n) RETURN n.id, labels(n) ORDER BY n.id",
            json!({}),
        )
        .await;
    assert!(mine.iter().all(|r| r[1] != json!(["secret"])), "{mine:?}");
    let theirs = api.rows("other", "MATCH (n) RETURN n.id", json!({})).await;
    assert_eq!(theirs, vec![vec![json!("a")]]);
}

async fn sync_rebuilds_the_graph(api: &Api) {
    let scope = Scope::new("acme", "app");
    let sync = api.store.sync_graph(&scope).await.unwrap();
    assert_eq!((sync.vertices, sync.edges), (2, 1));
    assert!(sync.after.is_none(), "{sync:?}");
    assert!(
        !sync.repaired_anything(),
        "the projection kept up: {sync:?}"
    );
    let rows = api
        .rows(
            "app",
            "MATCH (x)-[e]->(y) RETURN x.id, e.id, y.id",
            json!({}),
        )
        .await;
    assert_eq!(rows, vec![vec![json!("b"), json!("r1"), json!("a")]]);
}

/// Node -> shortest depth, without the start node.
type Depths = BTreeMap<String, u64>;

async fn cte_depths(
    store: &DynStore,
    scope: &Scope,
    start: &str,
    direction: Direction,
    types: &[&str],
    depth: u32,
) -> Depths {
    let t = Traversal {
        start: start.into(),
        direction,
        types: types.iter().map(|t| t.to_string()).collect(),
        max_depth: depth,
        limit: 10_000,
        include_properties: false,
    };
    store
        .traverse(scope, &t)
        .await
        .unwrap()
        .nodes
        .into_iter()
        .filter(|n| n.id != start)
        .map(|n| (n.id, u64::from(n.depth)))
        .collect()
}

async fn cypher_depths(api: &Api, project: &str, query: &str, start: &str) -> Depths {
    api.rows(project, query, json!({"id": start}))
        .await
        .into_iter()
        .filter(|r| r[0] != json!(start))
        .map(|r| (r[0].as_str().unwrap().to_string(), r[1].as_u64().unwrap()))
        .collect()
}

async fn cte_answers_equal_cypher_answers(api: &Api) {
    for seed in 0..6u64 {
        let project = format!("diff{seed}");
        api.ok(
            "POST",
            "/v1/orgs/acme/projects",
            json!({"id": project, "name": project}),
        )
        .await;
        let scope = Scope::new("acme", &project);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let n = rng.random_range(6..14);
        let mut ops: Vec<WriteOp> = (0..n)
            .map(|i| WriteOp::CreateEntity {
                id: format!("n{i}"),
                entity_type: "node".into(),
                properties: Properties::new(),
            })
            .collect();
        for e in 0..rng.random_range(n..n * 3) {
            let ty = if rng.random_bool(0.7) {
                "DEPENDS_ON"
            } else {
                "LINKS"
            };
            ops.push(WriteOp::CreateRelationship {
                id: format!("e{e}"),
                rel_type: ty.into(),
                from: format!("n{}", rng.random_range(0..n)),
                to: format!("n{}", rng.random_range(0..n)),
                properties: Properties::new(),
            });
        }
        api.store.write(&scope, &caller(), ops).await.unwrap();
        for start in 0..n {
            let s = format!("n{start}");
            for depth in 1..=3u32 {
                let out = cte_depths(&api.store, &scope, &s, Direction::Out, &[], depth).await;
                let q = format!(
                    "MATCH p = (s {{id: $id}})-[*1..{depth}]->(n) RETURN n.id, min(length(p))"
                );
                assert_eq!(
                    out,
                    cypher_depths(api, &project, &q, &s).await,
                    "seed {seed} out {s} depth {depth}"
                );
                let both = cte_depths(&api.store, &scope, &s, Direction::Both, &[], depth).await;
                let q = format!(
                    "MATCH p = (s {{id: $id}})-[*1..{depth}]-(n) RETURN n.id, min(length(p))"
                );
                assert_eq!(
                    both,
                    cypher_depths(api, &project, &q, &s).await,
                    "seed {seed} both {s} depth {depth}"
                );
                let dependents = cte_depths(
                    &api.store,
                    &scope,
                    &s,
                    Direction::In,
                    &["DEPENDS_ON"],
                    depth,
                )
                .await;
                let q = format!("MATCH p = (n)-[:DEPENDS_ON*1..{depth}]->(s {{id: $id}}) RETURN n.id, min(length(p))");
                assert_eq!(
                    dependents,
                    cypher_depths(api, &project, &q, &s).await,
                    "seed {seed} dependents {s} depth {depth}"
                );
            }
            // Shortest path lengths to every other node within 4 hops.
            for target in 0..n {
                let t = format!("n{target}");
                if t == s {
                    continue;
                }
                let query = strata::graph::PathQuery {
                    from: s.clone(),
                    to: t.clone(),
                    direction: Direction::Out,
                    types: vec![],
                    max_depth: 4,
                };
                let ours = strata::graph::shortest_path(api.store.as_ref(), &scope, &query)
                    .await
                    .unwrap()
                    .map(|p| p.edges.len() as u64);
                let rows = api
                    .rows(
                        &project,
                        "MATCH p = (a {id: $from})-[*1..4]->(b {id: $to}) RETURN min(length(p))",
                        json!({"from": s, "to": t}),
                    )
                    .await;
                let theirs = rows.first().and_then(|r| r[0].as_u64());
                assert_eq!(ours, theirs, "seed {seed} shortest {s} -> {t}");
            }
        }
    }
}
