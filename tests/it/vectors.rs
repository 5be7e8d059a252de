//! Entity embeddings in the store, on both backends: the newest version's
//! vector is kept, searches rank by cosine within one project, one model
//! and an optional type, and deleted entities' vectors go.

use strata::domain::*;
use strata::store::DynStore;

on_both_stores!(vectors_rank_by_cosine_within_one_project_and_model);

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
    for p in ["app", "other"] {
        store.create_project(&caller, "acme", p, p).await.unwrap();
    }
    let (app, other) = (Scope::new("acme", "app"), Scope::new("acme", "other"));
    let m = "local:test";
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
    // Deleting the project takes its vectors.
    store.delete_project(&caller, "acme", "app").await.unwrap();
    store
        .create_project(&caller, "acme", "app", "app")
        .await
        .unwrap();
    assert!(store
        .search_vectors(&app, m, &q, None, 10)
        .await
        .unwrap()
        .is_empty());
}
