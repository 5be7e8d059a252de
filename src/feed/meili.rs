//! The Meilisearch consumer: mirrors live entities into the index
//! (`search::meili`), and `reconcile`, which compares the index with the
//! database and repairs what drifted (the daily `reconcile_search` job and
//! `strata reindex`).
//!
//! Both read the current state from the store, never the change itself, so
//! a batch applied twice, or late, still leaves the index holding what the
//! database holds.

use super::{all_projects, current_states, entities_by_scope, made_at, Consumer, FeedChange};
use crate::domain::{EntityFilter, PageRequest, Scope};
use crate::search::meili::{doc_key, tenant, MeiliDoc, MeiliError, MeiliIndex, LIST_PAGE};
use crate::store::DynStore;
use async_trait::async_trait;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

pub struct MeiliConsumer {
    store: DynStore,
    index: Arc<MeiliIndex>,
}

impl MeiliConsumer {
    pub fn new(store: DynStore, index: Arc<MeiliIndex>) -> Self {
        MeiliConsumer { store, index }
    }

    /// Brings the index up to date from the data, every project (what
    /// `Consumer::rebuild` on main asks: the runner calls it when the
    /// changes this consumer missed were pruned).
    pub async fn rebuild(&self) -> anyhow::Result<()> {
        let summary = reconcile(&self.store, &self.index, None).await?;
        tracing::info!(%summary, "Meilisearch index rebuilt from the data");
        Ok(())
    }
}

#[async_trait]
impl Consumer for MeiliConsumer {
    fn name(&self) -> &'static str {
        "meilisearch"
    }

    async fn rebuild(&self) -> anyhow::Result<()> {
        MeiliConsumer::rebuild(self).await
    }

    async fn apply(&self, changes: &[FeedChange]) -> anyhow::Result<()> {
        for (scope, ids) in entities_by_scope(changes) {
            // Gone since: its entities are gone with it.
            let made = made_at(&self.store, scope).await?.unwrap_or_default();
            let states = current_states(&self.store, scope, ids).await?;
            let mut live = Vec::new();
            let mut gone = Vec::new();
            for (id, state) in states {
                match state {
                    Some(entity) => live.push(MeiliDoc::of(scope, &made, &entity)),
                    None => gone.push(doc_key(scope, &id)),
                }
            }
            upsert(&self.index, &live).await?;
            delete(&self.index, &gone).await?;
        }
        Ok(())
    }
}

/// Upserts a batch; when Meilisearch refuses the batch's task, each
/// document is sent alone, so one it refuses is logged and skipped and
/// the others still land. Unavailable: `Err`, for the runner to retry.
async fn upsert(index: &MeiliIndex, docs: &[MeiliDoc]) -> anyhow::Result<()> {
    match index.upsert(docs).await {
        Ok(()) => Ok(()),
        Err(MeiliError::Refused(why)) => {
            tracing::warn!(error = %why, docs = docs.len(), "Meilisearch refused a batch; sending its documents one by one");
            for doc in docs {
                match index.upsert(std::slice::from_ref(doc)).await {
                    Ok(()) => {}
                    Err(MeiliError::Refused(why)) => tracing::error!(
                        error = %why, tenant = %doc.tenant, id = %doc.id,
                        "Meilisearch refused a document; skipped"
                    ),
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

async fn delete(index: &MeiliIndex, keys: &[String]) -> anyhow::Result<()> {
    match index.delete(keys).await {
        Ok(()) => Ok(()),
        Err(MeiliError::Refused(why)) => {
            tracing::error!(error = %why, docs = keys.len(), "Meilisearch refused a deletion; skipped");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// What a reconciliation found and repaired.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub projects: usize,
    /// Live entities compared.
    pub checked: usize,
    /// Missing or stale documents written.
    pub upserted: usize,
    /// Documents of entities that are no longer live, deleted.
    pub deleted: usize,
    /// Tenants whose project is gone, their documents deleted (a
    /// reconciliation of every project only).
    pub tenants_removed: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} projects, {} entities checked, {} documents written, {} deleted, {} tenants removed",
            self.projects, self.checked, self.upserted, self.deleted, self.tenants_removed
        )
    }
}

/// Makes the index hold exactly the live entities of one project, or of
/// every project (`None`), at their current versions.
pub async fn reconcile(
    store: &DynStore,
    index: &MeiliIndex,
    only: Option<&Scope>,
) -> anyhow::Result<Summary> {
    let scopes = match only {
        Some(s) => vec![s.clone()],
        None => all_projects(store).await?,
    };
    let mut summary = Summary::default();
    for scope in &scopes {
        reconcile_project(store, index, scope, &mut summary).await?;
        summary.projects += 1;
    }
    if only.is_none() {
        // Documents of deleted projects: no change of theirs reaches the feed.
        let existing: BTreeSet<String> = scopes.iter().map(tenant).collect();
        for gone in index.tenants().await?.difference(&existing) {
            if let Some((org, project)) = gone.split_once('/') {
                let scope = Scope::new(org, project);
                let (_, count) = index.list(&scope, 0, 1).await?;
                index.delete_tenant(&scope).await?;
                summary.deleted += count;
                summary.tenants_removed += 1;
            }
        }
    }
    Ok(summary)
}

/// Reads the tenant's (id, version, project creation) from Meilisearch,
/// then pages through the live entities: a missing or stale document (of
/// another version, or of a project of the same id deleted before) is
/// written; what is left over in Meilisearch is deleted.
async fn reconcile_project(
    store: &DynStore,
    index: &MeiliIndex,
    scope: &Scope,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let Some(made) = made_at(store, scope).await? else {
        return Ok(()); // deleted meanwhile
    };
    let mut indexed: HashMap<String, (i64, String)> = HashMap::new();
    let mut offset = 0;
    loop {
        let (items, total) = index.list(scope, offset, LIST_PAGE).await?;
        let n = items.len();
        indexed.extend(items.into_iter().map(|d| (d.id, (d.version, d.made))));
        offset += n;
        if n == 0 || offset >= total {
            break;
        }
    }
    let mut page = PageRequest {
        cursor: None,
        limit: 1000,
    };
    loop {
        let entities = store
            .list_entities(scope, &EntityFilter::default(), &page)
            .await?;
        let mut stale = Vec::new();
        for e in entities.items.iter().filter(|e| e.deleted_at.is_none()) {
            summary.checked += 1;
            if indexed.remove(&e.id) != Some((e.version, made.clone())) {
                stale.push(MeiliDoc::of(scope, &made, e));
            }
        }
        summary.upserted += stale.len();
        upsert(index, &stale).await?;
        match entities.next_cursor {
            Some(c) => page.cursor = Some(c),
            None => break,
        }
    }
    let extra: Vec<String> = indexed.keys().map(|id| doc_key(scope, id)).collect();
    summary.deleted += extra.len();
    delete(index, &extra).await?;
    Ok(())
}
