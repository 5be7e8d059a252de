//! API keys in backups: each org's live keys with their secret hashes (never
//! a secret), as `key` lines after the rows. Only backups carry them; exports
//! do not (a caller with read scope must not receive key hashes). A restore
//! makes each listed key the target lacks and, for an incremental backup,
//! revokes the target's keys it no longer lists (revoked since); for a
//! backup begun after the time restored to, those its audit events place as
//! revoked by then. Keys are
//! read beside the snapshot, not through it: a key made or revoked while
//! the backup runs may or may not be in it.

use super::chunks::ChunkWriter;
use crate::domain::{validate, ApiKeyInfo, Caller, DomainError, PageRequest, StoredKey};
use crate::store::DynStore;
use anyhow::ensure;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// A live key as a backup holds it (`revoked_at` is always absent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename = "key")]
pub struct KeyLine {
    #[serde(flatten)]
    pub info: ApiKeyInfo,
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
        let info = &key.info;
        ensure!(
            key.secret_hash.len() == 64 && key.secret_hash.bytes().all(|b| b.is_ascii_hexdigit()),
            "key {}: the secret hash is not a SHA-256",
            info.id
        );
        ensure!(
            info.revoked_at.is_none(),
            "key {}: a backup holds live keys only",
            info.id
        );
        let checked = validate::id("key id", &info.id)
            .and_then(|_| validate::id("org id", &info.org))
            .and_then(|_| validate::name("key name", &info.name))
            .and_then(|_| validate::time("created_at", &info.created_at));
        checked.map_err(|e| anyhow::anyhow!("key {}: {e}", info.id))?;
        Ok(key)
    }
}

/// Writes the live keys of `orgs`.
pub async fn write(
    store: &DynStore,
    orgs: &[String],
    to: &mut ChunkWriter<'_>,
) -> anyhow::Result<()> {
    let mut out = Vec::new();
    for key in lines_of(store, orgs).await? {
        crate::export::line(&mut out, &key);
    }
    to.push(&out).await
}

/// The live keys of `orgs`, with their secret hashes.
pub async fn lines_of(store: &DynStore, orgs: &[String]) -> anyhow::Result<Vec<KeyLine>> {
    let mut out = Vec::new();
    for org in orgs {
        for info in live_keys(store, org).await? {
            if let Some(stored) = store.find_key(&info.id).await? {
                out.push(KeyLine {
                    info,
                    secret_hash: stored.secret_hash,
                });
            }
        }
    }
    Ok(out)
}

/// Which of the target's keys a backup's restore revokes.
pub enum Revoke<'a> {
    None,
    /// Those it does not list (an incremental backup: revoked since its parent).
    Unlisted,
    /// Those its audit events place as revoked (by the time restored to, for
    /// a backup begun after it: what it does not list may have gone later).
    Placed(&'a BTreeSet<String>),
}

/// Makes the listed keys the target lacks, and revokes the target's live
/// keys `revoke` names. Returns (made, revoked).
pub async fn apply(
    target: &DynStore,
    caller: &Caller,
    keys: &[KeyLine],
    revoke: Revoke<'_>,
) -> anyhow::Result<(u64, u64)> {
    let (mut made, mut revoked) = (0, 0);
    for k in keys {
        if target.find_key(&k.info.id).await?.is_some() {
            continue;
        }
        let stored = StoredKey {
            info: k.info.clone(),
            secret_hash: k.secret_hash.clone(),
        };
        match target.create_key(caller, stored).await {
            Ok(_) => made += 1,
            // Its org is not in the restored store (made after `--to`).
            Err(DomainError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let listed: BTreeSet<&str> = keys.iter().map(|k| k.info.id.as_str()).collect();
    let revokes = |id: &str| match &revoke {
        Revoke::None => false,
        Revoke::Unlisted => !listed.contains(id),
        Revoke::Placed(ids) => ids.contains(id),
    };
    if !matches!(revoke, Revoke::None) {
        for org in crate::feed::reads::all_orgs(target).await? {
            for info in live_keys(target, &org.id).await? {
                if revokes(&info.id) {
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
