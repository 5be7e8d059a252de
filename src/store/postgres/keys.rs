//! API keys (stored hashed); revocations are announced to every daemon.

use super::audit;
use super::rows::{self, execute, query, query_opt};
use super::PgStore;
use crate::domain::*;
use crate::store::cursor;
use crate::store::prelude::*;
use crate::store::AuditPlace;
use async_trait::async_trait;
use chrono::Utc;
use deadpool_postgres::GenericClient;
use serde_json::json;
use tokio_postgres::Row;

const KEY_COLS: &str =
    "id, org_id, name, scopes, created_at, created_by, revoked_at, secret_hash, projects";

fn key(r: &Row) -> StoredKey {
    StoredKey {
        info: ApiKeyInfo {
            id: r.get(0),
            org: r.get(1),
            name: r.get(2),
            scopes: serde_json::from_value(r.get(3)).unwrap_or_default(),
            projects: r
                .get::<_, Option<serde_json::Value>>(8)
                .and_then(|p| serde_json::from_value(p).ok()),
            created_at: rows::time(r.get(4)),
            created_by: r.get(5),
            revoked_at: r.get::<_, Option<chrono::DateTime<Utc>>>(6).map(rows::time),
        },
        secret_hash: r.get(7),
    }
}

pub async fn create<C: GenericClient>(
    c: &C,
    caller: &Caller,
    k: &StoredKey,
) -> DomainResult<ApiKeyInfo> {
    super::tenancy::get_org(c, &k.info.org).await?;
    let created = rows::parse_time(&k.info.created_at)?;
    let scopes = serde_json::to_value(&k.info.scopes).map_err(DomainError::internal)?;
    let projects = k
        .info
        .projects
        .as_ref()
        .map(|p| serde_json::to_value(p).expect("ids serialise"));
    execute(
        c,
        "INSERT INTO api_keys (id, org_id, name, scopes, secret_hash, created_at, created_by,
             projects)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &k.info.id,
            &k.info.org,
            &k.info.name,
            &scopes,
            &k.secret_hash,
            &created,
            &k.info.created_by,
            &projects,
        ],
    )
    .await?;
    let place = AuditPlace::org(&k.info.org, caller);
    audit::record(
        c,
        &place,
        "key.create",
        &k.info.id,
        json!({ "name": k.info.name, "scopes": scopes, "projects": k.info.projects }),
    )
    .await?;
    Ok(k.info.clone())
}

pub async fn find<C: GenericClient>(c: &C, id: &str) -> DomainResult<Option<StoredKey>> {
    let sql = format!("SELECT {KEY_COLS} FROM api_keys WHERE id = $1");
    Ok(query_opt(c, &sql, &[&id]).await?.map(|r| key(&r)))
}

pub async fn list<C: GenericClient>(
    c: &C,
    org_id: &str,
    page: &PageRequest,
) -> DomainResult<Page<ApiKeyInfo>> {
    super::tenancy::get_org(c, org_id).await?;
    let after = cursor::after_id(page)?;
    let limit = page.limit as i64 + 1;
    let sql = format!(
        "SELECT {KEY_COLS} FROM api_keys WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3"
    );
    let found = query(c, &sql, &[&org_id, &after, &limit]).await?;
    let items = found.iter().map(|r| key(r).info).collect();
    Ok(cursor::page_by(items, page.limit, |k: &ApiKeyInfo| {
        k.id.clone()
    }))
}

pub async fn revoke<C: GenericClient>(
    c: &C,
    caller: &Caller,
    org_id: &str,
    id: &str,
) -> DomainResult<()> {
    let changed = execute(
        c,
        "UPDATE api_keys SET revoked_at = now() WHERE org_id = $1 AND id = $2 AND revoked_at IS NULL",
        &[&org_id, &id],
    )
    .await?;
    if changed == 0 {
        return Err(DomainError::not_found(format!("key {id}")));
    }
    let place = AuditPlace::org(org_id, caller);
    audit::record(c, &place, "key.revoke", id, json!({})).await
}

#[async_trait]
impl KeyStore for PgStore {
    async fn create_key(&self, caller: &Caller, key: StoredKey) -> DomainResult<ApiKeyInfo> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(super::pg_err)?;
        let info = create(&tx, caller, &key).await?;
        super::tx::settle(tx.commit().await, c)?;
        Ok(info)
    }

    async fn list_keys(&self, org: &str, page: &PageRequest) -> DomainResult<Page<ApiKeyInfo>> {
        list(&self.client().await?, org, page).await
    }

    async fn revoke_key(&self, caller: &Caller, org: &str, id: &str) -> DomainResult<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(super::pg_err)?;
        revoke(&tx, caller, org, id).await?;
        super::notify::key_revoked(&tx, id).await?;
        super::tx::settle(tx.commit().await, c)?;
        Ok(())
    }

    async fn find_key(&self, id: &str) -> DomainResult<Option<StoredKey>> {
        find(&self.client().await?, id).await
    }

    fn key_revocations(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        self.feed.key_revocations()
    }
}
