//! What consumers read from the store: the entities a batch touched, as
//! they are now, and every project (for a rebuild).

use super::FeedChange;
use crate::domain::{
    Change, DomainError, DomainResult, Entity, EntityRead, Org, PageRequest, Project, Scope,
};
use crate::store::DynStore;
use futures_util::StreamExt;
use std::collections::{BTreeMap, HashMap};

/// Reads in flight while loading a batch's entities.
const READS_IN_FLIGHT: usize = 16;

/// The entities a batch changed, each once with its last change in the
/// batch, by project (its current state covers every change of it in the
/// batch). Relationship changes are left out.
pub fn entities_by_scope(changes: &[FeedChange]) -> HashMap<&Scope, BTreeMap<&str, &Change>> {
    let mut by_scope: HashMap<&Scope, BTreeMap<&str, &Change>> = HashMap::new();
    for c in changes.iter().filter(|c| c.change.kind == "entity") {
        by_scope
            .entry(&c.scope)
            .or_default()
            .insert(&c.change.id, &c.change);
    }
    by_scope
}

/// Each entity as it is now (`None`: deleted, purged or its project gone),
/// at least as new as its last change, read a few at a time.
pub async fn current_states(
    store: &DynStore,
    scope: &Scope,
    changes: BTreeMap<&str, &Change>,
) -> anyhow::Result<Vec<(String, Option<Entity>)>> {
    // Futures collected first: a stream holding this closure makes rustc
    // fail to prove the boxed future `Send` (rust#102211).
    let reads: Vec<_> = changes
        .into_iter()
        .map(|(id, change)| {
            let (store, scope, id, change) =
                (store.clone(), scope.clone(), id.to_owned(), change.clone());
            async move {
                let state = at_least(&store, &scope, &id, &change).await;
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

/// The entity's current state, unless it is older than `change` made it:
/// the entity cache above the store learns of a write once it returns (on
/// another daemon, once the notice arrives), so right after a change it
/// may still hold the state before. Then the version the change made is
/// read from the store itself; a consumer that indexed the older state
/// would move its cursor past the change and never see it again.
async fn at_least(
    store: &DynStore,
    scope: &Scope,
    id: &str,
    change: &Change,
) -> DomainResult<Option<Entity>> {
    let now = current(store, scope, id).await?;
    let made = match (change.op.as_str(), change.version) {
        ("delete" | "purge", _) | (_, None) => return Ok(now),
        (_, Some(v)) => v,
    };
    if now.as_ref().is_some_and(|e| e.version >= made) {
        return Ok(now);
    }
    let read = EntityRead {
        version: Some(made),
        as_of: None,
        include_deleted: false,
    };
    match store.get_entity(scope, id, &read).await {
        // A later change (in a later batch) deleted it since, or a purge
        // took the version: that change's turn will say so.
        Ok(e) if e.deleted_at.is_none() => Ok(Some(e)),
        Ok(_) | Err(DomainError::NotFound(_)) => Ok(now),
        Err(e) => Err(e),
    }
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
    let made = all_projects_made(store).await?;
    Ok(made.into_iter().map(|(scope, _)| scope).collect())
}

/// Every project of every org, with its creation time.
pub async fn all_projects_made(store: &DynStore) -> anyhow::Result<Vec<(Scope, String)>> {
    let mut out = Vec::new();
    for org in all_orgs(store).await? {
        let projects = projects_of(store, &org.id).await?;
        out.extend(
            projects
                .into_iter()
                .map(|p| (Scope::new(&org.id, &p.id), p.created_at)),
        );
    }
    Ok(out)
}

/// The project's creation time (what tells it from a project of its id
/// deleted before); `None` when it is gone.
pub async fn made_at(store: &DynStore, scope: &Scope) -> DomainResult<Option<String>> {
    match store.get_project(&scope.org, &scope.project).await {
        Ok(p) => Ok(Some(p.created_at)),
        Err(DomainError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
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
