//! One typed configuration: defaults < TOML file (`STRATA_CONFIG`) < environment.
//! Unknown keys in the file and unknown `STRATA_*` variables stop the start:
//! a setting is never silently ignored.

use crate::store::postgres::{AgeMode, PgConfig};
use crate::store::sqlite::{SqliteConfig, Synchronous};
use anyhow::{bail, Context};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    pub data_dir: PathBuf,
    pub listen: String,
    pub admin_key: Option<String>,
    pub blob_url: String,
    /// Largest request body accepted (413 above).
    pub body_limit: usize,
    pub request_timeout_secs: u64,
    pub max_concurrency: usize,
    /// Local development only: no keys checked; refused off loopback.
    pub auth_disabled: bool,
    /// Requests per second per org key (0: no limit); the global admin key is exempt.
    pub rate_limit_per_sec: u32,
    pub rate_limit_burst: u32,
    /// Entities held in the read cache.
    pub cache_entries: u64,
    pub sqlite: SqliteConfig,
    pub postgres: PgConfig,
    pub crdt: crate::crdt::CrdtConfig,
    /// Cron (with seconds) of the document compaction job.
    pub compact_schedule: String,
}

/// The file form: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    database_url: Option<String>,
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    admin_key: Option<String>,
    blob_url: Option<String>,
    body_limit: Option<usize>,
    request_timeout_secs: Option<u64>,
    max_concurrency: Option<usize>,
    auth: Option<String>,
    rate_limit_per_sec: Option<u32>,
    rate_limit_burst: Option<u32>,
    cache_entries: Option<u64>,
    sqlite: Option<SqliteConfig>,
    postgres: Option<PgConfig>,
}

/// Every environment variable the daemon reads.
const KNOWN_VARS: &[&str] = &[
    "STRATA_CONFIG",
    "STRATA_DATABASE_URL",
    "STRATA_DATA_DIR",
    "STRATA_LISTEN",
    "STRATA_ADMIN_KEY",
    "STRATA_BLOB_URL",
    "STRATA_S3_ENDPOINT",
    "STRATA_BODY_LIMIT",
    "STRATA_REQUEST_TIMEOUT_SECS",
    "STRATA_MAX_CONCURRENCY",
    "STRATA_SQLITE_SYNCHRONOUS",
    "STRATA_SQLITE_READERS",
    "STRATA_CACHE_ENTRIES",
    "STRATA_LOG",
    "STRATA_AUTH",
    "STRATA_RATE_LIMIT",
    "STRATA_RATE_BURST",
    "STRATA_PG_POOL_SIZE",
    "STRATA_PG_STATEMENT_TIMEOUT_MS",
    "STRATA_PG_CONNECT_TIMEOUT_SECS",
    "STRATA_PG_NOTIFY",
    "STRATA_AGE",
    "STRATA_CRDT_MAX_UPDATE",
    "STRATA_CRDT_INLINE_MAX",
    "STRATA_CRDT_RETENTION_SECS",
    "STRATA_CRDT_SNAPSHOT_KEEP_SECS",
    "STRATA_COMPACT_SCHEDULE",
];

impl Config {
    /// Reads the process environment (and the file it names).
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_vars(std::env::vars().collect())
    }

    pub fn from_vars(vars: HashMap<String, String>) -> anyhow::Result<Self> {
        for name in vars.keys().filter(|k| k.starts_with("STRATA_")) {
            if !KNOWN_VARS.contains(&name.as_str()) {
                bail!(
                    "unknown setting {name}: known ones are {}",
                    KNOWN_VARS.join(", ")
                );
            }
        }
        let file = match vars.get("STRATA_CONFIG") {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read STRATA_CONFIG file {path}"))?;
                toml::from_str::<FileConfig>(&text)
                    .with_context(|| format!("invalid config file {path}"))?
            }
            None => FileConfig::default(),
        };
        let env = |k: &str| vars.get(k).filter(|v| !v.is_empty()).cloned();
        let parse = |k: &str| -> anyhow::Result<Option<u64>> {
            env(k)
                .map(|v| {
                    v.parse::<u64>()
                        .with_context(|| format!("{k} must be a whole number, got {v:?}"))
                })
                .transpose()
        };

        let data_dir = env("STRATA_DATA_DIR")
            .map(PathBuf::from)
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("./strata-data"));
        let database_url = env("STRATA_DATABASE_URL")
            .or(file.database_url)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("strata.db").display()));
        let blob_url = env("STRATA_BLOB_URL")
            .or(file.blob_url)
            .unwrap_or_else(|| format!("file://{}", data_dir.join("blobs").display()));
        let mut sqlite = file.sqlite.unwrap_or_default();
        if let Some(s) = env("STRATA_SQLITE_SYNCHRONOUS") {
            sqlite.synchronous = match s.to_ascii_lowercase().as_str() {
                "full" => Synchronous::Full,
                "normal" => Synchronous::Normal,
                _ => bail!("STRATA_SQLITE_SYNCHRONOUS must be full or normal, got {s:?}"),
            };
        }
        if let Some(n) = parse("STRATA_SQLITE_READERS")? {
            sqlite.readers = n as usize;
        }
        let mut postgres = file.postgres.unwrap_or_default();
        if let Some(n) = parse("STRATA_PG_POOL_SIZE")? {
            postgres.pool_size = n as usize;
        }
        if let Some(n) = parse("STRATA_PG_STATEMENT_TIMEOUT_MS")? {
            postgres.statement_timeout_ms = n;
        }
        if let Some(n) = parse("STRATA_PG_CONNECT_TIMEOUT_SECS")? {
            postgres.connect_timeout_secs = n;
        }
        if let Some(s) = env("STRATA_AGE") {
            postgres.age = match s.as_str() {
                "auto" => AgeMode::Auto,
                "on" => AgeMode::On,
                "off" => AgeMode::Off,
                _ => bail!("STRATA_AGE must be auto, on or off, got {s:?}"),
            };
        }
        if let Some(s) = env("STRATA_PG_NOTIFY") {
            postgres.notify = match s.as_str() {
                "on" => true,
                "off" => false,
                _ => bail!("STRATA_PG_NOTIFY must be on or off, got {s:?}"),
            };
        }
        let config = Config {
            database_url,
            data_dir,
            listen: env("STRATA_LISTEN")
                .or(file.listen)
                .unwrap_or_else(|| "127.0.0.1:7474".into()),
            admin_key: env("STRATA_ADMIN_KEY").or(file.admin_key),
            blob_url,
            body_limit: parse("STRATA_BODY_LIMIT")?
                .map(|n| n as usize)
                .or(file.body_limit)
                .unwrap_or(1 << 20),
            request_timeout_secs: parse("STRATA_REQUEST_TIMEOUT_SECS")?
                .or(file.request_timeout_secs)
                .unwrap_or(30),
            max_concurrency: parse("STRATA_MAX_CONCURRENCY")?
                .map(|n| n as usize)
                .or(file.max_concurrency)
                .unwrap_or(1024),
            auth_disabled: match env("STRATA_AUTH").or(file.auth).as_deref() {
                None | Some("on") => false,
                Some("off") => true,
                Some(other) => bail!("STRATA_AUTH must be on or off, got {other:?}"),
            },
            rate_limit_per_sec: parse("STRATA_RATE_LIMIT")?
                .map(|n| n as u32)
                .or(file.rate_limit_per_sec)
                .unwrap_or(1000),
            rate_limit_burst: 0,
            cache_entries: parse("STRATA_CACHE_ENTRIES")?
                .or(file.cache_entries)
                .unwrap_or(100_000),
            sqlite,
            postgres,
            crdt: {
                let mut c = crate::crdt::CrdtConfig::default();
                if let Some(n) = parse("STRATA_CRDT_MAX_UPDATE")? {
                    c.max_update_bytes = n as usize;
                }
                if let Some(n) = parse("STRATA_CRDT_INLINE_MAX")? {
                    c.inline_max_bytes = n as usize;
                }
                if let Some(n) = parse("STRATA_CRDT_RETENTION_SECS")? {
                    c.retention = std::time::Duration::from_secs(n);
                }
                if let Some(n) = parse("STRATA_CRDT_SNAPSHOT_KEEP_SECS")? {
                    c.keep_snapshots = std::time::Duration::from_secs(n);
                }
                c
            },
            compact_schedule: env("STRATA_COMPACT_SCHEDULE")
                .unwrap_or_else(|| "0 0 * * * *".into()),
        };
        let mut config = config;
        config.rate_limit_burst = parse("STRATA_RATE_BURST")?
            .map(|n| n as u32)
            .or(file.rate_limit_burst)
            .unwrap_or(config.rate_limit_per_sec.saturating_mul(2));
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            bail!(
                "STRATA_LISTEN must be host:port with a numeric host, got {:?}",
                self.listen
            );
        }
        if self.body_limit < 1024 {
            bail!("STRATA_BODY_LIMIT must be at least 1024 bytes");
        }
        if !(self.blob_url.starts_with("file://") || self.blob_url.starts_with("s3://")) {
            bail!(
                "STRATA_BLOB_URL must start with file:// or s3://, got {:?}",
                self.blob_url
            );
        }
        if let Some(key) = &self.admin_key {
            if key.len() < 16 {
                bail!("STRATA_ADMIN_KEY must be at least 16 characters");
            }
        }
        if self.auth_disabled {
            let ip = self.listen.parse::<std::net::SocketAddr>().map(|a| a.ip());
            if !ip.is_ok_and(|ip| ip.is_loopback()) {
                bail!(
                    "STRATA_AUTH=off is for local development only and needs a loopback STRATA_LISTEN, got {:?}",
                    self.listen
                );
            }
        }
        if self.sqlite.readers == 0 || self.max_concurrency == 0 || self.postgres.pool_size == 0 {
            bail!("STRATA_SQLITE_READERS, STRATA_PG_POOL_SIZE and STRATA_MAX_CONCURRENCY must be at least 1");
        }
        Ok(())
    }

    /// Defaults for tests and tools: embedded store under `data_dir`.
    pub fn embedded(data_dir: impl Into<PathBuf>) -> Self {
        let mut vars = HashMap::new();
        vars.insert(
            "STRATA_DATA_DIR".to_string(),
            data_dir.into().display().to_string(),
        );
        Self::from_vars(vars).expect("defaults are valid")
    }
}

impl Config {
    /// What `store::open` needs besides the URL.
    pub fn store_settings(&self) -> crate::store::Settings {
        crate::store::Settings {
            sqlite: self.sqlite.clone(),
            postgres: self.postgres.clone(),
            cache_entries: self.cache_entries,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_embedded() {
        let c = Config::from_vars(vars(&[])).unwrap();
        assert_eq!(c.database_url, "sqlite://./strata-data/strata.db");
        assert_eq!(c.listen, "127.0.0.1:7474");
        assert_eq!(c.body_limit, 1 << 20);
    }

    #[test]
    fn auth_off_only_on_loopback() {
        assert!(
            Config::from_vars(vars(&[("STRATA_AUTH", "off")]))
                .unwrap()
                .auth_disabled
        );
        let err = Config::from_vars(vars(&[
            ("STRATA_AUTH", "off"),
            ("STRATA_LISTEN", "0.0.0.0:7474"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("loopback"));
        assert!(Config::from_vars(vars(&[("STRATA_AUTH", "maybe")])).is_err());
    }

    #[test]
    fn unknown_variables_stop_the_start() {
        let err = Config::from_vars(vars(&[("STRATA_LISTN", "x")])).unwrap_err();
        assert!(err.to_string().contains("STRATA_LISTN"));
    }

    #[test]
    fn env_wins_over_file_and_file_keys_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:9000\"\nbody_limit = 4096\n").unwrap();
        let p = path.display().to_string();
        let c = Config::from_vars(vars(&[
            ("STRATA_CONFIG", &p),
            ("STRATA_LISTEN", "127.0.0.1:9001"),
        ]))
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:9001");
        assert_eq!(c.body_limit, 4096);
        std::fs::write(&path, "lisen = 1\n").unwrap();
        assert!(Config::from_vars(vars(&[("STRATA_CONFIG", &p)])).is_err());
    }
}
