//! Wiring for `strata serve`: open the store, settle the admin key, start the
//! jobs and serve HTTP until the shutdown future resolves.

use crate::api::{self, AuthSettings};
use crate::config::Config;
use crate::jobs::Jobs;
use crate::store::{self, DynStore};
use anyhow::Context;
use base64::Engine;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Where the admin key came from, for the start-up message.
pub enum AdminKey {
    Configured(String),
    FromFile(String),
    /// Made on this start: printed once.
    Generated(String),
}

impl AdminKey {
    pub fn secret(&self) -> &str {
        match self {
            AdminKey::Configured(k) | AdminKey::FromFile(k) | AdminKey::Generated(k) => k,
        }
    }
}

fn key_file(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("admin.key")
}

/// The configured key, else the one in `<data dir>/admin.key`, else a new
/// random one written there with mode 0600.
pub fn admin_key(config: &Config) -> anyhow::Result<AdminKey> {
    if let Some(k) = &config.admin_key {
        return Ok(AdminKey::Configured(k.clone()));
    }
    let path = key_file(&config.data_dir);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let key = text.trim().to_owned();
        anyhow::ensure!(
            key.len() >= 16,
            "{} is too short to be a key",
            path.display()
        );
        return Ok(AdminKey::FromFile(key));
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    let key = format!(
        "sk_admin_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    write_private(&path, &key)?;
    Ok(AdminKey::Generated(key))
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    Ok(())
}

/// A running daemon's parts, for `serve` and for tests.
pub struct Daemon {
    pub store: DynStore,
    pub blobs: Arc<dyn crate::blob::BlobStore>,
    pub jobs: Jobs,
    pub router: axum::Router,
}

/// Opens the store and builds the application.
pub async fn build(config: Config, admin_key: &str) -> anyhow::Result<Daemon> {
    let store = store::open(&config).await?;
    let blobs = crate::blob::open(&config.blob_url)
        .await
        .with_context(|| format!("cannot open the blob store {}", config.blob_url))?;
    let jobs = Jobs::new(store.clone(), blobs.clone(), &config);
    let auth = AuthSettings {
        admin_key: admin_key.to_owned(),
        disabled: config.auth_disabled,
        rate_per_sec: config.rate_limit_per_sec,
        burst: config.rate_limit_burst,
    };
    let services = api::Services {
        store: store.clone(),
        blobs: blobs.clone(),
        jobs: jobs.clone(),
    };
    let router = api::app(services, auth, Arc::new(config));
    Ok(Daemon {
        store,
        blobs,
        jobs,
        router,
    })
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish.
pub async fn run(
    listener: TcpListener,
    daemon: Daemon,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    daemon.jobs.start().await?;
    axum::serve(
        listener,
        daemon
            .router
            .into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    daemon.jobs.shutdown().await;
    Ok(())
}
