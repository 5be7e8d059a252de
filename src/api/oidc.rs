//! OIDC bearer tokens beside API keys: a JWT is accepted when it is signed
//! by a key of the configured issuer's JWKS, names that issuer and the
//! configured audience, is within its `exp`/`nbf` (with leeway) and has a
//! `sub`. Its grants claim maps onto the same org and scope model as keys
//! (`Grants`).
//!
//! Only asymmetric algorithms are accepted, and for each key only those its
//! JWK allows (its `alg` when declared, else its type's: RSA → RS*/PS*, EC
//! P-256 → ES256, P-384 → ES384, Ed25519 → EdDSA). Symmetric (`oct`) keys
//! in the JWKS are ignored, so a public key is never used as an HMAC secret
//! and `none`/HS* tokens have nothing to verify against.
//!
//! The key set is fetched at start, every `jwks_refresh`, and when a token
//! names a `kid` the set lacks; those last fetches are rate-limited, so a
//! flood of made-up kids cannot hammer the issuer. A fetch is bounded in
//! time and size; a failed one keeps the keys already held.

use crate::config::OidcConfig;
use crate::domain::{validate, KeyScope};
use crate::lifecycle::Lifecycle;
use base64::Engine;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Longer bearer tokens are refused unread.
const MAX_TOKEN_LEN: usize = 16 * 1024;
/// A whole JWKS fetch, connection to last byte.
pub const JWKS_TIMEOUT: Duration = Duration::from_secs(5);
/// Real key sets are a few KiB; anything far larger is refused.
pub const JWKS_MAX_BYTES: usize = 512 * 1024;
/// Keys kept from one key set.
const MAX_KEYS: usize = 64;
/// Fetches caused by unknown kids: a burst of this many, then one per
/// `UNKNOWN_KID_PERIOD`.
const UNKNOWN_KID_BURST: u32 = 3;
const UNKNOWN_KID_PERIOD: Duration = Duration::from_secs(10);
/// The only entry of the grants claim that makes a token the global admin.
pub const GLOBAL_ADMIN: &str = "strata:global_admin";

/// Why a token was refused: a short reason sent with the 401, nothing more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Malformed,
    Algorithm,
    UnknownKey,
    Signature,
    Expired,
    NotYetValid,
    Issuer,
    Audience,
    Claims,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed token",
            Refusal::Algorithm => "algorithm not accepted",
            Refusal::UnknownKey => "unknown signing key",
            Refusal::Signature => "bad signature",
            Refusal::Expired => "token expired",
            Refusal::NotYetValid => "token not yet valid",
            Refusal::Issuer => "wrong issuer",
            Refusal::Audience => "wrong audience",
            Refusal::Claims => "missing or invalid claims",
        }
    }
}

/// What a token may do, org by org: `<org>:read|write|admin`, `*:<level>`
/// for every org, and `strata:global_admin`. Other entries (`openid`,
/// another service's scopes) are ignored; the highest level per org wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    pub global_admin: bool,
    /// The level granted on every org (`*:<level>`).
    pub every: Option<KeyScope>,
    pub orgs: BTreeMap<String, KeyScope>,
}

impl Grants {
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Grants {
        let mut grants = Grants::default();
        for entry in entries {
            if entry == GLOBAL_ADMIN {
                grants.global_admin = true;
                continue;
            }
            // Org ids may hold `:`; the level is after the last one.
            let Some((org, level)) = entry.rsplit_once(':') else {
                continue;
            };
            let Ok(level) = KeyScope::from_str(level) else {
                continue;
            };
            if org == "*" {
                grants.every = grants.every.max(Some(level));
            } else if validate::id("org", org).is_ok() {
                let held = grants.orgs.entry(org.to_owned()).or_insert(level);
                *held = (*held).max(level);
            }
        }
        grants
    }

    /// The level held on `org`, None when the org is out of reach.
    pub fn level(&self, org: &str) -> Option<KeyScope> {
        self.orgs.get(org).copied().max(self.every)
    }
}

/// A verified token: who (`sub`) and what it may do.
#[derive(Debug)]
pub struct Identity {
    pub subject: String,
    pub grants: Grants,
}

/// Three dot-separated base64url segments (the signature may be empty, so
/// an unsigned token reaches the verifier and is refused there). API keys
/// (`sk_<id>_<secret>`) never hold a dot.
pub fn looks_like_jwt(token: &str) -> bool {
    let b64url = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    token.len() <= MAX_TOKEN_LEN
        && !header.is_empty()
        && !payload.is_empty()
        && b64url(header)
        && b64url(payload)
        && b64url(signature)
}

/// The header fields read before any key is chosen.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
    /// Extensions the token says must be understood: none are (RFC 7515
    /// 4.1.11), so any `crit` refuses the token.
    crit: Option<Value>,
}

/// The algorithm and key id a token names, read without trusting it.
fn header(token: &str) -> Result<(Algorithm, String), Refusal> {
    if !looks_like_jwt(token) {
        return Err(Refusal::Malformed);
    }
    let encoded = token.split('.').next().unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| Refusal::Malformed)?;
    let raw: RawHeader = serde_json::from_slice(&bytes).map_err(|_| Refusal::Malformed)?;
    if raw.crit.is_some() {
        return Err(Refusal::Malformed);
    }
    let alg = match raw.alg.as_str() {
        "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" | "ES256" | "ES384" | "EdDSA" => {
            Algorithm::from_str(&raw.alg).map_err(|_| Refusal::Algorithm)?
        }
        // `none`, HS* and anything else.
        _ => return Err(Refusal::Algorithm),
    };
    let kid = raw.kid.ok_or(Refusal::UnknownKey)?;
    Ok((alg, kid))
}

/// One usable key of the set: the key and the algorithms it may verify.
struct VerifyingKey {
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
}

type KeySet = HashMap<String, Arc<VerifyingKey>>;

/// A JWK as far as it is read; unknown members are ignored.
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

/// The signature keys of a JWKS document. Keys that are not for
/// signatures, symmetric, of an unknown type or curve, or without a kid are
/// left out; the document itself must parse.
fn key_set(body: &[u8]) -> Result<KeySet, String> {
    #[derive(Deserialize)]
    struct Document {
        keys: Vec<Value>,
    }
    let doc: Document = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let mut set = KeySet::new();
    for value in doc.keys {
        let Some((kid, key)) = serde_json::from_value(value).ok().and_then(verifying_key) else {
            continue;
        };
        if set.len() >= MAX_KEYS {
            break;
        }
        set.entry(kid).or_insert_with(|| Arc::new(key));
    }
    Ok(set)
}

fn verifying_key(jwk: RawJwk) -> Option<(String, VerifyingKey)> {
    use Algorithm::*;
    if jwk.usage.as_deref().is_some_and(|u| u != "sig") {
        return None;
    }
    let (family, key): (&[Algorithm], _) = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
        ("RSA", _) => (
            &[RS256, RS384, RS512, PS256, PS384, PS512],
            DecodingKey::from_rsa_components(jwk.n.as_deref()?, jwk.e.as_deref()?),
        ),
        ("EC", Some("P-256")) => (
            &[ES256],
            DecodingKey::from_ec_components(jwk.x.as_deref()?, jwk.y.as_deref()?),
        ),
        ("EC", Some("P-384")) => (
            &[ES384],
            DecodingKey::from_ec_components(jwk.x.as_deref()?, jwk.y.as_deref()?),
        ),
        ("OKP", Some("Ed25519")) => (&[EdDSA], DecodingKey::from_ed_components(jwk.x.as_deref()?)),
        // `oct` (an HMAC secret) and anything unknown.
        _ => return None,
    };
    let algorithms = match jwk.alg.as_deref() {
        None => family.to_vec(),
        // A declared alg outside the key's family (HS256 on an RSA key)
        // makes the key unusable rather than widening what it verifies.
        Some(alg) => vec![Algorithm::from_str(alg)
            .ok()
            .filter(|a| family.contains(a))?],
    };
    Some((
        jwk.kid?,
        VerifyingKey {
            key: key.ok()?,
            algorithms,
        },
    ))
}

/// The configured claim (dotted: nested) as grant entries: a
/// space-separated string (OAuth `scope`) or an array of strings.
fn grant_entries<'a>(claims: &'a serde_json::Map<String, Value>, path: &str) -> Vec<&'a str> {
    let mut parts = path.split('.');
    let first = parts.next().unwrap_or_default();
    let mut value = claims.get(first);
    for part in parts {
        value = value.and_then(|v| v.get(part));
    }
    match value {
        Some(Value::String(s)) => s.split_whitespace().collect(),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Why the key set is being fetched.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cause {
    Schedule,
    UnknownKid,
}

/// Verifies bearer tokens against the issuer's keys; shared by every
/// request (`Arc`), its key set swapped whole on each fetch.
pub struct Verifier {
    config: OidcConfig,
    client: reqwest::Client,
    /// Read by every token; written only by a fetch. A std lock: held for
    /// a map lookup or a pointer swap, never across an await.
    keys: RwLock<Arc<KeySet>>,
    /// One fetch at a time.
    fetching: tokio::sync::Mutex<()>,
    /// Fetches finished (ok or not): a request that waited for another's
    /// fetch uses its result instead of fetching again.
    fetched: AtomicU64,
    unknown_kid_fetches: DefaultDirectRateLimiter,
}

impl Verifier {
    /// The verifier, and its schedule of fetches (the first one now) on
    /// `lifecycle`.
    pub fn start(config: OidcConfig, lifecycle: &Lifecycle) -> Arc<Self> {
        let client = reqwest::Client::builder()
            .timeout(JWKS_TIMEOUT)
            .connect_timeout(JWKS_TIMEOUT)
            // The configured URL is the one trusted; no hop elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a reqwest client with rustls builds");
        let burst = NonZeroU32::new(UNKNOWN_KID_BURST).expect("nonzero");
        let quota = Quota::with_period(UNKNOWN_KID_PERIOD)
            .expect("nonzero period")
            .allow_burst(burst);
        let verifier = Arc::new(Verifier {
            config,
            client,
            keys: RwLock::new(Arc::default()),
            fetching: tokio::sync::Mutex::new(()),
            fetched: AtomicU64::new(0),
            unknown_kid_fetches: RateLimiter::direct(quota),
        });
        let scheduled = verifier.clone();
        let life = lifecycle.clone();
        lifecycle.spawn(async move {
            loop {
                scheduled.refresh(Cause::Schedule).await;
                tokio::select! {
                    _ = tokio::time::sleep(scheduled.config.jwks_refresh) => {}
                    _ = life.cancelled() => break,
                }
            }
        });
        verifier
    }

    fn key(&self, kid: &str) -> Option<Arc<VerifyingKey>> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        keys.get(kid).cloned()
    }

    async fn refresh(&self, cause: Cause) {
        let seen = self.fetched.load(Ordering::Acquire);
        let _one_at_a_time = self.fetching.lock().await;
        if self.fetched.load(Ordering::Acquire) != seen {
            return;
        }
        if cause == Cause::UnknownKid && self.unknown_kid_fetches.check().is_err() {
            return;
        }
        match self.fetch().await {
            Ok(set) => {
                tracing::debug!(keys = set.len(), "JWKS fetched");
                *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
            }
            // The keys held stay in use; tokens with unknown kids get 401.
            Err(error) => tracing::warn!(url = %self.config.jwks_url, %error, "JWKS fetch failed"),
        }
        self.fetched.fetch_add(1, Ordering::Release);
    }

    async fn fetch(&self) -> anyhow::Result<KeySet> {
        let mut response = self
            .client
            .get(&self.config.jwks_url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await?
            .error_for_status()?;
        let too_large = || anyhow::anyhow!("the key set exceeds {JWKS_MAX_BYTES} bytes");
        if response
            .content_length()
            .is_some_and(|n| n > JWKS_MAX_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > JWKS_MAX_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        key_set(&body).map_err(|e| anyhow::anyhow!("not a JWKS document: {e}"))
    }

    /// The token's identity, or why it is refused.
    pub async fn verify(&self, token: &str) -> Result<Identity, Refusal> {
        let (alg, kid) = header(token)?;
        let key = match self.key(&kid) {
            Some(key) => key,
            None => {
                self.refresh(Cause::UnknownKid).await;
                self.key(&kid).ok_or(Refusal::UnknownKey)?
            }
        };
        self.check(token, alg, &key)
    }

    fn check(&self, token: &str, alg: Algorithm, key: &VerifyingKey) -> Result<Identity, Refusal> {
        if !key.algorithms.contains(&alg) {
            return Err(Refusal::Algorithm);
        }
        let mut validation = Validation::new(alg);
        validation.leeway = self.config.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data =
            jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key.key, &validation)
                .map_err(|e| match e.kind() {
                    ErrorKind::InvalidSignature => Refusal::Signature,
                    ErrorKind::ExpiredSignature => Refusal::Expired,
                    ErrorKind::ImmatureSignature => Refusal::NotYetValid,
                    ErrorKind::InvalidIssuer => Refusal::Issuer,
                    ErrorKind::InvalidAudience => Refusal::Audience,
                    ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => Refusal::Algorithm,
                    ErrorKind::MissingRequiredClaim(_) => Refusal::Claims,
                    _ => Refusal::Malformed,
                })?;
        // The subject is recorded as the actor of writes.
        let subject = data
            .claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= 255 && !s.chars().any(char::is_control))
            .ok_or(Refusal::Claims)?;
        Ok(Identity {
            subject: subject.to_owned(),
            grants: Grants::parse(grant_entries(&data.claims, &self.config.claim)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use KeyScope::*;

    #[test]
    fn grants_map_org_levels_wildcard_and_global_admin() {
        let g = Grants::parse([
            "openid",
            "acme:read",
            "acme:write",
            "a:b:admin",
            "*:read",
            "evil:delete",
            "bad/org:admin",
            ":read",
        ]);
        assert!(!g.global_admin);
        assert_eq!(g.level("acme"), Some(Write));
        assert_eq!(g.level("a:b"), Some(Admin));
        assert_eq!(g.level("anyone"), Some(Read));
        assert_eq!(g.orgs.len(), 2);
        let none = Grants::parse(["acme:write"]);
        assert_eq!(none.level("evil"), None);
        assert!(Grants::parse([GLOBAL_ADMIN]).global_admin);
        // `*:admin` is every org's admin, not the global admin.
        assert!(!Grants::parse(["*:admin"]).global_admin);
    }

    #[test]
    fn the_claim_is_a_string_an_array_or_nested() {
        let claims: serde_json::Map<String, Value> = serde_json::from_value(serde_json::json!({
            "scope": "openid acme:read  evil:write",
            "roles": ["acme:admin", 7, null],
            "realm_access": {"roles": ["*:read"]},
            "odd": {"x": 1},
        }))
        .unwrap();
        assert_eq!(
            grant_entries(&claims, "scope"),
            ["openid", "acme:read", "evil:write"]
        );
        assert_eq!(grant_entries(&claims, "roles"), ["acme:admin"]);
        assert_eq!(grant_entries(&claims, "realm_access.roles"), ["*:read"]);
        assert!(grant_entries(&claims, "odd").is_empty());
        assert!(grant_entries(&claims, "missing.deeper").is_empty());
    }

    #[test]
    fn api_keys_are_not_taken_for_tokens() {
        assert!(!looks_like_jwt("sk_0123456789abcdef_c2VjcmV0"));
        assert!(!looks_like_jwt("test-admin-key-0123456789"));
        assert!(looks_like_jwt("eyJh.eyJz.c2ln"));
        assert!(looks_like_jwt("eyJh.eyJz."));
        assert!(!looks_like_jwt("eyJh..c2ln"));
        assert!(!looks_like_jwt("a.b.c.d"));
        assert!(!looks_like_jwt("a.b+/.c"));
    }

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn headers_with_none_hs_or_no_kid_are_refused() {
        let token = |h: &str| format!("{}.{}.c2ln", b64(h.as_bytes()), b64(b"{}"));
        assert_eq!(
            header(&token(r#"{"alg":"RS256","kid":"k"}"#)),
            Ok((Algorithm::RS256, "k".into()))
        );
        for alg in ["none", "None", "HS256", "HS512", "RS1", ""] {
            let h = format!(r#"{{"alg":"{alg}","kid":"k"}}"#);
            assert_eq!(header(&token(&h)), Err(Refusal::Algorithm), "{alg}");
        }
        assert_eq!(
            header(&token(r#"{"alg":"ES256"}"#)),
            Err(Refusal::UnknownKey)
        );
        assert_eq!(header(&token(r#"{"kid":"k"}"#)), Err(Refusal::Malformed));
    }

    /// Hostile input never panics, whatever its shape: every case is
    /// refused as a token (and none is mistaken for a verified one).
    #[test]
    fn garbage_is_refused_without_panicking() {
        let long = "A".repeat(MAX_TOKEN_LEN + 1);
        let mut cases: Vec<String> = [
            "",
            ".",
            "..",
            "...",
            "a.b.c",
            "eyJ.eyJ.eyJ",
            "%%%.%%%.%%%",
            "é.é.é",
            "\0.\0.\0",
            "e30.e30.",
            "bnVsbA.bnVsbA.",
            "W10.W10.W10",
        ]
        .map(String::from)
        .to_vec();
        cases.push(format!("{long}.{long}.{long}"));
        for header_json in [
            r#"{"alg":"RS256","kid":"k","crit":["x"]}"#,
            r#"{"alg":["RS256"],"kid":"k"}"#,
            r#"{"alg":"RS256","kid":7}"#,
            r#"{"alg":"RS256","kid":"k""#,
            "\u{feff}{}",
        ] {
            cases.push(format!(
                "{}.{}.{}",
                b64(header_json.as_bytes()),
                b64(b"{"),
                b64(b"x")
            ));
        }
        // Random bytes in every segment, from a fixed seed.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..500 {
            let segment = |next: &mut dyn FnMut() -> u64| {
                let len = (next() % 64) as usize;
                let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                b64(&bytes)
            };
            let h = segment(&mut next);
            let p = segment(&mut next);
            let s = segment(&mut next);
            cases.push(format!("{h}.{p}.{s}"));
        }
        let verifier = Verifier {
            config: OidcConfig {
                issuer: "https://id.example".into(),
                audience: "strata".into(),
                jwks_url: "https://id.example/jwks".into(),
                claim: "scope".into(),
                leeway: Duration::from_secs(30),
                jwks_refresh: Duration::from_secs(300),
            },
            client: reqwest::Client::new(),
            keys: RwLock::default(),
            fetching: tokio::sync::Mutex::new(()),
            fetched: AtomicU64::new(0),
            unknown_kid_fetches: RateLimiter::direct(Quota::per_hour(NonZeroU32::MIN)),
        };
        let rsa_like = VerifyingKey {
            key: DecodingKey::from_rsa_components("AQAB", "AQAB").unwrap(),
            algorithms: vec![Algorithm::RS256],
        };
        for case in &cases {
            assert!(header(case).is_err(), "{case:?}");
            assert!(verifier.check(case, Algorithm::RS256, &rsa_like).is_err());
        }
    }

    #[test]
    fn jwks_keeps_signature_keys_only() {
        let doc = serde_json::json!({"keys": [
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "confused", "alg": "HS256", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
            {"kty": "EC", "kid": "p521", "crv": "P-521", "x": "AQAB", "y": "AQAB"},
            {"kty": "RSA", "kid": "rsa", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "ps", "alg": "PS256", "n": "AQAB", "e": "AQAB"},
            {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": "AQAB"},
            {"kty": "EC", "kid": "p256", "crv": "P-256", "x": "AQAB", "y": "AQAB"},
            "not a key",
            {"kty": 5},
        ]});
        let set = key_set(doc.to_string().as_bytes()).unwrap();
        let mut kids: Vec<&str> = set.keys().map(String::as_str).collect();
        kids.sort_unstable();
        assert_eq!(kids, ["ed", "p256", "ps", "rsa"]);
        assert_eq!(set["ps"].algorithms, [Algorithm::PS256]);
        assert_eq!(set["rsa"].algorithms.len(), 6);
        assert_eq!(set["p256"].algorithms, [Algorithm::ES256]);
        for bad in [&b"[]"[..], b"{}", b"{\"keys\": 1}", b"\xff", b""] {
            assert!(key_set(bad).is_err());
        }
    }
}
