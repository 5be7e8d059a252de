//! OIDC bearer tokens beside API keys: a JWKS server of the test's own on
//! 127.0.0.1, keys generated at run time (aws-lc-rs), tokens minted here,
//! good and hostile, presented to the daemon as any client would.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair as _, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256,
};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use base64::Engine;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use strata::config::{Config, OidcConfig};
use tower::ServiceExt;

const ADMIN: &str = "test-admin-key-0123456789";
const ISSUER: &str = "https://id.test.example";
const AUDIENCE: &str = "strata-api";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A token from its header and claims, signed by `sign` over
/// `header.payload`.
fn jwt(header: &Value, claims: &Value, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let message = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = sign(message.as_bytes());
    format!("{message}.{}", b64(&signature))
}

/// Claims the daemon accepts, granting `scope` to subject alice.
fn claims(scope: &str) -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "iat": now(),
        "exp": now() + 300,
        "scope": scope,
    })
}

struct Rsa {
    kid: String,
    pair: RsaKeyPair,
}

impl Rsa {
    fn new(kid: &str) -> Rsa {
        Rsa {
            kid: kid.into(),
            pair: RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap(),
        }
    }

    fn jwk(&self) -> Value {
        let public = self.pair.public_key();
        json!({
            "kty": "RSA", "use": "sig", "kid": self.kid,
            "n": b64(public.modulus().big_endian_without_leading_zero()),
            "e": b64(public.exponent().big_endian_without_leading_zero()),
        })
    }

    fn sign_bytes(&self, message: &[u8]) -> Vec<u8> {
        let mut signature = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                message,
                &mut signature,
            )
            .unwrap();
        signature
    }

    fn token(&self, claims: &Value) -> String {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": self.kid});
        jwt(&header, claims, |m| self.sign_bytes(m))
    }
}

struct Ec {
    kid: String,
    pair: EcdsaKeyPair,
}

impl Ec {
    fn new(kid: &str) -> Ec {
        Ec {
            kid: kid.into(),
            pair: EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap(),
        }
    }

    fn jwk(&self) -> Value {
        // SEC1 uncompressed: 0x04, then x and y of 32 bytes each.
        let point = self.pair.public_key().as_ref();
        json!({
            "kty": "EC", "crv": "P-256", "alg": "ES256", "kid": self.kid,
            "x": b64(&point[1..33]), "y": b64(&point[33..65]),
        })
    }

    fn token(&self, claims: &Value) -> String {
        let header = json!({"alg": "ES256", "kid": self.kid});
        jwt(&header, claims, |m| {
            self.pair
                .sign(&SystemRandom::new(), m)
                .unwrap()
                .as_ref()
                .to_vec()
        })
    }
}

/// What the JWKS server answers.
#[derive(Clone)]
enum Serve {
    Keys(Vec<Value>),
    /// Never answers.
    Hang,
    /// These keys, padded past any sane size; chunked (no length) or not.
    Huge {
        keys: Vec<Value>,
        chunked: bool,
    },
}

#[derive(Clone)]
struct Jwks {
    url: String,
    serve: Arc<Mutex<Serve>>,
    hits: Arc<AtomicUsize>,
}

impl Jwks {
    async fn start(serve: Serve) -> Jwks {
        let serve = Arc::new(Mutex::new(serve));
        let hits = Arc::new(AtomicUsize::new(0));
        let (state_serve, state_hits) = (serve.clone(), hits.clone());
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let serve = state_serve.lock().unwrap().clone();
                state_hits.fetch_add(1, Ordering::SeqCst);
                async move { answer(serve).await }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Jwks { url, serve, hits }
    }

    fn set(&self, serve: Serve) {
        *self.serve.lock().unwrap() = serve;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn answer(serve: Serve) -> axum::response::Response {
    use axum::response::IntoResponse;
    match serve {
        Serve::Keys(keys) => axum::Json(json!({ "keys": keys })).into_response(),
        Serve::Hang => std::future::pending().await,
        Serve::Huge { keys, chunked } => {
            // Valid JSON whose keys would verify the tokens, were it read.
            let head = format!("{{\"keys\": {}, \"padding\": \"", json!(keys));
            let pad = "x".repeat(64 * 1024);
            let mut parts = vec![head];
            parts.extend(std::iter::repeat_n(pad, 16));
            parts.push("\"}".into());
            if chunked {
                let stream = futures_util::stream::iter(
                    parts.into_iter().map(Ok::<_, std::convert::Infallible>),
                );
                Body::from_stream(stream).into_response()
            } else {
                parts.concat().into_response()
            }
        }
    }
}

struct Api {
    router: axum::Router,
    jwks: Jwks,
    _dir: tempfile::TempDir,
}

struct Reply {
    status: StatusCode,
    body: Value,
}

impl Api {
    /// A daemon on `config` that trusts `jwks`, with orgs acme and evil,
    /// each with project app holding entity e1.
    async fn on(mut config: Config, jwks: Jwks, dir: tempfile::TempDir) -> Api {
        config.oidc = Some(OidcConfig {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            jwks_url: jwks.url.clone(),
            claim: "scope".into(),
            leeway: Duration::from_secs(30),
            jwks_refresh: Duration::from_secs(300),
        });
        let daemon = strata::server::build(config, ADMIN).await.unwrap();
        // The scheduled first fetch has begun, so the fetches counted by a
        // test are the ones its tokens cause.
        crate::support::eventually(Duration::from_secs(10), || async { jwks.hits() >= 1 }).await;
        let api = Api {
            router: daemon.router,
            jwks,
            _dir: dir,
        };
        for org in ["acme", "evil"] {
            api.ok(Method::POST, "/v1/orgs", json!({"id": org, "name": org}))
                .await;
            api.ok(
                Method::POST,
                &format!("/v1/orgs/{org}/projects"),
                json!({"id": "app", "name": "App"}),
            )
            .await;
            api.ok(
                Method::POST,
                &format!("/v1/orgs/{org}/projects/app/entities"),
                json!({"id": "e1", "type": "task", "properties": {"org": org}}),
            )
            .await;
        }
        api
    }

    async fn new(serve: Serve) -> Api {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::embedded(dir.path());
        Api::on(config, Jwks::start(serve).await, dir).await
    }

    async fn call(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Reply {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from(body.map(|b| b.to_string()).unwrap_or_default()))
            .unwrap();
        // A JWKS fetch is bounded: no request may hang on one.
        let response = tokio::time::timeout(
            Duration::from_secs(60),
            self.router.clone().oneshot(request),
        )
        .await
        .expect("the request finished")
        .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(Method::GET, path, token, None).await
    }

    async fn ok(&self, method: Method, path: &str, body: Value) -> Value {
        let r = self.call(method, path, ADMIN, Some(body)).await;
        assert!(r.status.is_success(), "{path}: {} {}", r.status, r.body);
        r.body
    }

    /// A request that must be refused as unauthenticated, with the error
    /// shape of the contract.
    async fn refused(&self, token: &str, what: &str) -> String {
        let r = self.get(ACME_E1, token).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {}", r.body);
        assert_eq!(r.body["error"]["code"], "unauthorized", "{what}");
        r.body["error"]["message"].as_str().unwrap().to_owned()
    }
}

const ACME_E1: &str = "/v1/orgs/acme/projects/app/entities/e1";
const EVIL_E1: &str = "/v1/orgs/evil/projects/app/entities/e1";
const ACME_ENTITIES: &str = "/v1/orgs/acme/projects/app/entities";

on_both_configs!(a_token_reads_and_writes_within_its_orgs_only);

async fn a_token_reads_and_writes_within_its_orgs_only(config: Config) {
    let rsa = Rsa::new("rsa-1");
    let ec = Ec::new("ec-1");
    let jwks = Jwks::start(Serve::Keys(vec![rsa.jwk(), ec.jwk()])).await;
    let dir = tempfile::tempdir().unwrap();
    let api = Api::on(config, jwks, dir).await;

    let writer = rsa.token(&claims("openid profile acme:write"));
    let created = api
        .call(
            Method::POST,
            ACME_ENTITIES,
            &writer,
            Some(json!({"id": "t1", "type": "task", "properties": {"by": "token"}})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["data"]["created_by"], "oidc:alice");
    let read = api.get(&format!("{ACME_ENTITIES}/t1"), &writer).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body["data"]["properties"]["by"], "token");
    // Another org is not there for it, as for a key of another org.
    let other = api.get(EVIL_E1, &writer).await;
    assert_eq!(other.status, StatusCode::NOT_FOUND, "{}", other.body);
    assert_eq!(other.body["error"]["code"], "not_found");
    // Org routes need their scope; global ones the global admin.
    let keys = api
        .call(
            Method::POST,
            "/v1/orgs/acme/keys",
            &writer,
            Some(json!({"name": "k", "scopes": ["read"]})),
        )
        .await;
    assert_eq!(keys.status, StatusCode::FORBIDDEN, "{}", keys.body);
    let new_org = api
        .call(
            Method::POST,
            "/v1/orgs",
            &writer,
            Some(json!({"id": "mine", "name": "Mine"})),
        )
        .await;
    assert_eq!(new_org.status, StatusCode::FORBIDDEN, "{}", new_org.body);
    let listed = api.get("/v1/orgs", &writer).await;
    assert_eq!(listed.status, StatusCode::OK);
    let ids: Vec<&str> = listed.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["acme"]);

    // ES256 keys work too; read does not write.
    let reader = ec.token(&claims("acme:read"));
    assert_eq!(api.get(ACME_E1, &reader).await.status, StatusCode::OK);
    let write = api
        .call(
            Method::PATCH,
            ACME_E1,
            &reader,
            Some(json!({"properties": {"x": 1}})),
        )
        .await;
    assert_eq!(write.status, StatusCode::FORBIDDEN, "{}", write.body);
    assert_eq!(write.body["error"]["code"], "forbidden");

    // `*:read` reads every org and writes none; an org of its own raises it.
    let wide = rsa.token(&claims("*:read evil:write"));
    assert_eq!(api.get(ACME_E1, &wide).await.status, StatusCode::OK);
    assert_eq!(api.get(EVIL_E1, &wide).await.status, StatusCode::OK);
    let acme_write = api
        .call(
            Method::PATCH,
            ACME_E1,
            &wide,
            Some(json!({"properties": {"x": 1}})),
        )
        .await;
    assert_eq!(acme_write.status, StatusCode::FORBIDDEN);
    let evil_write = api
        .call(
            Method::PATCH,
            EVIL_E1,
            &wide,
            Some(json!({"properties": {"x": 1}})),
        )
        .await;
    assert_eq!(evil_write.status, StatusCode::OK, "{}", evil_write.body);
    let all = api.get("/v1/orgs", &wide).await;
    assert_eq!(all.body["data"].as_array().unwrap().len(), 2);

    // `*:admin` is every org's admin, not the global admin.
    let org_admins = rsa.token(&claims("*:admin"));
    let key = api
        .call(
            Method::POST,
            "/v1/orgs/evil/keys",
            &org_admins,
            Some(json!({"name": "k", "scopes": ["read"]})),
        )
        .await;
    assert_eq!(key.status, StatusCode::CREATED, "{}", key.body);
    let backups = api.get("/v1/admin/backups", &org_admins).await;
    assert_eq!(backups.status, StatusCode::FORBIDDEN);
    let global = rsa.token(&claims("strata:global_admin"));
    let made = api
        .call(
            Method::POST,
            "/v1/orgs",
            &global,
            Some(json!({"id": "fresh", "name": "Fresh"})),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);

    // A valid token that grants nothing here reaches no org.
    let nothing = rsa.token(&claims("openid email"));
    assert_eq!(
        api.get(ACME_E1, &nothing).await.status,
        StatusCode::NOT_FOUND
    );
    let none_listed = api.get("/v1/orgs", &nothing).await;
    assert_eq!(none_listed.status, StatusCode::OK);
    assert_eq!(none_listed.body["data"], json!([]));

    // API keys work as before beside tokens.
    let key = key.body["data"]["key"].as_str().unwrap().to_owned();
    assert_eq!(api.get(EVIL_E1, &key).await.status, StatusCode::OK);
    assert_eq!(api.get(ACME_E1, &key).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn hostile_and_invalid_tokens_are_401() {
    let rsa = Rsa::new("rsa-1");
    let ec = Ec::new("ec-1");
    let api = Api::new(Serve::Keys(vec![rsa.jwk(), ec.jwk()])).await;
    let good = claims("acme:admin");
    assert_eq!(
        api.get(ACME_E1, &rsa.token(&good)).await.status,
        StatusCode::OK
    );
    let with = |change: Value| {
        let mut c = good.clone();
        for (k, v) in change.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };

    // Within the leeway (30 s) a just-expired token still passes.
    let lenient = rsa.token(&with(json!({"exp": now() - 5})));
    assert_eq!(api.get(ACME_E1, &lenient).await.status, StatusCode::OK);

    let expired = api
        .refused(&rsa.token(&with(json!({"exp": now() - 120}))), "expired")
        .await;
    assert!(expired.contains("expired"), "{expired}");
    let early = api
        .refused(
            &rsa.token(&with(json!({"nbf": now() + 120}))),
            "not yet valid",
        )
        .await;
    assert!(early.contains("not yet valid"), "{early}");
    let audience = api
        .refused(
            &rsa.token(&with(json!({"aud": "someone-else"}))),
            "audience",
        )
        .await;
    assert!(audience.contains("audience"), "{audience}");
    api.refused(
        &rsa.token(&with(json!({"aud": ["a", "b"]}))),
        "audience list without ours",
    )
    .await;
    let issuer = api
        .refused(
            &rsa.token(&with(json!({"iss": "https://evil.example"}))),
            "issuer",
        )
        .await;
    assert!(issuer.contains("issuer"), "{issuer}");
    for missing in ["exp", "iss", "aud", "sub"] {
        api.refused(&rsa.token(&with(json!({ (missing): null }))), missing)
            .await;
    }

    // alg none: no signature at all, under any spelling.
    for alg in ["none", "None", "NONE"] {
        let header = json!({"alg": alg, "kid": "rsa-1"});
        let unsigned = jwt(&header, &good, |_| Vec::new());
        api.refused(&unsigned, alg).await;
    }
    // HS/RS confusion: an HMAC keyed with the public key's bytes.
    let public = rsa.pair.public_key();
    let public_der = public.as_ref().to_vec();
    let modulus = public.modulus().big_endian_without_leading_zero().to_vec();
    let jwk_text = rsa.jwk().to_string().into_bytes();
    for (what, secret) in [("der", public_der), ("n", modulus), ("jwk", jwk_text)] {
        for alg in ["HS256", "HS384", "HS512"] {
            let header = json!({"alg": alg, "kid": "rsa-1"});
            let algorithm = match alg {
                "HS256" => aws_lc_rs::hmac::HMAC_SHA256,
                "HS384" => aws_lc_rs::hmac::HMAC_SHA384,
                _ => aws_lc_rs::hmac::HMAC_SHA512,
            };
            let key = aws_lc_rs::hmac::Key::new(algorithm, &secret);
            let forged = jwt(&header, &good, |m| {
                aws_lc_rs::hmac::sign(&key, m).as_ref().to_vec()
            });
            let message = api.refused(&forged, &format!("{alg} with {what}")).await;
            assert!(message.contains("algorithm"), "{message}");
        }
    }
    // A tampered signature, and a tampered payload under a real signature.
    let token = rsa.token(&good);
    let (message, signature) = token.rsplit_once('.').unwrap();
    let mut sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(signature)
        .unwrap();
    sig[10] ^= 1;
    let bad_sig = api
        .refused(&format!("{message}.{}", b64(&sig)), "tampered signature")
        .await;
    assert!(bad_sig.contains("signature"), "{bad_sig}");
    let (header, _) = message.split_once('.').unwrap();
    let raised = b64(with(json!({"scope": "*:admin strata:global_admin"}))
        .to_string()
        .as_bytes());
    api.refused(
        &format!("{header}.{raised}.{signature}"),
        "tampered payload",
    )
    .await;
    // The right algorithm family on the wrong key: RS256 under the EC kid,
    // and a key of the right kid that the issuer never published.
    let header = json!({"alg": "RS256", "kid": "ec-1"});
    api.refused(
        &jwt(&header, &good, |m| rsa.sign_bytes(m)),
        "RS256 on EC key",
    )
    .await;
    let impostor = Rsa::new("rsa-1");
    api.refused(&impostor.token(&good), "impostor key").await;
    // Unknown and missing kids.
    let stranger = Rsa::new("unknown-kid");
    let unknown = api.refused(&stranger.token(&good), "unknown kid").await;
    assert!(unknown.contains("key"), "{unknown}");
    let header = json!({"alg": "RS256"});
    api.refused(&jwt(&header, &good, |m| rsa.sign_bytes(m)), "no kid")
        .await;
    // Garbage that looks like a token.
    for garbage in ["a.b.c", "eyJhbGciOiJSUzI1NiJ9.e30.", "....", "x.y"] {
        api.refused(garbage, garbage).await;
    }
    // The good token still works after all that.
    assert_eq!(
        api.get(ACME_E1, &rsa.token(&good)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn keys_rotate_by_kid() {
    let old = Rsa::new("2026-01");
    let new = Rsa::new("2026-02");
    let api = Api::new(Serve::Keys(vec![old.jwk()])).await;
    let grant = claims("acme:read");
    assert_eq!(
        api.get(ACME_E1, &old.token(&grant)).await.status,
        StatusCode::OK
    );
    // Before the issuer publishes it, the new kid is unknown.
    api.refused(&new.token(&grant), "unpublished key").await;

    // The issuer publishes the next key beside the current one: a token of
    // the new kid makes the daemon fetch again, and is accepted.
    api.jwks.set(Serve::Keys(vec![old.jwk(), new.jwk()]));
    assert_eq!(
        api.get(ACME_E1, &new.token(&grant)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        api.get(ACME_E1, &old.token(&grant)).await.status,
        StatusCode::OK
    );

    // The old key is withdrawn; once the daemon has fetched the set again
    // (here: caused by another unknown kid), old tokens are refused.
    api.jwks.set(Serve::Keys(vec![new.jwk()]));
    api.refused(&Rsa::new("2026-03").token(&grant), "unknown kid")
        .await;
    api.refused(&old.token(&grant), "withdrawn key").await;
    assert_eq!(
        api.get(ACME_E1, &new.token(&grant)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn unknown_kids_cannot_hammer_the_jwks_server() {
    let rsa = Rsa::new("rsa-1");
    let api = Api::new(Serve::Keys(vec![rsa.jwk()])).await;
    let grant = claims("acme:read");
    assert_eq!(
        api.get(ACME_E1, &rsa.token(&grant)).await.status,
        StatusCode::OK
    );
    let before = api.jwks.hits();
    // One signing key, many made-up kids (the header is all that differs).
    let flood: Vec<String> = (0..60)
        .map(|i| {
            let header = json!({"alg": "RS256", "kid": format!("made-up-{i}")});
            jwt(&header, &grant, |m| rsa.sign_bytes(m))
        })
        .collect();
    // Concurrent requests share one fetch; one after another, each would
    // fetch but for the rate limit.
    let requests = flood[..30].iter().map(|t| api.get(ACME_E1, t));
    for reply in futures_util::future::join_all(requests).await {
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    for token in &flood[30..] {
        assert_eq!(
            api.get(ACME_E1, token).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let caused = api.jwks.hits() - before;
    // Unknown kids cause a burst of three fetches, then one per ten
    // seconds (one more, should the flood take that long).
    assert!(
        caused <= 4,
        "{caused} JWKS fetches for 60 unknown-kid tokens"
    );
    // Known keys go on working meanwhile, without a fetch.
    assert_eq!(
        api.get(ACME_E1, &rsa.token(&grant)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_hanging_jwks_server_does_not_hang_requests() {
    let rsa = Rsa::new("rsa-1");
    let api = Api::new(Serve::Hang).await;
    let grant = claims("acme:read");
    // The fetch times out (`Api::call` fails the test if the request
    // hangs); without keys the token is refused.
    api.refused(&rsa.token(&grant), "keys unreachable").await;
    api.jwks.set(Serve::Keys(vec![rsa.jwk()]));
    assert_eq!(
        api.get(ACME_E1, &rsa.token(&grant)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_oversized_key_set_is_not_read() {
    for chunked in [false, true] {
        let rsa = Rsa::new("rsa-1");
        let api = Api::new(Serve::Huge {
            keys: vec![rsa.jwk()],
            chunked,
        })
        .await;
        let grant = claims("acme:read");
        // The set holds the token's key, but is over the size limit.
        api.refused(&rsa.token(&grant), "oversized set").await;
        assert!(api.jwks.hits() >= 1);
        // The same keys at a sane size are used.
        api.jwks.set(Serve::Keys(vec![rsa.jwk()]));
        assert_eq!(
            api.get(ACME_E1, &rsa.token(&grant)).await.status,
            StatusCode::OK,
            "chunked: {chunked}"
        );
    }
}

#[tokio::test]
async fn tokens_are_refused_where_oidc_is_not_configured() {
    let rsa = Rsa::new("rsa-1");
    let dir = tempfile::tempdir().unwrap();
    let daemon = strata::server::build(Config::embedded(dir.path()), ADMIN)
        .await
        .unwrap();
    let request = Request::builder()
        .uri("/v1/orgs")
        .header(
            "authorization",
            format!("Bearer {}", rsa.token(&claims("*:admin"))),
        )
        .body(Body::empty())
        .unwrap();
    let response = daemon.router.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_openapi_document_offers_tokens_beside_keys() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = strata::server::build(Config::embedded(dir.path()), ADMIN)
        .await
        .unwrap();
    let request = Request::builder()
        .uri("/openapi.json")
        .body(Body::empty())
        .unwrap();
    let response = daemon.router.oneshot(request).await.unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    let scheme = &doc["components"]["securitySchemes"]["oidc"];
    assert_eq!(scheme["scheme"], "bearer");
    assert_eq!(scheme["bearerFormat"], "JWT");
    let mut secured = 0;
    for item in doc["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            let Some(reqs) = op["security"].as_array() else {
                continue;
            };
            secured += 1;
            let roles = |scheme: &str| -> Vec<Value> {
                reqs.iter().filter_map(|r| r.get(scheme).cloned()).collect()
            };
            assert_eq!(roles("api_key"), roles("oidc"), "{op}");
        }
    }
    assert!(secured > 20);
}
