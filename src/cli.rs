//! The one-shot commands: `migrate`, `init`, `doctor`, `reindex`, `health`, ...

use crate::config::Config;
use crate::domain::DomainError;
use crate::server;
use crate::store::{self, sqlite::SqliteStore};

pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    if let Some(path) = config.database_url.strip_prefix("sqlite://") {
        if let Some(dir) = std::path::Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir)?;
        }
        let applied = SqliteStore::migrate(path)?;
        println!("{applied} migration(s) applied; {path} is up to date");
        return Ok(());
    }
    // Opening a PostgreSQL store migrates it (under an advisory lock).
    store::open(&config.database_url, &config.store_settings())
        .await?
        .close()
        .await;
    println!(
        "{} is up to date",
        config
            .database_url
            .split('@')
            .next_back()
            .unwrap_or_default()
    );
    Ok(())
}

/// Writes made from the command line are recorded as the `cli` actor.
fn cli_caller() -> crate::domain::Caller {
    crate::domain::Caller::new("cli")
}

/// What `strata init` made: the org's new key, shown once.
pub struct Initialised {
    /// The key's id (as listed by `GET /v1/orgs/{org}/keys`).
    pub key_id: String,
    /// `sk_<id>_<secret>`: the whole key, for `Authorization: Bearer`.
    pub key: String,
}

/// `strata init`: the org and the project (kept when they exist) and a new
/// key of the org with `write` scope, as API.md says; prints them, the
/// secret once, with where the admin key is and the first calls to make.
pub async fn init(config: &Config, org: &str, project: &str) -> anyhow::Result<Initialised> {
    use crate::domain::{validate, ApiKeyInfo, KeyScope, StoredKey};
    validate::id("org id", org)?;
    validate::id("project id", project)?;
    let store = store::open(&config.database_url, &config.store_settings()).await?;
    let made = async {
        match store.create_org(&cli_caller(), org, org).await {
            Ok(_) | Err(DomainError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
        match store
            .create_project(&cli_caller(), org, project, project)
            .await
        {
            Ok(_) | Err(DomainError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
        let (id, key, secret_hash) = crate::api::new_key();
        let stored = StoredKey {
            info: ApiKeyInfo {
                id,
                org: org.to_owned(),
                name: "strata init".into(),
                scopes: vec![KeyScope::Write],
                projects: None,
                created_at: crate::clock::now(),
                created_by: cli_caller().key_id,
                revoked_at: None,
            },
            secret_hash,
        };
        let info = store.create_key(&cli_caller(), stored).await?;
        Ok(Initialised {
            key_id: info.id,
            key,
        })
    }
    .await;
    // Closed before exiting: on SQLite that folds the WAL back into the file.
    store.close().await;
    let made = made?;
    let admin = server::admin_key(config)?;
    let base = format!("http://{}/v1/orgs/{org}/projects/{project}", config.listen);
    println!(
        "org:     {org}\nproject: {project}\nkey:     {}\n         (write scope on org {org}, id {}; shown only now)",
        made.key, made.key_id
    );
    match &admin {
        server::AdminKey::Configured(_) => {
            println!("admin:   the global admin key is the one in STRATA_ADMIN_KEY")
        }
        server::AdminKey::FromFile(_) => println!(
            "admin:   the global admin key is in {}/admin.key",
            config.data_dir.display()
        ),
        server::AdminKey::Generated(k) => println!(
            "admin:   {k}\n         (the global admin key, generated now; also in {}/admin.key)",
            config.data_dir.display()
        ),
    }
    println!("\nStart the daemon with `strata serve`, then call it with the new key:");
    println!("  export STRATA_KEY={}", made.key);
    println!(
        "  curl -s -X POST {base}/entities -H \"Authorization: Bearer $STRATA_KEY\" \\\n       -H 'Content-Type: application/json' -d '{{\"type\": \"task\", \"properties\": {{\"title\": \"hello\"}}}}'"
    );
    println!("  curl -s \"{base}/search?q=hello\" -H \"Authorization: Bearer $STRATA_KEY\"");
    Ok(made)
}

/// Repairs a project's relationship liveness and AGE graph, says what it
/// changed, and fails unless the graph agrees with the tables afterwards.
pub async fn age_sync(config: &Config, org: &str, project: &str) -> anyhow::Result<()> {
    let store = store::open(&config.database_url, &config.store_settings()).await?;
    let scope = crate::domain::Scope::new(org, project);
    let sync = store.sync_graph(&scope).await;
    store.close().await;
    let sync = sync?;
    println!(
        "relationships: {} hidden (an end was not live), {} revived (both ends live)",
        sync.relationships_hidden, sync.relationships_revived
    );
    let drift = |d: &crate::domain::GraphDrift| {
        format!(
            "{} missing and {} stray vertices, {} missing, {} stray and {} dangling edges",
            d.missing_vertices, d.stray_vertices, d.missing_edges, d.stray_edges, d.dangling_edges
        )
    };
    println!("graph before: {}", drift(&sync.before));
    println!(
        "graph after:  {}; {} vertices, {} edges",
        drift(&sync.after),
        sync.vertices,
        sync.edges
    );
    anyhow::ensure!(
        sync.after.is_none(),
        "the graph still differs from the tables after the rebuild"
    );
    println!(
        "{}",
        if sync.repaired_anything() {
            "repaired; in step"
        } else {
            "nothing to repair; in step"
        }
    );
    Ok(())
}

/// `strata reindex`: makes Meilisearch hold exactly the live entities of
/// one project (or of every project) at their current versions.
pub async fn reindex(config: &Config, only: Option<&crate::domain::Scope>) -> anyhow::Result<()> {
    let Some(url) = &config.meili.url else {
        anyhow::bail!("STRATA_MEILI_URL is not set: there is no Meilisearch index to rebuild");
    };
    let index = crate::search::meili::MeiliIndex::new(url, config.meili.key.as_deref())?;
    let store = store::open(&config.database_url, &config.store_settings()).await?;
    let summary = crate::feed::meili::reconcile(&store, &index, only).await;
    store.close().await;
    println!("{}", summary?);
    Ok(())
}

/// Checks everything `serve` needs and says, for each, ok or what to fix.
/// Fails (exit 1) when something would stop the daemon.
pub async fn doctor() -> anyhow::Result<()> {
    let mut problems = 0;
    let mut report = |ok: bool, what: String| {
        println!("{} {what}", if ok { "ok     " } else { "PROBLEM" });
        if !ok {
            problems += 1;
        }
    };
    let config = match Config::from_env() {
        Ok(c) => {
            report(true, "configuration is valid".into());
            c
        }
        Err(e) => {
            report(false, format!("configuration: {e:#}"));
            anyhow::bail!("1 problem found");
        }
    };
    let dir = &config.data_dir;
    let probe = dir.join(".doctor-probe");
    let writable = std::fs::create_dir_all(dir).and_then(|_| std::fs::write(&probe, b"ok"));
    let _ = std::fs::remove_file(&probe);
    report(
        writable.is_ok(),
        match &writable {
            Ok(()) => format!("data directory {} is writable", dir.display()),
            Err(e) => format!("data directory {} is not writable: {e}", dir.display()),
        },
    );
    match store::open(&config.database_url, &config.store_settings()).await {
        Ok(store) => match store.ping().await {
            Ok(()) => report(
                true,
                format!(
                    "{} store at {} opens, is migrated and answers",
                    store.backend(),
                    config.database_url
                ),
            ),
            Err(e) => report(false, format!("store opens but does not answer: {e}")),
        },
        Err(e) => report(
            false,
            format!("cannot open the store {}: {e:#}", config.database_url),
        ),
    }
    let key_source = match (&config.admin_key, dir.join("admin.key").exists()) {
        (Some(_), _) => "admin key comes from STRATA_ADMIN_KEY".to_string(),
        (None, true) => format!("admin key is in {}", dir.join("admin.key").display()),
        (None, false) => {
            "no admin key yet: `strata serve` will generate one and print it once".into()
        }
    };
    report(true, key_source);
    match std::net::TcpListener::bind(&config.listen) {
        Ok(_) => report(true, format!("{} is free to listen on", config.listen)),
        Err(e) => report(
            false,
            format!(
                "cannot listen on {} ({e}); is another daemon running there?",
                config.listen
            ),
        ),
    }
    if let Some(path) = config.blob_url.strip_prefix("file://") {
        let ok = std::fs::create_dir_all(path).is_ok();
        report(
            ok,
            format!(
                "blob directory {path} {}",
                if ok { "is usable" } else { "cannot be created" }
            ),
        );
    }
    if problems > 0 {
        anyhow::bail!("{problems} problem(s) found");
    }
    println!("all checks passed");
    Ok(())
}

/// `strata health [--url URL]`: asks a daemon's `GET /health/ready` and
/// succeeds only on 200, else fails with the reason (what the daemon named,
/// or why it did not answer). Container health checks call it, so images
/// need no HTTP client of their own. Without `--url`, the daemon of this
/// configuration: its `STRATA_LISTEN`, on loopback when that is 0.0.0.0 or ::,
/// over HTTPS when `STRATA_TLS_CERT` is set, trusting exactly that
/// certificate (loopback is rarely a name it carries). With `--url`, the
/// public roots, as any client.
pub async fn health(url: Option<&str>, timeout: std::time::Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().timeout(timeout);
    let (base, client) = match url {
        Some(url) => (url.trim_end_matches('/').to_string(), client),
        None => {
            let config = Config::from_env()?;
            let address = local_address(&config.listen)?;
            match &config.tls {
                None => (format!("http://{address}"), client),
                Some(files) => (
                    format!("https://{address}"),
                    client.use_preconfigured_tls(crate::tls::pinned_client(&files.cert)?),
                ),
            }
        }
    };
    let url = format!("{base}/health/ready");
    let client = client.build()?;
    let response = client
        .get(&url)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{url} did not answer: {}", error_chain(&e)))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if status.is_success() {
        println!("ready: {url}");
        return Ok(());
    }
    // The daemon's error body names what failed; anything else is shown as sent.
    let reason = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or(body);
    anyhow::bail!("{url} answered {status}: {reason}")
}

/// Where a client on this host reaches a daemon listening on `listen`: an
/// unspecified address (`0.0.0.0`, `[::]`) is reached on loopback.
pub fn local_address(listen: &str) -> anyhow::Result<std::net::SocketAddr> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let mut addr: std::net::SocketAddr = listen
        .parse()
        .map_err(|_| anyhow::anyhow!("STRATA_LISTEN must be host:port, got {listen:?}"))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    Ok(addr)
}

/// An error and its causes on one line (reqwest's own says only "error
/// sending request"; the cause, such as a refused connection, is below it).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// `strata model fetch [--from DIR]`: installs the local embedding model
/// into `<data dir>/models/all-MiniLM-L6-v2/`, from the Hugging Face hub or
/// from `from`, checking every file against its pinned sha256.
pub async fn model_fetch(config: &Config, from: Option<&std::path::Path>) -> anyhow::Result<()> {
    let dest = crate::embed::local_model_dir(config);
    match from {
        Some(dir) => crate::embed::files::copy_from(dir, &dest).await?,
        None => crate::embed::files::fetch_from_hub(&dest).await?,
    }
    // Loaded once here, so a set that passes its sums but cannot run is
    // found now rather than at the first search.
    let check = dest.clone();
    tokio::task::spawn_blocking(move || crate::embed::LocalEmbedder::load(&check)).await??;
    println!("the local embedding model is in {}", dest.display());
    Ok(())
}

/// Writes an org's (or one project's) export to standard output as NDJSON
/// and the number of lines to standard error.
pub async fn export(config: &Config, org: &str, project: Option<&str>) -> anyhow::Result<()> {
    use futures_util::StreamExt;
    use std::io::Write;
    let store = store::open(&config.database_url, &config.store_settings()).await?;
    let written = async {
        // Document snapshots kept in the blob store are read from it.
        let blobs = crate::blob::open(&config.blob_url).await?;
        let mut lines: std::pin::Pin<Box<dyn futures_util::Stream<Item = _> + Send>> = match project
        {
            Some(p) => Box::pin(crate::export::project(&store, blobs, org, p).await?),
            None => Box::pin(crate::export::org(&store, blobs, org).await?),
        };
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let mut count = 0usize;
        while let Some(chunk) = lines.next().await {
            let chunk = chunk?;
            count += chunk.iter().filter(|b| **b == b'\n').count();
            out.write_all(&chunk)?;
        }
        out.flush()?;
        anyhow::Ok(count)
    }
    .await;
    store.close().await;
    eprintln!("exported {} records", written?);
    Ok(())
}

/// Imports an export file (or standard input, `-`) into one project, or
/// into the orgs and projects its project lines name; prints the report.
/// A progress bar of both passes of an import over the file's bytes, on
/// standard error when it is a terminal (otherwise only the summary the
/// import prints).
struct ImportBar(indicatif::ProgressBar);

impl ImportBar {
    fn on_a_terminal(path: &std::path::Path) -> Option<Self> {
        use std::io::IsTerminal;
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let bar = indicatif::ProgressBar::new(size);
        let style = indicatif::ProgressStyle::with_template(
            "{msg:>9} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("the template parses")
        .progress_chars("=> ");
        bar.set_style(style);
        Some(ImportBar(bar))
    }
}

impl crate::import::Progress for ImportBar {
    fn checked(&self, bytes: u64) {
        self.0.set_message("checking");
        self.0.set_position(bytes);
    }

    fn stored(&self, bytes: u64) {
        self.0.set_message("storing");
        self.0.set_position(bytes);
    }
}

/// How `strata import` reads its file.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImportHow {
    /// Store the good records and report the bad ones.
    pub continue_on_error: bool,
    /// A flat nodes-and-edges object (`import::flat`), not export records.
    pub flat: bool,
}

pub async fn import(
    config: &Config,
    into: Option<crate::domain::Scope>,
    file: &str,
    how: ImportHow,
) -> anyhow::Result<()> {
    use crate::import::Target;
    // Standard input is spooled: the import reads its input twice.
    let spooled = if file == "-" {
        let mut tmp = tempfile::NamedTempFile::new()?;
        std::io::copy(&mut std::io::stdin().lock(), &mut tmp)?;
        Some(tmp.into_temp_path())
    } else {
        None
    };
    let path = spooled
        .as_deref()
        .unwrap_or_else(|| std::path::Path::new(file));
    let store = store::open(&config.database_url, &config.store_settings()).await?;
    let report = async {
        let (caller, keep_going) = (cli_caller(), how.continue_on_error);
        let bar = ImportBar::on_a_terminal(path);
        let progress: &dyn crate::import::Progress = match &bar {
            Some(bar) => bar,
            None => &crate::import::Quiet,
        };
        let target = match into {
            Some(scope) => {
                store.get_project(&scope.org, &scope.project).await?;
                if how.flat {
                    return crate::import::run_flat(
                        &store, &scope, path, &caller, keep_going, progress,
                    )
                    .await;
                }
                Target::Project(scope)
            }
            None => Target::AsExported,
        };
        let report =
            crate::import::run_with(&store, &target, path, &caller, keep_going, progress).await;
        if let Some(bar) = bar {
            bar.0.finish_and_clear();
        }
        report
    }
    .await;
    store.close().await;
    println!("{}", serde_json::to_string_pretty(&report?)?);
    Ok(())
}

/// What `strata backup` does.
pub enum BackupAction {
    Create(crate::backup::manifest::Kind),
    /// A physical copy of the embedded store's file.
    Physical(std::path::PathBuf),
    List,
    Verify(String),
    Restore {
        id: String,
        target: String,
        to: Option<String>,
    },
    Expire,
}

/// `strata backup ...`: on the configured store and backup store; each
/// prints JSON to standard output. Exits non-zero when a backup fails or
/// does not verify.
pub async fn backup(config: &Config, action: BackupAction) -> anyhow::Result<()> {
    let store = store::open(&config.database_url, &config.store_settings()).await?;
    let result = async {
        let documents = crate::blob::open(&config.blob_url).await?;
        let blobs = crate::blob::open(config.backup_url()).await?;
        let backups = crate::backup::Backups::new(store.clone(), documents, blobs, config);
        match action {
            BackupAction::Create(kind) => {
                let info = backups.take(kind).await?;
                print_json(&info)?;
                if let Some(e) = info.error {
                    anyhow::bail!("the backup failed: {e}");
                }
            }
            BackupAction::Physical(out) => physical_copy(config, out).await?,
            BackupAction::List => print_json(&backups.list().await?)?,
            BackupAction::Verify(id) => {
                let found = backups.verify(&id).await?;
                print_json(&found)?;
                anyhow::ensure!(found.ok, "backup {id} does not verify");
            }
            BackupAction::Restore { id, target, to } => {
                let target = store::open(&target, &config.store_settings()).await?;
                let restored = backups.restore(&id, &target, to.as_deref()).await;
                target.close().await;
                print_json(&restored?)?;
            }
            BackupAction::Expire => print_json(&backups.expire().await?)?,
        }
        Ok(())
    }
    .await;
    store.close().await;
    result
}

/// A physical copy of the embedded store's file (`--physical --out FILE`).
async fn physical_copy(config: &Config, out: std::path::PathBuf) -> anyhow::Result<()> {
    let Some(path) = config.database_url.strip_prefix("sqlite://") else {
        anyhow::bail!(
            "a physical copy is of the embedded store; copy PostgreSQL with pgBackRest (ops/pgbackrest.sh, ops/PGBACKREST.md)"
        );
    };
    let source = std::path::PathBuf::from(path);
    let bytes = tokio::task::spawn_blocking({
        let out = out.clone();
        move || crate::backup::physical::copy_sqlite(&source, &out)
    })
    .await??;
    print_json(&serde_json::json!({ "file": out, "bytes": bytes }))
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// `strata migrate-store`: copies `from` into the empty `to` and prints the
/// per-kind tallies both agree on.
pub async fn migrate_store(config: &Config, from: &str, to: &str) -> anyhow::Result<()> {
    let source = store::open(from, &config.store_settings()).await?;
    let target = match store::open(to, &config.store_settings()).await {
        Ok(t) => t,
        Err(e) => {
            source.close().await;
            return Err(e);
        }
    };
    // Large document snapshots of the source are in the configured blob store.
    let copied = match crate::blob::open(&config.blob_url).await {
        Ok(blobs) => crate::migrate_store::run(&source, blobs, &target).await,
        Err(e) => Err(anyhow::anyhow!("cannot open the blob store: {e}")),
    };
    source.close().await;
    target.close().await;
    print_json(&copied?)
}

#[cfg(test)]
mod tests {
    use super::local_address;

    #[test]
    fn an_unspecified_listen_address_is_reached_on_loopback() {
        let at = |listen: &str| local_address(listen).unwrap().to_string();
        assert_eq!(at("0.0.0.0:7474"), "127.0.0.1:7474");
        assert_eq!(at("[::]:8080"), "[::1]:8080");
        assert_eq!(at("10.1.2.3:7474"), "10.1.2.3:7474");
        assert!(local_address("localhost:7474").is_err());
    }
}
