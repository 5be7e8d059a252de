//! all-MiniLM-L6-v2 in-process: a 6-layer BERT (candle) over the model's
//! WordPiece tokenizer, mean-pooled over real tokens and L2-normalised, as
//! sentence-transformers computes it. 384 dimensions.

use super::{normalize, EmbedError, Embedder};
use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// The model's directory name under `<data dir>/models/`.
pub const MODEL_NAME: &str = "all-MiniLM-L6-v2";
const MODEL_ID: &str = "local:all-MiniLM-L6-v2";
pub const DIMENSIONS: usize = 384;
/// sentence-transformers' max_seq_length for this model. The shipped
/// tokenizer.json says 128 (and pads every text to 128): both are replaced.
const MAX_TOKENS: usize = 256;
/// Texts per forward pass: large enough to use the matrix kernels well,
/// small enough that a batch of 256-token texts stays near 100 MB.
const BATCH: usize = 32;

#[derive(Clone)]
pub struct LocalEmbedder {
    model: Arc<Model>,
}

struct Model {
    bert: BertModel,
    tokenizer: Tokenizer,
    /// One call of several passes at a time, spread over `lanes`:
    /// concurrent ones would gain nothing and multiply the memory held.
    bulk: Mutex<()>,
    /// One call of one pass at a time, on its caller's thread (`embed_all`).
    single: Mutex<()>,
    /// One thread per core, each running whole forward passes (`lanes`).
    lanes: rayon::ThreadPool,
}

impl LocalEmbedder {
    /// Loads the model from `dir` (`model.safetensors`, `tokenizer.json`,
    /// `config.json`). Blocking: reads ~90 MB.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))
        };
        let config: BertConfig = serde_json::from_slice(&read("config.json")?)
            .context("config.json is not a BERT configuration")?;
        let weights = VarBuilder::from_buffered_safetensors(
            read("model.safetensors")?,
            DType::F32,
            &Device::Cpu,
        )?;
        let bert = BertModel::load(weights, &config).context("cannot load the BERT weights")?;

        let mut tokenizer = Tokenizer::from_bytes(read("tokenizer.json")?)
            .map_err(|e| anyhow::anyhow!("tokenizer.json: {e}"))?;
        // Pad each batch to its longest text only, keeping the shipped pad token.
        let padding = PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..tokenizer.get_padding().cloned().unwrap_or_default()
        };
        tokenizer.with_padding(Some(padding));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(|e| anyhow::anyhow!("tokenizer truncation: {e}"))?;

        Ok(LocalEmbedder {
            model: Arc::new(Model {
                bert,
                tokenizer,
                bulk: Mutex::new(()),
                single: Mutex::new(()),
                lanes: lanes()?,
            }),
        })
    }

    /// `embed` for callers already off the async runtime (the benchmark).
    pub fn embed_blocking(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.model.embed_all(texts)
    }
}

#[async_trait::async_trait]
impl Embedder for LocalEmbedder {
    fn model(&self) -> &str {
        MODEL_ID
    }

    fn dimensions(&self) -> usize {
        DIMENSIONS
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        // Milliseconds to seconds of CPU: never on an async worker.
        let model = self.model.clone();
        let texts = texts.to_vec();
        tokio::task::spawn_blocking(move || model.embed_all(&texts))
            .await
            .map_err(|e| EmbedError::Failed(format!("embedding task: {e}")))?
    }
}

/// candle splits every matrix product over `RAYON_NUM_THREADS` threads
/// (every core when unset). With `lanes` running one forward pass per core
/// that split only adds waiting. On 2 AVX2 cores: one pass at a time,
/// split, 196 sentences/s; lanes, split, 165; lanes, unsplit, 274. `main`
/// calls this before any thread starts (the environment is not safe to
/// change later); an operator's own setting wins.
pub fn single_threaded_kernels() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", "1");
    }
}

/// The pool whose threads each run whole forward passes, one per core.
/// Batches side by side use the cores better than one batch whose every
/// matrix product is split over them (`single_threaded_kernels`).
fn lanes() -> anyhow::Result<rayon::ThreadPool> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    rayon::ThreadPoolBuilder::new()
        .num_threads(cores)
        .thread_name(|i| format!("strata-embed-{i}"))
        .build()
        .context("cannot start the embedding threads")
}

impl Model {
    /// A call that fits one pass (a search's query) runs on its caller's
    /// thread beside any bulk call, instead of waiting for all of one
    /// (a second and more of 256 texts). A bulk call's texts are sorted by
    /// length (similar lengths pad less; characters stand in for tokens),
    /// cut into passes of `BATCH` and spread over the lanes.
    fn embed_all(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        use rayon::prelude::*;
        let failed = |e: anyhow::Error| EmbedError::Failed(format!("local model: {e}"));
        if texts.len() <= BATCH {
            let _single = self.single.lock().unwrap_or_else(|p| p.into_inner());
            return self
                .forward(texts.iter().map(String::as_str).collect())
                .map_err(failed);
        }
        let _bulk = self.bulk.lock().unwrap_or_else(|p| p.into_inner());
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| texts[i].len());
        let passes: Vec<Vec<Vec<f32>>> = self
            .lanes
            .install(|| {
                order
                    .par_chunks(BATCH)
                    .map(|pass| self.forward(pass.iter().map(|&i| texts[i].as_str()).collect()))
                    .collect::<anyhow::Result<_>>()
            })
            .map_err(failed)?;
        let mut out = vec![Vec::new(); texts.len()];
        for (&i, v) in order.iter().zip(passes.into_iter().flatten()) {
            out[i] = v;
        }
        Ok(out)
    }

    /// One forward pass: token states averaged over the attention mask
    /// (padding excluded), then scaled to unit length.
    fn forward(&self, batch: Vec<&str>) -> anyhow::Result<Vec<Vec<f32>>> {
        let encodings = self
            .tokenizer
            .encode_batch(batch, true)
            .map_err(|e| anyhow::anyhow!("tokenizer: {e}"))?;
        let rows = encodings.len();
        let width = encodings.first().map_or(0, |e| e.len());
        let flat = |f: fn(&tokenizers::Encoding) -> &[u32]| {
            let v: Vec<u32> = encodings
                .iter()
                .flat_map(|e| f(e).iter().copied())
                .collect();
            Tensor::from_vec(v, (rows, width), &Device::Cpu)
        };
        let ids = flat(tokenizers::Encoding::get_ids)?;
        let mask = flat(tokenizers::Encoding::get_attention_mask)?;
        let type_ids = ids.zeros_like()?;
        let states = self.bert.forward(&ids, &type_ids, Some(&mask))?;
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let sums = states.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?;
        let mut vectors: Vec<Vec<f32>> = sums.broadcast_div(&counts)?.to_vec2()?;
        vectors.iter_mut().for_each(|v| normalize(v));
        Ok(vectors)
    }
}
