//! The storage conformance suite: written once against the `Store` trait and
//! run unchanged on every backend (`conformance!` below instantiates each case
//! for SQLite and for PostgreSQL).

use crate::support;

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use strata::domain::*;
use strata::store::DynStore;

struct Fixture {
    store: DynStore,
    _dir: tempfile::TempDir,
}

async fn fixture(backend: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = match backend {
        "sqlite" => support::sqlite_store(dir.path()).await,
        _ => support::pg_store(dir.path(), &support::fresh_pg_database().await).await,
    };
    store.create_org(&me(), "acme", "Acme").await.unwrap();
    store
        .create_project(&me(), "acme", "app", "App")
        .await
        .unwrap();
    Fixture { store, _dir: dir }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $case() {
                let f = super::fixture("sqlite").await;
                super::$case(&f.store).await
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $case() {
                if super::support::skip_without(super::support::PG) {
                    return;
                }
                let f = super::fixture("postgres").await;
                super::$case(&f.store).await
            })*
        }
    };
}

conformance!(
    tenancy_pages_conflicts_and_erasure,
    entity_lifecycle,
    failed_preconditions_change_nothing,
    version_chains_rebuild_exactly,
    as_of_and_include_deleted,
    list_filters_and_pagination,
    relationship_lifecycle,
    deleting_an_end_hides_its_edges_until_restored,
    traversal_depths_cycles_directions_and_limits,
    shortest_paths,
    text_search,
    batches_are_all_or_nothing,
    search_follows_concurrent_and_failed_writes,
    concurrent_conditional_patches_lose_nothing,
    projects_never_see_each_other,
    reads_after_every_kind_of_write,
    every_write_leaves_one_audit_event,
    deleting_an_org_erases_its_trail_and_records_the_deletion,
    nul_text_is_refused_by_every_store,
    pruning_keeps_the_newest_snapshot_and_frees_old_blobs,
);

fn me() -> Caller {
    Caller::new("conformance")
}

fn app() -> Scope {
    Scope::new("acme", "app")
}

fn props(v: Value) -> Properties {
    v.as_object().cloned().unwrap_or_default()
}

fn page(limit: usize) -> PageRequest {
    PageRequest {
        cursor: None,
        limit,
    }
}

async fn write(store: &DynStore, ops: Vec<WriteOp>) -> DomainResult<Vec<WriteOutcome>> {
    store.write(&app(), &me(), ops).await
}

/// The error of a single-op write, unwrapped from its batch form.
async fn write_err(store: &DynStore, op: WriteOp) -> DomainError {
    match write(store, vec![op]).await {
        Err(DomainError::InBatch { source, .. }) => *source,
        Err(e) => e,
        Ok(_) => panic!("the write was expected to fail"),
    }
}

fn create(id: &str, ty: &str, p: Value) -> WriteOp {
    WriteOp::CreateEntity {
        id: id.into(),
        entity_type: ty.into(),
        properties: props(p),
    }
}

fn patch(id: &str, p: Value, expected: Option<i64>) -> WriteOp {
    WriteOp::PatchEntity {
        id: id.into(),
        patch: p,
        entity_type: None,
        expected_version: expected,
    }
}

fn relate(id: &str, ty: &str, from: &str, to: &str) -> WriteOp {
    WriteOp::CreateRelationship {
        id: id.into(),
        rel_type: ty.into(),
        from: from.into(),
        to: to.into(),
        properties: Properties::new(),
    }
}

async fn get(store: &DynStore, id: &str) -> DomainResult<Entity> {
    store.get_entity(&app(), id, &EntityRead::default()).await
}

async fn all_entities(store: &DynStore, filter: &EntityFilter, limit: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut req = page(limit);
    loop {
        let p = store.list_entities(&app(), filter, &req).await.unwrap();
        assert!(p.items.len() <= limit);
        ids.extend(p.items.into_iter().map(|e| e.id));
        match p.next_cursor {
            Some(c) => req.cursor = Some(c),
            None => return ids,
        }
    }
}

async fn tenancy_pages_conflicts_and_erasure(store: &DynStore) {
    for i in 0..7 {
        store
            .create_org(&me(), &format!("org{i}"), "O")
            .await
            .unwrap();
    }
    assert!(matches!(
        store.create_org(&me(), "org1", "again").await,
        Err(DomainError::Conflict(_))
    ));
    let mut seen = Vec::new();
    let mut req = page(3);
    loop {
        let p = store.list_orgs(&req).await.unwrap();
        seen.extend(p.items.iter().map(|o| o.id.clone()));
        let Some(c) = p.next_cursor else { break };
        req.cursor = Some(c);
    }
    let mut want: Vec<String> = (0..7).map(|i| format!("org{i}")).collect();
    want.push("acme".into());
    want.sort();
    assert_eq!(seen, want);
    assert!(matches!(
        store.create_project(&me(), "nope", "p", "P").await,
        Err(DomainError::NotFound(_))
    ));
    assert!(matches!(
        store.create_project(&me(), "acme", "app", "P").await,
        Err(DomainError::Conflict(_))
    ));

    store
        .create_project(&me(), "acme", "tmp", "Tmp")
        .await
        .unwrap();
    let tmp = Scope::new("acme", "tmp");
    store
        .write(
            &tmp,
            &me(),
            vec![
                create("x", "t", json!({"s": "erasable words"})),
                create("y", "t", json!({})),
            ],
        )
        .await
        .unwrap();
    store
        .write(&tmp, &me(), vec![relate("r", "L", "x", "y")])
        .await
        .unwrap();
    store.delete_project(&me(), "acme", "tmp").await.unwrap();
    assert!(matches!(
        store.get_project("acme", "tmp").await,
        Err(DomainError::NotFound(_))
    ));
    store
        .create_project(&me(), "acme", "tmp", "Tmp again")
        .await
        .unwrap();
    assert!(matches!(
        store.get_entity(&tmp, "x", &EntityRead::default()).await,
        Err(DomainError::NotFound(_))
    ));
    assert!(store
        .search_text(&tmp, "erasable", None, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .list_relationships(&tmp, &RelationshipFilter::default(), &page(10))
        .await
        .unwrap()
        .items
        .is_empty());
    let gone = Scope::new("acme", "never");
    let err = store
        .write(&gone, &me(), vec![create("a", "t", json!({}))])
        .await
        .unwrap_err();
    assert!(matches!(err, DomainError::NotFound(_)), "{err:?}");
}

async fn entity_lifecycle(store: &DynStore) {
    write(
        store,
        vec![create(
            "e",
            "task",
            json!({"a": 1, "nested": {"x": 1, "y": 2}}),
        )],
    )
    .await
    .unwrap();
    assert!(matches!(
        write_err(store, create("e", "task", json!({}))).await,
        DomainError::Conflict(_)
    ));
    let e = get(store, "e").await.unwrap();
    assert_eq!((e.version, e.created_by.as_str()), (1, "conformance"));

    // Merge patch: set, nested remove with null, add.
    write(
        store,
        vec![patch(
            "e",
            json!({"a": 2, "nested": {"x": null}, "b": [1, 2]}),
            Some(1),
        )],
    )
    .await
    .unwrap();
    let e = get(store, "e").await.unwrap();
    assert_eq!(
        Value::Object(e.properties.clone()),
        json!({"a": 2, "nested": {"y": 2}, "b": [1, 2]})
    );
    assert_eq!(e.version, 2);

    // PUT: replace (and create when absent).
    let put = |id: &str, expected| WriteOp::PutEntity {
        id: id.into(),
        entity_type: "bug".into(),
        properties: props(json!({"only": true})),
        expected_version: expected,
    };
    match &write(store, vec![put("e", Some(2))]).await.unwrap()[0] {
        WriteOutcome::Entity { entity, created } => {
            assert!(!created);
            assert_eq!((entity.version, entity.entity_type.as_str()), (3, "bug"));
            assert_eq!(
                Value::Object(entity.properties.clone()),
                json!({"only": true})
            );
        }
        other => panic!("{other:?}"),
    }
    match &write(store, vec![put("fresh", None)]).await.unwrap()[0] {
        WriteOutcome::Entity { entity, created } => assert!(*created && entity.version == 1),
        other => panic!("{other:?}"),
    }

    // Delete, restore, and what each allows.
    write(
        store,
        vec![WriteOp::DeleteEntity {
            id: "e".into(),
            expected_version: None,
        }],
    )
    .await
    .unwrap();
    assert!(matches!(
        get(store, "e").await,
        Err(DomainError::NotFound(_))
    ));
    assert!(matches!(
        write_err(store, patch("e", json!({}), None)).await,
        DomainError::NotFound(_)
    ));
    assert!(matches!(
        write_err(store, put("e", None)).await,
        DomainError::Conflict(_)
    ));
    write(store, vec![WriteOp::RestoreEntity { id: "e".into() }])
        .await
        .unwrap();
    assert!(matches!(
        write_err(store, WriteOp::RestoreEntity { id: "e".into() }).await,
        DomainError::Conflict(_)
    ));
    let e = get(store, "e").await.unwrap();
    assert_eq!(e.version, 5);
    let history = store
        .list_versions(&app(), "e", &page(100))
        .await
        .unwrap()
        .items;
    let ops: Vec<VersionOp> = history.iter().map(|v| v.op).collect();
    assert_eq!(
        ops,
        [
            VersionOp::Restore,
            VersionOp::Delete,
            VersionOp::Replace,
            VersionOp::Update,
            VersionOp::Create
        ]
    );

    // Revert to v1: a new version whose parent is v1 and whose state is v1's.
    write(
        store,
        vec![WriteOp::RevertEntity {
            id: "e".into(),
            to_version: 1,
            expected_version: Some(5),
        }],
    )
    .await
    .unwrap();
    let e = get(store, "e").await.unwrap();
    assert_eq!((e.version, e.entity_type.as_str()), (6, "task"));
    assert_eq!(
        Value::Object(e.properties),
        json!({"a": 1, "nested": {"x": 1, "y": 2}})
    );
    let v6 = &store
        .list_versions(&app(), "e", &page(1))
        .await
        .unwrap()
        .items[0];
    assert_eq!(
        (v6.version, v6.parent_version, v6.op),
        (6, Some(1), VersionOp::Revert)
    );
    assert!(matches!(
        write_err(
            store,
            WriteOp::RevertEntity {
                id: "e".into(),
                to_version: 99,
                expected_version: None
            }
        )
        .await,
        DomainError::Unprocessable(_)
    ));

    // Purge: gone with its history.
    write(store, vec![WriteOp::PurgeEntity { id: "e".into() }])
        .await
        .unwrap();
    let read_deleted = EntityRead {
        include_deleted: true,
        ..Default::default()
    };
    assert!(matches!(
        store.get_entity(&app(), "e", &read_deleted).await,
        Err(DomainError::NotFound(_))
    ));
    assert!(matches!(
        store.list_versions(&app(), "e", &page(10)).await,
        Err(DomainError::NotFound(_))
    ));
}

async fn failed_preconditions_change_nothing(store: &DynStore) {
    write(store, vec![create("e", "t", json!({"n": 1}))])
        .await
        .unwrap();
    match write_err(store, patch("e", json!({"n": 2}), Some(7))).await {
        DomainError::PreconditionFailed { expected, current } => {
            assert_eq!((expected, current), (7, 1))
        }
        other => panic!("{other:?}"),
    }
    for op in [
        WriteOp::DeleteEntity {
            id: "e".into(),
            expected_version: Some(2),
        },
        WriteOp::PutEntity {
            id: "e".into(),
            entity_type: "t".into(),
            properties: Properties::new(),
            expected_version: Some(0),
        },
        WriteOp::RevertEntity {
            id: "e".into(),
            to_version: 1,
            expected_version: Some(3),
        },
    ] {
        assert!(matches!(
            write_err(store, op).await,
            DomainError::PreconditionFailed { .. }
        ));
    }
    let e = get(store, "e").await.unwrap();
    assert_eq!((e.version, e.properties["n"].clone()), (1, json!(1)));
    assert_eq!(
        store
            .list_versions(&app(), "e", &page(10))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
}

async fn version_chains_rebuild_exactly(store: &DynStore) {
    write(store, vec![create("v", "t", json!({"n": 0}))])
        .await
        .unwrap();
    let mut states: BTreeMap<i64, Value> = BTreeMap::from([(1, json!({"n": 0}))]);
    let mut current = json!({"n": 0});
    for i in 1..=45i64 {
        let (op, next) = if i % 11 == 0 {
            let target = (i / 2).max(1);
            (
                WriteOp::RevertEntity {
                    id: "v".into(),
                    to_version: target,
                    expected_version: None,
                },
                states[&target].clone(),
            )
        } else {
            let mut next = current.clone();
            next["n"] = json!(i);
            next[format!("k{}", i % 5)] = json!({"deep": [i, "x"], "drop": null});
            next[format!("k{}", i % 5)]
                .as_object_mut()
                .unwrap()
                .remove("drop");
            if i % 7 == 0 {
                next.as_object_mut().unwrap().remove("k1");
            }
            let mut p = json!({"n": i, format!("k{}", i % 5): {"deep": [i, "x"]}});
            if i % 7 == 0 {
                p["k1"] = Value::Null;
            }
            (patch("v", p, None), next)
        };
        write(store, vec![op]).await.unwrap();
        current = next;
        states.insert(i + 1, current.clone());
    }
    for (version, want) in &states {
        let read = EntityRead {
            version: Some(*version),
            ..Default::default()
        };
        let e = store.get_entity(&app(), "v", &read).await.unwrap();
        assert_eq!(&Value::Object(e.properties), want, "version {version}");
        assert_eq!(e.version, *version);
    }
    // History pages newest first, to the end.
    let mut versions = Vec::new();
    let mut req = page(7);
    loop {
        let p = store.list_versions(&app(), "v", &req).await.unwrap();
        versions.extend(p.items.iter().map(|v| v.version));
        let Some(c) = p.next_cursor else { break };
        req.cursor = Some(c);
    }
    assert_eq!(versions, (1..=46).rev().collect::<Vec<_>>());
}

async fn as_of_and_include_deleted(store: &DynStore) {
    write(store, vec![create("a", "t", json!({"s": "one"}))])
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let after_create = strata::clock::now();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    write(store, vec![patch("a", json!({"s": "two"}), None)])
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let after_patch = strata::clock::now();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    write(
        store,
        vec![WriteOp::DeleteEntity {
            id: "a".into(),
            expected_version: None,
        }],
    )
    .await
    .unwrap();

    let at = |t: &str| EntityRead {
        as_of: Some(t.to_string()),
        ..Default::default()
    };
    assert_eq!(
        store
            .get_entity(&app(), "a", &at(&after_create))
            .await
            .unwrap()
            .properties["s"],
        "one"
    );
    assert_eq!(
        store
            .get_entity(&app(), "a", &at(&after_patch))
            .await
            .unwrap()
            .properties["s"],
        "two"
    );
    assert!(matches!(
        store
            .get_entity(&app(), "a", &at("2001-01-01T00:00:00.000000Z"))
            .await,
        Err(DomainError::NotFound(_))
    ));
    assert!(matches!(
        store
            .get_entity(&app(), "a", &at(&strata::clock::now()))
            .await,
        Err(DomainError::NotFound(_))
    ));
    let deleted = store
        .get_entity(
            &app(),
            "a",
            &EntityRead {
                include_deleted: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(deleted.deleted_at.is_some());
    assert_eq!(deleted.version, 3);
    // An explicit version is history: readable even after the delete.
    let v1 = store
        .get_entity(
            &app(),
            "a",
            &EntityRead {
                version: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(v1.properties["s"], "one");
}

async fn list_filters_and_pagination(store: &DynStore) {
    let mut ops = Vec::new();
    for i in 0..25 {
        let ty = if i % 2 == 0 { "even" } else { "odd" };
        ops.push(create(&format!("e{i:02}"), ty, json!({"i": i, "tags": [format!("t{}", i % 3), "all"], "meta": {"group": i % 4, "name": format!("n{i}")}})));
    }
    write(store, ops).await.unwrap();
    let all = all_entities(store, &EntityFilter::default(), 4).await;
    assert_eq!(
        all,
        (0..25).map(|i| format!("e{i:02}")).collect::<Vec<_>>(),
        "every item exactly once, in order"
    );
    let evens = all_entities(
        store,
        &EntityFilter {
            entity_type: Some("even".into()),
            ..Default::default()
        },
        5,
    )
    .await;
    assert_eq!(evens.len(), 13);
    let contains = |v: Value| EntityFilter {
        contains: Some(props(v)),
        ..Default::default()
    };
    assert_eq!(
        all_entities(store, &contains(json!({"i": 7})), 3).await,
        ["e07"]
    );
    assert_eq!(
        all_entities(store, &contains(json!({"i": 7.0})), 3).await,
        ["e07"],
        "numbers compare by value"
    );
    assert_eq!(
        all_entities(store, &contains(json!({"tags": ["t1"]})), 2)
            .await
            .len(),
        8
    );
    assert_eq!(
        all_entities(store, &contains(json!({"meta": {"group": 0}})), 2)
            .await
            .len(),
        7
    );
    assert_eq!(
        all_entities(
            store,
            &contains(json!({"meta": {"name": "n3"}, "tags": ["all"]})),
            2
        )
        .await,
        ["e03"]
    );
    assert!(all_entities(store, &contains(json!({"missing": 1})), 2)
        .await
        .is_empty());
    let since = strata::clock::now();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    write(store, vec![patch("e03", json!({"touched": true}), None)])
        .await
        .unwrap();
    let recent = all_entities(
        store,
        &EntityFilter {
            updated_since: Some(since),
            ..Default::default()
        },
        10,
    )
    .await;
    assert_eq!(recent, ["e03"]);
    write(
        store,
        vec![WriteOp::DeleteEntity {
            id: "e00".into(),
            expected_version: None,
        }],
    )
    .await
    .unwrap();
    assert!(
        !all_entities(store, &EntityFilter::default(), 10)
            .await
            .contains(&"e00".to_string()),
        "deleted entities are not listed"
    );
    let bad = PageRequest {
        cursor: Some("not-a-cursor".into()),
        limit: 5,
    };
    assert!(matches!(
        store
            .list_entities(&app(), &EntityFilter::default(), &bad)
            .await,
        Err(DomainError::BadRequest(_))
    ));
}

async fn relationship_lifecycle(store: &DynStore) {
    write(
        store,
        vec![
            create("a", "t", json!({})),
            create("b", "t", json!({})),
            create("c", "t", json!({})),
        ],
    )
    .await
    .unwrap();
    // The error names the missing end, whichever it is.
    for (from, to) in [("a", "missing"), ("missing", "a")] {
        match write_err(store, relate("r", "L", from, to)).await {
            DomainError::Unprocessable(m) => assert!(m.contains("missing"), "{m}"),
            other => panic!("expected 422, got {other:?}"),
        }
    }
    write(
        store,
        vec![
            relate("r1", "DEPENDS_ON", "a", "b"),
            relate("r2", "DEPENDS_ON", "a", "c"),
            relate("r3", "LINKS", "b", "c"),
        ],
    )
    .await
    .unwrap();
    assert!(matches!(
        write_err(store, relate("r1", "L", "a", "b")).await,
        DomainError::Conflict(_)
    ));
    let r = store.get_relationship(&app(), "r1").await.unwrap();
    assert_eq!((r.from.as_str(), r.to.as_str(), r.version), ("a", "b", 1));

    let op = WriteOp::PatchRelationship {
        id: "r1".into(),
        patch: json!({"w": 3}),
        rel_type: Some("NEEDS".into()),
        expected_version: Some(1),
    };
    write(store, vec![op]).await.unwrap();
    let r = store.get_relationship(&app(), "r1").await.unwrap();
    assert_eq!(
        (r.rel_type.as_str(), r.version, r.properties["w"].clone()),
        ("NEEDS", 2, json!(3))
    );
    let stale = WriteOp::PatchRelationship {
        id: "r1".into(),
        patch: json!({}),
        rel_type: None,
        expected_version: Some(1),
    };
    assert!(matches!(
        write_err(store, stale).await,
        DomainError::PreconditionFailed { .. }
    ));

    let list = |f: RelationshipFilter| async move {
        let mut ids = Vec::new();
        let mut req = page(1);
        loop {
            let p = store.list_relationships(&app(), &f, &req).await.unwrap();
            ids.extend(p.items.into_iter().map(|r| r.id));
            let Some(c) = p.next_cursor else { return ids };
            req.cursor = Some(c);
        }
    };
    assert_eq!(
        list(RelationshipFilter {
            from: Some("a".into()),
            ..Default::default()
        })
        .await,
        ["r1", "r2"]
    );
    assert_eq!(
        list(RelationshipFilter {
            to: Some("c".into()),
            ..Default::default()
        })
        .await,
        ["r2", "r3"]
    );
    assert_eq!(
        list(RelationshipFilter {
            rel_type: Some("DEPENDS_ON".into()),
            ..Default::default()
        })
        .await,
        ["r2"]
    );

    write(
        store,
        vec![WriteOp::DeleteRelationship {
            id: "r2".into(),
            expected_version: None,
        }],
    )
    .await
    .unwrap();
    assert!(matches!(
        store.get_relationship(&app(), "r2").await,
        Err(DomainError::NotFound(_))
    ));
    assert_eq!(list(RelationshipFilter::default()).await, ["r1", "r3"]);
    write(store, vec![WriteOp::PurgeEntity { id: "b".into() }])
        .await
        .unwrap();
    assert_eq!(
        list(RelationshipFilter::default()).await,
        Vec::<String>::new(),
        "a purge removes the edges of its entity"
    );
}

async fn deleting_an_end_hides_its_edges_until_restored(store: &DynStore) {
    write(
        store,
        vec![
            create("a", "t", json!({})),
            create("b", "t", json!({})),
            create("c", "t", json!({})),
        ],
    )
    .await
    .unwrap();
    write(
        store,
        vec![
            relate("ab", "L", "a", "b"),
            relate("bc", "L", "b", "c"),
            relate("ca", "L", "c", "a"),
        ],
    )
    .await
    .unwrap();
    write(
        store,
        vec![WriteOp::DeleteRelationship {
            id: "ca".into(),
            expected_version: None,
        }],
    )
    .await
    .unwrap();
    write(
        store,
        vec![WriteOp::DeleteEntity {
            id: "b".into(),
            expected_version: None,
        }],
    )
    .await
    .unwrap();
    let live = store
        .list_relationships(&app(), &RelationshipFilter::default(), &page(10))
        .await
        .unwrap()
        .items;
    assert!(
        live.is_empty(),
        "edges of a deleted entity disappear: {live:?}"
    );
    assert!(matches!(
        write_err(store, relate("x", "L", "a", "b")).await,
        DomainError::Unprocessable(_)
    ));
    write(store, vec![WriteOp::RestoreEntity { id: "b".into() }])
        .await
        .unwrap();
    let ids: Vec<String> = store
        .list_relationships(&app(), &RelationshipFilter::default(), &page(10))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(
        ids,
        ["ab", "bc"],
        "restored ends bring back their edges, not deleted ones"
    );
}

fn walk(start: &str, direction: Direction, types: &[&str], depth: u32, limit: usize) -> Traversal {
    Traversal {
        start: start.into(),
        direction,
        types: types.iter().map(|t| t.to_string()).collect(),
        max_depth: depth,
        limit,
        include_properties: false,
    }
}

fn depths(g: &Subgraph) -> BTreeMap<String, u32> {
    g.nodes.iter().map(|n| (n.id.clone(), n.depth)).collect()
}

async fn traversal_depths_cycles_directions_and_limits(store: &DynStore) {
    // a -> b -> c -> a (cycle), a -> c (shortcut), c -> c (self-loop), d -> a, e isolated.
    let ids = ["a", "b", "c", "d", "e"];
    write(
        store,
        ids.iter()
            .map(|i| create(i, "n", json!({"name": i})))
            .collect(),
    )
    .await
    .unwrap();
    write(
        store,
        vec![
            relate("ab", "DEPENDS_ON", "a", "b"),
            relate("bc", "DEPENDS_ON", "b", "c"),
            relate("ca", "LINKS", "c", "a"),
            relate("ac", "DEPENDS_ON", "a", "c"),
            relate("cc", "LINKS", "c", "c"),
            relate("da", "DEPENDS_ON", "d", "a"),
        ],
    )
    .await
    .unwrap();

    let out = store
        .traverse(&app(), &walk("a", Direction::Out, &[], 3, 100))
        .await
        .unwrap();
    assert_eq!(
        depths(&out),
        BTreeMap::from([("a".into(), 0), ("b".into(), 1), ("c".into(), 1)])
    );
    let edge_ids: BTreeSet<String> = out.edges.iter().map(|e| e.id.clone()).collect();
    assert_eq!(
        edge_ids,
        ["ab", "ac", "bc", "ca", "cc"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    let inbound = store
        .traverse(&app(), &walk("a", Direction::In, &["DEPENDS_ON"], 5, 100))
        .await
        .unwrap();
    assert_eq!(
        depths(&inbound),
        BTreeMap::from([("a".into(), 0), ("d".into(), 1)])
    );
    let both = store
        .traverse(&app(), &walk("d", Direction::Both, &[], 2, 100))
        .await
        .unwrap();
    assert_eq!(
        depths(&both),
        BTreeMap::from([
            ("d".into(), 0),
            ("a".into(), 1),
            ("b".into(), 2),
            ("c".into(), 2)
        ])
    );
    let one = store
        .traverse(&app(), &walk("d", Direction::Out, &[], 1, 100))
        .await
        .unwrap();
    assert_eq!(depths(&one).len(), 2);
    let capped = store
        .traverse(&app(), &walk("a", Direction::Both, &[], 10, 2))
        .await
        .unwrap();
    assert_eq!(capped.nodes.len(), 2, "the node limit caps the answer");
    let with_props = store
        .traverse(
            &app(),
            &Traversal {
                include_properties: true,
                ..walk("a", Direction::Out, &[], 1, 10)
            },
        )
        .await
        .unwrap();
    assert!(with_props.nodes.iter().all(|n| n
        .properties
        .as_ref()
        .is_some_and(|p| p["name"] == json!(n.id))));
    assert!(matches!(
        store
            .traverse(&app(), &walk("zz", Direction::Out, &[], 1, 10))
            .await,
        Err(DomainError::NotFound(_))
    ));

    write(
        store,
        vec![WriteOp::DeleteEntity {
            id: "b".into(),
            expected_version: None,
        }],
    )
    .await
    .unwrap();
    let out = store
        .traverse(&app(), &walk("d", Direction::Out, &[], 5, 100))
        .await
        .unwrap();
    assert!(
        !depths(&out).contains_key("b"),
        "deleted nodes are not walked"
    );
    assert_eq!(depths(&out)["c"], 2);
    let expanded = store
        .expand(
            &app(),
            &["a".into()],
            Direction::Out,
            &["DEPENDS_ON".into()],
        )
        .await
        .unwrap();
    assert_eq!(
        expanded.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["ac"]
    );
    let headers = store
        .node_headers(&app(), &["a".into(), "b".into(), "zz".into()], false)
        .await
        .unwrap();
    assert_eq!(headers.len(), 1, "only live, existing nodes");
}

async fn shortest_paths(store: &DynStore) {
    // A chain 0 -> 1 -> ... -> 6 with a shortcut 1 -> 4, and a back edge 6 -> 0.
    write(
        store,
        (0..8)
            .map(|i| create(&format!("n{i}"), "n", json!({})))
            .collect(),
    )
    .await
    .unwrap();
    let mut rels: Vec<WriteOp> = (0..6)
        .map(|i| {
            relate(
                &format!("s{i}"),
                "NEXT",
                &format!("n{i}"),
                &format!("n{}", i + 1),
            )
        })
        .collect();
    rels.push(relate("short", "NEXT", "n1", "n4"));
    rels.push(relate("back", "BACK", "n6", "n0"));
    write(store, rels).await.unwrap();
    let query = |from: &str, to: &str, direction, depth, types: &[&str]| strata::graph::PathQuery {
        from: from.into(),
        to: to.into(),
        direction,
        types: types.iter().map(|t| t.to_string()).collect(),
        max_depth: depth,
    };
    let path = strata::graph::shortest_path(
        store.as_ref(),
        &app(),
        &query("n0", "n6", Direction::Out, 6, &[]),
    )
    .await
    .unwrap()
    .unwrap();
    let nodes: Vec<&str> = path.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(nodes, ["n0", "n1", "n4", "n5", "n6"]);
    assert_eq!(
        path.edges.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["s0", "short", "s4", "s5"]
    );
    assert!(strata::graph::shortest_path(
        store.as_ref(),
        &app(),
        &query("n0", "n6", Direction::Out, 3, &[])
    )
    .await
    .unwrap()
    .is_none());
    let back = strata::graph::shortest_path(
        store.as_ref(),
        &app(),
        &query("n6", "n1", Direction::Out, 6, &[]),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(back.edges.len(), 2, "n6 -> n0 -> n1");
    let against = strata::graph::shortest_path(
        store.as_ref(),
        &app(),
        &query("n6", "n1", Direction::Out, 6, &["NEXT"]),
    )
    .await
    .unwrap();
    assert!(against.is_none(), "types restrict the walk");
    let undirected = strata::graph::shortest_path(
        store.as_ref(),
        &app(),
        &query("n5", "n1", Direction::Both, 6, &["NEXT"]),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(undirected.edges.len(), 2, "n5 - n4 - n1 ignoring direction");
    assert!(strata::graph::shortest_path(
        store.as_ref(),
        &app(),
        &query("n0", "n7", Direction::Both, 6, &[])
    )
    .await
    .unwrap()
    .is_none());
    let same = strata::graph::shortest_path(
        store.as_ref(),
        &app(),
        &query("n3", "n3", Direction::Out, 6, &[]),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!((same.nodes.len(), same.edges.len()), (1, 0));
}

async fn text_search(store: &DynStore) {
    write(store, vec![
        create("car", "doc", json!({"title": "Running the vehicle fleet", "body": {"notes": ["vehicles need service"]}})),
        create("run", "doc", json!({"title": "A runner runs", "n": 5})),
        create("other", "note", json!({"title": "Vehicle inspection", "tags": ["vehicle", "vehicle"]})),
        create("plain", "doc", json!({"title": "nothing relevant"})),
    ]).await.unwrap();
    let ids = |hits: Vec<SearchHit>| hits.into_iter().map(|h| h.entity.id).collect::<Vec<_>>();
    let stem = ids(store
        .search_text(&app(), "running", None, 10)
        .await
        .unwrap());
    assert!(
        stem.contains(&"run".to_string()) && stem.contains(&"car".to_string()),
        "stemming: {stem:?}"
    );
    let prefix = ids(store.search_text(&app(), "veh", None, 10).await.unwrap());
    assert_eq!(
        prefix.iter().collect::<BTreeSet<_>>(),
        ["car", "other"]
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .iter()
            .collect()
    );
    let ranked = store
        .search_text(&app(), "vehicle", None, 10)
        .await
        .unwrap();
    assert_eq!(ranked[0].entity.id, "other", "the denser match ranks first");
    assert!(ranked[0].score >= ranked[1].score);
    assert!(!ranked[0].highlights.is_empty());
    assert_eq!(
        ids(store
            .search_text(&app(), "vehicle", Some("doc"), 10)
            .await
            .unwrap()),
        ["car"]
    );
    assert_eq!(
        store
            .search_text(&app(), "vehicle", None, 1)
            .await
            .unwrap()
            .len(),
        1
    );
    write(
        store,
        vec![WriteOp::DeleteEntity {
            id: "other".into(),
            expected_version: None,
        }],
    )
    .await
    .unwrap();
    assert_eq!(
        ids(store
            .search_text(&app(), "inspection", None, 10)
            .await
            .unwrap()),
        Vec::<String>::new()
    );
    write(store, vec![WriteOp::RestoreEntity { id: "other".into() }])
        .await
        .unwrap();
    assert_eq!(
        ids(store
            .search_text(&app(), "inspection", None, 10)
            .await
            .unwrap()),
        ["other"]
    );
    write(
        store,
        vec![patch("other", json!({"title": "renamed"}), None)],
    )
    .await
    .unwrap();
    assert!(
        store
            .search_text(&app(), "inspection", None, 10)
            .await
            .unwrap()
            .is_empty(),
        "updates reindex"
    );
    for hostile in [
        "\"",
        "vehicle\" OR \"x",
        "* NEAR(a b)",
        "title:vehicle",
        "(((",
        "a & !b | c:*",
        "'; DROP TABLE entities; --",
    ] {
        match store.search_text(&app(), hostile, None, 10).await {
            Ok(_) | Err(DomainError::BadRequest(_)) => {}
            Err(e) => panic!("{hostile:?}: {e:?}"),
        }
    }
}

async fn batches_are_all_or_nothing(store: &DynStore) {
    write(store, vec![create("exists", "t", json!({}))])
        .await
        .unwrap();
    let err = write(
        store,
        vec![
            create("n1", "t", json!({})),
            create("n2", "t", json!({})),
            relate("r", "L", "n1", "n2"),
            create("exists", "t", json!({})),
            create("n3", "t", json!({})),
        ],
    )
    .await
    .unwrap_err();
    match err {
        DomainError::InBatch { index, source } => {
            assert_eq!(index, 3);
            assert!(matches!(*source, DomainError::Conflict(_)));
        }
        other => panic!("{other:?}"),
    }
    for id in ["n1", "n2", "n3"] {
        assert!(
            matches!(get(store, id).await, Err(DomainError::NotFound(_))),
            "{id} leaked from a failed batch"
        );
    }
    assert!(matches!(
        store.get_relationship(&app(), "r").await,
        Err(DomainError::NotFound(_))
    ));
    // Ops see the effects of earlier ops in the same batch.
    let outcomes = write(
        store,
        vec![
            create("m1", "t", json!({"v": 1})),
            patch("m1", json!({"v": 2}), Some(1)),
            create("m2", "t", json!({})),
            relate("m", "L", "m1", "m2"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(outcomes.len(), 4);
    assert_eq!(get(store, "m1").await.unwrap().properties["v"], 2);
}

/// Many writers at once (on SQLite they share group transactions), some of
/// them failing: the search index holds exactly what was committed.
async fn search_follows_concurrent_and_failed_writes(store: &DynStore) {
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("e{i}");
            let word = format!("kept{i}z");
            write(&store, vec![create(&id, "t", json!({"w": word}))])
                .await
                .unwrap();
            // Staged text of a failing request must vanish with it.
            let failed = write(
                &store,
                vec![
                    create(&format!("x{i}"), "t", json!({"w": format!("lost{i}z")})),
                    patch(&id, json!({"w": format!("lost{i}z")}), None),
                    create(&id, "t", json!({})),
                ],
            )
            .await;
            assert!(failed.is_err());
            if i % 2 == 0 {
                write(
                    &store,
                    vec![patch(&id, json!({"w": format!("new{i}z")}), None)],
                )
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let hits = |q: String| {
        let store = store.clone();
        async move {
            store
                .search_text(&app(), &q, None, 10)
                .await
                .unwrap()
                .into_iter()
                .map(|h| h.entity.id)
                .collect::<Vec<_>>()
        }
    };
    for i in 0..40 {
        let id = format!("e{i}");
        assert!(
            hits(format!("lost{i}z")).await.is_empty(),
            "lost{i}z matches"
        );
        if i % 2 == 0 {
            assert_eq!(hits(format!("new{i}z")).await, vec![id.clone()]);
            assert!(
                hits(format!("kept{i}z")).await.is_empty(),
                "old text of {id}"
            );
        } else {
            assert_eq!(hits(format!("kept{i}z")).await, vec![id]);
        }
    }
}

async fn concurrent_conditional_patches_lose_nothing(store: &DynStore) {
    write(store, vec![create("c", "t", json!({"n": 0}))])
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let e = store
                    .get_entity(&app(), "c", &EntityRead::default())
                    .await
                    .unwrap();
                let n = e.properties["n"].as_i64().unwrap();
                match store
                    .write(
                        &app(),
                        &me(),
                        vec![patch("c", json!({"n": n + 1}), Some(e.version))],
                    )
                    .await
                {
                    Ok(_) => return,
                    Err(DomainError::InBatch { source, .. })
                        if matches!(*source, DomainError::PreconditionFailed { .. }) => {}
                    Err(e) => panic!("{e:?}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let e = get(store, "c").await.unwrap();
    assert_eq!((e.properties["n"].clone(), e.version), (json!(12), 13));
}

async fn projects_never_see_each_other(store: &DynStore) {
    store.create_org(&me(), "other", "Other").await.unwrap();
    store
        .create_project(&me(), "other", "app", "App")
        .await
        .unwrap();
    let theirs = Scope::new("other", "app");
    store
        .write(
            &theirs,
            &me(),
            vec![
                create("a", "secret", json!({"s": "classified words"})),
                create("b", "secret", json!({})),
            ],
        )
        .await
        .unwrap();
    store
        .write(&theirs, &me(), vec![relate("r", "L", "a", "b")])
        .await
        .unwrap();
    write(store, vec![create("a", "mine", json!({"s": "public"}))])
        .await
        .unwrap();
    assert_eq!(get(store, "a").await.unwrap().entity_type, "mine");
    assert!(matches!(
        get(store, "b").await,
        Err(DomainError::NotFound(_))
    ));
    assert!(store
        .search_text(&app(), "classified", None, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(matches!(
        store.get_relationship(&app(), "r").await,
        Err(DomainError::NotFound(_))
    ));
    let walked = store
        .traverse(&app(), &walk("a", Direction::Both, &[], 3, 100))
        .await
        .unwrap();
    assert_eq!(walked.nodes.len(), 1);
    assert!(store
        .expand(&app(), &["a".into()], Direction::Both, &[])
        .await
        .unwrap()
        .is_empty());
    assert!(matches!(
        write_err(store, relate("x", "L", "a", "b")).await,
        DomainError::Unprocessable(_)
    ));
    assert_eq!(
        all_entities(store, &EntityFilter::default(), 10).await,
        ["a"]
    );
    assert_eq!(
        store
            .get_entity(&theirs, "a", &EntityRead::default())
            .await
            .unwrap()
            .entity_type,
        "secret"
    );
}

async fn reads_after_every_kind_of_write(store: &DynStore) {
    let read = |id: &'static str| async move { get(store, id).await };
    write(store, vec![create("x", "t", json!({"v": 1}))])
        .await
        .unwrap();
    assert_eq!(read("x").await.unwrap().properties["v"], 1);
    assert_eq!(read("x").await.unwrap().properties["v"], 1, "cached");
    write(store, vec![patch("x", json!({"v": 2}), None)])
        .await
        .unwrap();
    assert_eq!(read("x").await.unwrap().properties["v"], 2);
    write(
        store,
        vec![WriteOp::DeleteEntity {
            id: "x".into(),
            expected_version: None,
        }],
    )
    .await
    .unwrap();
    assert!(read("x").await.is_err());
    write(store, vec![WriteOp::RestoreEntity { id: "x".into() }])
        .await
        .unwrap();
    assert_eq!(read("x").await.unwrap().version, 4);
    write(store, vec![WriteOp::PurgeEntity { id: "x".into() }])
        .await
        .unwrap();
    assert!(matches!(read("x").await, Err(DomainError::NotFound(_))));
    write(store, vec![create("x", "again", json!({"v": 9}))])
        .await
        .unwrap();
    let again = read("x").await.unwrap();
    assert_eq!(
        (
            again.version,
            again.entity_type.as_str(),
            again.properties["v"].clone()
        ),
        (1, "again", json!(9))
    );
}

/// One audit event per write op, with the caller, the target and the
/// version it made; a failed write leaves none.
async fn every_write_leaves_one_audit_event(store: &DynStore) {
    let caller = Caller {
        key_id: "k1".into(),
        ip: Some("192.0.2.7".into()),
        user_agent: Some("gateway/1".into()),
        replay: false,
    };
    let put = |id: &str| WriteOp::PutEntity {
        id: id.into(),
        entity_type: "task".into(),
        properties: props(json!({"n": 0})),
        expected_version: None,
    };
    let steps = vec![
        create("a", "task", json!({"n": 1})),
        patch("a", json!({"n": 2}), Some(1)),
        put("a"),
        put("b"),
        WriteOp::RevertEntity {
            id: "a".into(),
            to_version: 1,
            expected_version: None,
        },
        relate("r", "dep", "a", "b"),
        WriteOp::DeleteEntity {
            id: "a".into(),
            expected_version: None,
        },
        WriteOp::RestoreEntity { id: "a".into() },
        WriteOp::DeleteRelationship {
            id: "r".into(),
            expected_version: None,
        },
        WriteOp::PurgeEntity { id: "b".into() },
    ];
    for op in steps {
        store.write(&app(), &caller, vec![op]).await.unwrap();
    }
    let failed = store
        .write(&app(), &caller, vec![patch("a", json!({"n": 9}), Some(1))])
        .await;
    assert!(failed.is_err());
    let events = store
        .list_audit("acme", &AuditFilter::default(), &page(100))
        .await
        .unwrap()
        .items;
    let mut seen: Vec<(String, String, Value)> = events
        .iter()
        .filter(|e| e.actor == "k1")
        .map(|e| {
            assert_eq!(e.project.as_deref(), Some("app"));
            assert_eq!(e.ip.as_deref(), Some("192.0.2.7"));
            assert_eq!(e.user_agent.as_deref(), Some("gateway/1"));
            (
                e.action.clone(),
                e.target.clone(),
                e.details["version"].clone(),
            )
        })
        .collect();
    seen.reverse(); // newest first
    let expected = [
        ("entity.create", "a", json!(1)),
        ("entity.update", "a", json!(2)),
        ("entity.replace", "a", json!(3)),
        ("entity.create", "b", json!(1)),
        ("entity.revert", "a", json!(4)),
        ("relationship.create", "r", json!(1)),
        ("entity.delete", "a", json!(5)),
        ("entity.restore", "a", json!(6)),
        ("relationship.delete", "r", Value::Null),
        ("entity.purge", "b", Value::Null),
    ];
    let expected: Vec<(String, String, Value)> = expected
        .into_iter()
        .map(|(a, t, v)| (a.to_owned(), t.to_owned(), v))
        .collect();
    assert_eq!(seen, expected);
}

/// Deleting an org erases its audit trail with the rest of its data and
/// leaves one `org.delete` row under its id, written by the deleting
/// transaction (the trail cannot be read while the org is gone; an org
/// created again with the same id starts from that row). Other orgs' trails
/// are untouched.
async fn deleting_an_org_erases_its_trail_and_records_the_deletion(store: &DynStore) {
    store.create_org(&me(), "gone", "Gone").await.unwrap();
    store.create_project(&me(), "gone", "p", "P").await.unwrap();
    let scope = Scope::new("gone", "p");
    store
        .write(&scope, &me(), vec![create("a", "t", json!({"n": 1}))])
        .await
        .unwrap();
    let acme_before = store
        .list_audit("acme", &AuditFilter::default(), &page(1000))
        .await
        .unwrap()
        .items;
    let deleter = Caller {
        key_id: "k9".into(),
        ip: Some("192.0.2.9".into()),
        user_agent: Some("ops/1".into()),
        replay: false,
    };
    store.delete_org(&deleter, "gone").await.unwrap();
    assert!(matches!(
        store
            .list_audit("gone", &AuditFilter::default(), &page(10))
            .await,
        Err(DomainError::NotFound(_))
    ));
    assert!(matches!(
        store.delete_org(&deleter, "gone").await,
        Err(DomainError::NotFound(_))
    ));

    store.create_org(&me(), "gone", "Again").await.unwrap();
    let trail = store
        .list_audit("gone", &AuditFilter::default(), &page(100))
        .await
        .unwrap()
        .items;
    let seen: Vec<(&str, &str, &str)> = trail
        .iter()
        .map(|e| (e.action.as_str(), e.target.as_str(), e.actor.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("org.create", "gone", me().key_id.as_str()),
            ("org.delete", "gone", "k9"),
        ]
    );
    let deletion = &trail[1];
    assert_eq!(deletion.project, None);
    assert_eq!(deletion.ip.as_deref(), Some("192.0.2.9"));
    assert_eq!(deletion.user_agent.as_deref(), Some("ops/1"));
    assert_eq!(deletion.details, json!({}));

    let acme_after = store
        .list_audit("acme", &AuditFilter::default(), &page(1000))
        .await
        .unwrap()
        .items;
    assert_eq!(format!("{acme_before:?}"), format!("{acme_after:?}"));
}

/// What a refused call must leave as it was.
async fn everything(store: &DynStore) -> String {
    let entities = store
        .list_entities(&app(), &EntityFilter::default(), &page(1000))
        .await
        .unwrap();
    let rels = store
        .list_relationships(&app(), &RelationshipFilter::default(), &page(1000))
        .await
        .unwrap();
    let audit = store
        .list_audit("acme", &AuditFilter::default(), &page(1000))
        .await
        .unwrap();
    let orgs = store.list_orgs(&page(1000)).await.unwrap();
    let docs = store.get_doc(&app(), "d1").await.map(|d| d.last_seq).ok();
    format!(
        "{:?} {:?} {:?} {:?} {docs:?}",
        entities.items, rels.items, audit.items, orgs.items
    )
}

/// NUL (U+0000) cannot be stored by PostgreSQL (text, jsonb): every store
/// refuses it as a bad request before any statement, whichever door the
/// text came through (HTTP, WebSocket document names, CLI), and changes
/// nothing.
async fn nul_text_is_refused_by_every_store(store: &DynStore) {
    write(
        store,
        vec![
            create("e1", "t", json!({"title": "hello"})),
            create("e2", "t", json!({})),
            relate("r1", "KNOWS", "e1", "e2"),
        ],
    )
    .await
    .unwrap();
    store
        .append_updates(&app(), "d1", vec![vec![0, 0]], None)
        .await
        .unwrap();
    let before = everything(store).await;
    let bad = |r: DomainResult<()>, what: &str| match r {
        Err(DomainError::BadRequest(m)) => assert!(m.contains("NUL"), "{what}: {m}"),
        Err(DomainError::InBatch { source, .. }) if source.code() == "bad_request" => {}
        other => panic!("{what}: expected a bad request, got {other:?}"),
    };
    let nul_scope = Scope::new("acme", "a\0pp");
    let s = app();
    let forged = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"id":"x\u0000"}"#)
    };
    let forged_page = PageRequest {
        cursor: Some(forged),
        limit: 10,
    };
    bad(
        store
            .get_entity(&s, "e\0", &EntityRead::default())
            .await
            .map(drop),
        "get",
    );
    bad(
        store
            .get_entity(&nul_scope, "e1", &EntityRead::default())
            .await
            .map(drop),
        "scope",
    );
    bad(store.get_org("ac\0me").await.map(drop), "org");
    bad(
        store.create_org(&me(), "o2", "N\0").await.map(drop),
        "org name",
    );
    bad(
        store
            .create_project(&me(), "acme", "p\0", "P")
            .await
            .map(drop),
        "project id",
    );
    bad(
        store.list_versions(&s, "e\0", &page(10)).await.map(drop),
        "versions",
    );
    bad(
        store
            .list_entities(
                &s,
                &EntityFilter {
                    entity_type: Some("t\0".into()),
                    ..Default::default()
                },
                &page(10),
            )
            .await
            .map(drop),
        "type filter",
    );
    bad(
        store
            .list_entities(
                &s,
                &EntityFilter {
                    contains: Some(props(json!({"title": "a\u{0}"}))),
                    ..Default::default()
                },
                &page(10),
            )
            .await
            .map(drop),
        "where",
    );
    bad(
        store
            .list_entities(&s, &EntityFilter::default(), &forged_page)
            .await
            .map(drop),
        "entity cursor",
    );
    bad(
        store
            .list_relationships(&s, &RelationshipFilter::default(), &forged_page)
            .await
            .map(drop),
        "relationship cursor",
    );
    bad(store.list_orgs(&forged_page).await.map(drop), "org cursor");
    bad(
        store
            .list_relationships(
                &s,
                &RelationshipFilter {
                    from: Some("e\0".into()),
                    ..Default::default()
                },
                &page(10),
            )
            .await
            .map(drop),
        "from",
    );
    bad(
        store.search_text(&s, "hel\0lo", None, 10).await.map(drop),
        "q",
    );
    bad(
        store
            .search_text(&s, "hello", Some("t\0"), 10)
            .await
            .map(drop),
        "search type",
    );
    bad(
        store
            .traverse(&s, &walk("e\0", Direction::Both, &[], 1, 100))
            .await
            .map(drop),
        "traverse",
    );
    bad(
        store
            .expand(&s, &["e\0".to_string()], Direction::Out, &[])
            .await
            .map(drop),
        "expand",
    );
    bad(
        store
            .node_headers(&s, &["e\0".to_string()], false)
            .await
            .map(drop),
        "node headers",
    );
    bad(
        store
            .list_audit(
                "acme",
                &AuditFilter {
                    action: Some("a\0".into()),
                    target: None,
                },
                &page(10),
            )
            .await
            .map(drop),
        "audit action",
    );
    bad(store.find_key("k\0").await.map(drop), "key id");
    bad(
        store.revoke_key(&me(), "acme", "k\0").await.map(drop),
        "revoke",
    );
    bad(
        store
            .append_updates(&s, "d\0", vec![vec![0, 0]], None)
            .await
            .map(drop),
        "doc",
    );
    bad(
        store
            .append_updates(&s, "d1", vec![vec![0, 0]], Some("o\0".into()))
            .await
            .map(drop),
        "origin",
    );
    bad(store.get_doc(&s, "d\0").await.map(drop), "get doc");
    bad(
        store
            .put_doc(&s, &me(), "d1", Some("e\0".into()))
            .await
            .map(drop),
        "doc entity",
    );
    bad(store.doc_log(&s, "d\0", None).await.map(drop), "doc log");
    bad(
        store
            .cypher(&s, "MATCH (n) RETURN n", &props(json!({"p": "\u{0}"})))
            .await
            .map(drop),
        "cypher params",
    );
    for op in [
        create("e3", "t", json!({"k\u{0}ey": 1})),
        create("e3", "t", json!({"a": [{"b": "\u{0}"}]})),
        patch("e1", json!({"title": "x\u{0}"}), None),
        WriteOp::PutEntity {
            id: "e1".into(),
            entity_type: "t".into(),
            properties: props(json!({"t": "\u{0}"})),
            expected_version: None,
        },
        WriteOp::DeleteEntity {
            id: "e\0".into(),
            expected_version: None,
        },
        relate("r2", "KNOWS", "e1", "e\0"),
        WriteOp::PatchRelationship {
            id: "r1".into(),
            patch: json!({"w": "\u{0}"}),
            rel_type: None,
            expected_version: None,
        },
    ] {
        let what = format!("{op:?}");
        // Alone, and second in a batch after a good op: nothing applied.
        bad(write(store, vec![op.clone()]).await.map(drop), &what);
        match write(store, vec![create("e4", "t", json!({})), op]).await {
            Err(DomainError::InBatch { index: 1, source }) => {
                assert_eq!(source.code(), "bad_request", "{what}")
            }
            other => panic!("{what}: expected operation 1 to fail, got {other:?}"),
        }
    }
    assert_eq!(
        everything(store).await,
        before,
        "a refused call changed something"
    );
}

/// Prune: the updates the newest snapshot covers and older than the cut go
/// (a prefix), snapshots older than theirs go except the newest, and the
/// blob keys of those that went are named once; history before the newest
/// kept snapshot is then gone. Deleting the document names the rest.
async fn pruning_keeps_the_newest_snapshot_and_frees_old_blobs(store: &DynStore) {
    let s = app();
    store
        .append_updates(&s, "p1", vec![vec![0, 0]; 6], None)
        .await
        .unwrap();
    let t = |year: u32| format!("{year}-01-01T00:00:00.000000Z");
    let snap = |covers_seq: i64, created: u32, data: SnapshotData| DocSnapshot {
        covers_seq,
        covers_at: t(2000 + covers_seq as u32),
        created_at: t(created),
        size: 2,
        sha256: "0".repeat(64),
        data,
    };
    let blob = |k: &str| SnapshotData::Blob(k.into());
    for s_ in [
        snap(2, 2001, blob("k2")),
        snap(3, 2600, blob("k3")),
        snap(4, 2001, SnapshotData::Inline(vec![0, 0])),
        snap(5, 2001, blob("k5")),
        // The same covers_seq again: recorded once.
        snap(2, 2002, blob("k2-again")),
    ] {
        store.record_snapshot(&s, &me(), "p1", s_).await.unwrap();
    }
    let covers = |snaps: Vec<DocSnapshot>| snaps.iter().map(|x| x.covers_seq).collect::<Vec<_>>();
    assert_eq!(
        covers(store.list_snapshots(&s, "p1").await.unwrap()),
        [5, 4, 3, 2]
    );
    // Nothing goes from a document without a snapshot.
    store
        .append_updates(&s, "p2", vec![vec![0, 0]], None)
        .await
        .unwrap();
    assert!(store
        .prune_doc(&s, "p2", &t(2999), &t(2999))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.list_doc_updates(&s, "p2", 0, 10).await.unwrap().len(),
        1
    );

    let mut freed = store.prune_doc(&s, "p1", &t(2999), &t(2500)).await.unwrap();
    freed.sort();
    assert_eq!(freed, ["k2"], "the inline one frees no blob");
    assert_eq!(
        covers(store.list_snapshots(&s, "p1").await.unwrap()),
        [5, 3]
    );
    let left = store.list_doc_updates(&s, "p1", 0, 10).await.unwrap();
    assert_eq!(left.iter().map(|u| u.seq).collect::<Vec<_>>(), [6]);
    assert_eq!(store.get_doc(&s, "p1").await.unwrap().pruned_through, 5);
    let log = store.doc_log(&s, "p1", None).await.unwrap();
    assert_eq!(log.snapshot.map(|x| x.covers_seq), Some(5));
    assert_eq!((log.updates.len(), log.last_seq), (1, 6));
    // As of snapshot 3's time the updates after it are pruned.
    let then = t(2003);
    assert_eq!(
        store
            .doc_log(&s, "p1", Some(&then))
            .await
            .unwrap_err()
            .code(),
        "gone"
    );
    assert!(store
        .prune_doc(&s, "p1", &t(2999), &t(2500))
        .await
        .unwrap()
        .is_empty());

    let mut rest = store.delete_doc(&s, &me(), "p1").await.unwrap();
    rest.sort();
    assert_eq!(rest, ["k3", "k5"]);
    assert_eq!(
        store.get_doc(&s, "p1").await.unwrap_err().code(),
        "not_found"
    );
}
