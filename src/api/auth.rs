//! Authentication and authorisation as extractors: a handler that takes
//! `Authorized<Write>` cannot run unless the caller holds `write` on the org
//! named in its path. Keys of another org see 404, exactly as for a missing
//! resource.

use super::error::ApiError;
use super::AppState;
use crate::domain::DomainError;
use crate::store::Actor;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::marker::PhantomData;
use subtle::ConstantTimeEq;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ScopeLevel {
    Read,
    Write,
    Admin,
}

impl ScopeLevel {
    fn name(self) -> &'static str {
        match self {
            ScopeLevel::Read => "read",
            ScopeLevel::Write => "write",
            ScopeLevel::Admin => "admin",
        }
    }
}

/// Who is calling: a key, the org it belongs to (none for the global admin)
/// and what it may do there.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key_id: String,
    pub org: Option<String>,
    pub scopes: Vec<ScopeLevel>,
}

impl Principal {
    pub fn actor(&self) -> Actor {
        Actor(self.key_id.clone())
    }

    pub fn is_global_admin(&self) -> bool {
        self.org.is_none() && self.scopes.contains(&ScopeLevel::Admin)
    }

    fn allows(&self, level: ScopeLevel) -> bool {
        // admin implies write implies read.
        self.scopes.iter().any(|s| *s >= level)
    }
}

/// Verifies bearer keys. Only the bootstrap admin key exists so far; its
/// hash is kept, never the key, and compared in constant time.
pub struct Authenticator {
    admin_key_hash: [u8; 32],
}

fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl Authenticator {
    pub fn new(admin_key: &str) -> Self {
        Authenticator {
            admin_key_hash: hash(admin_key),
        }
    }

    pub fn authenticate(&self, key: &str) -> Option<Principal> {
        bool::from(hash(key).ct_eq(&self.admin_key_hash)).then(|| Principal {
            key_id: "admin".into(),
            org: None,
            scopes: vec![ScopeLevel::Admin],
        })
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, key) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(p) = parts.extensions.get::<Principal>() {
            return Ok(p.clone());
        }
        let principal = bearer(parts)
            .and_then(|key| state.auth.authenticate(key))
            .ok_or(ApiError::Unauthorized)?;
        parts.extensions.insert(principal.clone());
        Ok(principal)
    }
}

pub trait Need: Send + Sync + 'static {
    const LEVEL: ScopeLevel;
}
pub struct Read;
pub struct Write;
pub struct Admin;
impl Need for Read {
    const LEVEL: ScopeLevel = ScopeLevel::Read;
}
impl Need for Write {
    const LEVEL: ScopeLevel = ScopeLevel::Write;
}
impl Need for Admin {
    const LEVEL: ScopeLevel = ScopeLevel::Admin;
}

/// Proof that the caller holds scope `N` on the org in the request path.
pub struct Authorized<N: Need> {
    pub principal: Principal,
    _need: PhantomData<N>,
}

impl<N: Need> Authorized<N> {
    pub fn actor(&self) -> Actor {
        self.principal.actor()
    }
}

impl<N: Need> FromRequestParts<AppState> for Authorized<N> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let principal = Principal::from_request_parts(parts, state).await?;
        let params =
            axum::extract::Path::<HashMap<String, String>>::from_request_parts(parts, state)
                .await
                .map(|p| p.0)
                .unwrap_or_default();
        let org = params.get("org");
        if let (Some(mine), Some(org)) = (&principal.org, org) {
            if mine != org {
                return Err(DomainError::not_found(format!("org {org}")).into());
            }
        }
        if org.is_none() && !principal.is_global_admin() {
            return Err(ApiError::Forbidden("global admin"));
        }
        if !principal.allows(N::LEVEL) {
            return Err(ApiError::Forbidden(N::LEVEL.name()));
        }
        Ok(Authorized {
            principal,
            _need: PhantomData,
        })
    }
}

/// Proof that the caller is the global (bootstrap) admin.
pub struct GlobalAdmin(#[allow(dead_code)] pub Principal);

impl FromRequestParts<AppState> for GlobalAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let principal = Principal::from_request_parts(parts, state).await?;
        if !principal.is_global_admin() {
            return Err(ApiError::Forbidden("global admin"));
        }
        Ok(GlobalAdmin(principal))
    }
}
