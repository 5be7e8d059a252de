//! The daemon's own text index (tantivy, following the change feed) on
//! both backends: a search sees every write acknowledged before it (new,
//! changed and deleted entities), words match as prefixes and stems, `type`
//! and the project confine it, a typo finds the word meant, an index
//! whose changes were pruned is rebuilt from the data, and the documents of
//! deleted projects are swept away.

use crate::support::{admin, eventually};
use serde_json::{json, Value};
use std::time::Duration;
use strata::config::Config;
use strata::server::Daemon;

const ADMIN: &str = "test-admin-key-0123456789";
const P: &str = "/v1/orgs/acme/projects/app";

/// A started daemon with org `acme`, projects `app` and `other`, its text
/// index built and answering.
async fn daemon(config: Config) -> Daemon {
    let d = strata::server::build(config, ADMIN).await.unwrap();
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
    ] {
        let (status, text) = admin(&d.router, ADMIN, "POST", uri, body).await;
        assert!(status.is_success(), "{uri}: {status} {text}");
    }
    d.start().await.unwrap();
    let index = d.text_index.clone().expect("a text index");
    eventually(Duration::from_secs(30), || {
        let ready = index.state().1;
        async move { ready }
    })
    .await;
    d
}

async fn call(d: &Daemon, method: &str, uri: &str, body: Value) -> Value {
    let (status, text) = admin(&d.router, ADMIN, method, uri, body).await;
    assert!(status.is_success(), "{method} {uri}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

async fn create(d: &Daemon, project: &str, id: &str, ty: &str, text: &str) {
    let uri = format!("/v1/orgs/acme/projects/{project}/entities");
    let body = json!({"id": id, "type": ty, "properties": {"text": text}});
    call(d, "POST", &uri, body).await;
}

async fn found(d: &Daemon, project: &str, q: &str, extra: &str) -> Vec<String> {
    let q = crate::support::urlencode(q);
    let uri = format!("/v1/orgs/acme/projects/{project}/search?q={q}&mode=text{extra}");
    let body = call(d, "GET", &uri, Value::Null).await;
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["entity"]["id"].as_str().unwrap().to_owned())
        .collect()
}

on_both_configs!(
    a_search_sees_every_write_before_it,
    an_index_whose_changes_were_pruned_is_rebuilt_from_the_data,
    a_project_made_again_finds_nothing_of_the_one_before,
);

/// Deleting a project deletes its changes too, so the index never hears of
/// it; a project made again under its id (an org's too) must still find
/// nothing of what the one before held.
async fn a_project_made_again_finds_nothing_of_the_one_before(config: Config) {
    let d = daemon(config).await;
    create(&d, "other", "cust-1", "thing", "merger secret").await;
    create(&d, "other", "cust-2", "thing", "acquisition secret").await;
    assert_eq!(found(&d, "other", "merger", "").await, ["cust-1"]);
    call(&d, "DELETE", "/v1/orgs/acme/projects/other", Value::Null).await;
    let body = json!({"id": "other", "name": "Other again"});
    call(&d, "POST", "/v1/orgs/acme/projects", body).await;
    create(&d, "other", "cust-1", "thing", "plain words").await;
    assert!(found(&d, "other", "merger", "").await.is_empty());
    assert_eq!(found(&d, "other", "plain", "").await, ["cust-1"]);
    // The sweep removes what the index held of the deleted one (and only
    // that): cust-2 (its cust-1 went with the new cust-1's document).
    let index = d.text_index.clone().unwrap();
    let before = index.state().0;
    assert_eq!(index.sweep().await.unwrap(), 1, "the project deleted");
    assert_eq!(index.state().0, before - 1);
    assert_eq!(index.sweep().await.unwrap(), 0);
    assert_eq!(found(&d, "other", "plain", "").await, ["cust-1"]);
}

async fn a_search_sees_every_write_before_it(config: Config) {
    let d = daemon(config).await;
    create(&d, "app", "car", "thing", "a red car and another car").await;
    create(
        &d,
        "app",
        "van",
        "thing",
        "a white delivery vehicle, not a car",
    )
    .await;
    create(&d, "app", "bus", "transport", "the vehicles of the city").await;
    create(&d, "other", "car", "thing", "a car in another project").await;

    // Read-your-writes: no wait between the writes and the searches.
    assert_eq!(found(&d, "app", "car", "").await, ["car", "van"]);
    let mut vehicles = found(&d, "app", "vehicles", "").await;
    vehicles.sort();
    assert_eq!(vehicles, ["bus", "van"], "stems and prefixes match");
    assert_eq!(found(&d, "app", "veh", "&type=transport").await, ["bus"]);
    assert_eq!(found(&d, "app", "white CAR", "").await, ["van"]);
    assert!(found(&d, "app", "banana", "").await.is_empty());
    // A word the index has never seen is read as the nearest indexed one.
    assert_eq!(found(&d, "app", "delivry vehicel", "").await, ["van"]);
    assert!(found(&d, "app", "zzzzzz", "").await.is_empty());

    // A change of text and a delete are seen at once too.
    call(
        &d,
        "PATCH",
        &format!("{P}/entities/car"),
        json!({"properties": {"text": "a banana"}}),
    )
    .await;
    assert_eq!(found(&d, "app", "car", "").await, ["van"]);
    assert_eq!(found(&d, "app", "banana", "").await, ["car"]);
    call(&d, "DELETE", &format!("{P}/entities/van"), Value::Null).await;
    assert!(found(&d, "app", "white", "").await.is_empty());
    assert_eq!(found(&d, "other", "car", "").await, ["car"]);

    // The index answered: it holds the live entities of both projects.
    let (docs, ready) = d.text_index.as_ref().unwrap().state();
    assert!(ready);
    assert_eq!(docs, 3);
    d.shutdown().await;
}

async fn an_index_whose_changes_were_pruned_is_rebuilt_from_the_data(mut config: Config) {
    config.changes_retention = Duration::ZERO;
    let d = daemon(config.clone()).await;
    for i in 0..30 {
        let text = if i % 3 == 0 {
            "a green boat"
        } else {
            "a grey stone"
        };
        create(&d, "app", &format!("e{i}"), "thing", text).await;
    }
    assert_eq!(found(&d, "app", "boat", "&limit=100").await.len(), 10);
    assert!(d.feed.prune().await.unwrap() > 0, "the feed was pruned");
    d.shutdown().await;

    // A daemon whose index lost its files finds the feed pruned.
    std::fs::remove_dir_all(config.data_dir.join("text-index")).unwrap();
    let d = strata::server::build(config, ADMIN).await.unwrap();
    d.start().await.unwrap();
    let index = d.text_index.clone().unwrap();
    eventually(Duration::from_secs(30), || {
        let (docs, ready) = index.state();
        async move { ready && docs == 30 }
    })
    .await;
    let boats = found(&d, "app", "boats", "&limit=100").await;
    assert_eq!(boats.len(), 10);
    assert!(boats
        .iter()
        .all(|id| id[1..].parse::<u32>().unwrap() % 3 == 0));
    d.shutdown().await;
}
