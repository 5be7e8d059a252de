//! What consumers read from the store: the entities a batch touched, as
//! they are now, and every project (for a rebuild).

use super::FeedChange;
use crate::domain::{
    DomainError, DomainResult, Entity, EntityRead, Org, PageRequest, Project, Scope,
};
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
    for org in all_orgs(store).await? {
        let projects = projects_of(store, &org.id).await?;
        scopes.extend(projects.iter().map(|p| Scope::new(&org.id, &p.id)));
    }
    Ok(scopes)
}

/// Every org, page after page.
pub async fn all_orgs(store: &DynStore) -> anyhow::Result<Vec<Org>> {
    let mut out = Vec::new();
    let mut page = PageRequest {
        cursor: None,
        limit: 1000,
    };
    loop {
        let found = store.list_orgs(&page).await?;
        out.extend(found.items);
        match found.next_cursor {
            Some(c) => page.cursor = Some(c),
            None => return Ok(out),
        }
    }
}

/// Every project of `org`, page after page.
pub async fn projects_of(store: &DynStore, org: &str) -> anyhow::Result<Vec<Project>> {
    let mut out = Vec::new();
    let mut page = PageRequest {
        cursor: None,
        limit: 1000,
    };
    loop {
        let found = store.list_projects(org, &page).await?;
        out.extend(found.items);
        match found.next_cursor {
            Some(c) => page.cursor = Some(c),
            None => return Ok(out),
        }
    }
}
