//! Wiring for `strata serve`: open the store, settle the admin key, start the
//! jobs, serve HTTP until the shutdown future resolves, then shut down in
//! order (`Daemon::shutdown`).

use crate::api::{self, AuthSettings};
use crate::config::Config;
use crate::embed::Embedder;
use crate::feed::embeddings::EmbeddingConsumer;
use crate::feed::{Consumer, Feed};
use crate::jobs::Jobs;
use crate::lifecycle::Lifecycle;
use crate::search::meili::MeiliIndex;
use crate::search::text_index::TextIndex;
use crate::store::{self, DynStore};
use anyhow::Context;
use base64::Engine;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How long a shutdown waits for WebSocket sessions, job runs and other
/// background tasks to end before abandoning them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

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
    /// The change feed's consumers; `start` runs them.
    pub feed: Feed,
    pub router: axum::Router,
    /// Cancels and tracks the daemon's background tasks.
    pub lifecycle: Lifecycle,
    /// Meilisearch, when configured (for the feed's consumer and readiness).
    pub meili: Option<Arc<MeiliIndex>>,
    /// The daemon's own text index, unless its directory cannot be opened.
    pub text_index: Option<TextIndex>,
    /// HTTPS on the listener (`STRATA_TLS_CERT`, `STRATA_TLS_KEY`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Daemon {
    /// Starts the background work: scheduled jobs and the feed's consumers.
    pub async fn start(&self) -> anyhow::Result<()> {
        self.jobs.start().await?;
        self.feed.start(&self.lifecycle);
        if let Some(index) = &self.text_index {
            index.start(&self.lifecycle);
        }
        Ok(())
    }

    /// Stops what the daemon runs, once HTTP no longer accepts or has
    /// drained: the schedules stop; the lifecycle is cancelled, so WebSocket
    /// sessions close with 1001 and job runs and listeners end, and is
    /// waited for up to [`SHUTDOWN_GRACE`] (then abandoned, with a log line);
    /// last the store finishes what it accepted and stops (`Store::close`:
    /// the SQLite writer's final commit and join, PostgreSQL's last change
    /// notices). Every write acknowledged before is durable.
    pub async fn shutdown(self) {
        self.jobs.shutdown().await;
        let clean = self.lifecycle.stop("daemon", SHUTDOWN_GRACE).await;
        self.store.close().await;
        tracing::info!(clean, "stopped");
    }
}

/// Opens the store and builds the application.
pub async fn build(config: Config, admin_key: &str) -> anyhow::Result<Daemon> {
    // Read first: files that cannot serve stop the start before anything opens.
    let tls = config
        .tls
        .as_ref()
        .map(crate::tls::server_config)
        .transpose()?;
    let store = store::open(&config.database_url, &config.store_settings()).await?;
    let blobs = crate::blob::open(&config.blob_url)
        .await
        .with_context(|| format!("cannot open the blob store {}", config.blob_url))?;
    let lifecycle = Lifecycle::new();
    let meili = match &config.meili.url {
        Some(url) => Some(Arc::new(MeiliIndex::new(url, config.meili.key.as_deref())?)),
        None => None,
    };
    // Loading the local model reads ~90 MB: off the async threads.
    let embedder = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || crate::embed::from_config(&config)).await??
    };
    let text_index = open_text_index(&config, &store);
    let feed = Feed::new(
        store.clone(),
        consumers(&store, meili.as_ref(), embedder.as_ref()),
        config.feed_settings(),
    );
    let mut jobs = Jobs::new(
        store.clone(),
        blobs.clone(),
        feed.clone(),
        &config,
        &lifecycle,
    );
    if let Some(index) = &meili {
        jobs = jobs.with_search_index(index.clone());
    }
    let backup_blobs = crate::blob::open(config.backup_url())
        .await
        .with_context(|| format!("cannot open the backup store {}", config.backup_url()))?;
    let backups = crate::backup::Backups::new(store.clone(), blobs.clone(), backup_blobs, &config);
    jobs = jobs.with_backups(backups.clone(), &config.backup);
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
        feed: feed.clone(),
        lifecycle: lifecycle.clone(),
        meili: meili.clone(),
        embedder,
        text_index: text_index.clone(),
        backups,
    };
    let router = api::app(services, auth, Arc::new(config));
    Ok(Daemon {
        store,
        blobs,
        jobs,
        feed,
        router,
        lifecycle,
        meili,
        text_index,
        tls,
    })
}

/// The text index in `<data dir>/text-index`; without it (a directory
/// another daemon holds, or that cannot be written) the database's own
/// index answers text searches.
fn open_text_index(config: &Config, store: &DynStore) -> Option<TextIndex> {
    let dir = config.data_dir.join("text-index");
    match TextIndex::open(&dir, store.clone()) {
        Ok(index) => Some(index),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %format!("{e:#}"), "no text index; the database answers text searches");
            None
        }
    }
}

/// The change feed's consumers this configuration runs: the Meilisearch
/// mirror and the embeddings, each when configured.
fn consumers(
    store: &DynStore,
    meili: Option<&Arc<MeiliIndex>>,
    embedder: Option<&Arc<dyn Embedder>>,
) -> Vec<Arc<dyn Consumer>> {
    let mut consumers: Vec<Arc<dyn Consumer>> = Vec::new();
    if let Some(index) = meili {
        consumers.push(Arc::new(crate::feed::meili::MeiliConsumer::new(
            store.clone(),
            index.clone(),
        )));
    }
    if let Some(embedder) = embedder {
        consumers.push(Arc::new(EmbeddingConsumer::new(
            store.clone(),
            embedder.clone(),
        )));
    }
    consumers
}

/// Serves until `shutdown` resolves; then stops accepting, lets in-flight
/// requests finish and shuts the daemon down (`Daemon::shutdown`). With
/// TLS configured the listener speaks HTTPS only.
pub async fn run(
    listener: TcpListener,
    daemon: Daemon,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    daemon.start().await?;
    let app = daemon
        .router
        .clone()
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    let served = match &daemon.tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some(tls) => {
            use axum::serve::ListenerExt;
            // `tap_io` only so that axum's `ConnectInfo<SocketAddr>` applies
            // to a listener of ours (it is implemented for tapped ones).
            let listener = crate::tls::TlsListener::new(listener, tls.clone())?.tap_io(|_| {});
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    };
    daemon.shutdown().await;
    Ok(served?)
}
