//! TLS to PostgreSQL as libpq users write it (`sslmode`, `sslrootcert` in
//! the URL), against a throw-away PostgreSQL 15 cluster of the test's own
//! with `ssl = on`, a certificate for `localhost` signed by a CA the test
//! makes, and a pg_hba.conf that accepts TCP connections over TLS only
//! (`hostssl`). One cluster serves every case: verify-full with the right
//! CA opens a store that works, every connection of it (pool and LISTEN)
//! encrypted; with a wrong CA the start is refused and says why; a wrong
//! name is refused by verify-full and accepted by verify-ca; require needs
//! no CA (but checks one when given); the default (prefer) encrypts;
//! disable is refused by the server; SCRAM channel binding works.

use crate::pgbackrest::{free_port, initdb, is_root, postgres_dir, Cluster, PGBIN};
use crate::support::pki::{self, Ca};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use strata::domain::*;

/// The cluster and the files the cases name in their URLs.
struct TlsCluster {
    cluster: Cluster,
    port: u16,
    /// The CA that signed the server's certificate.
    ca: PathBuf,
    /// Another CA, which signed nothing the server presents.
    wrong_ca: PathBuf,
    _tmp: tempfile::TempDir,
}

impl TlsCluster {
    fn start() -> TlsCluster {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let data = postgres_dir(&tmp.path().join("pg")).join("data");
        let sockets = postgres_dir(&tmp.path().join("sockets"));
        let log = postgres_dir(&tmp.path().join("log")).join("pg.log");
        initdb(&data);

        let ca = Ca::new("Strata test CA");
        let server = ca.issue(&["localhost"]);
        let cert = pki::write(&data, "server.crt", &server.cert);
        let key = pki::write(&data, "server.key", &server.key);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        if is_root() {
            let status = Command::new("chown")
                .arg("postgres:")
                .args([&cert, &key])
                .status()
                .unwrap();
            assert!(status.success(), "chown the server's certificate");
        }
        // server.crt and server.key in the data directory are the defaults.
        append(&data.join("postgresql.conf"), "ssl = on\n");
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\n\
             hostssl all scram_user 127.0.0.1/32 scram-sha-256\n\
             hostssl all all 127.0.0.1/32 trust\n",
        )
        .unwrap();
        let port = free_port();
        let cluster = Cluster::start(&data, port, &sockets, &log);
        cluster.sql("CREATE DATABASE strata");
        cluster.sql("CREATE ROLE scram_user LOGIN PASSWORD 'scram-pw'");

        let files = tmp.path().join("client");
        std::fs::create_dir(&files).unwrap();
        let ca = pki::write(&files, "ca.pem", &ca.pem());
        let wrong_ca = pki::write(&files, "wrong-ca.pem", &Ca::new("Another CA").pem());
        TlsCluster {
            cluster,
            port,
            ca,
            wrong_ca,
            _tmp: tmp,
        }
    }

    /// A URL of the `strata` database on `host` with `query` appended.
    fn url(&self, host: &str, query: &str) -> String {
        format!("postgres://postgres@{host}:{}/strata{query}", self.port)
    }
}

fn append(file: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(file).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// Connects as the store does (its URL handling and connector) and says
/// whether the session is encrypted, or why the connection failed.
async fn session(url: &str) -> Result<bool, String> {
    let (pg, tls) = strata::store::postgres::tls::configure(url).map_err(|e| format!("{e:#}"))?;
    let (client, connection) = pg.connect(tls).await.map_err(|e| chain(&e))?;
    let driver = tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    drop(client);
    let _ = driver.await;
    Ok(row.get(0))
}

/// An error and its causes (tokio-postgres names the cause of a failed
/// handshake only there).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

fn refused(result: Result<bool, String>, says: &str, case: &str) {
    match result {
        Ok(ssl) => panic!("{case}: connected (ssl: {ssl}), should have been refused"),
        Err(e) => assert!(
            e.contains(says),
            "{case}: refused, but not for {says:?}: {e}"
        ),
    }
}

/// The PostgreSQL binaries are installed by ops/test-stack.sh; without them
/// the case is skipped, unless the stack is required (ops/test.sh).
fn skip_without_postgres() -> bool {
    if Path::new(PGBIN).join("initdb").exists() {
        return false;
    }
    if std::env::var_os("STRATA_TEST_REQUIRE_STACK").is_some_and(|v| v == "1") {
        panic!("{PGBIN} has no initdb: ops/test-stack.sh start installs PostgreSQL 15");
    }
    eprintln!("skipped: {PGBIN} has no initdb; run ops/test-stack.sh start");
    true
}

#[tokio::test]
async fn sslmodes_against_a_server_that_takes_tls_only() {
    if skip_without_postgres() {
        return;
    }
    let pg = TlsCluster::start();
    let ca = format!("&sslrootcert={}", pg.ca.display());
    let wrong_ca = format!("&sslrootcert={}", pg.wrong_ca.display());

    // verify-full with the right CA: the store opens and works, and every
    // connection it holds is encrypted, the LISTEN one included.
    let dir = tempfile::tempdir().unwrap();
    let url = pg.url("localhost", &format!("?sslmode=verify-full{ca}"));
    let store = crate::support::pg_store(dir.path(), &url).await;
    let caller = Caller::new("tester");
    store.create_org(&caller, "acme", "Acme").await.unwrap();
    store
        .create_project(&caller, "acme", "app", "App")
        .await
        .unwrap();
    let scope = Scope::new("acme", "app");
    let create = WriteOp::CreateEntity {
        id: "e1".into(),
        entity_type: "note".into(),
        properties: serde_json::json!({"text": "over TLS"})
            .as_object()
            .unwrap()
            .clone(),
    };
    store.write(&scope, &caller, vec![create]).await.unwrap();
    let read = store
        .get_entity(&scope, "e1", &EntityRead::default())
        .await
        .unwrap();
    assert_eq!(read.properties["text"], "over TLS");
    let sessions = "SELECT count(*) FILTER (WHERE a.query LIKE 'LISTEN%'), \
                    count(*) FILTER (WHERE NOT s.ssl) \
                    FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
                    WHERE a.datname = 'strata'";
    crate::support::eventually(Duration::from_secs(30), || async {
        pg.cluster.sql(sessions) == "1|0"
    })
    .await;
    store.close().await;

    // verify-full with a CA that did not sign the server's certificate: the
    // start is refused, and the error says why.
    let url = pg.url("localhost", &format!("?sslmode=verify-full{wrong_ca}"));
    let err = strata::store::open(
        &url,
        &crate::support::pg_config(dir.path(), &url).store_settings(),
    )
    .await
    .err()
    .expect("verify-full with the wrong CA opened the store");
    let err = format!("{err:#}");
    assert!(
        err.contains("TLS") && err.contains("UnknownIssuer"),
        "not a clear refusal: {err}"
    );

    // The certificate names localhost, not 127.0.0.1: verify-full refuses
    // the name, verify-ca checks only the chain.
    let on_ip = |query: String| pg.url("127.0.0.1", &query);
    refused(
        session(&on_ip(format!("?sslmode=verify-full{ca}"))).await,
        "not valid for name",
        "verify-full on 127.0.0.1",
    );
    assert_eq!(
        session(&on_ip(format!("?sslmode=verify-ca{ca}"))).await,
        Ok(true)
    );
    refused(
        session(&on_ip(format!("?sslmode=verify-ca{wrong_ca}"))).await,
        "UnknownIssuer",
        "verify-ca with the wrong CA",
    );

    // require: encrypted without any CA; given one, it checks the chain
    // (as libpq does).
    assert_eq!(session(&on_ip("?sslmode=require".into())).await, Ok(true));
    refused(
        session(&on_ip(format!("?sslmode=require{wrong_ca}"))).await,
        "UnknownIssuer",
        "require with the wrong CA",
    );

    // No sslmode is prefer: this server offers TLS, so it is used.
    assert_eq!(session(&on_ip(String::new())).await, Ok(true));

    // disable: plain text, which this server's pg_hba.conf refuses.
    refused(
        session(&on_ip("?sslmode=disable".into())).await,
        "no encryption",
        "disable against hostssl only",
    );

    // SCRAM with channel binding required: the server checks the hash of
    // its certificate that the connection reports.
    let bound = format!(
        "postgres://scram_user:scram-pw@localhost:{}/strata?sslmode=verify-full{ca}&channel_binding=require",
        pg.port
    );
    assert_eq!(session(&bound).await, Ok(true));
}
