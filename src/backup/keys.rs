//! API keys in backups: each org's live keys with their secret hashes (never
//! a secret), as `key` lines after the rows. Only backups carry them; exports
//! do not (a caller with read scope must not receive key hashes). A restore
//! makes each listed key the target lacks and, for an incremental backup,
//! revokes the target's keys it no longer lists (revoked since). Keys are
//! read beside the snapshot, not through it: a key made or revoked while
//! the backup runs may or may not be in it.

use super::chunks::ChunkWriter;
use crate::domain::{validate, ApiKeyInfo, Caller, DomainError, KeyScope, PageRequest, StoredKey};
use crate::store::DynStore;
use anyhow::ensure;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename = "key")]
pub struct KeyLine {
    pub id: String,
    pub org: String,
    pub name: String,
    pub scopes: Vec<KeyScope>,
    pub created_at: String,
    pub created_by: String,
    pub secret_hash: String,
}

impl KeyLine {
    /// Whether an NDJSON line is a `key` record (as `write` writes it).
    pub fn is(line: &[u8]) -> bool {
        line.starts_with(br#"{"kind":"key""#)
    }

    /// Parses and checks a `key` line.
    pub fn parse(line: &[u8]) -> anyhow::Result<Self> {
        let key: KeyLine = serde_json::from_slice(line)?;
        ensure!(
            key.secret_hash.len() == 64 && key.secret_hash.bytes().all(|b| b.is_ascii_hexdigit()),
            "key {}: the secret hash is not a SHA-256",
            key.id
        );
        let checked = validate::id("key id", &key.id)
            .and_then(|_| validate::id("org id", &key.org))
            .and_then(|_| validate::name("key name", &key.name))
            .and_then(|_| validate::time("created_at", &key.created_at));
        checked.map_err(|e| anyhow::anyhow!("key {}: {e}", key.id))?;
        Ok(key)
    }
}

/// Writes the live keys of `orgs`.
pub async fn write(
    store: &DynStore,
    orgs: &[String],
    to: &mut ChunkWriter<'_>,
) -> anyhow::Result<()> {
    for org in orgs {
        let mut out = Vec::new();
        for info in live_keys(store, org).await? {
            let Some(stored) = store.find_key(&info.id).await? else {
                continue;
            };
            let line = KeyLine {
                id: info.id,
                org: info.org,
                name: info.name,
                scopes: info.scopes,
                created_at: info.created_at,
                created_by: info.created_by,
                secret_hash: stored.secret_hash,
            };
            serde_json::to_writer(&mut out, &line)?;
            out.push(b'\n');
        }
        to.push(&out).await?;
    }
    Ok(())
}

/// Makes the listed keys the target lacks; with `revoke_unlisted`, revokes
/// the target's live keys not listed. Returns (made, revoked).
pub async fn apply(
    target: &DynStore,
    caller: &Caller,
    keys: &[KeyLine],
    revoke_unlisted: bool,
) -> anyhow::Result<(u64, u64)> {
    let (mut made, mut revoked) = (0, 0);
    for k in keys {
        if target.find_key(&k.id).await?.is_some() {
            continue;
        }
        let stored = StoredKey {
            info: ApiKeyInfo {
                id: k.id.clone(),
                org: k.org.clone(),
                name: k.name.clone(),
                scopes: k.scopes.clone(),
                created_at: k.created_at.clone(),
                created_by: k.created_by.clone(),
                revoked_at: None,
            },
            secret_hash: k.secret_hash.clone(),
        };
        match target.create_key(caller, stored).await {
            Ok(_) => made += 1,
            // Its org is not in the restored store (made after `--to`).
            Err(DomainError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if revoke_unlisted {
        let listed: std::collections::HashSet<&str> = keys.iter().map(|k| k.id.as_str()).collect();
        for org in crate::feed::reads::all_orgs(target).await? {
            for info in live_keys(target, &org.id).await? {
                if !listed.contains(info.id.as_str()) {
                    target.revoke_key(caller, &org.id, &info.id).await?;
                    revoked += 1;
                }
            }
        }
    }
    Ok((made, revoked))
}

/// The org's keys that are not revoked.
async fn live_keys(store: &DynStore, org: &str) -> anyhow::Result<Vec<ApiKeyInfo>> {
    let mut out = Vec::new();
    let mut page = PageRequest {
        cursor: None,
        limit: 1000,
    };
    loop {
        let found = store.list_keys(org, &page).await?;
        out.extend(found.items.into_iter().filter(|k| k.revoked_at.is_none()));
        match found.next_cursor {
            Some(c) => page.cursor = Some(c),
            None => return Ok(out),
        }
    }
}
