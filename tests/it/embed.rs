//! The embedding layer: the local model's vectors (meaning, batching,
//! padding, truncation), Ollama through its stand-in, degrading when it is
//! unreachable, the choice of embedder, and installing the model files.
//!
//! The model comes from `STRATA_TEST_MODEL_DIR` (ops/test-model.sh installs
//! it); without it those cases skip with a line saying so.

use crate::support::{self, ollama_standin};
use std::collections::HashMap;
use std::path::PathBuf;
use strata::config::Config;
use strata::embed::{self, files, EmbedError, Embedder, LocalEmbedder, OllamaEmbedder};
use tokio::sync::OnceCell;

const MODEL: &[&str] = &["STRATA_TEST_MODEL_DIR"];

fn model_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("STRATA_TEST_MODEL_DIR").unwrap())
}

/// The model, loaded once for every case of the process.
async fn local() -> LocalEmbedder {
    static MODEL: OnceCell<LocalEmbedder> = OnceCell::const_new();
    MODEL
        .get_or_init(|| async {
            tokio::task::spawn_blocking(|| LocalEmbedder::load(&model_dir()).unwrap())
                .await
                .unwrap()
        })
        .await
        .clone()
}

fn texts(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn assert_unit(v: &[f32]) {
    assert_eq!(v.len(), 384);
    assert!(v.iter().all(|x| x.is_finite()));
    let norm = dot(v, v).sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
}

#[tokio::test]
async fn local_vectors_are_unit_length_and_near_in_meaning() {
    if support::skip_without(MODEL) {
        return;
    }
    let model = local().await;
    assert_eq!(model.model(), "local:all-MiniLM-L6-v2");
    assert_eq!(model.dimensions(), 384);
    let v = model
        .embed(&texts(&["car", "vehicle", "banana"]))
        .await
        .unwrap();
    v.iter().for_each(|v| assert_unit(v));
    let (vehicle, banana) = (dot(&v[0], &v[1]), dot(&v[0], &v[2]));
    eprintln!("cos(car, vehicle) = {vehicle:.3}, cos(car, banana) = {banana:.3}");
    assert!(vehicle > 0.8, "car/vehicle {vehicle}");
    assert!(
        vehicle > banana + 0.3,
        "car/vehicle {vehicle}, car/banana {banana}"
    );
    assert!(model.embed(&[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_batch_gives_the_vectors_of_its_texts_alone() {
    if support::skip_without(MODEL) {
        return;
    }
    let model = local().await;
    // More than one forward pass (32 texts each), lengths far apart, so
    // every pass pads some texts.
    let batch: Vec<String> = (0..40)
        .map(|i| {
            let words = ["the", "quiet", "harbour", "ships", "cargo", "at", "dawn"];
            (0..=(i % 13) * 3)
                .map(|j| words[(i + j) % words.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .chain([String::new(), "Ünïcödé, emoji 🚗 and 汽车".to_string()])
        .collect();
    let together = model.embed(&batch).await.unwrap();
    assert_eq!(together.len(), batch.len());
    for (text, v) in batch.iter().zip(&together) {
        let alone = model.embed(std::slice::from_ref(text)).await.unwrap();
        let d = max_difference(v, &alone[0]);
        assert!(d < 1e-5, "{text:?} differs by {d} in a batch");
        assert_unit(v);
    }
}

#[tokio::test]
async fn long_texts_are_cut_at_256_tokens_not_128() {
    if support::skip_without(MODEL) {
        return;
    }
    let model = local().await;
    // Common words, one token each.
    let words = |n: usize, from: usize| {
        let pool = [
            "the", "river", "runs", "past", "an", "old", "mill", "and", "a", "green", "field",
        ];
        (0..n)
            .map(|i| pool[(from + i) % pool.len()])
            .collect::<Vec<_>>()
            .join(" ")
    };
    let head = words(300, 0);
    let a = format!("{head} {}", words(50, 3));
    let b = format!(
        "{head} {}",
        texts(&["money markets fell sharply today"; 10]).join(" ")
    );
    // Same first 150 words, different after: within 256 tokens.
    let c = format!(
        "{} {}",
        words(150, 0),
        texts(&["money markets fell sharply today"; 30]).join(" ")
    );
    let v = model
        .embed(&[a.clone(), b, c, "short".to_string()])
        .await
        .unwrap();
    v.iter().for_each(|v| assert_unit(v));
    let same = max_difference(&v[0], &v[1]);
    assert!(
        same < 1e-5,
        "past 256 tokens the texts should be cut alike: {same}"
    );
    assert!(dot(&v[0], &v[2]) < 0.99, "words 150-256 must count");
    let alone = model.embed(&[a]).await.unwrap();
    assert!(max_difference(&v[0], &alone[0]) < 1e-5);
}

#[tokio::test]
async fn ollama_through_the_standin_gives_the_local_vectors() {
    if support::skip_without(MODEL) {
        return;
    }
    let model = local().await;
    let standin = ollama_standin::start("all-minilm", model.clone()).await;
    let ollama = OllamaEmbedder::new(&standin.url, "all-minilm", 384).unwrap();
    assert_eq!(ollama.model(), "ollama:all-minilm");
    assert_eq!(ollama.dimensions(), 384);
    let input = texts(&["car", "a vehicle on the road", "banana bread"]);
    let remote = ollama.embed(&input).await.unwrap();
    let here = model.embed(&input).await.unwrap();
    for (r, h) in remote.iter().zip(&here) {
        assert_unit(r);
        assert!(max_difference(r, h) < 1e-6);
    }

    let unknown = OllamaEmbedder::new(&standin.url, "nomic-embed-text", 768).unwrap();
    match unknown.embed(&input).await {
        Err(EmbedError::Failed(m)) => assert!(m.contains("not found"), "{m}"),
        other => panic!("an unknown model must fail: {other:?}"),
    }
    let wrong = OllamaEmbedder::new(&standin.url, "all-minilm", 768).unwrap();
    match wrong.embed(&input).await {
        Err(EmbedError::Failed(m)) => assert!(m.contains("STRATA_EMBED_DIMENSIONS"), "{m}"),
        other => panic!("a dimension mismatch must fail: {other:?}"),
    }

    // STRATA_OLLAMA_URL chooses Ollama even when the local model is installed.
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(
        dir.path(),
        &[
            ("STRATA_OLLAMA_URL", &standin.url),
            ("STRATA_EMBED_MODEL", "all-minilm"),
            ("STRATA_EMBED_DIMENSIONS", "384"),
        ],
    );
    files::copy_from(&model_dir(), &embed::local_model_dir(&config))
        .await
        .unwrap();
    let chosen = embed::from_config(&config).unwrap().unwrap();
    assert_eq!(chosen.model(), "ollama:all-minilm");
    assert_eq!(chosen.embed(&input[..1]).await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_unreachable_ollama_is_unavailable() {
    // A port that was just free: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let ollama = OllamaEmbedder::new(&format!("http://127.0.0.1:{port}"), "x", 768).unwrap();
    match ollama.embed(&texts(&["car"])).await {
        Err(EmbedError::Unavailable(_)) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(OllamaEmbedder::new("not a url", "x", 768).is_err());
}

fn config_with(data_dir: &std::path::Path, pairs: &[(&str, &str)]) -> Config {
    let mut vars: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    vars.insert("STRATA_DATA_DIR".into(), data_dir.display().to_string());
    Config::from_vars(vars).unwrap()
}

#[tokio::test]
async fn without_a_model_or_a_url_there_is_no_embedder() {
    let dir = tempfile::tempdir().unwrap();
    assert!(embed::from_config(&Config::embedded(dir.path()))
        .unwrap()
        .is_none());
    assert!(embed::missing_model_hint().contains("strata model fetch"));
    assert!(embed::missing_model_hint().contains("STRATA_OLLAMA_URL"));
}

#[tokio::test]
async fn copy_from_refuses_a_tampered_file_and_takes_the_real_ones() {
    if support::skip_without(MODEL) {
        return;
    }
    let tampered = tempfile::tempdir().unwrap();
    for f in &files::PINNED {
        std::fs::copy(model_dir().join(f.name), tampered.path().join(f.name)).unwrap();
    }
    let mut tokenizer = std::fs::read(tampered.path().join("tokenizer.json")).unwrap();
    tokenizer.push(b'\n');
    std::fs::write(tampered.path().join("tokenizer.json"), tokenizer).unwrap();

    let dest = tempfile::tempdir().unwrap();
    let target = dest.path().join("models/all-MiniLM-L6-v2");
    let err = files::copy_from(tampered.path(), &target)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tokenizer.json") && err.contains("sha256"),
        "{err}"
    );
    // Nothing installed, nothing left behind.
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
    assert!(!files::present(&target));

    let missing = tempfile::tempdir().unwrap();
    assert!(files::copy_from(missing.path(), &target).await.is_err());

    files::copy_from(&model_dir(), &target).await.unwrap();
    assert!(files::present(&target));
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 3);
    for f in &files::PINNED {
        let bytes = std::fs::read(target.join(f.name)).unwrap();
        assert_eq!(strata::digest::sha256_hex(&bytes), f.sha256, "{}", f.name);
    }
}

#[tokio::test]
async fn model_fetch_from_a_directory_installs_a_working_model() {
    if support::skip_without(MODEL) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = Config::embedded(dir.path());
    strata::cli::model_fetch(&config, Some(&model_dir()))
        .await
        .unwrap();
    assert!(dir
        .path()
        .join("models/all-MiniLM-L6-v2/model.safetensors")
        .is_file());
    let embedder = embed::from_config(&config).unwrap().unwrap();
    assert_eq!(embedder.model(), "local:all-MiniLM-L6-v2");
    let v = embedder.embed(&texts(&["car"])).await.unwrap();
    let reference = local().await.embed(&texts(&["car"])).await.unwrap();
    assert!(max_difference(&v[0], &reference[0]) < 1e-6);
}

/// An id purged and made again within one batch of the feed gets the new
/// entity's vector: the old one (a higher version) does not block it.
#[tokio::test]
async fn an_entity_purged_and_made_again_gets_its_new_vector() {
    use strata::domain::{Caller, Scope, WriteOp};
    use strata::feed::Consumer;
    if support::skip_without(MODEL) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = support::sqlite_store(dir.path()).await;
    let caller = Caller::new("tester");
    store.create_org(&caller, "o", "O").await.unwrap();
    store.create_project(&caller, "o", "p", "P").await.unwrap();
    let scope = Scope::new("o", "p");
    let props = |text: &str| {
        serde_json::json!({"name": text})
            .as_object()
            .unwrap()
            .clone()
    };
    let create = |text: &str| WriteOp::CreateEntity {
        id: "e".into(),
        entity_type: "t".into(),
        properties: props(text),
    };
    let patch = WriteOp::PatchEntity {
        id: "e".into(),
        patch: serde_json::json!({"name": "banana bread"}),
        entity_type: None,
        expected_version: None,
    };
    store
        .write(&scope, &caller, vec![create("banana"), patch])
        .await
        .unwrap();
    let model = std::sync::Arc::new(local().await);
    let consumer = strata::feed::embeddings::EmbeddingConsumer::new(store.clone(), model.clone());
    consumer
        .apply(&store.read_feed(0, 100).await.unwrap())
        .await
        .unwrap();
    let after = store.feed_bounds().await.unwrap().head;

    let purge = WriteOp::PurgeEntity { id: "e".into() };
    store.write(&scope, &caller, vec![purge]).await.unwrap();
    store
        .write(&scope, &caller, vec![create("car engine")])
        .await
        .unwrap();
    consumer
        .apply(&store.read_feed(after, 100).await.unwrap())
        .await
        .unwrap();

    let text = strata::search::text_of(&props("car engine"));
    let query = model.embed(&[text]).await.unwrap().remove(0);
    let hits = store
        .search_vectors(&scope, model.model(), &query, None, 1)
        .await
        .unwrap();
    assert_eq!(hits[0].id, "e");
    assert!(hits[0].score > 0.99, "the new entity's vector: {hits:?}");
}
