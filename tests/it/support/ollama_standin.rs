//! A protocol-level stand-in for Ollama, which cannot be installed on the
//! machines the tests run on. It answers the one endpoint the embedder
//! calls, `POST /api/embed`, in the shape Ollama documents:
//! `{"model", "input": string | [string]}` → `{"model", "embeddings":
//! [[f32, ...], ...]}`, and 404 `{"error": "model \"x\" not found"}` for a
//! model it does not serve. The vectors are real: the local model's.

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
