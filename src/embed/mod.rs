//! Text embeddings for semantic search: one `Embedder` trait, two sources.
//!
//! - `local`: all-MiniLM-L6-v2 run in-process with candle (embedded mode:
//!   semantic search with no service at all), from files `files` installs
//!   into `<data dir>/models/all-MiniLM-L6-v2/`.
//! - `ollama`: an Ollama server (`STRATA_OLLAMA_URL`), for server mode.
//!
//! Every vector is L2-normalised, so callers compare by dot product.

pub mod files;
pub mod local;
pub mod ollama;

use crate::config::Config;
use std::sync::Arc;

pub use local::LocalEmbedder;
pub use ollama::OllamaEmbedder;

/// A source of embeddings.
#[async_trait::async_trait]
pub trait Embedder: Send + Sync {
    /// Identity of the model, stored with each vector so that a model change
    /// re-embeds: e.g. "local:all-MiniLM-L6-v2" or "ollama:nomic-embed-text".
    fn model(&self) -> &str;
    fn dimensions(&self) -> usize;
    /// One L2-normalised vector per text, in order.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError>;
    /// Answers when the source can embed (readiness): a service answers
    /// and has the model. An in-process model has nothing to reach.
    async fn ping(&self) -> Result<(), EmbedError> {
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The service is unreachable or did not answer in time: callers
    /// degrade to what still works and retry later.
    #[error("embedding service unavailable: {0}")]
    Unavailable(String),
    /// Anything else (a bad answer, an unknown model, a failed forward pass).
    #[error("embedding failed: {0}")]
    Failed(String),
}

/// What a caller says when semantic search has no embedder (the 501).
pub fn missing_model_hint() -> &'static str {
    "semantic search needs an embedding model: run `strata model fetch` \
     (or `strata model fetch --from DIR` for files already on disk), \
     or set STRATA_OLLAMA_URL"
}

/// Where `strata model fetch` puts the local model's files.
pub fn local_model_dir(config: &Config) -> std::path::PathBuf {
    config.data_dir.join("models").join(local::MODEL_NAME)
}

/// The configured embedder: Ollama when `STRATA_OLLAMA_URL` is set, else
/// the local model when its files are installed, else none (semantic
/// search then answers 501 with `missing_model_hint`). Loading the local
/// model reads ~90 MB; call once and share the handle.
pub fn from_config(config: &Config) -> anyhow::Result<Option<Arc<dyn Embedder>>> {
    if let Some(url) = &config.embed.ollama_url {
        let dimensions = usize::try_from(config.embed.dimensions)?;
        let embedder = OllamaEmbedder::new(url, &config.embed.model, dimensions)?;
        return Ok(Some(Arc::new(embedder)));
    }
    let dir = local_model_dir(config);
    if !files::present(&dir) {
        return Ok(None);
    }
    Ok(Some(Arc::new(LocalEmbedder::load(&dir)?)))
}

/// Scales `v` to unit length (a zero vector stays zero).
pub(crate) fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_gives_unit_length_and_keeps_zero() {
        let mut v = vec![3.0, 4.0];
        normalize(&mut v);
        assert_eq!(v, vec![0.6, 0.8]);
        let mut z = vec![0.0; 3];
        normalize(&mut z);
        assert_eq!(z, vec![0.0; 3]);
    }
}
