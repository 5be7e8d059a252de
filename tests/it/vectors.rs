//! Entity embeddings in the store, on both backends: the newest version's
//! vector is kept, searches rank by cosine within one project, one model
//! and an optional type, and deleted entities' vectors go. On PGlite
//! (pgvector 0.8) the same case runs through the HNSW index.

use crate::support;
use strata::domain::*;
use strata::store::{DynStore, Maintenance};

on_both_stores!(vectors_rank_by_cosine_within_one_project_and_model);

/// With no memory for vector sets, SQLite ranks by its exact scan of the
/// table, with the same answers.
#[tokio::test]
async fn sqlite_without_vector_memory_scans_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = strata::config::Config::embedded(dir.path());
    config.sqlite.vector_memory_mb = 0;
    let store = strata::store::open(&config.database_url, &config.store_settings())
        .await
        .unwrap();
    vectors_rank_by_cosine_within_one_project_and_model(store).await
}

fn unit(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

fn vector(id: &str, entity_type: &str, version: i64, v: &[f32]) -> EntityVector {
    EntityVector {
        id: id.into(),
        entity_type: entity_type.into(),
        version,
        vector: unit(v),
    }
}

fn ids(hits: &[VectorHit]) -> Vec<&str> {
    hits.iter().map(|h| h.id.as_str()).collect()
}

async fn vectors_rank_by_cosine_within_one_project_and_model(store: DynStore) {
    let caller = Caller::new("tester");
    store.create_org(&caller, "acme", "Acme").await.unwrap();
    rank_within_one_project_and_model(&store, "acme").await
}

/// The model of the cases (quoted in the SQL of pgvector's index: a quote
/// and a backslash make sure the quoting holds).
const MODEL: &str = "local:test's\\model";

/// The case in projects `app` and `other` of `org` (which exists).
async fn rank_within_one_project_and_model(store: &DynStore, org: &str) {
    let caller = Caller::new("tester");
    for p in ["app", "other"] {
        store.create_project(&caller, org, p, p).await.unwrap();
    }
    let (app, other) = (Scope::new(org, "app"), Scope::new(org, "other"));
    let m = MODEL;
    store
        .put_vectors(
            &app,
            m,
            vec![
                vector("car", "thing", 1, &[1.0, 0.1, 0.0]),
                vector("truck", "thing", 1, &[0.9, 0.3, 0.0]),
                vector("banana", "food", 1, &[0.0, 0.2, 1.0]),
            ],
        )
        .await
        .unwrap();
    store
        .put_vectors(&other, m, vec![vector("car", "thing", 1, &[1.0, 0.0, 0.0])])
        .await
        .unwrap();
    let q = unit(&[1.0, 0.0, 0.0]);
    let hits = store.search_vectors(&app, m, &q, None, 10).await.unwrap();
    assert_eq!(ids(&hits), ["car", "truck", "banana"]);
    assert!(hits[0].score > 0.99 && hits[0].score <= 1.0 + 1e-6);
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    // Top-k, a type filter inside the scan, another model sees nothing.
    let top = store.search_vectors(&app, m, &q, None, 1).await.unwrap();
    assert_eq!(ids(&top), ["car"]);
    let food = store
        .search_vectors(&app, m, &q, Some("food"), 10)
        .await
        .unwrap();
    assert_eq!(ids(&food), ["banana"]);
    assert!(store
        .search_vectors(&app, "other-model", &q, None, 10)
        .await
        .unwrap()
        .is_empty());
    // An older version's vector does not replace a newer one's.
    store
        .put_vectors(&app, m, vec![vector("car", "thing", 3, &[0.0, 0.0, 1.0])])
        .await
        .unwrap();
    store
        .put_vectors(&app, m, vec![vector("car", "thing", 2, &[1.0, 0.0, 0.0])])
        .await
        .unwrap();
    let hits = store.search_vectors(&app, m, &q, None, 10).await.unwrap();
    assert_eq!(ids(&hits), ["truck", "banana", "car"]);
    // Deleted entities' vectors go; other projects keep theirs.
    store
        .delete_vectors(&app, &["truck".to_string(), "absent".to_string()])
        .await
        .unwrap();
    let hits = store.search_vectors(&app, m, &q, None, 10).await.unwrap();
    assert_eq!(ids(&hits), ["banana", "car"]);
    let theirs = store.search_vectors(&other, m, &q, None, 10).await.unwrap();
    assert_eq!(ids(&theirs), ["car"]);
    // Another model's vector replaces the entity's row: this model's
    // search no longer finds it, the other model's does.
    store
        .put_vectors(
            &app,
            "other-model",
            vec![vector("banana", "food", 1, &[0.0, 0.2, 1.0])],
        )
        .await
        .unwrap();
    let hits = store.search_vectors(&app, m, &q, None, 10).await.unwrap();
    assert_eq!(ids(&hits), ["car"]);
    let hits = store
        .search_vectors(&app, "other-model", &q, None, 10)
        .await
        .unwrap();
    assert_eq!(ids(&hits), ["banana"]);
    // Deleting the project takes its vectors.
    store.delete_project(&caller, org, "app").await.unwrap();
    store
        .create_project(&caller, org, "app", "app")
        .await
        .unwrap();
    assert!(store
        .search_vectors(&app, m, &q, None, 10)
        .await
        .unwrap()
        .is_empty());
}

/// Random 3-d unit vectors (the case's dimension), seeded.
fn noise(seed: u64, n: usize) -> Vec<Vec<f32>> {
    use rand::{Rng, SeedableRng};
    let mut r = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            unit(&[
                r.random::<f32>() - 0.5,
                r.random::<f32>() - 0.5,
                r.random::<f32>() - 0.5,
            ])
        })
        .collect()
}

/// PGlite has pgvector 0.8: the store adds its column and an HNSW index per
/// model, and the same case passes through it. A crowded project of the
/// same model makes the planner prefer the index (on a few rows it scans),
/// and shows that the walk stays inside one project and type.
#[tokio::test]
async fn vectors_on_pglite_go_through_the_hnsw_index() {
    if support::skip_without(support::PGLITE) {
        return;
    }
    use strata::store::postgres::{hnsw_index_name, hnsw_search_sql, ExtensionMode, VectorParam};
    let _turn = support::PGLITE_SESSION.lock().await;
    // PGlite keeps one database for the whole test process: an org of its own.
    let org = format!("hnsw{}", rand::random::<u32>());
    let dir = tempfile::tempdir().unwrap();
    let mut config = support::pglite_config(dir.path());
    config.postgres.pgvector = ExtensionMode::On;
    let store = support::open(&config).await.unwrap();
    let caller = Caller::new("tester");
    let crowd = Scope::new(&org, "crowd");
    store.create_org(&caller, &org, "Org").await.unwrap();
    store
        .create_project(&caller, &org, "crowd", "crowd")
        .await
        .unwrap();
    let points = noise(7, 1500);
    let types = ["even", "odd"];
    for (b, chunk) in points.chunks(500).enumerate() {
        let batch = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let n = b * 500 + i;
                vector(&format!("n{n}"), types[n % 2], 1, v)
            })
            .collect();
        store.put_vectors(&crowd, MODEL, batch).await.unwrap();
    }
    // Statistics, as the daily job keeps them: the planner sees the crowd.
    store.maintain(Maintenance::Daily).await.unwrap();
    // The shared case, in projects beside the crowd (same model, same index).
    rank_within_one_project_and_model(&store, &org).await;

    // The crowd's answers are the exact top-k among the candidates: ranked
    // by score, of the asked type only, and (nearly) the exact top-k.
    let mut found = 0;
    let queries = noise(8, 20);
    for (qi, q) in queries.iter().enumerate() {
        let entity_type = types[qi % 2];
        let hits = store
            .search_vectors(&crowd, MODEL, q, Some(entity_type), 10)
            .await
            .unwrap();
        assert_eq!(hits.len(), 10);
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
        let mut exact: Vec<(f32, String)> = points
            .iter()
            .enumerate()
            .filter(|(n, _)| n % 2 == qi % 2)
            .map(|(n, v)| (v.iter().zip(q).map(|(a, b)| a * b).sum(), format!("n{n}")))
            .collect();
        exact.sort_by(|a, b| b.0.total_cmp(&a.0));
        let want: Vec<&str> = exact[..10].iter().map(|(_, id)| id.as_str()).collect();
        for h in &hits {
            let n: usize = h.id[1..].parse().unwrap();
            assert_eq!(types[n % 2], entity_type, "{} is of another type", h.id);
        }
        found += hits
            .iter()
            .filter(|h| want.contains(&h.id.as_str()))
            .count();
    }
    assert!(found >= 180, "recall@10 {found}/200");
    // Deletes leave the index's answers too.
    let gone: Vec<String> = (0..1500).step_by(2).map(|n| format!("n{n}")).collect();
    store.delete_vectors(&crowd, &gone).await.unwrap();
    let hits = store
        .search_vectors(&crowd, MODEL, &queries[0], Some("even"), 10)
        .await
        .unwrap();
    assert!(hits.is_empty(), "{hits:?}");
    store.close().await;
    drop(store);

    // The index exists as the store meant it, and its search statement uses it.
    let (client, connection) = support::connect_pglite().await;
    let driver = tokio::spawn(connection);
    let name = hnsw_index_name(MODEL, 3);
    let def: String = client
        .query_one(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'strata' AND indexname = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        def.contains("USING hnsw") && def.contains("vector_ip_ops"),
        "{def}"
    );
    let schema: String = client
        .query_one(
            "SELECT n.nspname::text FROM pg_extension e
             JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    client
        .batch_execute("SET search_path = strata; ANALYZE entity_vectors")
        .await
        .unwrap();
    let plan: Vec<String> = client
        .query(
            &format!("EXPLAIN {}", hnsw_search_sql(&schema, MODEL, 3)),
            &[
                &org,
                &"crowd",
                &Some("odd"),
                &VectorParam(&queries[0]),
                &10i64,
            ],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let plan = plan.join("\n");
    assert!(plan.contains(&format!("Index Scan using {name}")), "{plan}");
    client.batch_execute("RESET search_path").await.unwrap();
    drop(client);
    let _ = driver.await;
}
