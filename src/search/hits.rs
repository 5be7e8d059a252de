//! Ranked entity ids from an engine that follows the change feed
//! (Meilisearch, the entity vectors) become hits as the store has them now:
//! an entity deleted or retyped since it was indexed is left out, so a
//! lagging index never shows stale or deleted data.

use crate::domain::{DomainResult, Scope, SearchHit};
use crate::store::DynStore;
use futures_util::StreamExt;

/// Hits in the order given, at most `limit`, each entity read as it is now.
pub async fn load(
    store: &DynStore,
    scope: &Scope,
    q: &str,
    entity_type: Option<&str>,
    ranked: Vec<(String, f64)>,
    limit: usize,
) -> DomainResult<Vec<SearchHit>> {
    let terms = super::query_terms(q);
    // Futures collected first (rust#102211, see feed::reads).
    let reads: Vec<_> = ranked
        .into_iter()
        .map(|(id, score)| async move {
            crate::feed::current(store, scope, &id)
                .await
                .map(|e| (e, score))
        })
        .collect();
    let loaded: Vec<_> = futures_util::stream::iter(reads)
        .buffered(16)
        .collect()
        .await;
    let mut hits = Vec::with_capacity(limit.min(loaded.len()));
    for found in loaded {
        let (entity, score) = found?;
        let Some(entity) = entity else { continue };
        if entity_type.is_some_and(|t| t != entity.entity_type) {
            continue;
        }
        hits.push(SearchHit {
            highlights: super::highlights(&entity.properties, &terms),
            entity,
            score,
        });
        if hits.len() == limit {
            break;
        }
    }
    Ok(hits)
}
