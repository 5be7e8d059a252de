//! TLS to PostgreSQL, with the URL parameters libpq users already write:
//! `sslmode=disable|prefer|require|verify-ca|verify-full` and
//! `sslrootcert=<PEM file>|system`. tokio-postgres itself knows only
//! `disable`, `prefer` and `require` (and no `sslrootcert`), so
//! [`configure`] takes both parameters out of the URL, gives tokio-postgres
//! what it knows (whether to ask for TLS, and whether a refusal is fatal)
//! and puts the certificate checks into the rustls connector every
//! connection of the store uses: the pool's, the LISTEN connection's and
//! AGE's detection.
//!
//! What each mode checks, as libpq does:
//! - `disable`: plain text, TLS never asked for.
//! - `prefer` (the default, as in libpq): TLS when the server offers it,
//!   plain text when it refuses; no certificate check.
//! - `require`: TLS or no connection; no certificate check.
//! - `verify-ca`: TLS; the chain must lead to `sslrootcert` (or the
//!   system's trust store); the name is not checked.
//! - `verify-full`: `verify-ca`, and the certificate must name the host
//!   of the URL.
//!
//! `prefer` and `require` with `sslrootcert` check the chain as `verify-ca`
//! does (libpq does the same). Unlike libpq, `prefer` does not retry in
//! plain text after a failed check: a certificate that fails is a
//! configuration error or an attack, and neither should downgrade silently.
//! Without `sslmode`, `sslrootcert=system` means `verify-full` (libpq 16).
//! When `sslrootcert` is absent, `verify-ca`/`verify-full` use the system's
//! trust store (libpq would read `~/.postgresql/root.crt`, which a daemon's
//! account rarely has).
//!
//! Why `prefer` by default rather than something stricter: a URL written
//! for psql or pgBackRest means the same here, a server that offers TLS
//! (every managed PostgreSQL) gets encrypted traffic without a change to
//! the URL, and one without it (a local cluster, PGlite) still works. It
//! guards against a passive listener only; anyone who must know whom they
//! talk to sets `verify-full`, and the README says so.
//!
//! SCRAM channel binding (`channel_binding=require`) works over these
//! connections: each stream reports the `tls-server-end-point` hash of the
//! server's certificate.

use crate::tls::{provider, read_certs};
use anyhow::{bail, Context};
use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, RootCertStore};
use sha2::Digest;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use tokio_rustls::TlsConnector;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// Where the trusted certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    File(PathBuf),
    /// `sslrootcert=system`, or a verifying mode without `sslrootcert`.
    System,
}

/// What a URL asks of TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: SslMode,
    pub root_cert: Option<RootCert>,
}

/// The URL without `sslmode` and `sslrootcert` (every other parameter left
/// as written, for tokio-postgres to read) and what they asked.
pub fn split_url(url: &str) -> anyhow::Result<(String, TlsSettings)> {
    // Where tokio-postgres finds the parameters: the first `?` after the
    // credentials (which end at the first `@`).
    let from = url.find('@').map_or(0, |at| at + 1);
    let Some(question) = url[from..].find('?').map(|q| from + q) else {
        return Ok((url.to_owned(), settings(None, None)?));
    };
    let (mut mode, mut root) = (None, None);
    let mut kept = Vec::new();
    for param in url[question + 1..].split('&') {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        let decoded = || {
            percent_encoding::percent_decode_str(value)
                .decode_utf8()
                .map(|v| v.into_owned())
                .with_context(|| format!("the database URL's {key} is not UTF-8"))
        };
        match key {
            "sslmode" => mode = Some(decoded()?),
            "sslrootcert" => root = Some(decoded()?),
            "sslcert" | "sslkey" | "sslpassword" => bail!(
                "the database URL asks for a client certificate ({key}), which Strata does not send; use a password"
            ),
            _ => kept.push(param),
        }
    }
    let mut rest = url[..question].to_owned();
    if !kept.is_empty() {
        rest.push('?');
        rest.push_str(&kept.join("&"));
    }
    Ok((rest, settings(mode.as_deref(), root)?))
}

fn settings(mode: Option<&str>, root: Option<String>) -> anyhow::Result<TlsSettings> {
    let root = root.map(|r| match r.as_str() {
        "system" => RootCert::System,
        _ => RootCert::File(r.into()),
    });
    let mode = match mode {
        None if root == Some(RootCert::System) => SslMode::VerifyFull,
        None | Some("prefer") => SslMode::Prefer,
        Some("disable") => SslMode::Disable,
        Some("require") => SslMode::Require,
        Some("verify-ca") => SslMode::VerifyCa,
        Some("verify-full") => SslMode::VerifyFull,
        Some(other) => bail!(
            "the database URL's sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full"
        ),
    };
    if root == Some(RootCert::System) && !matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) {
        // libpq refuses this too: trusting every public CA means nothing
        // unless the name is checked as well.
        bail!("the database URL's sslrootcert=system needs sslmode=verify-full (or verify-ca)");
    }
    let root = match (mode, root) {
        (SslMode::VerifyCa | SslMode::VerifyFull, None) => Some(RootCert::System),
        (_, root) => root,
    };
    Ok(TlsSettings {
        mode,
        root_cert: root,
    })
}

/// tokio-postgres's configuration of `url` and the connector that carries
/// out its `sslmode`; certificate files are read here, so one that cannot
/// be used stops the start.
pub fn configure(url: &str) -> anyhow::Result<(tokio_postgres::Config, MakeRustls)> {
    let (url, tls) = split_url(url)?;
    let mut pg: tokio_postgres::Config = url.parse()?;
    pg.ssl_mode(match tls.mode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
            tokio_postgres::config::SslMode::Require
        }
    });
    Ok((pg, MakeRustls::new(&tls)?))
}

/// Whether a connection failed for its certificate (or another TLS error):
/// retrying will not help, so the start stops at once.
pub fn is_tls_failure(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        // tokio-rustls wraps rustls's error in an io::Error, whose source()
        // skips it (it returns the wrapped error's own source).
        let inner = e.downcast_ref::<io::Error>().and_then(|io| io.get_ref());
        if e.is::<rustls::Error>() || inner.is_some_and(|i| i.is::<rustls::Error>()) {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Makes the TLS side of each new connection (tokio-postgres's
/// `MakeTlsConnect` over tokio-rustls); cheap to clone.
#[derive(Clone)]
pub struct MakeRustls {
    config: Arc<ClientConfig>,
}

impl MakeRustls {
    fn new(tls: &TlsSettings) -> anyhow::Result<Self> {
        let provider = provider();
        let roots = match &tls.root_cert {
            None => None,
            Some(RootCert::File(path)) => {
                let mut roots = RootCertStore::empty();
                for cert in read_certs(path).context("sslrootcert")? {
                    roots
                        .add(cert)
                        .with_context(|| format!("sslrootcert {}", path.display()))?;
                }
                Some(Arc::new(roots))
            }
            Some(RootCert::System) => Some(Arc::new(system_roots()?)),
        };
        let verifier: Arc<dyn ServerCertVerifier> = match (tls.mode, roots) {
            (SslMode::VerifyFull, Some(roots)) => {
                WebPkiServerVerifier::builder_with_provider(roots, provider.clone()).build()?
            }
            (_, Some(roots)) => Arc::new(ChainOnly {
                roots,
                provider: provider.clone(),
            }),
            (_, None) => Arc::new(Unchecked {
                provider: provider.clone(),
            }),
        };
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(MakeRustls {
            config: Arc::new(config),
        })
    }
}

fn system_roots() -> anyhow::Result<RootCertStore> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        bail!(
            "the system's trust store holds no certificate (errors: {:?}); name the server's CA with sslrootcert=<file>",
            found.errors
        );
    }
    Ok(roots)
}

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, Self::Error> {
        Ok(RustlsConnect {
            config: self.config.clone(),
            name: ServerName::try_from(domain)?.to_owned(),
        })
    }
}

pub struct RustlsConnect {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let stream = TlsConnector::from(self.config)
                .connect(self.name, stream)
                .await?;
            Ok(RustlsStream(stream))
        })
    }
}

pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        let (_, session) = self.0.get_ref();
        session
            .peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(|cert| server_end_point(cert))
            .map_or_else(ChannelBinding::none, ChannelBinding::tls_server_end_point)
    }
}

/// RFC 5929's `tls-server-end-point`: the certificate hashed with the hash
/// of its own signature algorithm, SHA-256 for MD5 and SHA-1. None (no
/// binding offered) for an algorithm whose hash this does not know, such
/// as RSA-PSS or Ed25519.
fn server_end_point(cert: &CertificateDer<'_>) -> Option<Vec<u8>> {
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, ... }
    let (_, certificate, _) = der(cert.as_ref(), 0x30)?;
    let (_, _tbs, rest) = der(certificate, 0x30)?;
    let (_, algorithm, _) = der(rest, 0x30)?;
    let (_, oid, _) = der(algorithm, 0x06)?;
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    const ECDSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04];
    let bytes = cert.as_ref();
    let hash = match oid {
        // md5, sha1, sha256 with RSA; ecdsa with sha1, sha256
        [p @ .., 0x04 | 0x05 | 0x0b] if p == RSA => sha2::Sha256::digest(bytes).to_vec(),
        [p @ .., 0x01] if p == ECDSA => sha2::Sha256::digest(bytes).to_vec(),
        [p @ .., 0x03, 0x02] if p == ECDSA => sha2::Sha256::digest(bytes).to_vec(),
        [p @ .., 0x0c] if p == RSA => sha2::Sha384::digest(bytes).to_vec(),
        [p @ .., 0x03, 0x03] if p == ECDSA => sha2::Sha384::digest(bytes).to_vec(),
        [p @ .., 0x0d] if p == RSA => sha2::Sha512::digest(bytes).to_vec(),
        [p @ .., 0x03, 0x04] if p == ECDSA => sha2::Sha512::digest(bytes).to_vec(),
        _ => return None,
    };
    Some(hash)
}

/// One DER element of `tag` at the head of `input`: (tag, contents, rest).
fn der(input: &[u8], tag: u8) -> Option<(u8, &[u8], &[u8])> {
    let (&first, rest) = input.split_first()?;
    let (&len, rest) = rest.split_first()?;
    let (len, rest) = if len < 0x80 {
        (usize::from(len), rest)
    } else {
        let n = usize::from(len & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if first != tag || rest.len() < len {
        return None;
    }
    Some((first, &rest[..len], &rest[len..]))
}

/// `require` and `prefer` without `sslrootcert`: any certificate, as long
/// as the server holds its key.
#[derive(Debug)]
struct Unchecked {
    provider: Arc<CryptoProvider>,
}

/// `verify-ca` (and `require`/`prefer` with `sslrootcert`): the chain must
/// lead to a trusted root; the name the certificate is for is not checked.
#[derive(Debug)]
struct ChainOnly {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    crate::tls::handshake_signatures!();
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    crate::tls::handshake_signatures!();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(url: &str) -> (String, TlsSettings) {
        split_url(url).unwrap()
    }

    fn file(path: &str) -> Option<RootCert> {
        Some(RootCert::File(path.into()))
    }

    #[test]
    fn without_parameters_the_url_is_untouched_and_tls_is_preferred() {
        let url = "postgres://u:p@db.example:5432/strata";
        assert_eq!(
            split(url),
            (
                url.to_owned(),
                TlsSettings {
                    mode: SslMode::Prefer,
                    root_cert: None
                }
            )
        );
    }

    #[test]
    fn ssl_parameters_are_taken_out_and_the_others_kept_in_order() {
        let (url, tls) = split(
            "postgresql://u@h1:5432,h2:5433/db?application_name=a&sslmode=verify-full&sslrootcert=%2Fetc%2Fca%20x.pem&connect_timeout=3",
        );
        assert_eq!(
            url,
            "postgresql://u@h1:5432,h2:5433/db?application_name=a&connect_timeout=3"
        );
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(tls.root_cert, file("/etc/ca x.pem"));
        let (url, tls) = split("postgres://h/db?sslmode=disable");
        assert_eq!(url, "postgres://h/db");
        assert_eq!(tls.mode, SslMode::Disable);
        // tokio-postgres reads what remains.
        url.parse::<tokio_postgres::Config>().unwrap();
    }

    #[test]
    fn a_question_mark_in_the_password_is_not_the_query() {
        let (url, tls) = split("postgres://u:pa?ss@h/db?sslmode=require");
        assert_eq!(url, "postgres://u:pa?ss@h/db");
        assert_eq!(tls.mode, SslMode::Require);
    }

    #[test]
    fn each_mode_and_its_roots() {
        let cases = [
            ("sslmode=prefer", SslMode::Prefer, None),
            ("sslmode=require", SslMode::Require, None),
            (
                "sslmode=require&sslrootcert=ca.pem",
                SslMode::Require,
                file("ca.pem"),
            ),
            (
                "sslmode=verify-ca",
                SslMode::VerifyCa,
                Some(RootCert::System),
            ),
            (
                "sslmode=verify-full",
                SslMode::VerifyFull,
                Some(RootCert::System),
            ),
            (
                "sslmode=verify-ca&sslrootcert=ca.pem",
                SslMode::VerifyCa,
                file("ca.pem"),
            ),
            (
                "sslrootcert=system",
                SslMode::VerifyFull,
                Some(RootCert::System),
            ),
            (
                "sslrootcert=system&sslmode=verify-ca",
                SslMode::VerifyCa,
                Some(RootCert::System),
            ),
        ];
        for (query, mode, root_cert) in cases {
            let (_, tls) = split(&format!("postgres://h/db?{query}"));
            assert_eq!(tls, TlsSettings { mode, root_cert }, "{query}");
        }
    }

    #[test]
    fn what_cannot_be_honoured_stops_the_start() {
        for (query, says) in [
            ("sslmode=allow", "sslmode=allow"),
            ("sslmode=VERIFY-FULL", "sslmode=VERIFY-FULL"),
            ("sslmode=require&sslrootcert=system", "sslrootcert=system"),
            ("sslcert=client.pem", "client certificate"),
            ("sslrootcert=%FF", "not UTF-8"),
        ] {
            let err = split_url(&format!("postgres://h/db?{query}")).unwrap_err();
            assert!(err.to_string().contains(says), "{query}: {err}");
        }
        let err = configure("postgres://h/db?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem")
            .err()
            .unwrap();
        assert!(
            format!("{err:#}").contains("/nonexistent/ca.pem"),
            "{err:#}"
        );
    }

    #[test]
    fn the_mode_reaches_tokio_postgres() {
        use tokio_postgres::config::SslMode as Wire;
        for (query, wire) in [
            ("", Wire::Prefer),
            ("?sslmode=disable", Wire::Disable),
            ("?sslmode=require", Wire::Require),
        ] {
            let (pg, _) = configure(&format!("postgres://h/db{query}")).unwrap();
            assert_eq!(pg.get_ssl_mode(), wire, "{query}");
        }
    }

    #[test]
    fn the_end_point_hash_follows_the_signature_algorithm() {
        // A certificate reduced to its outer shape: the SEQUENCE, an empty
        // tbsCertificate and the AlgorithmIdentifier.
        let cert = |oid: &[u8]| {
            let mut alg = vec![0x06, oid.len() as u8];
            alg.extend_from_slice(oid);
            let mut body = vec![0x30, 0x00, 0x30, alg.len() as u8];
            body.extend(alg);
            let mut der = vec![0x30, body.len() as u8];
            der.extend(body);
            CertificateDer::from(der)
        };
        let ecdsa_sha256 = cert(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]);
        let ecdsa_sha384 = cert(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03]);
        let rsa_sha512 = cert(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d]);
        let ed25519 = cert(&[0x2b, 0x65, 0x70]);
        let len = |c| server_end_point(&c).map(|h| h.len());
        assert_eq!(len(ecdsa_sha256), Some(32));
        assert_eq!(len(ecdsa_sha384), Some(48));
        assert_eq!(len(rsa_sha512), Some(64));
        assert_eq!(len(ed25519), None);
        assert_eq!(server_end_point(&CertificateDer::from(vec![0x30])), None);
    }
}
