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
