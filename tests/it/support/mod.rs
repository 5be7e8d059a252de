//! Test support shared by the integration tests (tests/it): where the test
//! stack's services are (ops/test-stack.sh exports their addresses) and
//! fresh, isolated stores on each backend.
#![allow(dead_code)]

pub mod meili_standin;
pub mod ollama_standin;
pub mod pki;

use std::sync::Arc;
use std::time::Duration;
use strata::config::Config;
use strata::store::DynStore;

/// Whether the test stack must be there: ops/test.sh sets
/// `STRATA_TEST_REQUIRE_STACK=1`, so inside it a missing variable fails the
/// test instead of skipping it.
fn stack_required() -> bool {
    std::env::var_os("STRATA_TEST_REQUIRE_STACK").is_some_and(|v| v == "1")
}

/// True (after printing why) when a test needs a variable of the test stack
/// that is not set: the test then returns early. A plain `cargo test`
/// without the stack thus runs what it can and says what it skipped; under
/// `STRATA_TEST_REQUIRE_STACK=1` (ops/test.sh) a missing variable panics.
pub fn skip_without(vars: &[&str]) -> bool {
    let Some(missing) = vars.iter().find(|v| std::env::var_os(v).is_none()) else {
        return false;
    };
    if stack_required() {
        panic!("{missing} is not set, and STRATA_TEST_REQUIRE_STACK=1 says the test stack must be there");
    }
    eprintln!("skipped: {missing} is not set; run ops/test.sh");
    true
}

/// The variables the PostgreSQL 15 cases need.
pub const PG: &[&str] = &["STRATA_TEST_PG_URL"];
/// The variables the PGlite (AGE, pgvector) cases need.
pub const PGLITE: &[&str] = &["STRATA_TEST_PGLITE_URL"];
/// The variables the S3 cases need.
pub const S3: &[&str] = &[
    "STRATA_TEST_S3_ENDPOINT",
    "STRATA_TEST_S3_BUCKET",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
];
/// What a case on the PostgreSQL backend needs (documents there keep their
/// large snapshots on S3).
pub const PG_AND_S3: &[&str] = &[
    "STRATA_TEST_PG_URL",
    "STRATA_TEST_S3_ENDPOINT",
    "STRATA_TEST_S3_BUCKET",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
];

/// The PostgreSQL 15 server of the test stack.
pub fn pg_admin_url() -> String {
    std::env::var("STRATA_TEST_PG_URL").expect(
        "STRATA_TEST_PG_URL is not set: run the tests through ops/test.sh, which starts the test stack",
    )
}

/// The PGlite server (AGE + pgvector) of the test stack.
pub fn pglite_url() -> String {
    std::env::var("STRATA_TEST_PGLITE_URL").expect(
        "STRATA_TEST_PGLITE_URL is not set: run the tests through ops/test.sh, which starts the test stack",
    )
}

/// A new empty database on the test server; returns its URL.
pub async fn fresh_pg_database() -> String {
    fresh_pg_database_on(&pg_admin_url()).await
}

/// A new empty database on the PostgreSQL server of `admin` (a URL of any
/// database there, as a user who may create databases); returns its URL.
pub async fn fresh_pg_database_on(admin: &str) -> String {
    let admin = admin.to_string();
    let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .expect("connect to the test PostgreSQL");
    tokio::spawn(connection);
    let name = format!("strata_t_{}", uuid::Uuid::new_v4().simple());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create a test database");
    let base = admin
        .rsplit_once('/')
        .map(|(b, _)| b.to_string())
        .unwrap_or(admin);
    format!("{base}/{name}")
}

/// Configuration of a daemon on `database_url` with its data dir in `dir`.
pub fn pg_config(dir: &std::path::Path, database_url: &str) -> Config {
    let mut config = Config::embedded(dir);
    config.database_url = database_url.to_string();
    config.postgres.pool_size = 8;
    config.postgres.age = strata::store::postgres::AgeMode::Off;
    config
}

/// PGlite serves one session: the tests of this binary that use it take
/// turns (age.rs, vectors.rs).
pub static PGLITE_SESSION: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A plain connection to PGlite, retried while the previous session closes.
pub async fn connect_pglite() -> (
    tokio_postgres::Client,
    tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
) {
    let mut attempt = 0;
    loop {
        match tokio_postgres::connect(&pglite_url(), tokio_postgres::NoTls).await {
            Ok(pair) => return pair,
            Err(_) if attempt < 25 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("connect to PGlite: {e}"),
        }
    }
}

/// Configuration for the single-connection PGlite server.
pub fn pglite_config(dir: &std::path::Path) -> Config {
    let mut config = Config::embedded(dir);
    config.database_url = pglite_url();
    config.postgres.pool_size = 1;
    config.postgres.notify = false;
    config.postgres.statement_timeout_ms = 0;
    config.postgres.age = strata::store::postgres::AgeMode::On;
    config
}

/// Opens the store a configuration names, as the daemon does.
pub async fn open(config: &Config) -> anyhow::Result<DynStore> {
    strata::store::open(&config.database_url, &config.store_settings()).await
}

pub async fn pg_store(dir: &std::path::Path, database_url: &str) -> DynStore {
    open(&pg_config(dir, database_url))
        .await
        .expect("open a PgStore")
}

pub async fn sqlite_store(dir: &std::path::Path) -> DynStore {
    let config = Config::embedded(dir);
    let store: DynStore = open(&config).await.expect("open a SqliteStore");
    Arc::clone(&store)
}

/// A blob store on the test S3 server (s3s-fs) under a fresh key prefix.
pub fn s3_blobs() -> Arc<dyn strata::blob::BlobStore> {
    let var = |k: &str| {
        std::env::var(k).unwrap_or_else(|_| {
            panic!("{k} is not set: run the tests through ops/test.sh, which starts the S3 server")
        })
    };
    let credentials = aws_sdk_s3::config::Credentials::new(
        var("AWS_ACCESS_KEY_ID"),
        var("AWS_SECRET_ACCESS_KEY"),
        None,
        None,
        "test",
    );
    let prefix = format!("t-{}", uuid::Uuid::new_v4().simple());
    let endpoint = var("STRATA_TEST_S3_ENDPOINT");
    Arc::new(
        strata::blob::S3BlobStore::new(
            &var("STRATA_TEST_S3_BUCKET"),
            &prefix,
            Some(&endpoint),
            "us-east-1",
            credentials,
        )
        .expect("an S3 blob store"),
    )
}

/// Polls `check` until it holds; panics after `limit` (no timing is asserted
/// beyond "eventually").
pub async fn eventually<F, Fut>(limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached in {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One JSON request to a daemon's router with `key`; the status and body.
pub async fn admin(
    router: &axum::Router,
    key: &str,
    method: &str,
    uri: &str,
    body: serde_json::Value,
) -> (axum::http::StatusCode, String) {
    let body = body.to_string().into_bytes();
    request(router, key, method, uri, "application/json", body).await
}

/// One request with a body of any type; the status and body.
pub async fn request(
    router: &axum::Router,
    key: &str,
    method: &str,
    uri: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (axum::http::StatusCode, String) {
    use tower::ServiceExt;
    let req = axum::http::Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", content_type)
        .body(axum::body::Body::from(body))
        .unwrap();
    let res = router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// Runs each `async fn case(store: DynStore)` of the calling module on a
/// fresh SQLite store and on a fresh PostgreSQL database (skipped without
/// the stack), as `sqlite::case` and `postgres::case`.
macro_rules! on_both_stores {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $case() {
                let dir = tempfile::tempdir().unwrap();
                super::$case(crate::support::sqlite_store(dir.path()).await).await
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $case() {
                if crate::support::skip_without(crate::support::PG) {
                    return;
                }
                let dir = tempfile::tempdir().unwrap();
                let url = crate::support::fresh_pg_database().await;
                super::$case(crate::support::pg_store(dir.path(), &url).await).await
            })*
        }
    };
}

/// Percent-encodes everything but ASCII letters and digits (query values).
pub fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Runs each `async fn case(config: Config)` of the calling module on an
/// embedded configuration and on a fresh PostgreSQL database (skipped
/// without the stack), as `sqlite::case` and `postgres::case`; with
/// `needs VARS;` (a `&[&str]`) both skip unless those are set too.
macro_rules! on_both_configs {
    ($($case:ident),* $(,)?) => {
        on_both_configs!(needs &[]; $($case),*);
    };
    (needs $needs:expr; $($case:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $case() {
                if crate::support::skip_without($needs) {
                    return;
                }
                let dir = tempfile::tempdir().unwrap();
                super::$case(strata::config::Config::embedded(dir.path())).await
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $case() {
                if crate::support::skip_without($needs)
                    || crate::support::skip_without(crate::support::PG)
                {
                    return;
                }
                let dir = tempfile::tempdir().unwrap();
                let url = crate::support::fresh_pg_database().await;
                super::$case(crate::support::pg_config(dir.path(), &url)).await
            })*
        }
    };
}
