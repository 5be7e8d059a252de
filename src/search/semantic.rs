//! Semantic and hybrid search over the store's entity vectors: the query is
//! embedded by the same model the embedding consumer uses, the nearest
//! vectors of the project are found, and each hit is loaded as it is now.

use super::fusion::reciprocal_rank_fusion;
use crate::domain::{DomainError, DomainResult, Scope, SearchHit};
use crate::embed::{EmbedError, Embedder};
use crate::store::DynStore;
use std::collections::HashMap;

/// Vectors asked for beyond the limit: a hit whose entity was deleted since
/// it was embedded is skipped, and the page still fills.
const SPARE: usize = 16;

/// The live entities most similar in meaning to `q`, best first, scored by
/// cosine similarity.
pub async fn semantic(
    store: &DynStore,
    embedder: &dyn Embedder,
    scope: &Scope,
    q: &str,
    entity_type: Option<&str>,
    limit: usize,
) -> DomainResult<Vec<SearchHit>> {
    let query = embed_query(embedder, q).await?;
    let near = store
        .search_vectors(scope, embedder.model(), &query, entity_type, limit + SPARE)
        .await?;
    let ranked = near
        .into_iter()
        .map(|hit| (hit.id, f64::from(hit.score)))
        .collect();
    super::hits::load(store, scope, q, entity_type, ranked, limit).await
}

/// Text and semantic hits fused by reciprocal rank (`fusion`): each list
/// was filtered inside its own engine, and the fused score replaces both.
pub fn fuse(text: Vec<SearchHit>, semantic: Vec<SearchHit>, limit: usize) -> Vec<SearchHit> {
    let ranked = |hits: &[SearchHit]| hits.iter().map(|h| h.entity.id.clone()).collect();
    let fused = reciprocal_rank_fusion(&[ranked(&text), ranked(&semantic)], limit);
    let mut by_id: HashMap<String, SearchHit> = semantic
        .into_iter()
        .chain(text) // a text hit's highlights win
        .map(|h| (h.entity.id.clone(), h))
        .collect();
    fused
        .into_iter()
        .filter_map(|(id, score)| by_id.remove(&id).map(|hit| SearchHit { score, ..hit }))
        .collect()
}

async fn embed_query(embedder: &dyn Embedder, q: &str) -> DomainResult<Vec<f32>> {
    let mut vectors = embedder.embed(&[q.to_owned()]).await.map_err(|e| match e {
        EmbedError::Unavailable(why) => DomainError::Unavailable(format!(
            "the embedding service does not answer ({why}); text search still works"
        )),
        EmbedError::Failed(why) => {
            DomainError::Unavailable(format!("the query could not be embedded: {why}"))
        }
    })?;
    vectors
        .pop()
        .ok_or_else(|| DomainError::Unavailable("the embedder returned no vector".into()))
}
