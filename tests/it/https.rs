//! HTTPS on the daemon's own listener (`STRATA_TLS_CERT`, `STRATA_TLS_KEY`),
//! with a certificate the test makes: a client that trusts the test's CA
//! gets answers, plain HTTP gets none, `strata health` (the built binary,
//! configured as the daemon is) reaches the listener and trusts exactly its
//! configured certificate, and a key that does not match the certificate
//! stops the start.

use crate::support::pki::{self, Ca};
use std::process::Output;
use strata::config::Config;
use strata::tls::TlsFiles;

const ADMIN: &str = "test-admin-key-0123456789";

/// `strata health` with the environment a daemon on `listen` would have.
async fn strata_health(listen: &str, tls: &TlsFiles) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("health")
        .env_clear()
        .env("STRATA_LISTEN", listen)
        .env("STRATA_TLS_CERT", &tls.cert)
        .env("STRATA_TLS_KEY", &tls.key)
        .output()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_listener_speaks_https_only_and_strata_health_reaches_it() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Strata test CA");
    let server = ca.issue(&["localhost"]);
    let tls = TlsFiles {
        cert: pki::write(dir.path(), "chain.pem", &server.cert),
        key: pki::write(dir.path(), "key.pem", &server.key),
    };
    let mut config = Config::embedded(dir.path().join("data"));
    config.tls = Some(tls.clone());
    let daemon = strata::server::build(config, ADMIN).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(strata::server::run(listener, daemon, async {
        let _ = stopped.await;
    }));

    let trusting = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .resolve("localhost", addr)
        .build()
        .unwrap();
    let live = trusting
        .get(format!("https://localhost:{}/health/live", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    // Over the same connection kind, an API route answers as over HTTP.
    let orgs = trusting
        .get(format!("https://localhost:{}/v1/orgs", addr.port()))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(orgs.status(), 200);

    let plain = reqwest::Client::new()
        .get(format!("http://{addr}/health/live"))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");

    let checked = strata_health(&addr.to_string(), &tls).await;
    let stdout = String::from_utf8_lossy(&checked.stdout);
    assert!(
        checked.status.success(),
        "strata health: {stdout}{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(
        stdout.contains(&format!("ready: https://{addr}/health/ready")),
        "{stdout}"
    );
    // Configured with another certificate (even one of the same CA and
    // name), the check does not take the listener's.
    let other = TlsFiles {
        cert: pki::write(dir.path(), "other.pem", &ca.issue(&["localhost"]).cert),
        key: tls.key.clone(),
    };
    let refused = strata_health(&addr.to_string(), &other).await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "took another certificate");
    assert!(stderr.contains("STRATA_TLS_CERT"), "{stderr}");

    stop.send(()).unwrap();
    served.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_key_that_is_not_the_certificates_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Strata test CA");
    let (one, another) = (ca.issue(&["localhost"]), ca.issue(&["localhost"]));
    let mut config = Config::embedded(dir.path().join("data"));
    config.tls = Some(TlsFiles {
        cert: pki::write(dir.path(), "chain.pem", &one.cert),
        key: pki::write(dir.path(), "key.pem", &another.key),
    });
    let err = strata::server::build(config, ADMIN)
        .await
        .err()
        .expect("started with a key of another certificate");
    assert!(format!("{err:#}").contains("STRATA_TLS_KEY"), "{err:#}");
}
