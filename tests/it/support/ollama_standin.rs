//! A protocol-level stand-in for Ollama, which cannot be installed on the
//! machines the tests run on. It answers the endpoints the daemon calls,
//! in the shapes Ollama documents: `POST /api/embed`,
//! `{"model", "input": string | [string]}` → `{"model", "embeddings":
//! [[f32, ...], ...]}`, and 404 `{"error": "model \"x\" not found"}` for a
//! model it does not serve. The vectors are real: the local model's. And
//! `POST /api/show` (`{"model"}`, or the older `{"name"}`), which readiness
//! asks: the model's details, or 404 for a model not pulled.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use strata::embed::{Embedder, LocalEmbedder};

/// A running stand-in; stops when dropped.
pub struct OllamaStandin {
    /// `http://127.0.0.1:<port>`, as STRATA_OLLAMA_URL would be.
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OllamaStandin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Served {
    model: String,
    embedder: LocalEmbedder,
}

#[derive(Deserialize)]
struct EmbedRequest {
    model: String,
    input: Input,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Input {
    One(String),
    Many(Vec<String>),
}

/// Serves `model` (any name) with the vectors of `embedder`.
pub async fn start(model: &str, embedder: LocalEmbedder) -> OllamaStandin {
    let served = Arc::new(Served {
        model: model.to_string(),
        embedder,
    });
    let app = Router::new()
        .route("/api/embed", post(embed))
        .route("/api/show", post(show))
        .with_state(served);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    OllamaStandin { url, task }
}

async fn embed(
    State(served): State<Arc<Served>>,
    Json(request): Json<EmbedRequest>,
) -> (StatusCode, Json<Value>) {
    if request.model != served.model {
        let error = format!("model \"{}\" not found", request.model);
        return (StatusCode::NOT_FOUND, Json(json!({ "error": error })));
    }
    let texts = match request.input {
        Input::One(text) => vec![text],
        Input::Many(texts) => texts,
    };
    match served.embedder.embed(&texts).await {
        Ok(embeddings) => (
            StatusCode::OK,
            Json(json!({ "model": served.model, "embeddings": embeddings })),
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "error": e.to_string() })),
        ),
    }
}

#[derive(Deserialize)]
struct ShowRequest {
    #[serde(alias = "name")]
    model: String,
}

async fn show(
    State(served): State<Arc<Served>>,
    Json(request): Json<ShowRequest>,
) -> (StatusCode, Json<Value>) {
    if request.model != served.model {
        let error = format!("model '{}' not found", request.model);
        return (StatusCode::NOT_FOUND, Json(json!({ "error": error })));
    }
    (
        StatusCode::OK,
        Json(json!({
            "license": "",
            "modelfile": format!("FROM {}", served.model),
            "parameters": "",
            "template": "",
            "details": {"format": "gguf", "family": "bert", "parameter_size": "23M"},
            "model_info": {"general.architecture": "bert"},
            "capabilities": ["embedding"]
        })),
    )
}
