//! What consumers read from the store: the entities a batch touched, as
//! they are now, and every project (for a rebuild).

use super::FeedChange;
use crate::domain::{DomainError, DomainResult, Entity, EntityRead, PageRequest, Scope};
use crate::store::DynStore;
use futures_util::StreamExt;
use std::collections::{BTreeSet, HashMap};

/// Reads in flight while loading a batch's entities.
const READS_IN_FLIGHT: usize = 16;

/// The entities a batch changed, each once, by project (its current state
/// covers every change of it in the batch). Relationship changes are left
/// out.
pub fn entities_by_scope(changes: &[FeedChange]) -> HashMap<&Scope, BTreeSet<&str>> {
    let mut by_scope: HashMap<&Scope, BTreeSet<&str>> = HashMap::new();
    for c in changes.iter().filter(|c| c.change.kind == "entity") {
        by_scope.entry(&c.scope).or_default().insert(&c.change.id);
    }
    by_scope
}

/// Each entity as it is now (`None`: deleted, purged or its project gone),
/// read a few at a time.
pub async fn current_states(
    store: &DynStore,
    scope: &Scope,
    ids: BTreeSet<&str>,
) -> anyhow::Result<Vec<(String, Option<Entity>)>> {
    // Futures collected first: a stream holding this closure makes rustc
    // fail to prove the boxed future `Send` (rust#102211).
    let reads: Vec<_> = ids
        .into_iter()
        .map(|id| {
            let (store, scope, id) = (store.clone(), scope.clone(), id.to_owned());
            async move {
                let state = current(&store, &scope, &id).await;
                state.map(|s| (id, s)).map_err(anyhow::Error::from)
            }
        })
        .collect();
    futures_util::stream::iter(reads)
        .buffered(READS_IN_FLIGHT)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// The entity as it is now, `None` when it is deleted, purged or its
/// project is gone.
pub async fn current(store: &DynStore, scope: &Scope, id: &str) -> DomainResult<Option<Entity>> {
    let read = EntityRead {
        version: None,
        as_of: None,
        include_deleted: false,
    };
    match store.get_entity(scope, id, &read).await {
        Ok(e) if e.deleted_at.is_none() => Ok(Some(e)),
        Ok(_) | Err(DomainError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Every project of every org.
pub async fn all_projects(store: &DynStore) -> anyhow::Result<Vec<Scope>> {
    let mut scopes = Vec::new();
    let mut orgs = PageRequest {
        cursor: None,
        limit: 1000,
    };
    loop {
        let page = store.list_orgs(&orgs).await?;
        for org in &page.items {
            let mut projects = PageRequest {
                cursor: None,
                limit: 1000,
            };
            loop {
                let p = store.list_projects(&org.id, &projects).await?;
                scopes.extend(p.items.iter().map(|p| Scope::new(&org.id, &p.id)));
                match p.next_cursor {
                    Some(c) => projects.cursor = Some(c),
                    None => break,
                }
            }
        }
        match page.next_cursor {
            Some(c) => orgs.cursor = Some(c),
            None => break,
        }
    }
    Ok(scopes)
}
