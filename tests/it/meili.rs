//! Meilisearch: the adapter (`search::meili`), the feed consumer and
//! reconciliation (`feed::meili`) and the text search route, against the
//! protocol-level stand-in (`support::meili_standin`, not Meilisearch) and
//! the embedded SQLite store.

use crate::support::meili_standin::MeiliStandin;
use crate::support::{admin, eventually, urlencode};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use strata::domain::Scope;
use strata::feed::meili::{reconcile, MeiliConsumer, Summary};
use strata::feed::{Consumer, FeedChange};
use strata::search::meili::{doc_key, MeiliDoc, MeiliError, MeiliIndex, INDEX};
use strata::store::DynStore;
use tower::ServiceExt;

const ADMIN: &str = "test-admin-key-0123456789";
const KEY: &str = "meili-master-key-for-tests";

struct Setup {
    standin: MeiliStandin,
    index: Arc<MeiliIndex>,
    store: DynStore,
    router: axum::Router,
    consumer: MeiliConsumer,
    _dir: tempfile::TempDir,
}

/// A daemon on SQLite configured with the stand-in, org `acme` with the
/// projects `app` and `other`.
async fn setup() -> Setup {
    let standin = MeiliStandin::start(Some(KEY)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = strata::config::Config::embedded(dir.path());
    config.meili.url = Some(standin.url.clone());
    config.meili.key = Some(KEY.into());
    let daemon = strata::server::build(config, ADMIN).await.unwrap();
    let index = daemon.meili.clone().expect("Meilisearch is configured");
    let s = Setup {
        consumer: MeiliConsumer::new(daemon.store.clone(), index.clone()),
        standin,
        index,
        store: daemon.store,
        router: daemon.router,
        _dir: dir,
    };
    s.call("POST", "/v1/orgs", json!({"id": "acme", "name": "Acme"}))
        .await;
    for p in ["app", "other"] {
        s.call(
            "POST",
            "/v1/orgs/acme/projects",
            json!({"id": p, "name": p}),
        )
        .await;
    }
    s
}

fn app() -> Scope {
    Scope::new("acme", "app")
}

fn other() -> Scope {
    Scope::new("acme", "other")
}

fn path(scope: &Scope) -> String {
    format!("/v1/orgs/{}/projects/{}", scope.org, scope.project)
}

impl Setup {
    async fn request(&self, method: &str, uri: &str, body: Value) -> (StatusCode, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {ADMIN}"));
        let body = if body.is_null() {
            Body::empty()
        } else {
            req = req.header("content-type", "application/json");
            Body::from(body.to_string())
        };
        let res = self
            .router
            .clone()
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn call(&self, method: &str, uri: &str, body: Value) -> Value {
        let (status, body) = self.request(method, uri, body).await;
        assert!(status.is_success(), "{method} {uri}: {status} {body}");
        body
    }

    async fn create(&self, scope: &Scope, id: &str, entity_type: &str, title: &str) {
        self.call(
            "POST",
            &format!("{}/entities", path(scope)),
            json!({"id": id, "type": entity_type, "properties": {"title": title}}),
        )
        .await;
    }

    /// The project's changes after `after`, as the runner would hand them.
    async fn changes(&self, scope: &Scope, after: i64) -> Vec<FeedChange> {
        self.store
            .list_changes(scope, after, 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|change| FeedChange {
                scope: scope.clone(),
                change,
            })
            .collect()
    }

    /// Feeds every change of both projects to the consumer.
    async fn sync(&self) -> anyhow::Result<()> {
        let mut all = self.changes(&app(), 0).await;
        all.extend(self.changes(&other(), 0).await);
        all.sort_by_key(|c| c.change.seq);
        self.consumer.apply(&all).await
    }

    /// The (entity id, version) pairs indexed for a tenant, sorted.
    async fn indexed(&self, scope: &Scope) -> Vec<(String, i64)> {
        let (items, total) = self.index.list(scope, 0, 1000).await.unwrap();
        assert_eq!(items.len(), total);
        let mut pairs: Vec<(String, i64)> = items.into_iter().map(|d| (d.id, d.version)).collect();
        pairs.sort();
        pairs
    }

    async fn ids(&self, scope: &Scope, q: &str, entity_type: Option<&str>) -> Vec<String> {
        let hits = self.index.search(scope, q, entity_type, 100).await.unwrap();
        hits.into_iter().map(|(id, _)| id).collect()
    }

    /// The route's hits as entity ids, in order.
    async fn route(&self, scope: &Scope, query: &str) -> (StatusCode, Vec<String>, Value) {
        let uri = format!("{}/search?{query}", path(scope));
        let (status, body) = self.request("GET", &uri, Value::Null).await;
        let ids = body["data"]
            .as_array()
            .map(|hits| {
                hits.iter()
                    .map(|h| h["entity"]["id"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        (status, ids, body)
    }
}

fn pairs(items: &[(&str, i64)]) -> Vec<(String, i64)> {
    items.iter().map(|(i, v)| (i.to_string(), *v)).collect()
}

#[tokio::test]
async fn the_index_gets_its_settings_and_tenant_tagged_documents() {
    let s = setup().await;
    s.create(&app(), "car 1:x.é", "car", "A red vehicle").await;
    s.sync().await.unwrap();
    let settings = s.standin.settings(INDEX);
    assert_eq!(settings["filterableAttributes"], json!(["tenant", "type"]));
    assert_eq!(settings["searchableAttributes"], json!(["text"]));
    let docs = s.standin.documents(INDEX);
    assert_eq!(docs.len(), 1);
    let doc = &docs[0];
    assert_eq!(doc["key"], json!(doc_key(&app(), "car 1:x.é")));
    assert_eq!(doc["tenant"], "acme/app");
    assert_eq!(
        (&doc["org"], &doc["project"]),
        (&json!("acme"), &json!("app"))
    );
    assert_eq!(
        (&doc["id"], &doc["type"]),
        (&json!("car 1:x.é"), &json!("car"))
    );
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["text"], "A red vehicle\n");
    s.index.health().await.unwrap();
}

#[tokio::test]
async fn consumer_upserts_then_deletes_propagate() {
    let s = setup().await;
    s.create(&app(), "a", "car", "vehicle one").await;
    s.create(&app(), "b", "car", "vehicle two").await;
    s.call(
        "POST",
        &format!("{}/relationships", path(&app())),
        json!({"from": "a", "to": "b", "type": "NEXT_TO"}),
    )
    .await;
    s.sync().await.unwrap();
    assert_eq!(s.indexed(&app()).await, pairs(&[("a", 1), ("b", 1)]));

    s.call(
        "PATCH",
        &format!("{}/entities/a", path(&app())),
        json!({"properties": {"title": "a truck now"}}),
    )
    .await;
    s.call(
        "DELETE",
        &format!("{}/entities/b", path(&app())),
        Value::Null,
    )
    .await;
    s.sync().await.unwrap();
    assert_eq!(s.indexed(&app()).await, pairs(&[("a", 2)]));
    assert_eq!(s.ids(&app(), "truck", None).await, ["a"]);
    assert!(s.ids(&app(), "vehicle", None).await.is_empty());

    // Restored: back in the index. Applying everything again changes nothing.
    s.call(
        "POST",
        &format!("{}/entities/b/restore", path(&app())),
        Value::Null,
    )
    .await;
    s.sync().await.unwrap();
    s.sync().await.unwrap();
    assert_eq!(s.indexed(&app()).await, pairs(&[("a", 2), ("b", 3)]));
    assert_eq!(s.consumer.name(), "meilisearch");
}

#[tokio::test]
async fn a_typo_finds_the_word_and_the_type_filter_runs_inside_the_engine() {
    let s = setup().await;
    for i in 0..3 {
        s.create(&app(), &format!("car{i}"), "car", "vehicle").await;
    }
    s.create(&app(), "note", "note", "a vehicle note").await;
    s.sync().await.unwrap();

    let mut all = s.ids(&app(), "vehicel", None).await;
    all.sort();
    assert_eq!(all, ["car0", "car1", "car2", "note"]);
    // Limit 1 and a type the first matches lack: only a filter applied
    // before the limit finds the note.
    let hits = s
        .index
        .search(&app(), "vehicel", Some("note"), 1)
        .await
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].0, "note");
    assert!(hits[0].1 > 0.0 && hits[0].1 <= 1.0);

    // The route uses Meilisearch: the database's index has no typo tolerance.
    let (status, ids, _) = s.route(&app(), "q=vehicel&type=note&limit=1").await;
    assert_eq!((status, ids), (StatusCode::OK, vec!["note".to_owned()]));
    // A word under 5 characters allows no typo.
    s.create(&app(), "cat", "pet", "cat").await;
    s.sync().await.unwrap();
    assert!(s.ids(&app(), "cta", None).await.is_empty());
}

#[tokio::test]
async fn tenants_never_see_each_other() {
    let s = setup().await;
    s.create(&app(), "mine", "car", "shared vehicle text").await;
    s.create(&other(), "theirs", "car", "shared vehicle text")
        .await;
    s.sync().await.unwrap();

    let attempts = [
        "vehicle",
        r#"vehicle" OR tenant = "acme/other"#,
        r#"vehicle\" OR tenant = \"acme/other"#,
        r"vehicle \ ",
        "vehicle OR tenant = acme/other",
        "tenant acme other",
        r#"") OR (tenant = "acme/other"#,
    ];
    for q in attempts {
        for scope in [app(), other()] {
            let own = if scope == app() { "mine" } else { "theirs" };
            let ids = s.ids(&scope, q, None).await;
            assert!(
                ids.iter().all(|id| id == own),
                "{q:?} in {scope:?}: {ids:?}"
            );
            let (status, route_ids, body) = s.route(&scope, &format!("q={}", urlencode(q))).await;
            assert!(status == StatusCode::OK, "{q:?}: {status} {body}");
            assert!(route_ids.iter().all(|id| id == own), "{q:?}: {route_ids:?}");
        }
    }
    // The type parameter is quoted into the filter, never read as syntax.
    for t in [
        r#"car" OR tenant = "acme/other"#,
        r#"car\" OR tenant = \"acme/other"#,
        r"car\",
    ] {
        let ids = s.ids(&app(), "vehicle", Some(t)).await;
        assert!(ids.is_empty(), "type {t:?}: {ids:?}");
        let (status, ids, body) = s
            .route(&app(), &format!("q=vehicle&type={}", urlencode(t)))
            .await;
        assert!(
            status == StatusCode::OK && ids.is_empty(),
            "{t:?}: {status} {body}"
        );
    }
    // Deleting one tenant's documents leaves the other's.
    s.index.delete_tenant(&other()).await.unwrap();
    assert!(s.indexed(&other()).await.is_empty());
    assert_eq!(s.indexed(&app()).await, pairs(&[("mine", 1)]));
}

#[tokio::test]
async fn reconciliation_repairs_drift() {
    let s = setup().await;
    for id in ["e1", "e2", "e3"] {
        s.create(&app(), id, "doc", &format!("text of {id}")).await;
    }
    s.create(&other(), "o1", "doc", "other text").await;
    s.sync().await.unwrap();
    // Drift: e1's document lost, e2's stale, a document for no entity, and
    // e4 never indexed.
    s.index.delete(&[doc_key(&app(), "e1")]).await.unwrap();
    let stale = json!({"id": "e2", "type": "doc", "properties": {}, "version": 0,
        "created_at": "", "updated_at": "", "created_by": "", "updated_by": ""});
    let mut stale_doc = MeiliDoc::of(&app(), "", &serde_json::from_value(stale).unwrap());
    stale_doc.text = "stale".into();
    let mut ghost = stale_doc.clone();
    ghost.id = "ghost".into();
    ghost.key = doc_key(&app(), "ghost");
    s.index.upsert(&[stale_doc, ghost]).await.unwrap();
    s.create(&app(), "e4", "doc", "text of e4").await;
    assert_eq!(
        s.indexed(&app()).await,
        pairs(&[("e2", 0), ("e3", 1), ("ghost", 0)])
    );

    let summary = reconcile(&s.store, &s.index, Some(&app())).await.unwrap();
    assert_eq!(
        summary,
        Summary {
            projects: 1,
            checked: 4,
            upserted: 3,
            deleted: 1,
            tenants_removed: 0,
        }
    );
    assert_eq!(
        s.indexed(&app()).await,
        pairs(&[("e1", 1), ("e2", 1), ("e3", 1), ("e4", 1)])
    );
    assert_eq!(s.ids(&app(), "stale", None).await, Vec::<String>::new());

    // Every project, now in step: nothing to do.
    let again = reconcile(&s.store, &s.index, None).await.unwrap();
    assert_eq!((again.projects, again.upserted, again.deleted), (2, 0, 0));
    assert_eq!(again.checked, 5);

    // A deleted project's documents (no feed change says so) go with its
    // deletion, and when Meilisearch missed that (a document of it left
    // behind here), with a reconciliation of every project.
    let o1 = s
        .store
        .get_entity(&other(), "o1", &Default::default())
        .await
        .unwrap();
    s.call("DELETE", "/v1/orgs/acme/projects/other", Value::Null)
        .await;
    assert!(s.indexed(&other()).await.is_empty(), "dropped at once");
    s.index
        .upsert(&[MeiliDoc::of(&other(), "", &o1)])
        .await
        .unwrap();
    let after = reconcile(&s.store, &s.index, None).await.unwrap();
    assert_eq!(
        (after.projects, after.tenants_removed, after.deleted),
        (1, 1, 1)
    );
    assert!(s.indexed(&other()).await.is_empty());
    assert_eq!(s.indexed(&app()).await.len(), 4);

    // The consumer's rebuild (after the feed it missed was pruned) is the
    // same reconciliation of every project.
    s.index.delete(&[doc_key(&app(), "e3")]).await.unwrap();
    s.consumer.rebuild().await.unwrap();
    assert_eq!(s.indexed(&app()).await.len(), 4);
}

/// A project deleted and made again under its id: the documents of the one
/// before go with its deletion, and one left behind (Meilisearch missed the
/// deletion) is rewritten by a reconciliation, though its id and version
/// are those of the new project's entity.
#[tokio::test]
async fn a_project_made_again_finds_nothing_of_the_one_before() {
    let s = setup().await;
    s.create(&other(), "x", "doc", "merger secret").await;
    s.sync().await.unwrap();
    assert_eq!(s.ids(&other(), "merger", None).await, ["x"]);
    let old = s.store.get_project("acme", "other").await.unwrap();
    let before = s
        .store
        .get_entity(&other(), "x", &Default::default())
        .await
        .unwrap();
    s.call("DELETE", &path(&other()), Value::Null).await;
    assert!(s.ids(&other(), "merger", None).await.is_empty());

    s.call(
        "POST",
        "/v1/orgs/acme/projects",
        json!({"id": "other", "name": "again"}),
    )
    .await;
    s.create(&other(), "x", "doc", "plain words").await;
    s.sync().await.unwrap();
    s.index
        .upsert(&[MeiliDoc::of(&other(), &old.created_at, &before)])
        .await
        .unwrap();
    assert_eq!(s.ids(&other(), "merger", None).await, ["x"], "left behind");
    let summary = reconcile(&s.store, &s.index, Some(&other())).await.unwrap();
    assert_eq!((summary.checked, summary.upserted), (1, 1));
    assert!(s.ids(&other(), "merger", None).await.is_empty());
    assert_eq!(s.ids(&other(), "plain", None).await, ["x"]);
}

#[tokio::test]
async fn meilisearch_down_stops_the_consumer_and_text_search_falls_back() {
    let s = setup().await;
    s.create(&app(), "a", "car", "vehicle").await;
    s.sync().await.unwrap();
    s.create(&app(), "b", "car", "vehicle too").await;

    s.standin.set_down(true);
    assert!(s.sync().await.is_err(), "the runner must retry the batch");
    assert!(matches!(
        s.index.search(&app(), "vehicle", None, 10).await,
        Err(MeiliError::Unavailable(_))
    ));
    assert!(s.index.health().await.is_err());
    // The route answers from the database's own index.
    let (status, mut ids, body) = s.route(&app(), "q=vehicle").await;
    ids.sort();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(ids, ["a", "b"]);

    // Back: the same batch applies, nothing lost.
    s.standin.set_down(false);
    s.sync().await.unwrap();
    assert_eq!(s.indexed(&app()).await, pairs(&[("a", 1), ("b", 1)]));
}

#[tokio::test]
async fn an_unreachable_meilisearch_or_a_wrong_key_is_an_error_to_retry() {
    let s = setup().await;
    s.create(&app(), "a", "car", "vehicle").await;
    // Nothing listens on the port of a listener just closed.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let gone = Arc::new(MeiliIndex::new(&format!("http://127.0.0.1:{port}"), Some(KEY)).unwrap());
    let consumer = MeiliConsumer::new(s.store.clone(), gone.clone());
    assert!(consumer.apply(&s.changes(&app(), 0).await).await.is_err());
    assert!(gone.health().await.is_err());

    let wrong = Arc::new(MeiliIndex::new(&s.standin.url, Some("not-the-key")).unwrap());
    let consumer = MeiliConsumer::new(s.store.clone(), wrong.clone());
    assert!(consumer.apply(&s.changes(&app(), 0).await).await.is_err());
    assert!(matches!(
        wrong.search(&app(), "vehicle", None, 10).await,
        Err(MeiliError::Unavailable(_))
    ));
}

#[tokio::test]
async fn a_task_failure_surfaces_and_a_refused_document_is_skipped() {
    let s = setup().await;
    s.create(&app(), "a", "car", "vehicle").await;
    s.sync().await.unwrap();
    let entity = s
        .store
        .get_entity(&app(), "a", &Default::default())
        .await
        .unwrap();
    let doc = MeiliDoc::of(&app(), "", &entity);

    s.standin.fail_next_tasks(1);
    match s.index.upsert(std::slice::from_ref(&doc)).await {
        Err(MeiliError::Refused(message)) => {
            assert!(message.contains("told to fail"), "{message}")
        }
        other => panic!("a failed task must be an error: {other:?}"),
    }

    // A batch whose task fails is sent again document by document: the one
    // refused again is skipped, the other lands, the feed moves on.
    s.create(&app(), "b", "car", "vehicle b").await;
    s.create(&app(), "c", "car", "vehicle c").await;
    let batch: Vec<_> = s
        .changes(&app(), 0)
        .await
        .into_iter()
        .filter(|c| c.change.id != "a")
        .collect();
    s.standin.fail_next_tasks(2);
    s.consumer.apply(&batch).await.unwrap();
    let indexed = s.indexed(&app()).await;
    assert_eq!(indexed, pairs(&[("a", 1), ("c", 1)]));
    // The next pass (a reconciliation) repairs what was skipped.
    let summary = reconcile(&s.store, &s.index, Some(&app())).await.unwrap();
    assert_eq!(summary.upserted, 1);
    assert_eq!(s.indexed(&app()).await.len(), 3);
}

#[tokio::test]
async fn the_route_returns_meilisearch_order_with_current_state_from_the_store() {
    let s = setup().await;
    s.create(&app(), "one-word", "doc", "vehicle").await;
    s.create(&app(), "both", "doc", "vehicle fleet").await;
    s.create(&app(), "typo", "doc", "vehicel fleet").await;
    s.create(&app(), "deleted", "doc", "vehicle fleet gone")
        .await;
    s.sync().await.unwrap();

    let engine = s.ids(&app(), "vehicle fleet", None).await;
    assert_eq!(engine.len(), 4);
    // Changes the index has not seen yet: the route shows the store's state.
    s.call(
        "DELETE",
        &format!("{}/entities/deleted", path(&app())),
        Value::Null,
    )
    .await;
    s.call(
        "PATCH",
        &format!("{}/entities/both", path(&app())),
        json!({"properties": {"note": "patched"}}),
    )
    .await;
    let (status, ids, body) = s.route(&app(), "q=vehicle%20fleet").await;
    assert_eq!(status, StatusCode::OK);
    let expected: Vec<String> = engine.into_iter().filter(|id| id != "deleted").collect();
    assert_eq!(ids, expected);
    let hits = body["data"].as_array().unwrap();
    let both = hits.iter().find(|h| h["entity"]["id"] == "both").unwrap();
    assert_eq!(both["entity"]["version"], 2);
    assert_eq!(both["entity"]["properties"]["note"], "patched");
    assert_eq!(both["highlights"], json!(["vehicle fleet"]));
    let scores: Vec<f64> = hits.iter().map(|h| h["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    // A page whose engine hits include the deleted entity still fills.
    let at = s.ids(&app(), "vehicle fleet", None).await;
    let limit = at.iter().position(|id| id == "deleted").unwrap() + 1;
    assert!(
        limit <= expected.len(),
        "the deleted one is not last: {at:?}"
    );
    let (_, ids, _) = s
        .route(&app(), &format!("q=vehicle%20fleet&limit={limit}"))
        .await;
    assert_eq!(ids, expected[..limit]);
}

#[tokio::test]
async fn bad_input_on_the_search_route_is_never_a_server_error() {
    let s = setup().await;
    s.create(&app(), "a", "doc", "vehicle near the road").await;
    s.sync().await.unwrap();

    let (status, _, _) = s.route(&app(), "q=").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = s.route(&app(), "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let long = "vehicle ".repeat(1280);
    let (status, _, _) = s.route(&app(), &format!("q={}", urlencode(&long))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "over the 1024-byte limit");

    for q in [
        r#""vehicle""#,
        "vehicle*",
        "vehicle NEAR road",
        "-vehicle",
        "vehicle OR road",
        "(vehicle)",
        "vehicle:road",
        "vehicle^2",
        r#"vehicle " * NEAR - OR ( ) : ^"#,
    ] {
        let (status, ids, body) = s.route(&app(), &format!("q={}", urlencode(q))).await;
        assert_eq!(status, StatusCode::OK, "{q:?}: {body}");
        assert_eq!(ids, ["a"], "{q:?} is searched as text");
    }
    // Only syntax, no word: the same 400 as the database's search gives.
    for q in [r#"" * - ( ) : ^"#, "***"] {
        let (status, _, body) = s.route(&app(), &format!("q={}", urlencode(q))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q:?}: {body}");
    }
}

#[tokio::test]
async fn reconcile_search_is_a_job_only_when_meilisearch_is_configured() {
    let s = setup().await;
    s.create(&app(), "a", "doc", "vehicle").await;
    let jobs = s.call("GET", "/v1/admin/jobs", Value::Null).await;
    let names: Vec<&str> = jobs["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"reconcile_search"), "{names:?}");
    let run = s
        .call("POST", "/v1/admin/jobs/reconcile_search/run", Value::Null)
        .await;
    assert_eq!(run["data"]["ok"], true, "{run}");
    assert!(
        run["data"]["outcome"]
            .as_str()
            .unwrap()
            .contains("1 documents written"),
        "{run}"
    );
    assert_eq!(s.indexed(&app()).await, pairs(&[("a", 1)]));

    s.standin.set_down(true);
    let run = s
        .call("POST", "/v1/admin/jobs/reconcile_search/run", Value::Null)
        .await;
    assert_eq!(run["data"]["ok"], false, "{run}");

    let dir = tempfile::tempdir().unwrap();
    let plain = strata::server::build(strata::config::Config::embedded(dir.path()), ADMIN)
        .await
        .unwrap();
    assert!(plain.meili.is_none());
    let req = Request::builder()
        .method("POST")
        .uri("/v1/admin/jobs/reconcile_search/run")
        .header("authorization", format!("Bearer {ADMIN}"))
        .body(Body::empty())
        .unwrap();
    let res = plain.router.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn strata_reindex_repairs_one_project_or_all() {
    let standin = MeiliStandin::start(Some(KEY)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = strata::config::Config::embedded(dir.path());
    let err = strata::cli::reindex(&config, None).await.unwrap_err();
    assert!(err.to_string().contains("STRATA_MEILI_URL"), "{err}");

    config.meili.url = Some(standin.url.clone());
    config.meili.key = Some(KEY.into());
    let daemon = strata::server::build(config.clone(), ADMIN).await.unwrap();
    for (uri, body) in [
        ("/v1/orgs", json!({"id": "acme", "name": "Acme"})),
        (
            "/v1/orgs/acme/projects",
            json!({"id": "app", "name": "App"}),
        ),
        (
            "/v1/orgs/acme/projects",
            json!({"id": "other", "name": "Other"}),
        ),
        (
            "/v1/orgs/acme/projects/app/entities",
            json!({"id": "a", "type": "doc", "properties": {"title": "vehicle"}}),
        ),
        (
            "/v1/orgs/acme/projects/other/entities",
            json!({"id": "b", "type": "doc", "properties": {"title": "vehicle"}}),
        ),
    ] {
        let req = Request::builder()
            .method("POST")
            .uri(uri)
            .header("authorization", format!("Bearer {ADMIN}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let res = daemon.router.clone().oneshot(req).await.unwrap();
        assert!(res.status().is_success(), "{uri}: {}", res.status());
    }
    daemon.shutdown().await;

    // A command on its own, as an operator runs it: one project, then all.
    strata::cli::reindex(&config, Some(&app())).await.unwrap();
    let ids = |docs: Vec<serde_json::Map<String, Value>>| {
        let mut ids: Vec<String> = docs
            .iter()
            .map(|d| {
                format!(
                    "{}:{}",
                    d["tenant"].as_str().unwrap(),
                    d["id"].as_str().unwrap()
                )
            })
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(standin.documents(INDEX)), ["acme/app:a"]);
    strata::cli::reindex(&config, None).await.unwrap();
    assert_eq!(
        ids(standin.documents(INDEX)),
        ["acme/app:a", "acme/other:b"]
    );
}

/// The daemon's own runner applies changes; while Meilisearch is down the
/// daemon is not ready, the consumer's failures and lag show, and once it
/// answers again the change made meanwhile arrives (nothing lost).
#[tokio::test]
async fn the_feed_runner_drives_the_consumer_through_an_outage() {
    let standin = MeiliStandin::start(Some(KEY)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = strata::config::Config::embedded(dir.path());
    config.meili.url = Some(standin.url.clone());
    config.meili.key = Some(KEY.into());
    let daemon = strata::server::build(config, ADMIN).await.unwrap();
    daemon.start().await.unwrap();
    let router = daemon.router.clone();
    let entity = |id: &str| json!({"id": id, "type": "doc", "properties": {"title": "vehicle"}});
    for (uri, body) in [
        ("/v1/orgs", json!({"id": "acme", "name": "Acme"})),
        (
            "/v1/orgs/acme/projects",
            json!({"id": "app", "name": "App"}),
        ),
        ("/v1/orgs/acme/projects/app/entities", entity("a")),
    ] {
        let (status, text) = admin(&router, ADMIN, "POST", uri, body).await;
        assert!(status.is_success(), "{uri}: {status} {text}");
    }
    eventually(Duration::from_secs(30), || async {
        standin.documents(INDEX).len() == 1
    })
    .await;
    let (status, ready) = admin(&router, ADMIN, "GET", "/health/ready", Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    let ready: Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["checks"]["meilisearch"], "ok");
    assert_eq!(ready["checks"]["consumers"][0]["name"], "meilisearch");
    assert_eq!(ready["checks"]["consumers"][0]["leader"], true);

    standin.set_down(true);
    let (status, body) = admin(&router, ADMIN, "GET", "/health/ready", Value::Null).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("meilisearch"), "{body}");
    let (status, text) = admin(
        &router,
        ADMIN,
        "POST",
        "/v1/orgs/acme/projects/app/entities",
        entity("b"),
    )
    .await;
    assert!(status.is_success(), "{status} {text}");
    eventually(Duration::from_secs(30), || async {
        let (_, metrics) = admin(&router, ADMIN, "GET", "/metrics", Value::Null).await;
        metrics.lines().any(|l| {
            l.starts_with("strata_feed_consumer_failures_total{consumer=\"meilisearch\"}")
                && !l.ends_with(" 0")
        })
    })
    .await;

    standin.set_down(false);
    eventually(Duration::from_secs(60), || async {
        standin.documents(INDEX).len() == 2
    })
    .await;
    let (status, _) = admin(&router, ADMIN, "GET", "/health/ready", Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    daemon.shutdown().await;
}
