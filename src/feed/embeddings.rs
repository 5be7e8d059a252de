//! The embedding consumer: keeps one vector per live entity, of the text
//! full-text search indexes (`search::text_of`), made by the configured
//! embedder. Its name carries the model, so a new model is a new consumer:
//! it starts without a cursor and embeds everything again in the background
//! (from the feed, or by `rebuild` once the feed was pruned), while search
//! reads only vectors of the model it embeds queries with.

use super::{all_projects, current_states, entities_by_scope, Consumer, FeedChange};
use crate::domain::{Entity, EntityFilter, EntityVector, PageRequest, Scope};
use crate::embed::Embedder;
use crate::store::DynStore;
use async_trait::async_trait;
use std::sync::Arc;

/// Texts sent to the embedder at once: the local model sorts them by
/// length into passes of 32 spread over the cores, which balance (and pad
/// less) with several passes per core.
const EMBED_BATCH: usize = 256;
/// Prefix of the consumer's name; the model follows it.
pub const NAME_PREFIX: &str = "embeddings/";

pub struct EmbeddingConsumer {
    store: DynStore,
    embedder: Arc<dyn Embedder>,
    name: &'static str,
}

impl EmbeddingConsumer {
    pub fn new(store: DynStore, embedder: Arc<dyn Embedder>) -> Self {
        // One consumer per daemon, made once: its name lives as long.
        let name = Box::leak(format!("{NAME_PREFIX}{}", embedder.model()).into_boxed_str());
        EmbeddingConsumer {
            store,
            embedder,
            name,
        }
    }

    /// Embeds the live entities given and stores their vectors; those with
    /// no text have none.
    async fn embed(&self, scope: &Scope, entities: &[Entity]) -> anyhow::Result<()> {
        let mut texts = Vec::new();
        let mut owners = Vec::new();
        let mut empty = Vec::new();
        for e in entities {
            let text = crate::search::text_of(&e.properties);
            if text.trim().is_empty() {
                empty.push(e.id.clone());
            } else {
                texts.push(text);
                owners.push(e);
            }
        }
        for (texts, owners) in texts.chunks(EMBED_BATCH).zip(owners.chunks(EMBED_BATCH)) {
            let vectors = self.embedder.embed(texts).await?;
            let rows = owners
                .iter()
                .zip(vectors)
                .map(|(e, vector)| EntityVector {
                    id: e.id.clone(),
                    entity_type: e.entity_type.clone(),
                    version: e.version,
                    vector,
                })
                .collect();
            self.store
                .put_vectors(scope, self.embedder.model(), rows)
                .await?;
        }
        if !empty.is_empty() {
            self.store.delete_vectors(scope, &empty).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Consumer for EmbeddingConsumer {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn apply(&self, changes: &[FeedChange]) -> anyhow::Result<()> {
        for (scope, ids) in entities_by_scope(changes) {
            // A vector is stored only over an older version's; an id purged
            // and made again (at version 1) in this batch loses the old
            // one's vector first.
            let purged: Vec<String> = changes
                .iter()
                .filter(|c| &c.scope == scope && c.change.kind == "entity")
                .filter(|c| c.change.op == "purge")
                .map(|c| c.change.id.clone())
                .collect();
            if !purged.is_empty() {
                self.store.delete_vectors(scope, &purged).await?;
            }
            let mut live = Vec::new();
            let mut gone = Vec::new();
            for (id, state) in current_states(&self.store, scope, ids).await? {
                match state {
                    Some(entity) => live.push(entity),
                    None => gone.push(id),
                }
            }
            self.embed(scope, &live).await?;
            if !gone.is_empty() {
                self.store.delete_vectors(scope, &gone).await?;
            }
        }
        Ok(())
    }

    /// Embeds every live entity of every project again. Vectors of entities
    /// deleted meanwhile may stay; search loads each hit and skips them.
    async fn rebuild(&self) -> anyhow::Result<()> {
        for scope in all_projects(&self.store).await? {
            let mut page = PageRequest {
                cursor: None,
                limit: 500,
            };
            loop {
                let entities = self
                    .store
                    .list_entities(&scope, &EntityFilter::default(), &page)
                    .await?;
                let live: Vec<Entity> = entities
                    .items
                    .into_iter()
                    .filter(|e| e.deleted_at.is_none())
                    .collect();
                self.embed(&scope, &live).await?;
                match entities.next_cursor {
                    Some(c) => page.cursor = Some(c),
                    None => break,
                }
            }
        }
        Ok(())
    }
}
