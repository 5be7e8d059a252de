//! Opaque keyset cursors: the sort key of the last item of a page, as
//! base64url JSON. Clients pass them back untouched.

use crate::domain::{DomainError, DomainResult};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{de::DeserializeOwned, Serialize};

pub fn encode<K: Serialize>(key: &K) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(key).expect("cursor keys serialise"))
}

pub fn decode<K: DeserializeOwned>(cursor: &str) -> DomainResult<K> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| DomainError::BadRequest("cursor is not one this server issued".into()))
}

/// The cursor of lists in id order: the last id seen.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct IdCursor {
    pub id: String,
}

/// Where an id-ordered page starts (after this id; "" for the first page).
pub fn after_id(page: &crate::domain::PageRequest) -> DomainResult<String> {
    Ok(match &page.cursor {
        Some(c) => decode::<IdCursor>(c)?.id,
        None => String::new(),
    })
}

/// The cursor of a version history (newest first): the last version seen.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct VersionCursor {
    pub v: i64,
}

/// The cursor of the audit trail (newest first): the last event id seen.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct AuditCursor {
    pub before: i64,
}

/// Where a page of versions starts (below this version).
pub fn before_version(page: &crate::domain::PageRequest) -> DomainResult<i64> {
    Ok(match &page.cursor {
        Some(c) => decode::<VersionCursor>(c)?.v,
        None => i64::MAX,
    })
}

/// Where a page of audit events starts (below this event id).
pub fn before_event(page: &crate::domain::PageRequest) -> DomainResult<i64> {
    Ok(match &page.cursor {
        Some(c) => decode::<AuditCursor>(c)?.before,
        None => i64::MAX,
    })
}

/// Cuts `limit + 1` fetched items to a page; the extra item proves there is
/// a next page, whose cursor is `key` of the last item kept.
pub fn page_after<T, K: Serialize>(
    mut items: Vec<T>,
    limit: usize,
    key: impl Fn(&T) -> K,
) -> crate::domain::Page<T> {
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|i| encode(&key(i)))
    } else {
        None
    };
    crate::domain::Page { items, next_cursor }
}

/// `page_after` for lists in id order.
pub fn page_by<T>(
    items: Vec<T>,
    limit: usize,
    id: impl Fn(&T) -> String,
) -> crate::domain::Page<T> {
    page_after(items, limit, |i| IdCursor { id: id(i) })
}
