//! Server mode with Apache AGE (PGlite: real AGE 1.7 on PostgreSQL 18, one
//! connection, so one daemon and one sequential test per process): the graph
//! projection stays in step with the tables, read-only Cypher through HTTP,
//! injection attempts through every input, isolation between projects, and
//! a differential check of the recursive-CTE graph queries against Cypher.

use crate::support;

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
    if support::skip_without(support::PGLITE) {
        return;
    }
    let _turn = support::PGLITE_SESSION.lock().await;
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
    readiness_checks_age(&api).await;
    projection_follows_every_write(&api).await;
    cypher_is_read_only_and_parameterised(&api).await;
    projects_see_only_their_graph(&api).await;
    sync_rebuilds_the_graph(&api).await;
    cte_answers_equal_cypher_answers(&api).await;
}

/// With AGE on, readiness asks AGE too (tests/it/readiness.rs has the rest).
async fn readiness_checks_age(api: &Api) {
    let (status, body) = api.call("GET", "/health/ready", Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["checks"]["age"], "ok", "{body}");
    assert_eq!(body["checks"]["store"], "ok", "{body}");
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

/// Opens a store on PGlite with AGE `mode` (the previous one must be gone).
async fn pglite_store(mode: strata::store::postgres::AgeMode) -> (DynStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = support::pglite_config(dir.path());
    config.postgres.age = mode;
    let store = support::open(&config).await.unwrap();
    (store, dir)
}

fn props(v: Value) -> Properties {
    v.as_object().unwrap().clone()
}

async fn cypher_count(store: &DynStore, scope: &Scope, query: &str) -> Value {
    let result = store
        .cypher(scope, query, &serde_json::Map::new())
        .await
        .unwrap();
    result.rows[0][0].clone()
}

/// Reads back every row written so far: the org, the project, entities
/// with their versions, the relationship.
async fn all_rows_visible(store: &DynStore, scope: &Scope, entities: &[&str]) {
    store.get_org(&scope.org).await.unwrap();
    store.get_project(&scope.org, &scope.project).await.unwrap();
    let page = PageRequest {
        cursor: None,
        limit: 100,
    };
    let listed = store
        .list_entities(scope, &EntityFilter::default(), &page)
        .await
        .unwrap();
    let mut ids: Vec<_> = listed.items.iter().map(|e| e.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, entities);
    let a = store
        .get_entity(scope, "a", &EntityRead::default())
        .await
        .unwrap();
    assert_eq!((a.version, a.properties["title"].clone()), (2, json!("a2")));
    let versions = store.list_versions(scope, "a", &page).await.unwrap();
    assert_eq!(versions.items.len(), 2);
    let r = store.get_relationship(scope, "r1").await.unwrap();
    assert_eq!((r.from.as_str(), r.to.as_str()), ("a", "b"));
}

/// Org `org` with its project `app`.
async fn new_project(store: &DynStore, org: &str) {
    store.create_org(&caller(), org, "Org").await.unwrap();
    store
        .create_project(&caller(), org, "app", "App")
        .await
        .unwrap();
}

/// A new `task` entity titled by its id.
fn task(id: &str) -> WriteOp {
    WriteOp::CreateEntity {
        id: id.into(),
        entity_type: "task".into(),
        properties: props(json!({"title": id})),
    }
}

/// A new `DEPENDS_ON` relationship.
fn depends_on(id: &str, from: &str, to: &str) -> WriteOp {
    WriteOp::CreateRelationship {
        id: id.into(),
        rel_type: "DEPENDS_ON".into(),
        from: from.into(),
        to: to.into(),
        properties: props(json!({})),
    }
}

/// Turning AGE off and on over the same database keeps every row visible:
/// Strata's tables are in schema strata whatever the AGE setting (earlier
/// versions created them in ag_catalog with AGE on, and a start with AGE
/// off then migrated new, empty tables into public).
#[tokio::test]
async fn age_off_and_on_over_one_database_keeps_every_row() {
    if support::skip_without(support::PGLITE) {
        return;
    }
    use strata::store::postgres::AgeMode;
    let _turn = support::PGLITE_SESSION.lock().await;
    let org = format!("onoff{}", rand::random::<u32>());
    let scope = Scope::new(&org, "app");
    {
        let (store, _dir) = pglite_store(AgeMode::On).await;
        new_project(&store, &org).await;
        let ops = vec![task("a"), task("b"), depends_on("r1", "a", "b")];
        store.write(&scope, &caller(), ops).await.unwrap();
        let patch = WriteOp::PatchEntity {
            id: "a".into(),
            patch: json!({"title": "a2"}),
            entity_type: None,
            expected_version: Some(1),
        };
        store.write(&scope, &caller(), vec![patch]).await.unwrap();
        all_rows_visible(&store, &scope, &["a", "b"]).await;
        assert_eq!(
            cypher_count(&store, &scope, "MATCH (n) RETURN count(n)").await,
            json!(2)
        );
    }
    {
        let (store, _dir) = pglite_store(AgeMode::Off).await;
        all_rows_visible(&store, &scope, &["a", "b"]).await;
        let create = WriteOp::CreateEntity {
            id: "c".into(),
            entity_type: "task".into(),
            properties: props(json!({})),
        };
        store.write(&scope, &caller(), vec![create]).await.unwrap();
        all_rows_visible(&store, &scope, &["a", "b", "c"]).await;
    }
    {
        let (store, _dir) = pglite_store(AgeMode::On).await;
        all_rows_visible(&store, &scope, &["a", "b", "c"]).await;
        // The write made with AGE off is not in the graph until a sync.
        store.sync_graph(&scope).await.unwrap();
        assert_eq!(
            cypher_count(&store, &scope, "MATCH (n) RETURN count(n)").await,
            json!(3)
        );
        assert_eq!(
            cypher_count(&store, &scope, "MATCH ()-[e]->() RETURN count(e)").await,
            json!(1)
        );
    }
    // Nothing of Strata's went to ag_catalog or public.
    let (client, connection) = support::connect_pglite().await;
    let driver = tokio::spawn(connection);
    let misplaced: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname IN ('ag_catalog', 'public')
               AND c.relname IN ('orgs', 'entities', 'schema_migrations')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(misplaced, 0);
    let placed: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'strata'
               AND c.relname IN ('orgs', 'entities', 'schema_migrations')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(placed, 3);
    drop(client);
    let _ = driver.await;
}

#[tokio::test]
async fn age_sync_repairs_liveness_and_the_graph_and_says_so() {
    if support::skip_without(support::PGLITE) {
        return;
    }
    use strata::store::postgres::AgeMode;
    let _turn = support::PGLITE_SESSION.lock().await;
    let org = format!("repair{}", rand::random::<u32>());
    let scope = Scope::new(&org, "app");
    {
        let (store, _dir) = pglite_store(AgeMode::On).await;
        new_project(&store, &org).await;
        // An id that JSON and agtype must escape: the comparison is exact.
        let odd = "q\"u\\o t\u{e9}";
        let ops = vec![
            task("a"),
            task("b"),
            task("c"),
            task(odd),
            depends_on("r1", "a", "b"),
            depends_on("r2", "b", "c"),
            depends_on("r\"3", odd, "a"),
        ];
        store.write(&scope, &caller(), ops).await.unwrap();
    }
    // Break the tables behind Strata's back: `c` deleted without hiding
    // r2, and r1 hidden though both its ends are live.
    {
        let (client, connection) = support::connect_pglite().await;
        let driver = tokio::spawn(connection);
        client
            .execute(
                "UPDATE strata.entities SET deleted_at = now() WHERE org_id = $1 AND id = 'c'",
                &[&org],
            )
            .await
            .unwrap();
        client
            .execute(
                "UPDATE strata.relationships SET live = false WHERE org_id = $1 AND id = 'r1'",
                &[&org],
            )
            .await
            .unwrap();
        drop(client);
        let _ = driver.await;
    }
    let (store, _dir) = pglite_store(AgeMode::On).await;
    let sync = store.sync_graph(&scope).await.unwrap();
    assert_eq!(
        (sync.relationships_hidden, sync.relationships_revived),
        (1, 1),
        "{sync:?}"
    );
    // Against the repaired tables the old graph had `c` and r2 too many.
    let expected_before = GraphDrift {
        stray_vertices: 1,
        stray_edges: 1,
        ..GraphDrift::default()
    };
    assert_eq!(sync.before, expected_before, "{sync:?}");
    assert!(sync.after.is_none(), "{sync:?}");
    assert_eq!((sync.vertices, sync.edges), (3, 2));
    let again = store.sync_graph(&scope).await.unwrap();
    assert!(!again.repaired_anything(), "{again:?}");
}
