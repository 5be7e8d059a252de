//! The `strata` binary: parse the command, set up logging, hand over.

use anyhow::Context;
use clap::{Parser, Subcommand};
use strata::config::Config;
use strata::server::{self, AdminKey};

// The request path allocates many small, short-lived values (JSON trees,
// rows, strings) across threads; glibc's malloc spent ~30% of a graph
// query's CPU in profiles, mimalloc a fraction of that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "Persistence daemon for graph-shaped application data"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Serve,
    /// Apply pending migrations and exit.
    Migrate,
    /// Create an org and a project (kept when they exist) and a key of the
    /// org with write scope; print them (the key only now) and how to call
    /// the API.
    Init {
        #[arg(long, default_value = "default")]
        org: String,
        #[arg(long, default_value = "default")]
        project: String,
    },
    /// Check the configuration and the store; say what is wrong in plain words.
    Doctor,
    /// Ask a running daemon whether it is ready (GET /health/ready): exit 0
    /// when it is, else 1 with the reason. For container health checks.
    Health {
        /// The daemon's base URL; by default this configuration's
        /// STRATA_LISTEN (0.0.0.0 and :: reached on loopback).
        #[arg(long)]
        url: Option<String>,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 5)]
        timeout: u64,
    },
    /// Compare the Meilisearch index with the database and repair drift
    /// (one project, or every project).
    Reindex {
        #[arg(long, requires = "project")]
        org: Option<String>,
        #[arg(long, requires = "org")]
        project: Option<String>,
    },
    /// Write an org's projects (or one project) to standard output as
    /// NDJSON: every entity with its versions, every relationship.
    Export {
        #[arg(long)]
        org: String,
        #[arg(long)]
        project: Option<String>,
    },
    /// Import an export (NDJSON) from FILE or `-` (standard input): into
    /// one project, or into the orgs and projects its project lines name
    /// (made when missing). A bad line stops it before anything is stored.
    Import {
        #[arg(long, requires = "project")]
        org: Option<String>,
        #[arg(long, requires = "org")]
        project: Option<String>,
        /// Store the good lines and report the bad ones.
        #[arg(long)]
        continue_on_error: bool,
        /// The file is one flat nodes-and-edges object (README, Moving
        /// data), imported into --org/--project.
        #[arg(long, requires = "org")]
        flat: bool,
        file: String,
    },
    /// Logical backups in the backup store (STRATA_BACKUP_URL, else the
    /// blob store): take, list, verify, restore, expire.
    Backup {
        #[command(subcommand)]
        command: BackupCommand,
    },
    /// Copy a whole store into an empty one (SQLite ⇄ PostgreSQL) and
    /// check the copy: per-kind row counts and checksums of canonical JSON.
    MigrateStore {
        /// The source store: sqlite://PATH or postgres://...
        #[arg(long)]
        from: String,
        /// The empty target store.
        #[arg(long)]
        to: String,
    },
    /// Apache AGE graph projection (server mode).
    Age {
        #[command(subcommand)]
        command: AgeCommand,
    },
    /// The local embedding model of semantic search.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Install all-MiniLM-L6-v2 into <data dir>/models, from the Hugging Face
    /// hub or from a directory; every file is checked against a pinned sha256.
    Fetch {
        /// Take the files (model.safetensors, tokenizer.json, config.json)
        /// from this directory instead of downloading them.
        #[arg(long, value_name = "DIR")]
        from: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
enum BackupCommand {
    /// Take a backup now: `full`, or `incr` (what changed since the newest
    /// backup; a full one when the change feed no longer reaches back).
    Create {
        #[arg(long = "type", value_enum, default_value = "full")]
        kind: BackupKind,
        /// Instead: a physical copy of the embedded store's SQLite file,
        /// consistent while the daemon serves, written to --out.
        #[arg(long, requires = "out", conflicts_with = "kind")]
        physical: bool,
        /// The new file of a physical copy.
        #[arg(long, requires = "physical")]
        out: Option<std::path::PathBuf>,
    },
    /// Every complete backup, oldest first.
    List,
    /// Check a backup and its chain: manifests, chunk checksums, records.
    Verify { id: String },
    /// Restore a backup (with the chain before it) into an empty store.
    Restore {
        id: String,
        /// The store to restore into: sqlite://PATH or postgres://...
        #[arg(long)]
        target: String,
        /// The state at this time (RFC 3339) instead of the backup's.
        #[arg(long)]
        to: Option<String>,
    },
    /// Delete backups past retention and chunks of unfinished ones.
    Expire,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BackupKind {
    Full,
    Incr,
}

#[derive(Subcommand)]
enum AgeCommand {
    /// Rebuild a project's graph from the tables and verify the counts.
    Sync {
        #[arg(long)]
        org: String,
        #[arg(long)]
        project: String,
    },
}

fn main() -> anyhow::Result<()> {
    strata::embed::local::single_threaded_kernels();
    let cli = Cli::parse();
    strata::logging::init()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve().await,
            Command::Migrate => strata::cli::migrate(&Config::from_env()?).await,
            Command::Init { org, project } => {
                strata::cli::init(&Config::from_env()?, &org, &project)
                    .await
                    .map(|_| ())
            }
            Command::Doctor => strata::cli::doctor().await,
            Command::Health { url, timeout } => {
                strata::cli::health(url.as_deref(), std::time::Duration::from_secs(timeout)).await
            }
            Command::Reindex { org, project } => {
                let scope = org
                    .zip(project)
                    .map(|(o, p)| strata::domain::Scope::new(o, p));
                strata::cli::reindex(&Config::from_env()?, scope.as_ref()).await
            }
            Command::Backup { command } => backup(command).await,
            Command::MigrateStore { from, to } => {
                strata::cli::migrate_store(&Config::from_env()?, &from, &to).await
            }
            Command::Export { org, project } => {
                strata::cli::export(&Config::from_env()?, &org, project.as_deref()).await
            }
            Command::Import {
                org,
                project,
                continue_on_error,
                flat,
                file,
            } => {
                let into = org
                    .zip(project)
                    .map(|(o, p)| strata::domain::Scope::new(o, p));
                let how = strata::cli::ImportHow {
                    continue_on_error,
                    flat,
                };
                strata::cli::import(&Config::from_env()?, into, &file, how).await
            }
            Command::Age {
                command: AgeCommand::Sync { org, project },
            } => strata::cli::age_sync(&Config::from_env()?, &org, &project).await,
            Command::Model {
                command: ModelCommand::Fetch { from },
            } => strata::cli::model_fetch(&Config::from_env()?, from.as_deref()).await,
        }
    })
}

async fn serve() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let key = server::admin_key(&config)?;
    let listen = config.listen.clone();
    let daemon = server::build(config.clone(), key.secret()).await?;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    if let AdminKey::Generated(k) = &key {
        println!(
            "Generated the admin API key (shown once; also in {}/admin.key):\n  {k}",
            config.data_dir.display()
        );
    }
    tracing::info!(listen = %listen, backend = daemon.store.backend(), "strata is ready");
    server::run(listener, daemon, shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

async fn backup(command: BackupCommand) -> anyhow::Result<()> {
    use strata::backup::manifest::Kind;
    use strata::cli::BackupAction;
    let action = match command {
        BackupCommand::Create {
            out: Some(out),
            physical: true,
            ..
        } => BackupAction::Physical(out),
        BackupCommand::Create { kind, .. } => BackupAction::Create(match kind {
            BackupKind::Full => Kind::Full,
            BackupKind::Incr => Kind::Incr,
        }),
        BackupCommand::List => BackupAction::List,
        BackupCommand::Verify { id } => BackupAction::Verify(id),
        BackupCommand::Restore { id, target, to } => BackupAction::Restore { id, target, to },
        BackupCommand::Expire => BackupAction::Expire,
    };
    strata::cli::backup(&Config::from_env()?, action).await
}
