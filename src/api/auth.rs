//! Authentication and authorisation as extractors: a handler that takes
//! `Authorized<Write>` cannot run unless the caller holds `write` on the org
//! named in its path. Keys of another org see 404, exactly as for a missing
//! resource.
//!
//! OIDC bearer tokens (JWTs, `super::oidc`) are accepted beside keys when
//! configured: a token is told from a key by its shape (three dot-separated
//! base64url segments; keys have no dot) and carries grants per org
//! (`Principal::grants`) instead of one org.
//!
//! Keys look like `sk_<id>_<secret>`: the id finds the row, the secret is
//! checked against its SHA-256 in constant time (secrets are 256 random bits,
//! so a slow KDF would add cost and no strength). Verified keys are cached
//! for `KEY_CACHE_TTL`; revocation through this daemon evicts at once.

use super::error::ApiError;
use super::oidc::{self, Grants, Verifier};
use super::AppState;
use crate::digest::sha256_hex;
use crate::domain::{Caller, DomainError, KeyScope, StoredKey};
use crate::lifecycle::Lifecycle;
use crate::store::DynStore;
use axum::extract::{ConnectInfo, FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::Uri;
use axum_extra::headers::authorization::{Authorization, Bearer};
use axum_extra::headers::HeaderMapExt;
use base64::Engine;
use governor::{clock::Clock, DefaultKeyedRateLimiter, Quota, RateLimiter};
use moka::future::Cache;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// Upper bound on how long another daemon's revocation can go unseen here
/// when the store has no change feed (SQLite files shared by two daemons).
const KEY_CACHE_TTL: Duration = Duration::from_secs(5);

/// Who is calling: a key, the org it belongs to (none for the global admin)
/// and what it may do there.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key_id: String,
    pub org: Option<String>,
    pub scopes: Vec<KeyScope>,
    /// The projects the key is limited to (None: every project of its org).
    pub projects: Option<Vec<String>>,
    /// A bearer token's level per org (then `org` is None and `scopes`
    /// empty); None for keys and for a token that is the global admin.
    pub grants: Option<Arc<Grants>>,
}

impl Principal {
    pub fn is_global_admin(&self) -> bool {
        self.org.is_none() && self.scopes.contains(&KeyScope::Admin)
    }

    fn allows(&self, level: KeyScope) -> bool {
        // admin implies write implies read.
        self.scopes.iter().any(|s| *s >= level)
    }

    fn global_admin(key_id: &str) -> Self {
        Principal {
            key_id: key_id.into(),
            org: None,
            scopes: vec![KeyScope::Admin],
            projects: None,
            grants: None,
        }
    }
}

/// How requests are authenticated.
pub struct AuthSettings {
    pub admin_key: String,
    /// Local development only: every request acts as the global admin.
    pub disabled: bool,
    /// Requests per second per org key; 0 turns rate limiting off.
    pub rate_per_sec: u32,
    pub burst: u32,
}

pub struct Authenticator {
    admin_key_hash: [u8; 32],
    disabled: bool,
    store: DynStore,
    keys: Cache<String, Option<Arc<StoredKey>>>,
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    oidc: Option<Arc<Verifier>>,
}

/// The raw digest, for the constant-time comparison with the admin key.
fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// A new key: (public id, full token shown once, hash of the secret).
pub fn new_key() -> (String, String, String) {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rand::fill(&mut id);
    rand::fill(&mut secret);
    let id = hex::encode(id);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    let hash = sha256_hex(secret.as_bytes());
    (id.clone(), format!("sk_{id}_{secret}"), hash)
}

impl Authenticator {
    pub fn new(
        store: DynStore,
        settings: AuthSettings,
        oidc: Option<crate::config::OidcConfig>,
        lifecycle: &Lifecycle,
    ) -> Self {
        let limiter = NonZeroU32::new(settings.rate_per_sec).map(|rate| {
            let burst = NonZeroU32::new(settings.burst.max(settings.rate_per_sec)).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        let keys: Cache<String, Option<Arc<StoredKey>>> = Cache::builder()
            .max_capacity(100_000)
            .time_to_live(KEY_CACHE_TTL)
            .build();
        // Revocations made through other daemons evict here as they happen.
        if let Some(mut revoked) = store.key_revocations() {
            let keys = keys.clone();
            let life = lifecycle.clone();
            lifecycle.spawn(async move {
                use tokio::sync::broadcast::error::RecvError;
                loop {
                    let received = tokio::select! {
                        r = revoked.recv() => r,
                        _ = life.cancelled() => break,
                    };
                    match received {
                        Ok(id) => keys.invalidate(&id).await,
                        Err(RecvError::Lagged(_)) => keys.invalidate_all(),
                        Err(RecvError::Closed) => break,
                    }
                }
            });
        }
        Authenticator {
            admin_key_hash: sha256(settings.admin_key.as_bytes()),
            disabled: settings.disabled,
            store,
            keys,
            limiter,
            oidc: oidc.map(|config| Verifier::start(config, lifecycle)),
        }
    }

    async fn authenticate(&self, token: Option<&str>) -> Result<Principal, ApiError> {
        if self.disabled {
            return Ok(Principal::global_admin("local-dev"));
        }
        let token = token.ok_or(ApiError::Unauthorized)?;
        if bool::from(sha256(token.as_bytes()).ct_eq(&self.admin_key_hash)) {
            return Ok(Principal::global_admin("admin"));
        }
        if let Some(verifier) = &self.oidc {
            if oidc::looks_like_jwt(token) {
                return self.token_principal(verifier, token).await;
            }
        }
        let (id, secret) = token
            .strip_prefix("sk_")
            .and_then(|rest| rest.split_once('_'))
            .ok_or(ApiError::Unauthorized)?;
        if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ApiError::Unauthorized);
        }
        let stored = self
            .keys
            .try_get_with(id.to_owned(), async {
                self.store.find_key(id).await.map(|k| k.map(Arc::new))
            })
            .await
            .map_err(|e| ApiError::Domain(DomainError::Unavailable(e.to_string())))?
            .ok_or(ApiError::Unauthorized)?;
        let presented = sha256_hex(secret.as_bytes());
        let matches = bool::from(presented.as_bytes().ct_eq(stored.secret_hash.as_bytes()));
        if !matches || stored.info.revoked_at.is_some() {
            return Err(ApiError::Unauthorized);
        }
        self.check_rate(id)?;
        Ok(Principal {
            key_id: stored.info.id.clone(),
            org: Some(stored.info.org.clone()),
            scopes: stored.info.scopes.clone(),
            projects: stored.info.projects.clone(),
            grants: None,
        })
    }

    /// A verified token as a principal; its subject is the actor recorded
    /// (`oidc:<sub>`) and the key its requests are rate-limited by.
    async fn token_principal(
        &self,
        verifier: &Verifier,
        token: &str,
    ) -> Result<Principal, ApiError> {
        let identity = verifier.verify(token).await.map_err(|refusal| {
            tracing::debug!(reason = refusal.reason(), "bearer token refused");
            ApiError::BadToken(refusal.reason())
        })?;
        let actor = format!("oidc:{}", identity.subject);
        if identity.grants.global_admin {
            return Ok(Principal::global_admin(&actor));
        }
        self.check_rate(&actor)?;
        Ok(Principal {
            key_id: actor,
            org: None,
            scopes: Vec::new(),
            projects: None,
            grants: Some(Arc::new(identity.grants)),
        })
    }

    fn check_rate(&self, key_id: &str) -> Result<(), ApiError> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter.check_key(&key_id.to_owned()).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            ApiError::RateLimited(wait.as_secs_f64().ceil().max(1.0) as u64)
        })
    }

    /// A key changed (revoked): drop it from the cache now.
    pub async fn forget(&self, key_id: &str) {
        self.keys.invalidate(key_id).await;
    }
}

/// The `Authorization: Bearer <key>` credentials; a missing header, another
/// scheme or a malformed value all mean "no key here".
fn bearer(parts: &Parts) -> Option<String> {
    let credentials = parts.headers.typed_get::<Authorization<Bearer>>()?;
    Some(credentials.token().trim().to_owned())
}

/// Browsers cannot set headers on WebSocket upgrades: only there may the
/// key come as `?token=`.
fn query_token(parts: &Parts) -> Option<String> {
    let is_upgrade = parts
        .headers
        .get(axum::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !is_upgrade {
        return None;
    }
    url_token(&parts.uri)
}

/// The first `token` query parameter, percent-decoded (form encoding, as
/// `URLSearchParams` writes it).
fn url_token(uri: &Uri) -> Option<String> {
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri).ok()?;
    pairs
        .into_iter()
        .find_map(|(k, v)| (k == "token").then_some(v))
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(p) = parts.extensions.get::<Principal>() {
            return Ok(p.clone());
        }
        let token = bearer(parts).or_else(|| query_token(parts));
        let principal = state.auth.authenticate(token.as_deref()).await?;
        parts.extensions.insert(principal.clone());
        Ok(principal)
    }
}

/// The caller as recorded in history and audit.
fn caller(parts: &Parts, principal: &Principal) -> Caller {
    Caller {
        replay: false,
        key_id: principal.key_id.clone(),
        ip: parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string()),
        user_agent: parts
            .headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(256).collect()),
    }
}

pub trait Need: Send + Sync + 'static {
    const LEVEL: KeyScope;
}
pub struct Read;
pub struct Write;
pub struct Admin;
impl Need for Read {
    const LEVEL: KeyScope = KeyScope::Read;
}
impl Need for Write {
    const LEVEL: KeyScope = KeyScope::Write;
}
impl Need for Admin {
    const LEVEL: KeyScope = KeyScope::Admin;
}

/// Proof that the caller holds scope `N` on the org in the request path.
pub struct Authorized<N: Need> {
    pub caller: Caller,
    _need: PhantomData<N>,
}

impl<N: Need> Authorized<N> {
    pub fn caller(&self) -> &Caller {
        &self.caller
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
        if let Some(grants) = &principal.grants {
            let Some(org) = params.get("org") else {
                return Err(ApiError::Forbidden("global admin"));
            };
            match grants.level(org) {
                // An org the token does not name does not exist for it.
                None => return Err(DomainError::not_found(format!("org {org}")).into()),
                Some(level) if level < N::LEVEL => {
                    return Err(ApiError::Forbidden(N::LEVEL.as_str()))
                }
                Some(_) => {
                    return Ok(Authorized {
                        caller: caller(parts, &principal),
                        _need: PhantomData,
                    })
                }
            }
        }
        match (params.get("org"), &principal.org) {
            // Another org's resources do not exist for this key.
            (Some(org), Some(mine)) if org != mine => {
                return Err(DomainError::not_found(format!("org {org}")).into());
            }
            (None, _) if !principal.is_global_admin() => {
                return Err(ApiError::Forbidden("global admin"))
            }
            _ => {}
        }
        if let Some(mine) = &principal.projects {
            match params.get("project") {
                // The other projects of its org do not exist for this key.
                Some(p) if !mine.contains(p) => {
                    return Err(DomainError::not_found(format!("project {p}")).into());
                }
                Some(_) => {}
                // Nor does the org beyond them: its listings, keys, trail.
                None => {
                    let org = params.get("org").map_or("", String::as_str);
                    return Err(DomainError::not_found(format!("org {org}")).into());
                }
            }
        }
        if !principal.allows(N::LEVEL) {
            return Err(ApiError::Forbidden(N::LEVEL.as_str()));
        }
        Ok(Authorized {
            caller: caller(parts, &principal),
            _need: PhantomData,
        })
    }
}

/// Proof that the caller is the global (bootstrap) admin.
pub struct GlobalAdmin {
    pub caller: Caller,
}

impl FromRequestParts<AppState> for GlobalAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let principal = Principal::from_request_parts(parts, state).await?;
        if !principal.is_global_admin() {
            return Err(ApiError::Forbidden("global admin"));
        }
        Ok(GlobalAdmin {
            caller: caller(parts, &principal),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_keys_parse_back_and_hash_their_secret() {
        let (id, token, hash) = new_key();
        let (parsed_id, secret) = token.strip_prefix("sk_").unwrap().split_once('_').unwrap();
        assert_eq!(parsed_id, id);
        assert_eq!(sha256_hex(secret.as_bytes()), hash);
        assert_eq!(id.len(), 16);
    }

    fn query(q: &str) -> Option<String> {
        url_token(&format!("/v1/ws?{q}").parse().unwrap())
    }

    #[test]
    fn token_only_from_the_query_parameter_named_token() {
        assert_eq!(query("a=1&token=abc"), Some("abc".into()));
        assert_eq!(query("tokens=abc"), None);
        assert_eq!(query("token=first&token=second"), Some("first".into()));
        assert_eq!(url_token(&"/v1/ws".parse().unwrap()), None);
    }

    #[test]
    fn the_query_token_is_percent_decoded() {
        assert_eq!(query("token=sk%5Fab%2Bc%2F%3D"), Some("sk_ab+c/=".into()));
        assert_eq!(query("t%6Fken=abc"), Some("abc".into()));
    }

    fn headers(value: &str) -> Parts {
        let (parts, ()) = axum::http::Request::builder()
            .header(axum::http::header::AUTHORIZATION, value)
            .body(())
            .unwrap()
            .into_parts();
        parts
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_other_schemes_carry_no_key() {
        assert_eq!(bearer(&headers("Bearer sk_1_x")), Some("sk_1_x".into()));
        assert_eq!(bearer(&headers("bearer  sk_1_x ")), Some("sk_1_x".into()));
        assert_eq!(bearer(&headers("Basic c2s6eA==")), None);
        assert_eq!(bearer(&headers("Bearer")), None);
    }
}
