//! Orgs and projects on PostgreSQL, and the project lock every write takes.

use super::audit;
use super::rows::{self, execute, pg_err, query, query_opt};
use super::PgStore;
use crate::domain::*;
use crate::store::cursor;
use crate::store::prelude::*;
use crate::store::AuditPlace;
use crate::store::PROJECT_TABLES;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::json;
use tokio_postgres::{Row, Statement};

pub(super) fn org(r: &Row) -> Org {
    Org {
        id: r.get(0),
        name: r.get(1),
        created_at: rows::time(r.get(2)),
    }
}

pub(super) fn project(r: &Row) -> Project {
    Project {
        org: r.get(0),
        id: r.get(1),
        name: r.get(2),
        created_at: rows::time(r.get(3)),
    }
}

pub async fn create_org<C: GenericClient>(
    c: &C,
    caller: &Caller,
    id: &str,
    name: &str,
) -> DomainResult<Org> {
    insert_org(c, caller, id, name, None).await
}

/// Stores a new org, made `at` the given time (an import's) or now.
pub async fn insert_org<C: GenericClient>(
    c: &C,
    caller: &Caller,
    id: &str,
    name: &str,
    at: Option<DateTime<Utc>>,
) -> DomainResult<Org> {
    let row = query_opt(
        c,
        "INSERT INTO orgs (id, name, created_at) VALUES ($1, $2, coalesce($3, now()))
         ON CONFLICT DO NOTHING RETURNING id, name, created_at",
        &[&id, &name, &at],
    )
    .await?
    .ok_or_else(|| DomainError::Conflict(format!("org {id} already exists")))?;
    let place = AuditPlace::org(id, caller);
    audit::record(c, &place, "org.create", id, json!({ "name": name })).await?;
    Ok(org(&row))
}

pub async fn get_org<C: GenericClient>(c: &C, id: &str) -> DomainResult<Org> {
    query_opt(
        c,
        "SELECT id, name, created_at FROM orgs WHERE id = $1",
        &[&id],
    )
    .await?
    .map(|r| org(&r))
    .ok_or_else(|| DomainError::not_found(format!("org {id}")))
}

pub async fn list_orgs<C: GenericClient>(c: &C, page: &PageRequest) -> DomainResult<Page<Org>> {
    let after = cursor::after_id(page)?;
    let limit = page.limit as i64 + 1;
    let found = query(
        c,
        "SELECT id, name, created_at FROM orgs WHERE id > $1 ORDER BY id LIMIT $2",
        &[&after, &limit],
    )
    .await?;
    Ok(cursor::page_by(
        found.iter().map(org).collect(),
        page.limit,
        |o: &Org| o.id.clone(),
    ))
}

pub async fn create_project<C: GenericClient>(
    c: &C,
    caller: &Caller,
    org_id: &str,
    id: &str,
    name: &str,
) -> DomainResult<Project> {
    insert_project(c, caller, org_id, id, name, None).await
}

/// Stores a new project, made `at` the given time (an import's) or now.
pub async fn insert_project<C: GenericClient>(
    c: &C,
    caller: &Caller,
    org_id: &str,
    id: &str,
    name: &str,
    at: Option<DateTime<Utc>>,
) -> DomainResult<Project> {
    get_org(c, org_id).await?;
    let row = query_opt(
        c,
        "INSERT INTO projects (org_id, id, name, created_at) VALUES ($1, $2, $3, coalesce($4, now()))
         ON CONFLICT DO NOTHING RETURNING org_id, id, name, created_at",
        &[&org_id, &id, &name, &at],
    )
    .await?
    .ok_or_else(|| DomainError::Conflict(format!("project {id} already exists")))?;
    let place = AuditPlace::project(org_id, id, caller);
    audit::record(c, &place, "project.create", id, json!({ "name": name })).await?;
    Ok(project(&row))
}

pub async fn get_project<C: GenericClient>(c: &C, org_id: &str, id: &str) -> DomainResult<Project> {
    query_opt(
        c,
        "SELECT org_id, id, name, created_at FROM projects WHERE org_id = $1 AND id = $2",
        &[&org_id, &id],
    )
    .await?
    .map(|r| project(&r))
    .ok_or_else(|| DomainError::not_found(format!("project {id}")))
}

/// Locks the project row for the rest of the transaction (a delete waits);
/// returns its `pk`.
const LOCK_PROJECT: &str = "SELECT pk FROM projects WHERE org_id = $1 AND id = $2 FOR SHARE";

pub async fn lock_project<C: GenericClient>(c: &C, scope: &Scope) -> DomainResult<i64> {
    let st = prepare_lock_project(c).await?;
    lock_project_with(c, &st, scope).await
}

pub async fn prepare_lock_project<C: GenericClient>(c: &C) -> DomainResult<Statement> {
    c.prepare_cached(LOCK_PROJECT).await.map_err(pg_err)
}

/// Share-locks the project row (a project deletion waits for the writes in
/// flight, and they for it); its `pk`, or NotFound.
pub async fn lock_project_with<C: GenericClient>(
    c: &C,
    lock: &Statement,
    scope: &Scope,
) -> DomainResult<i64> {
    c.query_opt(lock, &[&scope.org, &scope.project])
        .await
        .map_err(pg_err)?
        .map(|r| r.get(0))
        .ok_or_else(|| DomainError::not_found(format!("project {}", scope.project)))
}

/// Locks the project row against every writer of the project (they share
/// it); its `pk`, or NotFound.
pub async fn lock_project_exclusive<C: GenericClient>(c: &C, scope: &Scope) -> DomainResult<i64> {
    pk_by(
        c,
        scope,
        "SELECT pk FROM projects WHERE org_id = $1 AND id = $2 FOR UPDATE",
    )
    .await
}

/// The project's `pk`, without locking (read-only transactions).
pub async fn project_pk<C: GenericClient>(c: &C, scope: &Scope) -> DomainResult<i64> {
    pk_by(
        c,
        scope,
        "SELECT pk FROM projects WHERE org_id = $1 AND id = $2",
    )
    .await
}

async fn pk_by<C: GenericClient>(c: &C, scope: &Scope, sql: &str) -> DomainResult<i64> {
    query_opt(c, sql, &[&scope.org, &scope.project])
        .await?
        .map(|r| r.get(0))
        .ok_or_else(|| DomainError::not_found(format!("project {}", scope.project)))
}

pub async fn list_projects<C: GenericClient>(
    c: &C,
    org_id: &str,
    page: &PageRequest,
) -> DomainResult<Page<Project>> {
    get_org(c, org_id).await?;
    let after = cursor::after_id(page)?;
    let limit = page.limit as i64 + 1;
    let found = query(
        c,
        "SELECT org_id, id, name, created_at FROM projects WHERE org_id = $1 AND id > $2
         ORDER BY id LIMIT $3",
        &[&org_id, &after, &limit],
    )
    .await?;
    Ok(cursor::page_by(
        found.iter().map(project).collect(),
        page.limit,
        |p: &Project| p.id.clone(),
    ))
}

/// Erases a project; `caller` is audited unless the whole org is going.
pub async fn delete_project<C: GenericClient>(
    c: &C,
    caller: Option<&Caller>,
    org_id: &str,
    id: &str,
) -> DomainResult<()> {
    query_opt(
        c,
        "SELECT 1 FROM projects WHERE org_id = $1 AND id = $2 FOR UPDATE",
        &[&org_id, &id],
    )
    .await?
    .ok_or_else(|| DomainError::not_found(format!("project {id}")))?;
    for table in PROJECT_TABLES {
        let sql = format!("DELETE FROM {table} WHERE org_id = $1 AND project_id = $2");
        execute(c, &sql, &[&org_id, &id]).await?;
    }
    execute(
        c,
        "DELETE FROM projects WHERE org_id = $1 AND id = $2",
        &[&org_id, &id],
    )
    .await?;
    if let Some(caller) = caller {
        let place = AuditPlace::project(org_id, id, caller);
        audit::record(c, &place, "project.delete", id, json!({})).await?;
    }
    Ok(())
}

/// Deletes the org with everything in it, its audit trail included, and
/// records the deletion as the one `org.delete` row left under its id (see
/// ARCHITECTURE.md, Audit).
pub async fn delete_org<C: GenericClient>(c: &C, caller: &Caller, id: &str) -> DomainResult<()> {
    query_opt(c, "SELECT 1 FROM orgs WHERE id = $1 FOR UPDATE", &[&id])
        .await?
        .ok_or_else(|| DomainError::not_found(format!("org {id}")))?;
    let projects: Vec<String> = query(c, "SELECT id FROM projects WHERE org_id = $1", &[&id])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for p in projects {
        delete_project(c, None, id, &p).await?;
    }
    execute(c, "DELETE FROM audit_events WHERE org_id = $1", &[&id]).await?;
    execute(c, "DELETE FROM orgs WHERE id = $1", &[&id]).await?;
    let place = AuditPlace::org(id, caller);
    audit::record(c, &place, "org.delete", id, json!({})).await
}

#[async_trait]
impl TenancyStore for PgStore {
    async fn is_empty(&self) -> DomainResult<bool> {
        let c = self.client().await?;
        let row = super::rows::query_opt(&c, "SELECT NOT EXISTS (SELECT 1 FROM orgs)", &[]).await?;
        Ok(row.is_some_and(|r| r.get(0)))
    }

    async fn create_org(&self, caller: &Caller, id: &str, name: &str) -> DomainResult<Org> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(super::pg_err)?;
        let org = create_org(&tx, caller, id, name).await?;
        super::tx::settle(tx.commit().await, c)?;
        Ok(org)
    }

    async fn get_org(&self, id: &str) -> DomainResult<Org> {
        get_org(&self.client().await?, id).await
    }

    async fn list_orgs(&self, page: &PageRequest) -> DomainResult<Page<Org>> {
        list_orgs(&self.client().await?, page).await
    }

    async fn delete_org(&self, caller: &Caller, id: &str) -> DomainResult<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(super::pg_err)?;
        delete_org(&tx, caller, id).await?;
        super::notify::everything_changed(&tx).await?;
        super::tx::settle(tx.commit().await, c)
    }

    async fn create_project(
        &self,
        caller: &Caller,
        org: &str,
        id: &str,
        name: &str,
    ) -> DomainResult<Project> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(super::pg_err)?;
        let project = create_project(&tx, caller, org, id, name).await?;
        if let Some(age) = &self.age {
            let pk = lock_project(&tx, &Scope::new(org, id)).await?;
            age.create_graph(&tx, pk).await?;
        }
        super::tx::settle(tx.commit().await, c)?;
        Ok(project)
    }

    async fn get_project(&self, org: &str, id: &str) -> DomainResult<Project> {
        get_project(&self.client().await?, org, id).await
    }

    async fn list_projects(&self, org: &str, page: &PageRequest) -> DomainResult<Page<Project>> {
        list_projects(&self.client().await?, org, page).await
    }

    async fn delete_project(&self, caller: &Caller, org: &str, id: &str) -> DomainResult<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(super::pg_err)?;
        if let Some(age) = &self.age {
            // Writers first (they share the row), then the graph's tables:
            // the other order deadlocks with a write in flight.
            let pk = lock_project_exclusive(&tx, &Scope::new(org, id)).await?;
            age.drop_graph(&tx, pk).await?;
        }
        delete_project(&tx, Some(caller), org, id).await?;
        super::notify::everything_changed(&tx).await?;
        super::tx::settle(tx.commit().await, c)
    }
}
