//! Server mode with several daemons on one PostgreSQL: concurrent starts and
//! migrations, optimistic concurrency under racing writers, cache coherence
//! and key revocation across daemons, abandoned write transactions.

use crate::support::{self, eventually};

use serde_json::json;
use std::time::Duration;
use strata::domain::*;
use strata::store::DynStore;

fn caller() -> Caller {
    Caller::new("tester")
}

async fn project(store: &DynStore) -> Scope {
    store.create_org(&caller(), "acme", "Acme").await.unwrap();
    store
        .create_project(&caller(), "acme", "app", "App")
        .await
        .unwrap();
    Scope::new("acme", "app")
}

fn props(v: serde_json::Value) -> Properties {
    v.as_object().unwrap().clone()
}

const ADMIN: &str = "test-admin-key-0123456789";

/// One JSON request to a daemon's router with `key`.
async fn call(
    router: &axum::Router,
    method: &str,
    path: &str,
    key: &str,
    body: &str,
) -> axum::response::Response {
    use tower::ServiceExt;
    let req = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    router.clone().oneshot(req).await.unwrap()
}

#[tokio::test]
async fn daemons_starting_together_migrate_once() {
    if support::skip_without(support::PG) {
        return;
    }
    let url = support::fresh_pg_database().await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let opens = dirs.iter().map(|d| support::pg_store(d.path(), &url));
    let stores = futures_util::future::join_all(opens).await;
    for s in &stores {
        assert!(s.is_empty().await.unwrap());
    }
}

#[tokio::test]
async fn racing_writers_on_two_daemons_lose_no_update() {
    if support::skip_without(support::PG) {
        return;
    }
    let url = support::fresh_pg_database().await;
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = support::pg_store(d1.path(), &url).await;
    let b = support::pg_store(d2.path(), &url).await;
    let scope = project(&a).await;
    let create = WriteOp::CreateEntity {
        id: "counter".into(),
        entity_type: "counter".into(),
        properties: props(json!({"n": 0})),
    };
    a.write(&scope, &caller(), vec![create]).await.unwrap();

    // 40 writers, half on each daemon, each read-modify-write with If-Match,
    // retrying on 412 until it lands.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let scope = scope.clone();
        tasks.push(tokio::spawn(async move {
            let mut attempts = 0;
            loop {
                attempts += 1;
                let read = EntityRead::default();
                let current = store.get_entity(&scope, "counter", &read).await.unwrap();
                let n = current.properties["n"].as_i64().unwrap();
                let op = WriteOp::PatchEntity {
                    id: "counter".into(),
                    patch: json!({"n": n + 1}),
                    entity_type: None,
                    expected_version: Some(current.version),
                };
                match store.write(&scope, &caller(), vec![op]).await {
                    Ok(_) => return attempts,
                    Err(DomainError::InBatch { source, .. })
                        if matches!(*source, DomainError::PreconditionFailed { .. }) => {}
                    Err(e) => panic!("unexpected error: {e}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let read = EntityRead::default();
    for store in [&a, &b] {
        eventually(Duration::from_secs(5), || async {
            let e = store.get_entity(&scope, "counter", &read).await.unwrap();
            e.properties["n"] == json!(40) && e.version == 41
        })
        .await;
    }
    let page = PageRequest {
        cursor: None,
        limit: 1000,
    };
    let versions = a.list_versions(&scope, "counter", &page).await.unwrap();
    assert_eq!(versions.items.len(), 41, "one version per successful write");
    let ns: Vec<i64> = {
        let mut ns = Vec::new();
        for v in 1..=41 {
            let at = EntityRead {
                version: Some(v),
                ..Default::default()
            };
            let e = b.get_entity(&scope, "counter", &at).await.unwrap();
            ns.push(e.properties["n"].as_i64().unwrap());
        }
        ns
    };
    assert_eq!(
        ns,
        (0..=40).collect::<Vec<_>>(),
        "every increment applied exactly once"
    );
}

#[tokio::test]
async fn a_write_on_one_daemon_reaches_the_other_daemons_cache() {
    if support::skip_without(support::PG) {
        return;
    }
    let url = support::fresh_pg_database().await;
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = support::pg_store(d1.path(), &url).await;
    let b = support::pg_store(d2.path(), &url).await;
    let scope = project(&a).await;
    let create = WriteOp::CreateEntity {
        id: "e".into(),
        entity_type: "t".into(),
        properties: props(json!({"v": 1})),
    };
    a.write(&scope, &caller(), vec![create]).await.unwrap();
    let read = EntityRead::default();
    // Wait until b's listener is up and b has cached the entity.
    eventually(Duration::from_secs(5), || async {
        b.get_entity(&scope, "e", &read).await.is_ok() && b.cache_stats().hits > 0
    })
    .await;
    let patch = WriteOp::PatchEntity {
        id: "e".into(),
        patch: json!({"v": 2}),
        entity_type: None,
        expected_version: None,
    };
    a.write(&scope, &caller(), vec![patch]).await.unwrap();
    eventually(Duration::from_secs(5), || async {
        b.get_entity(&scope, "e", &read).await.unwrap().properties["v"] == json!(2)
    })
    .await;
    let purge = WriteOp::PurgeEntity { id: "e".into() };
    a.write(&scope, &caller(), vec![purge]).await.unwrap();
    eventually(Duration::from_secs(5), || async {
        matches!(
            b.get_entity(&scope, "e", &read).await,
            Err(DomainError::NotFound(_))
        )
    })
    .await;
}

#[tokio::test]
async fn a_key_revoked_through_one_daemon_stops_working_on_the_other() {
    if support::skip_without(support::PG) {
        return;
    }
    use axum::http::StatusCode;

    let url = support::fresh_pg_database().await;
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = strata::server::build(support::pg_config(d1.path(), &url), ADMIN)
        .await
        .unwrap();
    let b = strata::server::build(support::pg_config(d2.path(), &url), ADMIN)
        .await
        .unwrap();
    let r = call(
        &a.router,
        "POST",
        "/v1/orgs",
        ADMIN,
        r#"{"id":"acme","name":"Acme"}"#,
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = call(
        &a.router,
        "POST",
        "/v1/orgs/acme/keys",
        ADMIN,
        r#"{"name":"k","scopes":["read"]}"#,
    )
    .await;
    let body = http_body_util::BodyExt::collect(r.into_body())
        .await
        .unwrap()
        .to_bytes();
    let created: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let (id, key) = (
        created["data"]["id"].as_str().unwrap().to_string(),
        created["data"]["key"].as_str().unwrap().to_string(),
    );
    let r = call(&b.router, "GET", "/v1/orgs/acme", &key, "").await;
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "the key works on the other daemon"
    );
    let r = call(
        &a.router,
        "DELETE",
        &format!("/v1/orgs/acme/keys/{id}"),
        ADMIN,
        "",
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    eventually(Duration::from_secs(5), || async {
        call(&b.router, "GET", "/v1/orgs/acme", &key, "")
            .await
            .status()
            == StatusCode::UNAUTHORIZED
    })
    .await;
}

#[tokio::test]
async fn one_daemon_at_a_time_compacts_a_document_and_a_dead_one_lets_go() {
    if support::skip_without(support::PG) {
        return;
    }
    let url = support::fresh_pg_database().await;
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = support::pg_store(d1.path(), &url).await;
    let b = support::pg_store(d2.path(), &url).await;
    let scope = project(&a).await;
    let lease = a.lease_doc(&scope, "doc").await.unwrap();
    assert!(lease.is_some());
    assert!(
        b.lease_doc(&scope, "doc").await.unwrap().is_none(),
        "held by the other daemon"
    );
    assert!(
        b.lease_doc(&scope, "other-doc").await.unwrap().is_some(),
        "leases are per document"
    );
    drop(lease);
    eventually(Duration::from_secs(5), || async {
        b.lease_doc(&scope, "doc").await.unwrap().is_some()
    })
    .await;
    // A daemon that dies holding a lease (its connection killed, as at a
    // crash) leaves the document to the others.
    let c_dir = tempfile::tempdir().unwrap();
    let c = support::pg_store(c_dir.path(), &url).await;
    let _held = c.lease_doc(&scope, "third").await.unwrap().expect("free");
    assert!(a.lease_doc(&scope, "third").await.unwrap().is_none());
    let (killer, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    killer
        .batch_execute(
            // Only this test's database: other tests share the server.
            "SELECT pg_terminate_backend(pid) FROM pg_locks
             WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .await
        .unwrap();
    eventually(Duration::from_secs(10), || async {
        a.lease_doc(&scope, "third").await.unwrap().is_some()
    })
    .await;
}

/// A store on a fresh database with one pooled connection (so the write
/// after a failed one must reuse it), its project, URL and data dir.
async fn one_connection_store() -> (DynStore, Scope, String, tempfile::TempDir) {
    let url = support::fresh_pg_database().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = support::pg_config(dir.path(), &url);
    config.postgres.pool_size = 1;
    config.postgres.notify = false;
    let store = support::open(&config).await.unwrap();
    let scope = project(&store).await;
    (store, scope, url, dir)
}

#[tokio::test]
async fn a_write_abandoned_midway_leaves_nothing_and_its_connection_clean() {
    if support::skip_without(support::PG) {
        return;
    }
    let (store, scope, _url, _dir) = one_connection_store().await;
    let batch: Vec<WriteOp> = (0..2_000)
        .map(|i| WriteOp::CreateEntity {
            id: format!("e{i}"),
            entity_type: "t".into(),
            properties: props(json!({"i": i})),
        })
        .collect();
    // Dropped after its transaction began, long before 2,000 creates commit.
    let abandoned = tokio::time::timeout(
        Duration::from_millis(30),
        store.write(&scope, &caller(), batch),
    )
    .await;
    assert!(abandoned.is_err(), "the batch finished within 30 ms");
    let after = WriteOp::CreateEntity {
        id: "after".into(),
        entity_type: "t".into(),
        properties: props(json!({})),
    };
    store.write(&scope, &caller(), vec![after]).await.unwrap();
    let page = PageRequest {
        cursor: None,
        limit: 10,
    };
    let ids: Vec<String> = store
        .list_entities(&scope, &EntityFilter::default(), &page)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(
        ids,
        vec!["after".to_string()],
        "the abandoned batch left rows"
    );
}

/// A write that fails at COMMIT (a deferred constraint trigger raises
/// there) leaves its connection clean: with one connection in the pool, the
/// next writes and reads on it succeed, and nothing of the failed write
/// stays. (Connection hygiene of the concurrency issue.)
#[tokio::test]
async fn a_write_that_fails_at_commit_leaves_its_connection_clean() {
    if support::skip_without(support::PG) {
        return;
    }
    let (store, scope, url, _dir) = one_connection_store().await;
    let (admin, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    admin
        .batch_execute(
            "CREATE FUNCTION fail_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.properties ? 'fail_at_commit' THEN
                     RAISE EXCEPTION 'injected commit-time failure';
                 END IF;
                 RETURN NEW;
             END $$;
             CREATE CONSTRAINT TRIGGER fail_at_commit AFTER INSERT OR UPDATE ON strata.entities
                 DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fail_at_commit();",
        )
        .await
        .unwrap();
    let create = |id: &str, p: serde_json::Value| WriteOp::CreateEntity {
        id: id.into(),
        entity_type: "t".into(),
        properties: props(p),
    };
    store
        .write(&scope, &caller(), vec![create("base", json!({}))])
        .await
        .unwrap();
    let failing: Vec<Vec<WriteOp>> = vec![
        // A create alone runs without a transaction around it.
        vec![create("bad1", json!({"fail_at_commit": true}))],
        // A batch commits at the end.
        vec![
            create("ok-in-batch", json!({})),
            create("bad2", json!({"fail_at_commit": true})),
        ],
        // A patch runs in a transaction and fails at its COMMIT.
        vec![WriteOp::PatchEntity {
            id: "base".into(),
            patch: json!({"fail_at_commit": true}),
            entity_type: None,
            expected_version: None,
        }],
    ];
    for (i, ops) in failing.into_iter().enumerate() {
        assert!(
            store.write(&scope, &caller(), ops).await.is_err(),
            "write {i} should fail at commit"
        );
        let next = format!("after{i}");
        store
            .write(&scope, &caller(), vec![create(&next, json!({}))])
            .await
            .unwrap_or_else(|e| panic!("the write after failure {i}: {e}"));
        store
            .get_entity(&scope, &next, &EntityRead::default())
            .await
            .unwrap_or_else(|e| panic!("the read after failure {i}: {e}"));
    }
    for gone in ["bad1", "bad2", "ok-in-batch"] {
        assert!(
            store
                .get_entity(&scope, gone, &EntityRead::default())
                .await
                .is_err(),
            "{gone} was stored"
        );
    }
    let base = store
        .get_entity(&scope, "base", &EntityRead::default())
        .await
        .unwrap();
    assert_eq!(base.version, 1, "the failed patch left a version");
}

/// A plain connection to `url` (its search_path is the server's default).
async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// The objects a schema holds directly, as (kind, name): tables, views,
/// sequences of their own (a serial column's follows its table), functions
/// and types that are not a relation's row type or an array; an
/// extension's members (pgvector's, created in `public` by the store) are
/// the extension's, not Strata's.
async fn schema_objects(c: &tokio_postgres::Client, schema: &str) -> Vec<(String, String)> {
    let rows = c
        .query(
            "SELECT CASE c.relkind WHEN 'S' THEN 'sequence' WHEN 'r' THEN 'table'
                                   WHEN 'p' THEN 'table' ELSE 'relation ' || c.relkind::text END,
                    c.relname::text
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
               AND NOT EXISTS (SELECT 1 FROM pg_depend d
                               WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                                 AND d.deptype IN ('a', 'i', 'e'))
             UNION ALL
             SELECT 'function', p.proname::text FROM pg_proc p
             JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                               AND d.objid = p.oid AND d.deptype = 'e')
             UNION ALL
             SELECT 'type', t.typname::text FROM pg_type t
             JOIN pg_namespace n ON n.oid = t.typnamespace
             WHERE n.nspname = $1 AND t.typelem = 0
               AND (t.typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass
                               AND d.objid = t.oid AND d.deptype = 'e')
             ORDER BY 1, 2",
            &[&schema],
        )
        .await
        .unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

/// What `SCHEMA_OBJECTS` lists, in the form of `schema_objects`.
fn listed_objects() -> Vec<(String, String)> {
    use strata::store::postgres::SchemaObjectKind;
    let mut listed: Vec<(String, String)> = strata::store::postgres::SCHEMA_OBJECTS
        .iter()
        .map(|(kind, name)| {
            let kind = match kind {
                SchemaObjectKind::Table => "table",
                SchemaObjectKind::Sequence => "sequence",
            };
            (kind.to_string(), name.to_string())
        })
        .collect();
    listed.sort();
    listed
}

/// The relocation of old layouts moves the objects of an explicit list:
/// a migration that creates something not in it fails here.
#[tokio::test]
async fn the_object_list_names_everything_the_migrations_create() {
    if support::skip_without(support::PG) {
        return;
    }
    let url = support::fresh_pg_database().await;
    let dir = tempfile::tempdir().unwrap();
    let store = support::pg_store(dir.path(), &url).await;
    let c = admin(&url).await;
    assert_eq!(
        schema_objects(&c, strata::store::postgres::SCHEMA).await,
        listed_objects(),
        "migrate::OBJECTS must list what sql/postgres/*.sql creates"
    );
    assert_eq!(
        schema_objects(&c, "public").await,
        vec![],
        "nothing of Strata's outside its schema"
    );
    drop(store);
}

/// Writes a bit of everything; returns the scope.
async fn write_everything(store: &DynStore, org: &str) -> Scope {
    store.create_org(&caller(), org, "Org").await.unwrap();
    store
        .create_project(&caller(), org, "app", "App")
        .await
        .unwrap();
    let scope = Scope::new(org, "app");
    let create = |id: &str| WriteOp::CreateEntity {
        id: id.into(),
        entity_type: "task".into(),
        properties: props(json!({"title": id})),
    };
    let ops = vec![
        create("a"),
        create("b"),
        WriteOp::CreateRelationship {
            id: "r1".into(),
            rel_type: "DEPENDS_ON".into(),
            from: "a".into(),
            to: "b".into(),
            properties: props(json!({"w": 1})),
        },
    ];
    store.write(&scope, &caller(), ops).await.unwrap();
    let patch = WriteOp::PatchEntity {
        id: "a".into(),
        patch: json!({"title": "a2"}),
        entity_type: None,
        expected_version: Some(1),
    };
    store.write(&scope, &caller(), vec![patch]).await.unwrap();
    store
        .append_updates(&scope, "d1", vec![vec![0, 0]], Some("o".into()))
        .await
        .unwrap();
    scope
}

/// Reads back what `write_everything` wrote, then writes again.
async fn everything_is_visible(store: &DynStore, scope: &Scope, round: &str) {
    store.get_org(&scope.org).await.unwrap();
    store.get_project(&scope.org, &scope.project).await.unwrap();
    let a = store
        .get_entity(scope, "a", &EntityRead::default())
        .await
        .unwrap();
    assert_eq!((a.version, a.properties["title"].clone()), (2, json!("a2")));
    let first = EntityRead {
        version: Some(1),
        ..Default::default()
    };
    let a1 = store.get_entity(scope, "a", &first).await.unwrap();
    assert_eq!(a1.properties["title"], json!("a"));
    let page = PageRequest {
        cursor: None,
        limit: 100,
    };
    assert_eq!(
        store
            .list_versions(scope, "a", &page)
            .await
            .unwrap()
            .items
            .len(),
        2
    );
    let r = store.get_relationship(scope, "r1").await.unwrap();
    assert_eq!((r.from.as_str(), r.to.as_str()), ("a", "b"));
    let filter = RelationshipFilter::default();
    assert_eq!(
        store
            .list_relationships(scope, &filter, &page)
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    let updates = store.list_doc_updates(scope, "d1", 0, 10).await.unwrap();
    assert_eq!(updates[0].seq, 1);
    assert_eq!(updates[0].origin.as_deref(), Some("o"));
    // Writes still work (sequences and defaults moved with their tables).
    let create = WriteOp::CreateEntity {
        id: format!("after-{round}"),
        entity_type: "task".into(),
        properties: props(json!({})),
    };
    store.write(scope, &caller(), vec![create]).await.unwrap();
    store
        .create_project(&caller(), &scope.org, &format!("p-{round}"), "P")
        .await
        .unwrap();
    store
        .append_updates(scope, "d1", vec![vec![0, 0]], None)
        .await
        .unwrap();
}

/// Moves everything in schema strata into `to` by hand, as earlier versions
/// left it (taken from the catalog, not from the list under test), and
/// drops strata.
async fn move_back(c: &tokio_postgres::Client, to: &str) {
    let objects = schema_objects(c, strata::store::postgres::SCHEMA).await;
    let mut sql = format!("BEGIN; CREATE SCHEMA IF NOT EXISTS {to};");
    for (kind, name) in &objects {
        let kind = match kind.as_str() {
            "table" => "TABLE",
            "sequence" => "SEQUENCE",
            other => panic!("cannot move a {other} by hand"),
        };
        sql.push_str(&format!("ALTER {kind} strata.{name} SET SCHEMA {to};"));
    }
    sql.push_str("DROP SCHEMA strata; COMMIT;");
    c.batch_execute(&sql).await.unwrap();
}

/// Databases migrated by earlier versions (tables in public, or in
/// ag_catalog with AGE on) are moved into schema strata at start: every row
/// stays visible and writes go on.
#[tokio::test]
async fn old_layouts_move_into_the_strata_schema() {
    if support::skip_without(support::PG) {
        return;
    }
    for old in ["public", "ag_catalog"] {
        let url = support::fresh_pg_database().await;
        let dir = tempfile::tempdir().unwrap();
        let store = support::pg_store(dir.path(), &url).await;
        let scope = write_everything(&store, "acme").await;
        drop(store);
        let c = admin(&url).await;
        move_back(&c, old).await;
        assert_eq!(schema_objects(&c, old).await, listed_objects(), "{old}");

        let dir = tempfile::tempdir().unwrap();
        let store = support::pg_store(dir.path(), &url).await;
        everything_is_visible(&store, &scope, old).await;
        assert_eq!(
            schema_objects(&c, strata::store::postgres::SCHEMA).await,
            listed_objects()
        );
        assert_eq!(schema_objects(&c, old).await, vec![], "{old} left empty");
        drop(store);
        // And a second start finds nothing to move.
        let dir = tempfile::tempdir().unwrap();
        let store = support::pg_store(dir.path(), &url).await;
        everything_is_visible(&store, &scope, &format!("{old}-again")).await;
    }
}

/// AGE turned on, then off, over one database by earlier versions left two
/// layouts: the one whose orgs has rows is moved and the other left alone;
/// with rows in both, the start is refused rather than guessing.
#[tokio::test]
async fn two_old_layouts_move_the_one_with_data_or_refuse() {
    if support::skip_without(support::PG) {
        return;
    }
    let url = support::fresh_pg_database().await;
    let dir = tempfile::tempdir().unwrap();
    let store = support::pg_store(dir.path(), &url).await;
    let scope = write_everything(&store, "acme").await;
    drop(store);
    let c = admin(&url).await;
    move_back(&c, "ag_catalog").await;
    // The empty layout that a start with AGE off made in public.
    c.batch_execute("ALTER SCHEMA ag_catalog RENAME TO hidden")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    drop(support::pg_store(dir.path(), &url).await);
    move_back(&c, "public").await;
    c.batch_execute("ALTER SCHEMA hidden RENAME TO ag_catalog")
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let store = support::pg_store(dir.path(), &url).await;
    everything_is_visible(&store, &scope, "both").await;
    assert_eq!(schema_objects(&c, "ag_catalog").await, vec![]);
    assert_eq!(
        schema_objects(&c, "public").await,
        listed_objects(),
        "the empty layout is left untouched"
    );
    drop(store);

    // Rows in both: refused.
    c.batch_execute("INSERT INTO public.orgs (id, name, created_at) VALUES ('other', 'O', now())")
        .await
        .unwrap();
    move_back(&c, "ag_catalog").await;
    let dir = tempfile::tempdir().unwrap();
    let refused = support::open(&support::pg_config(dir.path(), &url)).await;
    let message = refused.err().expect("refused").to_string();
    assert!(message.contains("both ag_catalog and public"), "{message}");
}

// ------------------------------------------------ collisions between writers

/// Waits until some session of the database behind `c` waits for a lock.
async fn someone_waits_for_a_lock(c: &tokio_postgres::Client) {
    eventually(Duration::from_secs(10), || async {
        let row = c
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap();
        row.get::<_, i64>(0) > 0
    })
    .await;
}

fn patch_op(id: &str, patch: serde_json::Value) -> WriteOp {
    WriteOp::PatchEntity {
        id: id.into(),
        patch,
        entity_type: None,
        expected_version: None,
    }
}

#[tokio::test]
async fn a_write_chosen_as_deadlock_victim_is_retried_and_succeeds() {
    if support::skip_without(support::PG) {
        return;
    }
    use std::sync::atomic::Ordering;
    let url = support::fresh_pg_database().await;
    let dir = tempfile::tempdir().unwrap();
    let store = support::pg_store(dir.path(), &url).await;
    let scope = project(&store).await;
    for id in ["a", "b"] {
        let op = WriteOp::CreateEntity {
            id: id.into(),
            entity_type: "t".into(),
            properties: props(json!({})),
        };
        store.write(&scope, &caller(), vec![op]).await.unwrap();
    }
    let other = admin(&url).await;
    // The other session detects deadlocks only after 10 s, so the store's
    // transaction (1 s, the default) is the one PostgreSQL rolls back.
    other
        .batch_execute(
            "SET deadlock_timeout = '10s'; BEGIN;
             SELECT 1 FROM strata.entities WHERE id = 'b' FOR UPDATE",
        )
        .await
        .unwrap();
    let retries = strata::store::WRITE_RETRIES.load(Ordering::Relaxed);
    let batch = vec![
        patch_op("a", json!({"n": 1})),
        patch_op("b", json!({"n": 1})),
    ];
    let write = tokio::spawn({
        let (store, scope) = (store.clone(), scope.clone());
        async move { store.write(&scope, &caller(), batch).await }
    });
    // The batch holds `a` and waits for `b`; taking `a` closes the cycle.
    someone_waits_for_a_lock(&other).await;
    other
        .batch_execute("SELECT 1 FROM strata.entities WHERE id = 'a' FOR UPDATE; COMMIT")
        .await
        .unwrap();
    let outcomes = write.await.unwrap().expect("the retried batch succeeds");
    assert_eq!(outcomes.len(), 2);
    assert!(strata::store::WRITE_RETRIES.load(Ordering::Relaxed) > retries);
    for id in ["a", "b"] {
        let e = store
            .get_entity(&scope, id, &EntityRead::default())
            .await
            .unwrap();
        assert_eq!((e.version, &e.properties["n"]), (2, &json!(1)), "{id}");
    }
}

#[tokio::test]
async fn a_write_that_keeps_colliding_answers_503_with_retry_after() {
    if support::skip_without(support::PG) {
        return;
    }
    use axum::http::StatusCode;

    let url = support::fresh_pg_database().await;
    let database = url.rsplit('/').next().unwrap().to_owned();
    let other = admin(&url).await;
    // Every session of this database gives up a lock wait after 20 ms.
    other
        .batch_execute(&format!(
            "ALTER DATABASE {database} SET lock_timeout = '20ms'"
        ))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let daemon = strata::server::build(support::pg_config(dir.path(), &url), ADMIN)
        .await
        .unwrap();
    let scope = project(&daemon.store).await;
    let create = WriteOp::CreateEntity {
        id: "a".into(),
        entity_type: "t".into(),
        properties: props(json!({})),
    };
    daemon
        .store
        .write(&scope, &caller(), vec![create])
        .await
        .unwrap();
    let patch = || {
        call(
            &daemon.router,
            "PATCH",
            "/v1/orgs/acme/projects/app/entities/a",
            ADMIN,
            r#"{"properties": {"n": 1}}"#,
        )
    };
    other
        .batch_execute(
            "SET lock_timeout = 0; BEGIN;
             SELECT 1 FROM strata.entities WHERE id = 'a' FOR UPDATE",
        )
        .await
        .unwrap();
    let answer = patch().await;
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(answer.headers().contains_key("retry-after"));
    let body = http_body_util::BodyExt::collect(answer.into_body())
        .await
        .unwrap()
        .to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    // Nothing was written; once the lock is gone the same request succeeds.
    other.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(patch().await.status(), StatusCode::OK);
    let e = daemon
        .store
        .get_entity(&scope, "a", &EntityRead::default())
        .await
        .unwrap();
    assert_eq!(e.version, 2);
}

/// Polls the project's change feed after `after` until `done` holds.
async fn feed_until(
    store: &DynStore,
    scope: &Scope,
    after: i64,
    done: impl Fn(&[Change]) -> bool,
) -> Vec<Change> {
    for _ in 0..200 {
        let changes = store.list_changes(scope, after, 1000).await.unwrap();
        if done(&changes) {
            return changes;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the change feed did not show what was expected within 10 s");
}

/// Writers take change sequences before they commit. A change whose
/// transaction commits after a later change's still reaches a reader that
/// has already read past the later one.
#[tokio::test]
async fn the_change_feed_never_passes_a_change_that_commits_later() {
    if support::skip_without(support::PG) {
        return;
    }
    let url = support::fresh_pg_database().await;
    let dir = tempfile::tempdir().unwrap();
    let store = support::pg_store(dir.path(), &url).await;
    let scope = project(&store).await;
    // T takes its change sequence first and stays open.
    let early = admin(&url).await;
    early
        .batch_execute("SET search_path = strata; BEGIN")
        .await
        .unwrap();
    early
        .execute(
            "INSERT INTO outbox (seq, org_id, project_id, kind, target_id, op, at, version)
             VALUES (nextval('change_seq'), $1, $2, 'entity', 'early', 'create', now(), 1)",
            &[&scope.org, &scope.project],
        )
        .await
        .unwrap();
    // R takes a later sequence and commits first.
    let op = WriteOp::CreateEntity {
        id: "late".into(),
        entity_type: "t".into(),
        properties: props(json!({})),
    };
    store.write(&scope, &caller(), vec![op]).await.unwrap();
    let seen = feed_until(&store, &scope, 0, |c| c.iter().any(|c| c.id == "late")).await;
    assert!(seen.iter().all(|c| c.id != "early"), "{seen:?}");
    let cursor = seen.last().unwrap().seq;
    early.batch_execute("COMMIT").await.unwrap();
    let next = feed_until(&store, &scope, cursor, |c| !c.is_empty()).await;
    assert_eq!(next[0].id, "early", "{next:?}");
    assert!(next[0].seq > cursor);
}
