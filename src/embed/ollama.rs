//! Embeddings from an Ollama server (`POST /api/embed`, through ollama-rs).

use super::{normalize, EmbedError, Embedder};
use anyhow::Context;
use ollama_rs::error::OllamaError;
use ollama_rs::generation::embeddings::request::GenerateEmbeddingsRequest;
use ollama_rs::Ollama;
use std::time::Duration;

/// How long one request may take. A loaded model answers a batch in well
/// under a second; a first request also loads the model into memory.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct OllamaEmbedder {
    client: Ollama,
    /// The name Ollama knows the model by.
    name: String,
    /// "ollama:<name>", the identity stored with each vector.
    model: String,
    dimensions: usize,
}

impl OllamaEmbedder {
    /// A client of the server at `url` for `model`, whose vectors must have
    /// `dimensions` entries. Nothing is sent until the first `embed`.
    pub fn new(url: &str, model: &str, dimensions: usize) -> anyhow::Result<Self> {
        let mut url = reqwest::Url::parse(url)
            .with_context(|| format!("STRATA_OLLAMA_URL is not a URL: {url:?}"))?;
        // ollama-rs appends "api/embed" to the URL's text: a base path
        // must end in a slash to keep its last segment.
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        Ok(OllamaEmbedder {
            client: Ollama::builder().url(url).reqwest_client(http).build(),
            name: model.to_string(),
            model: format!("ollama:{model}"),
            dimensions,
        })
    }
}

#[async_trait::async_trait]
impl Embedder for OllamaEmbedder {
    fn model(&self) -> &str {
        &self.model
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let request = GenerateEmbeddingsRequest::new(self.name.clone(), texts.to_vec().into());
        let response = self
            .client
            .generate_embeddings(request)
            .await
            .map_err(|e| classify(e, &self.name))?;
        let mut vectors = response.embeddings;
        if vectors.len() != texts.len() {
            return Err(EmbedError::Failed(format!(
                "Ollama returned {} vectors for {} texts",
                vectors.len(),
                texts.len()
            )));
        }
        if let Some(v) = vectors.iter().find(|v| v.len() != self.dimensions) {
            return Err(EmbedError::Failed(format!(
                "Ollama model {} gives vectors of {} dimensions, but STRATA_EMBED_DIMENSIONS is {}",
                self.name,
                v.len(),
                self.dimensions
            )));
        }
        // Ollama normalises today; the contract of `Embedder` does not rest on it.
        vectors.iter_mut().for_each(|v| normalize(v));
        Ok(vectors)
    }

    /// Ollama answers and has the model (`POST /api/show`, which reads
    /// the model's manifest without loading it); a model not pulled fails.
    async fn ping(&self) -> Result<(), EmbedError> {
        self.client
            .show_model_info(self.name.clone())
            .await
            .map(|_| ())
            .map_err(|e| classify(e, &self.name))
    }
}

/// A server that cannot be reached or does not answer in time is
/// `Unavailable` (callers degrade and retry); what it answers is `Failed`.
fn classify(error: OllamaError, model: &str) -> EmbedError {
    match error {
        OllamaError::ReqwestError(e) if e.is_connect() || e.is_timeout() => {
            EmbedError::Unavailable(format!("Ollama: {e}"))
        }
        OllamaError::Other(body) => {
            EmbedError::Failed(format!("Ollama, model {model}: {}", body.trim()))
        }
        e => EmbedError::Failed(format!("Ollama: {e}")),
    }
}
