//! API keys: stored with a hash of their secret, revoked by timestamp.

use super::audit;
use super::sql_err;
use super::SqliteStore;
use crate::domain::*;
use crate::store::cursor;
use crate::store::prelude::*;
use crate::store::AuditPlace;
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::json;

const COLS: &str =
    "id, org_id, name, scopes, created_at, created_by, revoked_at, secret_hash, projects";

fn from_row(r: &rusqlite::Row) -> rusqlite::Result<StoredKey> {
    let scopes: String = r.get(3)?;
    let projects: Option<String> = r.get(8)?;
    Ok(StoredKey {
        info: ApiKeyInfo {
            id: r.get(0)?,
            org: r.get(1)?,
            name: r.get(2)?,
            scopes: serde_json::from_str(&scopes).unwrap_or_default(),
            projects: projects.and_then(|p| serde_json::from_str(&p).ok()),
            created_at: r.get(4)?,
            created_by: r.get(5)?,
            revoked_at: r.get(6)?,
        },
        secret_hash: r.get(7)?,
    })
}

pub fn create(conn: &Connection, caller: &Caller, key: &StoredKey) -> DomainResult<ApiKeyInfo> {
    super::tenancy::get_org(conn, &key.info.org)?;
    let k = &key.info;
    conn.execute(
        "INSERT INTO api_keys (id, org_id, name, scopes, secret_hash, created_at, created_by,
             projects)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            k.id,
            k.org,
            k.name,
            serde_json::to_string(&k.scopes).expect("scopes serialise"),
            key.secret_hash,
            k.created_at,
            k.created_by,
            k.projects
                .as_ref()
                .map(|p| serde_json::to_string(p).expect("ids serialise")),
        ],
    )
    .map_err(sql_err)?;
    let place = AuditPlace::org(&k.org, caller);
    audit::record(
        conn,
        &place,
        "key.create",
        &k.id,
        json!({ "name": k.name, "scopes": k.scopes, "projects": k.projects }),
    )?;
    Ok(k.clone())
}

pub fn find(conn: &Connection, id: &str) -> DomainResult<Option<StoredKey>> {
    conn.prepare_cached(&format!("SELECT {COLS} FROM api_keys WHERE id = ?1"))
        .and_then(|mut st| st.query_row([id], from_row).optional())
        .map_err(sql_err)
}

pub fn list(conn: &Connection, org: &str, page: &PageRequest) -> DomainResult<Page<ApiKeyInfo>> {
    super::tenancy::get_org(conn, org)?;
    let after = cursor::after_id(page)?;
    let items: Vec<ApiKeyInfo> = conn
        .prepare_cached(&format!(
            "SELECT {COLS} FROM api_keys WHERE org_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
        ))
        .and_then(|mut st| {
            st.query_map(params![org, after, page.limit as i64 + 1], |r| {
                from_row(r).map(|k| k.info)
            })?
            .collect()
        })
        .map_err(sql_err)?;
    Ok(cursor::page_by(items, page.limit, |k: &ApiKeyInfo| {
        k.id.clone()
    }))
}

pub fn revoke(conn: &Connection, caller: &Caller, org: &str, id: &str) -> DomainResult<()> {
    let changed = conn
        .execute(
            "UPDATE api_keys SET revoked_at = ?3 WHERE org_id = ?1 AND id = ?2 AND revoked_at IS NULL",
            params![org, id, crate::clock::now()],
        )
        .map_err(sql_err)?;
    if changed == 0 {
        return Err(DomainError::not_found(format!("key {id}")));
    }
    let place = AuditPlace::org(org, caller);
    audit::record(conn, &place, "key.revoke", id, json!({}))
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn create_key(&self, caller: &Caller, key: StoredKey) -> DomainResult<ApiKeyInfo> {
        let caller = caller.clone();
        self.writer
            .write(move |conn, _| create(conn, &caller, &key))
            .await
    }

    async fn list_keys(&self, org: &str, page: &PageRequest) -> DomainResult<Page<ApiKeyInfo>> {
        let (org, page) = (org.to_owned(), page.clone());
        self.read(move |conn| list(conn, &org, &page)).await
    }

    async fn revoke_key(&self, caller: &Caller, org: &str, id: &str) -> DomainResult<()> {
        let (caller, org, id) = (caller.clone(), org.to_owned(), id.to_owned());
        self.writer
            .write(move |conn, _| revoke(conn, &caller, &org, &id))
            .await
    }

    async fn find_key(&self, id: &str) -> DomainResult<Option<StoredKey>> {
        let id = id.to_owned();
        self.read(move |conn| find(conn, &id)).await
    }
}
