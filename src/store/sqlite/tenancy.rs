//! Orgs and projects. Deleting one erases everything scoped to it.

use super::audit;
use super::sql_err;
use super::SqliteStore;
use crate::clock;
use crate::domain::*;
use crate::store::cursor;
use crate::store::prelude::*;
use crate::store::AuditPlace;
use crate::store::PROJECT_TABLES;
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};

pub(super) fn org_row(r: &rusqlite::Row) -> rusqlite::Result<Org> {
    Ok(Org {
        id: r.get(0)?,
        name: r.get(1)?,
        created_at: r.get(2)?,
    })
}

pub(super) fn project_row(r: &rusqlite::Row) -> rusqlite::Result<Project> {
    Ok(Project {
        org: r.get(0)?,
        id: r.get(1)?,
        name: r.get(2)?,
        created_at: r.get(3)?,
    })
}

pub fn create_org(conn: &Connection, caller: &Caller, id: &str, name: &str) -> DomainResult<Org> {
    let org = Org {
        id: id.to_owned(),
        name: name.to_owned(),
        created_at: clock::now(),
    };
    insert_org(conn, caller, org)
}

/// Stores a new org as given (an import keeps its creation time).
pub fn insert_org(conn: &Connection, caller: &Caller, org: Org) -> DomainResult<Org> {
    let (id, name) = (&org.id, &org.name);
    let inserted = conn
        .execute(
            "INSERT INTO orgs (id, name, created_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            params![org.id, org.name, org.created_at],
        )
        .map_err(sql_err)?;
    if inserted == 0 {
        return Err(DomainError::Conflict(format!("org {id} already exists")));
    }
    let place = AuditPlace::org(id, caller);
    audit::record(
        conn,
        &place,
        "org.create",
        id,
        serde_json::json!({ "name": name }),
    )?;
    Ok(org)
}

pub fn get_org(conn: &Connection, id: &str) -> DomainResult<Org> {
    conn.prepare_cached("SELECT id, name, created_at FROM orgs WHERE id = ?1")
        .and_then(|mut st| st.query_row([id], org_row).optional())
        .map_err(sql_err)?
        .ok_or_else(|| DomainError::not_found(format!("org {id}")))
}

pub fn list_orgs(conn: &Connection, page: &PageRequest) -> DomainResult<Page<Org>> {
    let after = cursor::after_id(page)?;
    let items = conn
        .prepare_cached("SELECT id, name, created_at FROM orgs WHERE id > ?1 ORDER BY id LIMIT ?2")
        .and_then(|mut st| {
            st.query_map(params![after, page.limit as i64 + 1], org_row)?
                .collect()
        })
        .map_err(sql_err)?;
    Ok(cursor::page_by(items, page.limit, |o: &Org| o.id.clone()))
}

pub fn create_project(
    conn: &Connection,
    caller: &Caller,
    org: &str,
    id: &str,
    name: &str,
) -> DomainResult<Project> {
    let project = Project {
        org: org.to_owned(),
        id: id.to_owned(),
        name: name.to_owned(),
        created_at: clock::now(),
    };
    insert_project(conn, caller, project)
}

/// Stores a new project as given (an import keeps its creation time).
pub fn insert_project(
    conn: &Connection,
    caller: &Caller,
    project: Project,
) -> DomainResult<Project> {
    get_org(conn, &project.org)?;
    let (org, id, name) = (&project.org, &project.id, &project.name);
    let inserted = conn
        .execute(
            "INSERT INTO projects (org_id, id, name, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO NOTHING",
            params![project.org, project.id, project.name, project.created_at],
        )
        .map_err(sql_err)?;
    if inserted == 0 {
        return Err(DomainError::Conflict(format!(
            "project {id} already exists"
        )));
    }
    let place = AuditPlace::project(org, id, caller);
    audit::record(
        conn,
        &place,
        "project.create",
        id,
        serde_json::json!({ "name": name }),
    )?;
    Ok(project)
}

pub fn get_project(conn: &Connection, org: &str, id: &str) -> DomainResult<Project> {
    conn.prepare_cached(
        "SELECT org_id, id, name, created_at FROM projects WHERE org_id = ?1 AND id = ?2",
    )
    .and_then(|mut st| st.query_row([org, id], project_row).optional())
    .map_err(sql_err)?
    .ok_or_else(|| DomainError::not_found(format!("project {id}")))
}

pub fn list_projects(
    conn: &Connection,
    org: &str,
    page: &PageRequest,
) -> DomainResult<Page<Project>> {
    get_org(conn, org)?;
    let after = cursor::after_id(page)?;
    let items = conn
        .prepare_cached(
            "SELECT org_id, id, name, created_at FROM projects WHERE org_id = ?1 AND id > ?2
             ORDER BY id LIMIT ?3",
        )
        .and_then(|mut st| {
            st.query_map(params![org, after, page.limit as i64 + 1], project_row)?
                .collect()
        })
        .map_err(sql_err)?;
    Ok(cursor::page_by(items, page.limit, |p: &Project| {
        p.id.clone()
    }))
}

/// Erases a project; `caller` is audited unless the whole org is going.
pub fn delete_project(
    conn: &Connection,
    caller: Option<&Caller>,
    org: &str,
    id: &str,
) -> DomainResult<()> {
    get_project(conn, org, id)?;
    let scope = Scope::new(org, id);
    if let Some(token) = super::search::scope_token(conn, &scope)? {
        // Earlier requests of this group may have staged rows of this
        // project: apply them first, so the sweep below finds them too.
        super::search::apply_staged(conn).map_err(sql_err)?;
        // Contentless FTS rows are found through the scope token.
        conn.execute(
            "DELETE FROM entity_fts WHERE rowid IN
               (SELECT rowid FROM entity_fts WHERE entity_fts MATCH ?1)",
            [format!("scope : \"{token}\"")],
        )
        .map_err(sql_err)?;
    }
    for table in PROJECT_TABLES {
        conn.execute(
            &format!("DELETE FROM {table} WHERE org_id = ?1 AND project_id = ?2"),
            [org, id],
        )
        .map_err(sql_err)?;
    }
    conn.execute(
        "DELETE FROM projects WHERE org_id = ?1 AND id = ?2",
        [org, id],
    )
    .map_err(sql_err)?;
    if let Some(caller) = caller {
        let place = AuditPlace::project(org, id, caller);
        audit::record(conn, &place, "project.delete", id, serde_json::json!({}))?;
    }
    Ok(())
}

/// Deletes the org with everything in it, its audit trail included, and
/// records the deletion as the one `org.delete` row left under its id (see
/// ARCHITECTURE.md, Audit).
pub fn delete_org(conn: &Connection, caller: &Caller, id: &str) -> DomainResult<()> {
    get_org(conn, id)?;
    let projects: Vec<String> = conn
        .prepare("SELECT id FROM projects WHERE org_id = ?1")
        .and_then(|mut st| st.query_map([id], |r| r.get(0))?.collect())
        .map_err(sql_err)?;
    for project in projects {
        delete_project(conn, None, id, &project)?;
    }
    conn.execute("DELETE FROM audit_events WHERE org_id = ?1", [id])
        .map_err(sql_err)?;
    conn.execute("DELETE FROM orgs WHERE id = ?1", [id])
        .map_err(sql_err)?;
    let place = AuditPlace::org(id, caller);
    audit::record(conn, &place, "org.delete", id, serde_json::json!({}))
}

#[async_trait]
impl TenancyStore for SqliteStore {
    async fn is_empty(&self) -> DomainResult<bool> {
        self.read(|conn| {
            conn.query_row("SELECT NOT EXISTS (SELECT 1 FROM orgs)", [], |r| r.get(0))
                .map_err(super::sql_err)
        })
        .await
    }

    async fn create_org(&self, caller: &Caller, id: &str, name: &str) -> DomainResult<Org> {
        let (caller, id, name) = (caller.clone(), id.to_owned(), name.to_owned());
        self.writer
            .write(move |conn, _| create_org(conn, &caller, &id, &name))
            .await
    }

    async fn get_org(&self, id: &str) -> DomainResult<Org> {
        let id = id.to_owned();
        self.read(move |conn| get_org(conn, &id)).await
    }

    async fn list_orgs(&self, page: &PageRequest) -> DomainResult<Page<Org>> {
        let page = page.clone();
        self.read(move |conn| list_orgs(conn, &page)).await
    }

    async fn delete_org(&self, caller: &Caller, id: &str) -> DomainResult<()> {
        let (caller, id) = (caller.clone(), id.to_owned());
        let org = id.clone();
        self.writer
            .write(move |conn, _| delete_org(conn, &caller, &id))
            .await?;
        self.vector_sets.forget(&org, None);
        Ok(())
    }

    async fn create_project(
        &self,
        caller: &Caller,
        org: &str,
        id: &str,
        name: &str,
    ) -> DomainResult<Project> {
        let caller = caller.clone();
        let (org, id, name) = (org.to_owned(), id.to_owned(), name.to_owned());
        self.writer
            .write(move |conn, _| create_project(conn, &caller, &org, &id, &name))
            .await
    }

    async fn get_project(&self, org: &str, id: &str) -> DomainResult<Project> {
        let (org, id) = (org.to_owned(), id.to_owned());
        self.read(move |conn| get_project(conn, &org, &id)).await
    }

    async fn list_projects(&self, org: &str, page: &PageRequest) -> DomainResult<Page<Project>> {
        let (org, page) = (org.to_owned(), page.clone());
        self.read(move |conn| list_projects(conn, &org, &page))
            .await
    }

    async fn delete_project(&self, caller: &Caller, org: &str, id: &str) -> DomainResult<()> {
        let (caller, org, id) = (caller.clone(), org.to_owned(), id.to_owned());
        let scope = Scope::new(org.clone(), id.clone());
        self.writer
            .write(move |conn, _| delete_project(conn, Some(&caller), &org, &id))
            .await?;
        self.vector_sets.forget(&scope.org, Some(&scope.project));
        Ok(())
    }
}
