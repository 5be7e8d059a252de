//! `strata init [--org O --project P]`, run as the built binary: it makes
//! the org, the project and a key of the org with `write` scope (as
//! ../shared/API.md says), prints them with the key's secret once and how
//! to call the API; the key works against a daemon on the same store and
//! can do no more than `write` on its org. Run again, it keeps the org and
//! the project and makes another key.

use axum::http::StatusCode;
use serde_json::{json, Value};
use strata::config::Config;

/// Runs `strata init ARGS` on `config`'s store; success and standard output.
async fn init(config: &Config, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("init")
        .args(args)
        .env_clear()
        .env("STRATA_DATA_DIR", &config.data_dir)
        .env("STRATA_DATABASE_URL", &config.database_url)
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The value after `label` at the start of a line.
fn field<'a>(stdout: &'a str, label: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{stdout}"))
        .trim()
}

on_both_configs!(init_makes_an_org_a_project_and_a_write_key);

async fn init_makes_an_org_a_project_and_a_write_key(config: Config) {
    let (ok, out, err) = init(&config, &["--org", "acme", "--project", "app"]).await;
    assert!(ok, "{out}{err}");
    assert_eq!(field(&out, "org:"), "acme");
    assert_eq!(field(&out, "project:"), "app");
    let key = field(&out, "key:").to_string();
    assert!(key.starts_with("sk_"), "{out}");
    // How to call the API, with this key (what the README relies on).
    assert!(out.contains(&format!("export STRATA_KEY={key}")), "{out}");
    assert!(out.contains("/v1/orgs/acme/projects/app/entities"), "{out}");
    // The global admin key was made now: shown this once.
    let admin = std::fs::read_to_string(config.data_dir.join("admin.key")).unwrap();
    let admin = admin.trim();
    assert_eq!(field(&out, "admin:"), admin, "{out}");

    let daemon = strata::server::build(config.clone(), admin).await.unwrap();
    let router = &daemon.router;
    let call = |key: &str, method: &str, uri: &str, body: Value| {
        let (router, key, method, uri) = (
            router.clone(),
            key.to_string(),
            method.to_string(),
            uri.to_string(),
        );
        async move {
            let (status, text) = crate::support::admin(&router, &key, &method, &uri, body).await;
            (
                status,
                serde_json::from_str::<Value>(&text).unwrap_or(Value::Null),
            )
        }
    };
    let p = "/v1/orgs/acme/projects/app";
    // The key writes and reads in its org.
    let (status, body) = call(
        &key,
        "POST",
        &format!("{p}/entities"),
        json!({"id": "t1", "type": "task"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        call(&key, "GET", &format!("{p}/entities/t1"), Value::Null)
            .await
            .0,
        StatusCode::OK
    );
    // No more than write: no key management; no other org.
    let (status, _) = call(
        &key,
        "POST",
        "/v1/orgs/acme/keys",
        json!({"name": "k", "scopes": ["read"]}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        call(
            admin,
            "POST",
            "/v1/orgs",
            json!({"id": "other", "name": "O"})
        )
        .await
        .0,
        StatusCode::CREATED
    );
    assert_eq!(
        call(&key, "GET", "/v1/orgs/other", Value::Null).await.0,
        StatusCode::NOT_FOUND
    );
    // As the org's keys list it.
    let (_, keys) = call(admin, "GET", "/v1/orgs/acme/keys", Value::Null).await;
    let listed = keys["data"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{keys}");
    assert_eq!(listed[0]["scopes"], json!(["write"]), "{keys}");
    assert!(key.starts_with(&format!("sk_{}_", listed[0]["id"].as_str().unwrap())));
    daemon.shutdown().await;

    // Again: the org and the project are kept, another key is made, and
    // the admin key is named, not shown.
    let (ok, again, err) = init(&config, &["--org", "acme", "--project", "app"]).await;
    assert!(ok, "{again}{err}");
    let second = field(&again, "key:");
    assert!(second.starts_with("sk_") && second != key, "{again}");
    assert!(!again.contains(admin), "{again}");
    assert!(field(&again, "admin:").contains("admin.key"), "{again}");
}

#[tokio::test]
async fn init_refuses_ids_the_api_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::embedded(dir.path());
    let (ok, out, err) = init(&config, &["--org", "a/b", "--project", "app"]).await;
    assert!(!ok, "{out}");
    assert!(err.contains("org id"), "{err}");
}
