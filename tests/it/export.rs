//! Exports on both backends: a project's NDJSON holds the project line,
//! every entity (deleted ones too) followed by every version of it, then
//! every relationship, across page boundaries; an org's export is its
//! projects' exports one after another; other orgs' projects are 404.

use crate::support::{admin, request};
use serde_json::{json, Value};
use std::io::Write;
use strata::config::Config;
use strata::server::Daemon;

const ADMIN: &str = "test-admin-key-0123456789";
const P: &str = "/v1/orgs/acme/projects/app";

async fn call(d: &Daemon, method: &str, uri: &str, body: Value) -> Value {
    let (status, text) = admin(&d.router, ADMIN, method, uri, body).await;
    assert!(status.is_success(), "{method} {uri}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

async fn export(d: &Daemon, uri: &str) -> Vec<Value> {
    let (status, text) = admin(&d.router, ADMIN, "GET", uri, Value::Null).await;
    assert_eq!(status, 200, "{uri}: {text}");
    lines(&text)
}

on_both_configs!(
    an_export_holds_every_row_with_its_history,
    an_import_reproduces_the_project_and_again_changes_nothing,
    a_bad_line_stores_nothing_unless_asked,
    documents_travel_with_the_export,
    a_flat_nodes_and_edges_file_comes_in,
    a_load_into_an_empty_store_takes_the_bulk_path,
    batches_stored_at_once_land_as_the_file_orders_them,
);

/// A daemon with org `acme`, projects `app` (1,203 entities with histories,
/// a deleted one, three relationships, one deleted), `other` (one entity)
/// and the empty `copy` and `spare`.
async fn seeded(config: Config) -> Daemon {
    let d = strata::server::build(config, ADMIN).await.unwrap();
    call(
        &d,
        "POST",
        "/v1/orgs",
        json!({"id": "acme", "name": "Acme"}),
    )
    .await;
    for p in ["app", "other", "copy", "spare"] {
        let body = json!({"id": p, "name": p});
        call(&d, "POST", "/v1/orgs/acme/projects", body).await;
    }
    // 1,200 entities: more than two pages of the export.
    for chunk in 0..3 {
        let operations: Vec<Value> = (0..400)
            .map(|i| {
                let n = chunk * 400 + i;
                json!({"op": "create_entity", "id": format!("n{n:04}"), "type": "node",
                       "properties": {"n": n}})
            })
            .collect();
        call(
            &d,
            "POST",
            &format!("{P}/batch"),
            json!({"operations": operations}),
        )
        .await;
    }
    let create = |id: &str, props: Value| json!({"id": id, "type": "thing", "properties": props});
    call(
        &d,
        "POST",
        &format!("{P}/entities"),
        create("a", json!({"x": 1, "keep": "k"})),
    )
    .await;
    call(
        &d,
        "PATCH",
        &format!("{P}/entities/a"),
        json!({"properties": {"x": 2}}),
    )
    .await;
    call(
        &d,
        "PATCH",
        &format!("{P}/entities/a"),
        json!({"properties": {"x": null, "y": 3}}),
    )
    .await;
    call(
        &d,
        "POST",
        &format!("{P}/entities"),
        create("b", json!({"b": true})),
    )
    .await;
    call(&d, "POST", &format!("{P}/entities"), create("c", json!({}))).await;
    for (id, to) in [("r1", "c"), ("r2", "b"), ("r3", "c")] {
        let body = json!({"id": id, "type": "LINKS", "from": "a", "to": to});
        call(&d, "POST", &format!("{P}/relationships"), body).await;
    }
    call(&d, "DELETE", &format!("{P}/relationships/r3"), Value::Null).await;
    call(&d, "DELETE", &format!("{P}/entities/b"), Value::Null).await;
    let other = create("o", json!({"o": 1}));
    call(&d, "POST", "/v1/orgs/acme/projects/other/entities", other).await;
    d
}

async fn an_export_holds_every_row_with_its_history(config: Config) {
    let d = seeded(config).await;
    let records = export(&d, &format!("{P}/export")).await;
    assert_eq!(records[0]["kind"], "project");
    assert_eq!(records[0]["id"], "app");
    assert_eq!(records[0]["org"], "acme");

    // Each entity, by id, followed by its versions 1..=version.
    let mut entities = Vec::new();
    let mut rest = &records[1..];
    while let Some(e) = rest.first().filter(|r| r["kind"] == "entity") {
        let version = e["version"].as_i64().unwrap() as usize;
        let versions = &rest[1..=version];
        for (n, v) in versions.iter().enumerate() {
            assert_eq!(v["kind"], "version", "{v}");
            assert_eq!(v["entity"], e["id"]);
            assert_eq!(v["version"], n as i64 + 1);
        }
        entities.push((e.clone(), versions.to_vec()));
        rest = &rest[1 + version..];
    }
    let ids: Vec<&str> = entities
        .iter()
        .map(|(e, _)| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 1203);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "entities by id");
    assert_eq!(&ids[..3], ["a", "b", "c"]);

    let (a, a_versions) = &entities[0];
    assert_eq!(a["properties"], json!({"keep": "k", "y": 3}));
    assert_eq!(a_versions[0]["op"], "create");
    assert_eq!(a_versions[0]["snapshot"], json!({"x": 1, "keep": "k"}));
    assert_eq!(a_versions[1]["patch"], json!({"x": 2}));
    assert_eq!(a_versions[1]["parent"], 1);
    assert_eq!(a_versions[2]["patch"], json!({"x": null, "y": 3}));
    let (b, b_versions) = &entities[1];
    assert!(
        b["deleted_at"].is_string(),
        "a deleted entity is exported: {b}"
    );
    assert_eq!(b_versions[1]["op"], "delete");
    assert_eq!(b_versions[1]["deleted"], true);

    // Then every relationship, deleted ones too, and nothing else.
    let rels: Vec<&Value> = rest.iter().collect();
    assert!(rels.iter().all(|r| r["kind"] == "relationship"), "{rels:?}");
    let rel_ids: Vec<&str> = rels.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(rel_ids, ["r1", "r2", "r3"]);
    assert_eq!(rels[0]["from"], "a");
    assert_eq!(rels[0]["to"], "c");
    assert!(rels[0].get("deleted_at").is_none());
    assert!(rels[2]["deleted_at"].is_string());

    // The org's export: its org line, then each project's export in turn,
    // by id (app, copy, other, spare).
    let org = export(&d, "/v1/orgs/acme/export").await;
    assert_eq!(org.len(), 1 + records.len() + 5);
    assert_eq!(
        (&org[0]["kind"], &org[0]["id"], &org[0]["name"]),
        (&json!("org"), &json!("acme"), &json!("Acme"))
    );
    let org = &org[1..];
    assert_eq!(org[..records.len()], records[..]);
    let rest: Vec<&Value> = org[records.len()..].iter().collect();
    assert_eq!(rest[0]["id"], "copy");
    assert_eq!(rest[1]["id"], "other");
    assert_eq!(rest[2]["id"], "o");
    assert_eq!(rest[4]["id"], "spare");

    // Unknown projects and orgs are 404, before any line is sent.
    for uri in ["/v1/orgs/acme/projects/none/export", "/v1/orgs/none/export"] {
        let (status, text) = admin(&d.router, ADMIN, "GET", uri, Value::Null).await;
        assert_eq!(status, 404, "{uri}: {text}");
        assert_eq!(lines(&text)[0]["error"]["code"], "not_found");
    }
}

async fn import(d: &Daemon, project: &str, ndjson: &str, extra: &str) -> (u16, Value) {
    let uri = format!("/v1/orgs/acme/projects/{project}/import{extra}");
    let body = ndjson.as_bytes().to_vec();
    let (status, text) =
        request(&d.router, ADMIN, "POST", &uri, "application/x-ndjson", body).await;
    (
        status.as_u16(),
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

/// Records after the project line, as text lines.
fn rows_of(records: &[Value]) -> Vec<String> {
    records[1..].iter().map(Value::to_string).collect()
}

async fn an_import_reproduces_the_project_and_again_changes_nothing(mut config: Config) {
    // Imports are not bound by the body limit (the export is ~300 KB).
    config.body_limit = 64 * 1024;
    let d = seeded(config).await;
    let (status, text) = admin(&d.router, ADMIN, "GET", &format!("{P}/export"), Value::Null).await;
    assert_eq!(status, 200);

    let (status, first) = import(&d, "copy", &text, "").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(
        first["data"],
        json!({"created": 1206, "updated": 0, "unchanged": 0, "failed": 0, "failures": []})
    );
    // Row for row what was exported: versions, times, actors, deletions.
    let copied = export(&d, "/v1/orgs/acme/projects/copy/export").await;
    assert_eq!(rows_of(&copied), rows_of(&lines(&text)));
    // The change feed names each imported row's change in the contract's
    // words: created rows, and the rows stored deleted.
    let changes = call(
        &d,
        "GET",
        "/v1/orgs/acme/projects/copy/changes?limit=1000",
        Value::Null,
    )
    .await;
    let ops: std::collections::BTreeSet<&str> = changes["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["op"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["create", "delete"].into(), "{changes}");
    // Reads see it: a past version, the live graph (r2's end is deleted, r3
    // itself), the deleted entity gone.
    let v2 = call(
        &d,
        "GET",
        "/v1/orgs/acme/projects/copy/entities/a/versions/2",
        Value::Null,
    )
    .await;
    assert_eq!(v2["data"]["properties"], json!({"x": 2, "keep": "k"}));
    let rels = call(
        &d,
        "GET",
        "/v1/orgs/acme/projects/copy/relationships?from=a",
        Value::Null,
    )
    .await;
    let ids: Vec<&str> = rels["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["r1"]);
    let (status, _) = admin(
        &d.router,
        ADMIN,
        "GET",
        "/v1/orgs/acme/projects/copy/entities/b",
        Value::Null,
    )
    .await;
    assert_eq!(status, 404);

    let (status, again) = import(&d, "copy", &text, "").await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        again["data"],
        json!({"created": 0, "updated": 0, "unchanged": 1206, "failed": 0, "failures": []})
    );
    assert_eq!(
        export(&d, "/v1/orgs/acme/projects/copy/export").await,
        copied
    );

    // The copy moves on; the older file then fails for that entity only,
    // and an entity behind the file is brought up to it.
    call(
        &d,
        "PATCH",
        "/v1/orgs/acme/projects/copy/entities/c",
        json!({"properties": {"new": 1}}),
    )
    .await;
    call(
        &d,
        "PATCH",
        &format!("{P}/entities/n0001"),
        json!({"properties": {"n": -1}}),
    )
    .await;
    let (_, newer) = admin(&d.router, ADMIN, "GET", &format!("{P}/export"), Value::Null).await;
    let (status, third) = import(&d, "copy", &newer, "").await;
    assert_eq!(status, 200, "{third}");
    assert_eq!(third["data"]["updated"], 1);
    assert_eq!(third["data"]["failed"], 1);
    assert_eq!(third["data"]["unchanged"], 1204);
    let failure = &third["data"]["failures"][0];
    assert!(
        failure["message"].as_str().unwrap().contains("newer"),
        "{failure}"
    );
    let n1 = call(
        &d,
        "GET",
        "/v1/orgs/acme/projects/copy/entities/n0001",
        Value::Null,
    )
    .await;
    assert_eq!(n1["data"]["properties"], json!({"n": -1}));
    assert_eq!(n1["data"]["version"], 2);
}

/// Into an empty store the import takes the bulk path (plain inserts; on
/// SQLite the secondary indexes built after the load): the result is the
/// same row for row, walks answer, and a record the project holds by then
/// (the file repeats an entity) falls back to the careful path.
async fn a_load_into_an_empty_store_takes_the_bulk_path(config: Config) {
    let source_dir = tempfile::tempdir().unwrap();
    let source = seeded(Config::embedded(source_dir.path())).await;
    let (status, text) = admin(
        &source.router,
        ADMIN,
        "GET",
        &format!("{P}/export"),
        Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    source.shutdown().await;

    let d = strata::server::build(config, ADMIN).await.unwrap();
    let org = json!({"id": "acme", "name": "Acme"});
    call(&d, "POST", "/v1/orgs", org).await;
    let project = json!({"id": "copy", "name": "copy"});
    call(&d, "POST", "/v1/orgs/acme/projects", project).await;
    let repeated = text
        .lines()
        .filter(|l| l.contains("\"n0007\""))
        .collect::<Vec<_>>()
        .join("\n");
    let (status, report) = import(&d, "copy", &format!("{text}{repeated}\n"), "").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["data"],
        json!({"created": 1206, "updated": 0, "unchanged": 1, "failed": 0, "failures": []})
    );
    // The same rows (as JSON values: PostgreSQL orders an object's keys).
    let copied = export(&d, "/v1/orgs/acme/projects/copy/export").await;
    assert_eq!(copied[1..], lines(&text)[1..]);
    let walk = call(
        &d,
        "GET",
        "/v1/orgs/acme/projects/copy/entities/a/neighbors?direction=out",
        Value::Null,
    )
    .await;
    let mut ids: Vec<&str> = walk["data"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["a", "c"], "{walk}");
    let search = call(
        &d,
        "GET",
        "/v1/orgs/acme/projects/copy/search?q=k&mode=text",
        Value::Null,
    )
    .await;
    assert_eq!(search["data"][0]["entity"]["id"], "a", "{search}");
}

async fn a_bad_line_stores_nothing_unless_asked(mut config: Config) {
    // Bodies over the import limit are refused before they are read whole.
    config.import_limit = 100_000;
    let d = seeded(config).await;
    let (_, whole) = admin(&d.router, ADMIN, "GET", &format!("{P}/export"), Value::Null).await;
    let (status, body) = import(&d, "spare", &whole, "").await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large");

    let (_, text) = admin(&d.router, ADMIN, "GET", &format!("{P}/export"), Value::Null).await;
    let mut lines: Vec<String> = text.lines().take(20).map(str::to_owned).collect();
    lines[6] = "{not json".into();
    let broken = lines.join("\n");
    let (status, body) = import(&d, "spare", &broken, "").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["details"]["line"], 7);
    let spare = export(&d, "/v1/orgs/acme/projects/spare/export").await;
    assert_eq!(spare.len(), 1, "nothing stored: {spare:?}");

    // A history that does not rebuild is a bad line too.
    let mut forged: Vec<String> = text.lines().take(20).map(str::to_owned).collect();
    let mut entity: Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
    entity["properties"] = json!({"forged": true});
    forged[1] = entity.to_string();
    let (status, body) = import(&d, "spare", &forged.join("\n"), "").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["details"]["line"], 2);

    let (status, body) = import(&d, "spare", &broken, "?continue_on_error=true").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["failed"], 1);
    assert_eq!(body["data"]["failures"][0]["line"], 7);
    assert_eq!(
        body["data"]["created"], 7,
        "a, c and n0000 to n0004: all but b"
    );
}

/// A client that goes away mid-import does not cut the import short: it
/// runs to its end (and its finish) in a task of its own.
#[tokio::test]
async fn an_import_goes_on_when_its_client_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let d = seeded(Config::embedded(dir.path())).await;
    let n = 20_000;
    let mut out = Vec::new();
    for i in 0..n {
        entity_lines(&mut out, &format!("e{i}"));
    }
    let body = String::from_utf8(out).unwrap();
    // The request is dropped once it has had a moment, as a closed
    // connection drops its handler.
    let gone = tokio::time::timeout(
        std::time::Duration::from_millis(100),
        import(&d, "spare", &body, ""),
    )
    .await;
    let scope = strata::domain::Scope::new("acme", "spare");
    let last = format!("e{}", n - 1);
    let read = Default::default();
    // Waits for the last entity (a minute at most, not a timing claim).
    for _ in 0..1200 {
        if d.store.get_entity(&scope, &last, &read).await.is_ok() || gone.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let stored = d.store.get_entity(&scope, &last, &read).await;
    assert!(stored.is_ok(), "the last entity of the file was stored");
}

/// With `continue_on_error`, the records after a bad `project` line belong
/// to that project: they fail too, and none lands in the project before.
#[tokio::test]
async fn records_after_a_bad_project_line_fail_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::support::sqlite_store(dir.path()).await;
    let project = |id: &str, at: &str| json!({"kind": "project", "org": "o", "id": id, "name": id, "created_at": at});
    let mut out = Vec::new();
    ndjson_line(&mut out, project("p1", BATCH_AT));
    entity_lines(&mut out, "a");
    ndjson_line(&mut out, project("p2", "not a time"));
    entity_lines(&mut out, "b");
    ndjson_line(&mut out, project("p3", BATCH_AT));
    entity_lines(&mut out, "d");
    ndjson_line(&mut out, project("p4", BATCH_AT));
    // A line that is not a record at all but says it is a project.
    writeln!(out, r#"{{"kind":"project","org":"o"}}"#).unwrap();
    entity_lines(&mut out, "e");
    let file = dir.path().join("projects.ndjson");
    std::fs::write(&file, out).unwrap();

    let caller = strata::domain::Caller::new("cli");
    let target = strata::import::Target::AsExported;
    let report = strata::import::run(&store, &target, &file, &caller, true)
        .await
        .unwrap();
    let ids = |project: &str| {
        let (store, scope) = (store.clone(), strata::domain::Scope::new("o", project));
        async move {
            let page = strata::domain::PageRequest {
                cursor: None,
                limit: 10,
            };
            let page = store
                .list_entities(&scope, &Default::default(), &page)
                .await
                .unwrap();
            page.items.into_iter().map(|e| e.id).collect::<Vec<_>>()
        }
    };
    let failed: Vec<usize> = report.failures.iter().map(|f| f.line).collect();
    assert_eq!(failed, [4, 5, 11, 12], "{report:?}");
    assert_eq!(ids("p1").await, ["a"]);
    assert_eq!(ids("p3").await, ["d"]);
    assert!(ids("p4").await.is_empty());
    assert_eq!(report.counts.created, 2, "{report:?}");
}

/// An org's export read back into another backend as exported (orgs and
/// projects made from its project lines) exports the same rows: SQLite to
/// PostgreSQL and back, as `strata export` and `strata import` do it.
#[tokio::test]
async fn an_org_moves_between_backends_row_for_row() {
    if crate::support::skip_without(crate::support::PG) {
        return;
    }
    use futures_util::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let sqlite = seeded(Config::embedded(dir.path())).await;
    let source = org_export(&sqlite.store).await;

    let url = crate::support::fresh_pg_database().await;
    let pg = crate::support::pg_store(dir.path(), &url).await;
    let file = dir.path().join("acme.ndjson");
    std::fs::write(&file, &source).unwrap();
    let caller = strata::domain::Caller::new("cli");
    let target = strata::import::Target::AsExported;
    let report = strata::import::run(&pg, &target, &file, &caller, false)
        .await
        .unwrap();
    assert_eq!(report.counts.created, 1207, "{report:?}");
    assert_eq!(report.counts.failed, 0, "{report:?}");
    let moved = org_export(&pg).await;
    same_rows(&moved, &source, "PostgreSQL holds what SQLite held");

    let back_dir = tempfile::tempdir().unwrap();
    let back = crate::support::sqlite_store(back_dir.path()).await;
    std::fs::write(&file, &moved).unwrap();
    strata::import::run(&back, &target, &file, &caller, false)
        .await
        .unwrap();
    same_rows(&org_export(&back).await, &source, "and back again");

    /// Equal as JSON (PostgreSQL orders an object's keys its own way); the
    /// org and its projects keep their names and creation times.
    fn same_rows(a: &str, b: &str, what: &str) {
        let (a, b) = (lines(a), lines(b));
        assert_eq!(a.len(), b.len(), "{what}: as many rows");
        if let Some(i) = (0..a.len()).find(|&i| a[i] != b[i]) {
            panic!("{what}: row {i} differs: {} and {}", a[i], b[i]);
        }
    }

    async fn org_export(store: &strata::store::DynStore) -> String {
        // The seeded org has no documents: no blob is read.
        let dir = tempfile::tempdir().unwrap();
        let blobs = strata::blob::open(&format!("file://{}", dir.path().display()))
            .await
            .unwrap();
        let mut lines = Box::pin(strata::export::org(store, blobs, "acme").await.unwrap());
        let mut out = Vec::new();
        while let Some(chunk) = lines.next().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        String::from_utf8(out).unwrap()
    }
}

/// A Yjs update that appends `s` to text `t` of `doc`, base64.
fn text_update(doc: &yrs::Doc, s: &str) -> String {
    use base64::Engine;
    use yrs::{GetString, Text, Transact};
    let t = doc.get_or_insert_text("t");
    let mut txn = doc.transact_mut();
    let len = t.get_string(&txn).len() as u32;
    t.insert(&mut txn, len, s);
    base64::engine::general_purpose::STANDARD.encode(txn.encode_update_v1())
}

/// A project's documents are in its export (row, snapshots, retained
/// updates, after the relationships) and come back by import, the same
/// rows and the same updates; a second import changes nothing; a document
/// line that is not Yjs, or not inside its document, is a bad line.
async fn documents_travel_with_the_export(config: Config) {
    let d = seeded(config).await;
    let board = yrs::Doc::new();
    let edits: Vec<String> = (0..3)
        .map(|i| text_update(&board, &format!("e{i}")))
        .collect();
    let body = json!({"updates": edits});
    call(&d, "POST", &format!("{P}/docs/board/updates"), body).await;
    call(
        &d,
        "PUT",
        &format!("{P}/docs/notes"),
        json!({"entity_id": "a"}),
    )
    .await;
    let body = json!({"updates": [text_update(&yrs::Doc::new(), "n")]});
    call(&d, "POST", &format!("{P}/docs/notes/updates"), body).await;
    let scope = strata::domain::Scope::new("acme", "app");
    strata::crdt::compact::compact(
        d.store.as_ref(),
        d.blobs.as_ref(),
        &strata::crdt::CrdtConfig::default(),
        &strata::domain::Caller::new("test"),
        &scope,
        "board",
        &|_| Ok(()),
    )
    .await
    .unwrap();

    let (_, text) = admin(&d.router, ADMIN, "GET", &format!("{P}/export"), Value::Null).await;
    let records = lines(&text);
    let kinds: Vec<&str> = records
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .skip_while(|k| *k != "doc")
        .collect();
    assert_eq!(
        kinds,
        [
            "doc",
            "doc_snapshot",
            "doc_update",
            "doc_update",
            "doc_update",
            "doc",
            "doc_update"
        ]
    );
    let docs: Vec<&Value> = records.iter().filter(|r| r["kind"] == "doc").collect();
    assert_eq!(
        (docs[0]["id"].as_str(), docs[0]["last_seq"].as_i64()),
        (Some("board"), Some(3))
    );
    assert_eq!(docs[1]["entity_id"], "a");
    let updates: Vec<&Value> = records
        .iter()
        .filter(|r| r["kind"] == "doc_update")
        .collect();
    assert_eq!(updates[0]["update"], edits[0].as_str());

    let (status, first) = import(&d, "copy", &text, "").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["data"]["created"], 1206 + 2 + 1 + 4, "{first}");
    let copied = export(&d, "/v1/orgs/acme/projects/copy/export").await;
    assert_eq!(rows_of(&copied), rows_of(&records));
    let read = call(
        &d,
        "GET",
        "/v1/orgs/acme/projects/copy/docs/board/updates",
        Value::Null,
    )
    .await;
    let read: Vec<&str> = read["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["update"].as_str().unwrap())
        .collect();
    assert_eq!(read, edits);
    let (status, again) = import(&d, "copy", &text, "").await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["data"]["unchanged"], 1206 + 7, "{again}");
    assert_eq!(again["data"]["created"], 0, "{again}");

    // Not a Yjs update; a document line without its document.
    let project = text.lines().next().unwrap();
    let doc = docs[0].to_string();
    let mut update = updates[0].clone();
    update["update"] = json!("AAAA/w==");
    let bad = [project, &doc, &update.to_string()].join("\n");
    let (status, body) = import(&d, "spare", &bad, "").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["details"]["line"], 3);
    let orphan = [project, &updates[0].to_string()].join("\n");
    let (status, body) = import(&d, "spare", &orphan, "").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["details"]["line"], 2);
    let spare = export(&d, "/v1/orgs/acme/projects/spare/export").await;
    assert_eq!(spare.len(), 1, "nothing stored: {spare:?}");
}

/// The old file-based storage's shape, `{"nodes": [...], "edges": [...]}`,
/// imported with `format=flat`: nodes become entities, edges relationships
/// (an id derived when none is given), a second import changes nothing, and
/// failures name the node or edge.
async fn a_flat_nodes_and_edges_file_comes_in(config: Config) {
    let d = seeded(config).await;
    let doc = json!({
        "nodes": [
            {"id": "ada", "type": "Person", "name": "Ada", "born": 1815},
            {"id": "engine", "type": "Machine", "properties": {"name": "Analytical Engine"}}
        ],
        "edges": [
            {"from": "ada", "to": "engine", "type": "DESCRIBED", "year": 1843},
            {"id": "e2", "from": "engine", "to": "ada", "type": "INSPIRED"}
        ]
    });
    let flat = |body: &Value, extra: &str| {
        let uri = format!("/v1/orgs/acme/projects/spare/import?format=flat{extra}");
        let body = body.to_string().into_bytes();
        let router = d.router.clone();
        async move {
            let (status, text) =
                request(&router, ADMIN, "POST", &uri, "application/json", body).await;
            (
                status.as_u16(),
                serde_json::from_str::<Value>(&text).unwrap_or(Value::Null),
            )
        }
    };
    let (status, first) = flat(&doc, "").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["data"]["created"], 4, "{first}");
    let ada = call(
        &d,
        "GET",
        "/v1/orgs/acme/projects/spare/entities/ada",
        Value::Null,
    )
    .await;
    assert_eq!(
        ada["data"]["properties"],
        json!({"name": "Ada", "born": 1815})
    );
    assert_eq!(ada["data"]["type"], "Person");
    let rels = call(
        &d,
        "GET",
        "/v1/orgs/acme/projects/spare/relationships?from=ada",
        Value::Null,
    )
    .await;
    let rel = &rels["data"][0];
    assert_eq!(
        (rel["to"].as_str(), rel["type"].as_str()),
        (Some("engine"), Some("DESCRIBED"))
    );
    assert_eq!(rel["properties"], json!({"year": 1843}));
    assert!(rel["id"].as_str().unwrap().starts_with("edge-"));

    let (status, again) = flat(&doc, "").await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["data"]["unchanged"], 4, "{again}");
    assert_eq!(again["data"]["created"], 0, "{again}");

    let bad = json!({"nodes": [{"id": "x", "type": "T"}, {"type": "T"}]});
    let (status, body) = flat(&bad, "").await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("nodes[1]"), "{message}");
    let dangling = json!({"nodes": [{"id": "y", "type": "T"}],
                          "edges": [{"from": "y", "to": "nowhere", "type": "L"}]});
    let (status, body) = flat(&dangling, "&continue_on_error=true").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["failed"], 1, "{body}");
    let failure = body["data"]["failures"][0]["message"].as_str().unwrap();
    assert!(failure.starts_with("edges[0]: "), "{failure}");
    let (status, _) = admin(
        &d.router,
        ADMIN,
        "GET",
        "/v1/orgs/acme/projects/spare/entities/x",
        Value::Null,
    )
    .await;
    assert_eq!(status, 404, "nothing of the bad document was stored");
}

/// Each pass of an import tells its progress (what `strata import` shows as
/// a bar on a terminal): bytes read, rising to the file's size.
#[tokio::test]
async fn an_import_reports_how_far_each_pass_has_read() {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    #[derive(Default)]
    struct Seen {
        checked: AtomicU64,
        stored: AtomicU64,
        went_back: AtomicU64,
    }
    impl strata::import::Progress for Seen {
        fn checked(&self, bytes: u64) {
            if self.checked.fetch_max(bytes, Relaxed) > bytes {
                self.went_back.fetch_add(1, Relaxed);
            }
        }
        fn stored(&self, bytes: u64) {
            if self.stored.fetch_max(bytes, Relaxed) > bytes {
                self.went_back.fetch_add(1, Relaxed);
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let d = seeded(Config::embedded(dir.path())).await;
    let (_, text) = admin(&d.router, ADMIN, "GET", &format!("{P}/export"), Value::Null).await;
    let file = dir.path().join("app.ndjson");
    std::fs::write(&file, &text).unwrap();
    let seen = Seen::default();
    let target = strata::import::Target::Project(strata::domain::Scope::new("acme", "copy"));
    let caller = strata::domain::Caller::new("cli");
    let report = strata::import::run_with(&d.store, &target, &file, &caller, false, &seen)
        .await
        .unwrap();
    assert_eq!(report.counts.created, 1206);
    let size = text.len() as u64;
    assert_eq!(seen.checked.load(Relaxed), size);
    assert_eq!(seen.stored.load(Relaxed), size);
    assert_eq!(seen.went_back.load(Relaxed), 0, "progress only rises");
}

const BATCH_AT: &str = "2026-12-04T00:00:00.000000Z";
const BATCH_LATER: &str = "2026-12-04T00:00:01.000000Z";

fn ndjson_line(out: &mut impl Write, v: serde_json::Value) {
    writeln!(out, "{v}").unwrap();
}

fn entity_lines(out: &mut impl Write, id: &str) {
    let props = json!({"name": id});
    ndjson_line(
        out,
        json!({"kind": "entity", "id": id, "type": "t", "properties": props,
        "version": 1, "created_at": BATCH_AT, "updated_at": BATCH_AT, "created_by": "a", "updated_by": "a"}),
    );
    ndjson_line(
        out,
        json!({"kind": "version", "entity": id, "version": 1, "parent": null,
        "op": "create", "type": "t", "deleted": false, "actor": "a", "at": BATCH_AT,
        "patch": props, "snapshot": props, "chain": 0}),
    );
}

/// Into a fresh project batches are stored two at a time, yet an
/// entity that comes again in a later batch, newer, lands after its
/// first line, and relationships find the entities of every batch.
async fn batches_stored_at_once_land_as_the_file_orders_them(config: Config) {
    let store = strata::store::open(&config.database_url, &config.store_settings())
        .await
        .unwrap();
    let caller = strata::domain::Caller::new("test");
    store.create_org(&caller, "o", "O").await.unwrap();
    store.create_project(&caller, "o", "p", "P").await.unwrap();

    let file = tempfile::NamedTempFile::new().unwrap();
    let mut out = std::io::BufWriter::new(file.reopen().unwrap());
    let n = 2 * strata::import::FRESH_BATCH + 10;
    for i in 0..n {
        entity_lines(&mut out, &format!("e{i}"));
        if i == strata::import::FRESH_BATCH + 5 {
            // e3 again, in the second batch, at version 2.
            ndjson_line(
                &mut out,
                json!({"kind": "entity", "id": "e3", "type": "t",
                "properties": {"name": "again"}, "version": 2, "created_at": BATCH_AT,
                "updated_at": BATCH_LATER, "created_by": "a", "updated_by": "a"}),
            );
            ndjson_line(
                &mut out,
                json!({"kind": "version", "entity": "e3", "version": 1,
                "parent": null, "op": "create", "type": "t", "deleted": false, "actor": "a",
                "at": BATCH_AT, "patch": {"name": "e3"}, "snapshot": {"name": "e3"}, "chain": 0}),
            );
            ndjson_line(
                &mut out,
                json!({"kind": "version", "entity": "e3", "version": 2,
                "parent": 1, "op": "update", "type": "t", "deleted": false, "actor": "a",
                "at": BATCH_LATER, "patch": {"name": "again"}, "chain": 1}),
            );
        }
    }
    for i in 0..100 {
        ndjson_line(
            &mut out,
            json!({"kind": "relationship", "id": format!("r{i}"),
            "type": "NEXT", "from": format!("e{i}"), "to": format!("e{}", n - 1 - i),
            "properties": {}, "version": 1, "created_at": BATCH_AT, "updated_at": BATCH_AT,
            "created_by": "a", "updated_by": "a"}),
        );
    }
    out.flush().unwrap();

    let target = strata::import::Target::Project(strata::domain::Scope::new("o", "p"));
    let report = strata::import::run(&store, &target, file.path(), &caller, false)
        .await
        .unwrap();
    let counts = &report.counts;
    assert_eq!(
        (
            counts.created,
            counts.updated,
            counts.unchanged,
            counts.failed
        ),
        (n as u64 + 100, 1, 0, 0),
        "{:?}",
        report.failures
    );
    let scope = strata::domain::Scope::new("o", "p");
    let e3 = store
        .get_entity(&scope, "e3", &strata::domain::EntityRead::default())
        .await;
    let e3 = e3.unwrap();
    assert_eq!((e3.version, &e3.properties["name"]), (2, &json!("again")));
    store.close().await;
}
