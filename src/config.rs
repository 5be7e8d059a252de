//! One typed configuration: defaults < TOML file (`STRATA_CONFIG`) < environment.
//! Unknown keys in the file and unknown `STRATA_*` variables stop the start:
//! a setting is never silently ignored.
//!
//! figment layers the file and the environment and extracts `Settings`
//! (serde defaults fill what neither gives). The environment is one
//! provider built from an explicit table (`ENV`) rather than figment's `Env`:
//! several names do not map mechanically to keys (`STRATA_RATE_LIMIT` is
//! `rate_limit_per_sec`, `STRATA_AGE` is `[postgres] age`), `Env` reads only
//! the process environment (tests and `embedded` pass their own), and it
//! types a value by its look, so an all-digit `STRATA_ADMIN_KEY` would be
//! a number, not the string it is.

use crate::store::postgres::PgConfig;
use crate::store::sqlite::SqliteConfig;
use anyhow::{bail, Context};
use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    pub data_dir: PathBuf,
    pub listen: String,
    pub admin_key: Option<String>,
    pub blob_url: String,
    /// Largest request body accepted (413 above).
    pub body_limit: usize,
    /// Largest import body accepted (413 above; imports are spooled to disk).
    pub import_limit: u64,
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
    /// How long the change feed keeps a change after every consumer has
    /// passed it (public readers can resume within it).
    pub changes_retention: Duration,
    pub meili: MeiliConfig,
    pub embed: EmbedConfig,
    pub backup: BackupConfig,
    /// The HTTP listener's certificate chain and key: HTTPS only when set.
    pub tls: Option<crate::tls::TlsFiles>,
    /// Origins whose browser pages may call the API (CORS), each as a
    /// browser sends it (`https://app.example`), or `*` alone for any;
    /// empty: no CORS answers at all.
    pub cors_origins: Vec<String>,
    /// OIDC bearer tokens beside API keys; None: keys only.
    pub oidc: Option<OidcConfig>,
}

/// `[oidc]` as verified: where tokens come from and for whom they are.
/// All of issuer, audience and JWKS URL, or none (`api::oidc`).
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// Compared exactly with a token's `iss`.
    pub issuer: String,
    /// Must be one of a token's `aud`.
    pub audience: String,
    /// `https://` (or `http://` to a loopback host).
    pub jwks_url: String,
    /// The claim holding the grants, dotted for a nested one
    /// (`realm_access.roles`): a space-separated string or an array.
    pub claim: String,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// How often the JWKS is fetched even when no token asks for a new key.
    pub jwks_refresh: Duration,
}

/// `[oidc]` as the file spells it.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct OidcSettings {
    issuer: Option<String>,
    audience: Option<String>,
    jwks_url: Option<String>,
    claim: Option<String>,
    leeway_secs: Option<u64>,
    jwks_refresh_secs: Option<u64>,
}

/// `[backup]`: where backups go, when they are taken, how many are kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupConfig {
    /// `file://DIR` or `s3://bucket/prefix`; the blob store when unset.
    pub url: Option<String>,
    /// Cron (with seconds) of scheduled full backups; none when unset.
    pub full_schedule: Option<String>,
    /// Cron (with seconds) of scheduled incremental backups; none when
    /// unset. While set, the change feed is kept from the last backup on.
    pub incr_schedule: Option<String>,
    /// Full backups kept, each with its incremental ones (0: no limit).
    pub keep_full: u32,
    /// Chains whose newest backup is older than this many days are
    /// expired (0: no limit). The newest chain is always kept.
    pub keep_days: u32,
    /// 64 hex characters: backup chunks are encrypted with it
    /// (`backup::cipher`). A key that cannot be used stops the start.
    pub key: Option<String>,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            url: None,
            full_schedule: None,
            incr_schedule: None,
            keep_full: 7,
            keep_days: 0,
            key: None,
        }
    }
}

/// `[meili]`: Meilisearch for `mode=text`, when `url` is set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MeiliConfig {
    pub url: Option<String>,
    pub key: Option<String>,
}

/// `[embed]`: where embeddings come from. Ollama when `ollama_url` is set;
/// otherwise the local model, when its files are in the data directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbedConfig {
    pub ollama_url: Option<String>,
    /// The Ollama model.
    pub model: String,
    /// The length of the Ollama model's vectors (768 for nomic-embed-text).
    pub dimensions: u64,
}

impl Default for EmbedConfig {
    fn default() -> Self {
        EmbedConfig {
            ollama_url: None,
            model: "nomic-embed-text".into(),
            dimensions: 768,
        }
    }
}

/// Every setting as the file spells it; unknown keys refused, absent ones
/// take the defaults below.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    database_url: Option<String>,
    data_dir: PathBuf,
    listen: String,
    admin_key: Option<String>,
    blob_url: Option<String>,
    body_limit: usize,
    import_limit: u64,
    request_timeout_secs: u64,
    max_concurrency: usize,
    auth: Switch,
    rate_limit_per_sec: u32,
    rate_limit_burst: Option<u32>,
    cache_entries: u64,
    sqlite: SqliteConfig,
    postgres: PgConfig,
    crdt: CrdtSettings,
    compact_schedule: String,
    meili: MeiliConfig,
    changes_retention_secs: u64,
    embed: EmbedConfig,
    backup: BackupConfig,
    tls: TlsSettings,
    cors_origins: Vec<String>,
    oidc: OidcSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            database_url: None,
            data_dir: PathBuf::from("./strata-data"),
            listen: "127.0.0.1:7474".into(),
            admin_key: None,
            blob_url: None,
            // A full batch (1,000 operations) of 8 KB each fits.
            body_limit: 8 << 20,
            import_limit: 16 << 30,
            request_timeout_secs: 30,
            max_concurrency: 1024,
            auth: Switch::On,
            rate_limit_per_sec: 1000,
            rate_limit_burst: None,
            cache_entries: 100_000,
            sqlite: SqliteConfig::default(),
            postgres: PgConfig::default(),
            crdt: CrdtSettings::default(),
            compact_schedule: "0 0 * * * *".into(),
            meili: MeiliConfig::default(),
            changes_retention_secs: 3600,
            backup: BackupConfig::default(),
            tls: TlsSettings::default(),
            embed: EmbedConfig::default(),
            cors_origins: Vec::new(),
            oidc: OidcSettings::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Switch {
    On,
    Off,
}

/// `[crdt]`: the Yjs document limits and retention.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct CrdtSettings {
    max_update: usize,
    inline_max: usize,
    retention_secs: u64,
    snapshot_keep_secs: u64,
}

impl Default for CrdtSettings {
    fn default() -> Self {
        let c = crate::crdt::CrdtConfig::default();
        CrdtSettings {
            max_update: c.max_update_bytes,
            inline_max: c.inline_max_bytes,
            retention_secs: c.retention.as_secs(),
            snapshot_keep_secs: c.keep_snapshots.as_secs(),
        }
    }
}

/// `[tls]`: both files or neither.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct TlsSettings {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

/// How an environment value becomes a setting.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    /// Compared without case.
    Lowercase,
    /// A whole number.
    Number,
    /// `on` or `off`, for a boolean key.
    OnOff,
    /// Comma-separated, for a list key (blanks around items ignored).
    List,
}

/// Every environment variable that sets a key, and the key it sets.
const ENV: &[(&str, &str, Kind)] = &[
    ("STRATA_DATABASE_URL", "database_url", Kind::Text),
    ("STRATA_DATA_DIR", "data_dir", Kind::Text),
    ("STRATA_LISTEN", "listen", Kind::Text),
    ("STRATA_TLS_CERT", "tls.cert", Kind::Text),
    ("STRATA_TLS_KEY", "tls.key", Kind::Text),
    ("STRATA_ADMIN_KEY", "admin_key", Kind::Text),
    ("STRATA_BLOB_URL", "blob_url", Kind::Text),
    ("STRATA_BODY_LIMIT", "body_limit", Kind::Number),
    ("STRATA_IMPORT_LIMIT", "import_limit", Kind::Number),
    (
        "STRATA_REQUEST_TIMEOUT_SECS",
        "request_timeout_secs",
        Kind::Number,
    ),
    ("STRATA_MAX_CONCURRENCY", "max_concurrency", Kind::Number),
    ("STRATA_AUTH", "auth", Kind::Text),
    ("STRATA_RATE_LIMIT", "rate_limit_per_sec", Kind::Number),
    ("STRATA_RATE_BURST", "rate_limit_burst", Kind::Number),
    ("STRATA_CACHE_ENTRIES", "cache_entries", Kind::Number),
    (
        "STRATA_SQLITE_SYNCHRONOUS",
        "sqlite.synchronous",
        Kind::Lowercase,
    ),
    ("STRATA_SQLITE_READERS", "sqlite.readers", Kind::Number),
    (
        "STRATA_SQLITE_VECTOR_MEMORY_MB",
        "sqlite.vector_memory_mb",
        Kind::Number,
    ),
    ("STRATA_PG_POOL_SIZE", "postgres.pool_size", Kind::Number),
    (
        "STRATA_PG_STATEMENT_TIMEOUT_MS",
        "postgres.statement_timeout_ms",
        Kind::Number,
    ),
    (
        "STRATA_PG_CONNECT_TIMEOUT_SECS",
        "postgres.connect_timeout_secs",
        Kind::Number,
    ),
    ("STRATA_PG_NOTIFY", "postgres.notify", Kind::OnOff),
    ("STRATA_AGE", "postgres.age", Kind::Text),
    ("STRATA_PGVECTOR", "postgres.pgvector", Kind::Text),
    (
        "STRATA_HNSW_EF_SEARCH",
        "postgres.hnsw_ef_search",
        Kind::Number,
    ),
    ("STRATA_CRDT_MAX_UPDATE", "crdt.max_update", Kind::Number),
    ("STRATA_CRDT_INLINE_MAX", "crdt.inline_max", Kind::Number),
    (
        "STRATA_CRDT_RETENTION_SECS",
        "crdt.retention_secs",
        Kind::Number,
    ),
    (
        "STRATA_CRDT_SNAPSHOT_KEEP_SECS",
        "crdt.snapshot_keep_secs",
        Kind::Number,
    ),
    ("STRATA_COMPACT_SCHEDULE", "compact_schedule", Kind::Text),
    ("STRATA_MEILI_URL", "meili.url", Kind::Text),
    ("STRATA_MEILI_KEY", "meili.key", Kind::Text),
    (
        "STRATA_CHANGES_RETENTION_SECS",
        "changes_retention_secs",
        Kind::Number,
    ),
    ("STRATA_OLLAMA_URL", "embed.ollama_url", Kind::Text),
    ("STRATA_EMBED_MODEL", "embed.model", Kind::Text),
    ("STRATA_EMBED_DIMENSIONS", "embed.dimensions", Kind::Number),
    ("STRATA_BACKUP_URL", "backup.url", Kind::Text),
    (
        "STRATA_BACKUP_FULL_SCHEDULE",
        "backup.full_schedule",
        Kind::Text,
    ),
    (
        "STRATA_BACKUP_INCR_SCHEDULE",
        "backup.incr_schedule",
        Kind::Text,
    ),
    ("STRATA_BACKUP_KEEP_FULL", "backup.keep_full", Kind::Number),
    ("STRATA_BACKUP_KEEP_DAYS", "backup.keep_days", Kind::Number),
    ("STRATA_BACKUP_KEY", "backup.key", Kind::Text),
    ("STRATA_CORS_ORIGINS", "cors_origins", Kind::List),
    ("STRATA_OIDC_ISSUER", "oidc.issuer", Kind::Text),
    ("STRATA_OIDC_AUDIENCE", "oidc.audience", Kind::Text),
    ("STRATA_OIDC_JWKS_URL", "oidc.jwks_url", Kind::Text),
    ("STRATA_OIDC_CLAIM", "oidc.claim", Kind::Text),
    ("STRATA_OIDC_LEEWAY_SECS", "oidc.leeway_secs", Kind::Number),
    (
        "STRATA_OIDC_JWKS_REFRESH_SECS",
        "oidc.jwks_refresh_secs",
        Kind::Number,
    ),
];

/// Variables read elsewhere (the file's name, the S3 client, the logger:
/// `logging`).
const OTHER_VARS: &[&str] = &[
    "STRATA_CONFIG",
    "STRATA_S3_ENDPOINT",
    "STRATA_LOG",
    "STRATA_LOG_FORMAT",
    // A client's key (`strata init` says to export it): read by clients.
    "STRATA_KEY",
];

/// Every `STRATA_*` variable the daemon knows: those of the settings table
/// and those read elsewhere. Any other (`STRATA_TEST_*` aside) stops the
/// start; deployment files are checked against this list
/// (tests/it/compose.rs).
pub fn known_variables() -> impl Iterator<Item = &'static str> {
    ENV.iter()
        .map(|(name, _, _)| *name)
        .chain(OTHER_VARS.iter().copied())
}

/// The environment layer: the variables of `ENV` that are set and not
/// empty, under their keys. Errors name the variable, not the key.
struct EnvLayer(Dict);

impl EnvLayer {
    fn new(vars: &HashMap<String, String>) -> anyhow::Result<Self> {
        let mut dict = Dict::new();
        for &(name, key, kind) in ENV {
            let Some(text) = vars.get(name) else {
                continue;
            };
            if text.is_empty() {
                // An empty key (a secret that resolved to nothing) would
                // mean plaintext backups without a word.
                anyhow::ensure!(
                    name != "STRATA_BACKUP_KEY",
                    "STRATA_BACKUP_KEY is set but empty: unset it to write unencrypted backups"
                );
                continue;
            }
            let value = match kind {
                Kind::Text => Value::from(text.as_str()),
                Kind::Lowercase => Value::from(text.to_ascii_lowercase()),
                Kind::Number => Value::from(
                    text.parse::<u64>()
                        .with_context(|| format!("{name} must be a whole number, got {text:?}"))?,
                ),
                Kind::OnOff => match text.as_str() {
                    "on" => Value::from(true),
                    "off" => Value::from(false),
                    _ => bail!("{name} must be on or off, got {text:?}"),
                },
                Kind::List => Value::from(
                    text.split(',')
                        .map(str::trim)
                        .filter(|item| !item.is_empty())
                        .map(str::to_owned)
                        .collect::<Vec<_>>(),
                ),
            };
            insert(&mut dict, key, value);
        }
        Ok(EnvLayer(dict))
    }
}

/// Sets `value` at the dotted `key`, making the tables on the way.
fn insert(dict: &mut Dict, key: &str, value: Value) {
    match key.split_once('.') {
        None => {
            dict.insert(key.into(), value);
        }
        Some((table, rest)) => {
            let entry = dict
                .entry(table.into())
                .or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }
    }
}

impl Provider for EnvLayer {
    fn metadata(&self) -> Metadata {
        Metadata::named("the environment").interpolater(|_: &Profile, path: &[&str]| {
            let key = path.join(".");
            ENV.iter()
                .find(|(_, k, _)| *k == key)
                .map_or(key, |(name, _, _)| (*name).to_owned())
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.0.clone()))
    }
}

impl Config {
    /// Where backups go: `STRATA_BACKUP_URL`, else the blob store.
    pub fn backup_url(&self) -> &str {
        self.backup.url.as_deref().unwrap_or(&self.blob_url)
    }

    /// Reads the process environment (and the file it names).
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_vars(std::env::vars().collect())
    }

    pub fn from_vars(vars: HashMap<String, String>) -> anyhow::Result<Self> {
        // STRATA_TEST_* belong to the test suite, not to the daemon.
        let ours = |k: &&String| k.starts_with("STRATA_") && !k.starts_with("STRATA_TEST_");
        for name in vars.keys().filter(ours) {
            if !known_variables().any(|k| k == name) {
                bail!(
                    "unknown setting {name}: known ones are {}",
                    known_variables().collect::<Vec<_>>().join(", ")
                );
            }
        }
        let mut figment = Figment::new();
        if let Some(path) = vars.get("STRATA_CONFIG") {
            // figment takes a missing file for an empty one.
            std::fs::metadata(path)
                .with_context(|| format!("cannot read STRATA_CONFIG file {path}"))?;
            figment = figment.merge(Toml::file_exact(path));
        }
        let s: Settings = figment.merge(EnvLayer::new(&vars)?).extract()?;

        let database_url = s
            .database_url
            .unwrap_or_else(|| format!("sqlite://{}", s.data_dir.join("strata.db").display()));
        let blob_url = s
            .blob_url
            .unwrap_or_else(|| format!("file://{}", s.data_dir.join("blobs").display()));
        let config = Config {
            database_url,
            data_dir: s.data_dir,
            listen: s.listen,
            tls: match (s.tls.cert, s.tls.key) {
                (Some(cert), Some(key)) => Some(crate::tls::TlsFiles { cert, key }),
                (None, None) => None,
                _ => bail!(
                    "STRATA_TLS_CERT and STRATA_TLS_KEY go together: both for HTTPS, neither for HTTP"
                ),
            },
            admin_key: s.admin_key,
            blob_url,
            body_limit: s.body_limit,
            import_limit: s.import_limit,
            request_timeout_secs: s.request_timeout_secs,
            max_concurrency: s.max_concurrency,
            auth_disabled: s.auth == Switch::Off,
            rate_limit_per_sec: s.rate_limit_per_sec,
            rate_limit_burst: s
                .rate_limit_burst
                .unwrap_or(s.rate_limit_per_sec.saturating_mul(2)),
            cache_entries: s.cache_entries,
            sqlite: s.sqlite,
            postgres: s.postgres,
            crdt: crate::crdt::CrdtConfig {
                max_update_bytes: s.crdt.max_update,
                inline_max_bytes: s.crdt.inline_max,
                retention: Duration::from_secs(s.crdt.retention_secs),
                keep_snapshots: Duration::from_secs(s.crdt.snapshot_keep_secs),
                ..Default::default()
            },
            compact_schedule: s.compact_schedule,
            meili: s.meili,
            changes_retention: Duration::from_secs(s.changes_retention_secs),
            embed: s.embed,
            backup: s.backup,
            cors_origins: cors_origins(&s.cors_origins)?,
            oidc: oidc(s.oidc)?,
        };
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
        // Never write plaintext backups when encrypted ones were asked for.
        if let Some(key) = &self.backup.key {
            crate::backup::cipher::ChunkKey::parse(key)?;
        }
        if let Some(url) = &self.backup.url {
            if !(url.starts_with("file://") || url.starts_with("s3://")) {
                bail!("STRATA_BACKUP_URL must start with file:// or s3://, got {url:?}");
            }
        }
        if let Some(url) = &self.meili.url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("STRATA_MEILI_URL must start with http:// or https://, got {url:?}");
            }
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
        if self.auth_disabled && self.cors_origins.iter().any(|o| o == "*") {
            bail!(
                "STRATA_CORS_ORIGINS=* with STRATA_AUTH=off would let any web page the browser opens act as the admin; name the origins instead"
            );
        }
        if self.embed.dimensions == 0 {
            bail!("STRATA_EMBED_DIMENSIONS must be at least 1");
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

/// OIDC is all or nothing: issuer, audience and JWKS URL together, and the
/// optional settings only beside them, so a half-configured identity
/// provider stops the start instead of silently leaving tokens refused.
fn oidc(s: OidcSettings) -> anyhow::Result<Option<OidcConfig>> {
    let (issuer, audience, jwks_url) = match (s.issuer, s.audience, s.jwks_url) {
        (Some(i), Some(a), Some(u)) => (i, a, u),
        (None, None, None) => {
            if s.claim.is_some() || s.leeway_secs.is_some() || s.jwks_refresh_secs.is_some() {
                bail!("STRATA_OIDC_CLAIM, STRATA_OIDC_LEEWAY_SECS and STRATA_OIDC_JWKS_REFRESH_SECS need STRATA_OIDC_ISSUER, STRATA_OIDC_AUDIENCE and STRATA_OIDC_JWKS_URL");
            }
            return Ok(None);
        }
        _ => bail!(
            "OIDC needs all of STRATA_OIDC_ISSUER, STRATA_OIDC_AUDIENCE and STRATA_OIDC_JWKS_URL, or none"
        ),
    };
    if issuer.trim().is_empty() || audience.trim().is_empty() {
        bail!("STRATA_OIDC_ISSUER and STRATA_OIDC_AUDIENCE must not be blank");
    }
    let url = reqwest::Url::parse(&jwks_url)
        .map_err(|e| anyhow::anyhow!("STRATA_OIDC_JWKS_URL {jwks_url:?} is not a URL: {e}"))?;
    // Keys fetched in the clear could be swapped by anyone on the path.
    let loopback = url.host_str().is_some_and(|host| {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        host == "localhost"
            || bare
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    });
    if !(url.scheme() == "https" || (url.scheme() == "http" && loopback)) {
        bail!("STRATA_OIDC_JWKS_URL must be https:// (http:// only to a loopback host), got {jwks_url:?}");
    }
    let claim = s.claim.unwrap_or_else(|| "scope".into());
    if claim.split('.').any(str::is_empty) {
        bail!("STRATA_OIDC_CLAIM must be a claim name, dotted for a nested one, got {claim:?}");
    }
    let leeway_secs = s.leeway_secs.unwrap_or(30);
    if leeway_secs > 300 {
        bail!("STRATA_OIDC_LEEWAY_SECS must be at most 300, got {leeway_secs}");
    }
    let refresh_secs = s.jwks_refresh_secs.unwrap_or(300);
    if refresh_secs < 10 {
        bail!("STRATA_OIDC_JWKS_REFRESH_SECS must be at least 10, got {refresh_secs}");
    }
    Ok(Some(OidcConfig {
        issuer,
        audience,
        jwks_url,
        claim,
        leeway: Duration::from_secs(leeway_secs),
        jwks_refresh: Duration::from_secs(refresh_secs),
    }))
}

/// The configured CORS origins as browsers send them in `Origin`:
/// `scheme://host[:port]`, http or https, lowercase, the scheme's default
/// port left out (so `https://App.example:443` allows `https://app.example`).
/// `*` (any origin) must stand alone.
fn cors_origins(given: &[String]) -> anyhow::Result<Vec<String>> {
    if given.iter().any(|o| o == "*") {
        if given.len() > 1 {
            bail!("STRATA_CORS_ORIGINS: `*` (any origin) stands alone, got {given:?}");
        }
        return Ok(given.to_vec());
    }
    let mut origins = Vec::with_capacity(given.len());
    for text in given {
        let bad = |why: &str| anyhow::anyhow!("STRATA_CORS_ORIGINS: {text:?} {why}");
        let url = reqwest::Url::parse(text).map_err(|e| bad(&format!("is not an origin: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(bad("must be http:// or https:// and a host"));
        }
        // An origin has no path (not even `/`), query, fragment or user.
        let bare = text.trim_end_matches('/').len() == text.len();
        if url.path() != "/" || !bare || url.query().is_some() || url.fragment().is_some() {
            return Err(bad("must be scheme://host[:port], with no path"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("must not carry a user"));
        }
        let origin = url.origin().ascii_serialization();
        if !origins.contains(&origin) {
            origins.push(origin);
        }
    }
    Ok(origins)
}

impl Config {
    /// How the change feed's consumers run.
    pub fn feed_settings(&self) -> crate::feed::FeedSettings {
        crate::feed::FeedSettings {
            retention: self.changes_retention,
            ..Default::default()
        }
    }

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
    use crate::store::postgres::AgeMode;
    use crate::store::sqlite::Synchronous;

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
        assert_eq!(c.body_limit, 8 << 20);
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
    fn an_unusable_backup_key_stops_the_start() {
        let key = "ab".repeat(32);
        let c = Config::from_vars(vars(&[("STRATA_BACKUP_KEY", &key)])).unwrap();
        assert_eq!(c.backup.key.as_deref(), Some(key.as_str()));
        for bad in ["abc", "zz".repeat(32).as_str(), ""] {
            let err = Config::from_vars(vars(&[("STRATA_BACKUP_KEY", bad)])).unwrap_err();
            assert!(err.to_string().contains("STRATA_BACKUP_KEY"), "{err}");
        }
    }

    #[test]
    fn unknown_variables_stop_the_start() {
        let err = Config::from_vars(vars(&[("STRATA_LISTN", "x")])).unwrap_err();
        assert!(err.to_string().contains("STRATA_LISTN"));
    }

    #[test]
    fn the_client_key_contract_variables_and_test_variables_do_not_stop_the_start() {
        let set = [
            ("STRATA_KEY", "sk_x"),
            ("STRATA_MEILI_URL", "http://127.0.0.1:7700"),
            ("STRATA_BACKUP_URL", "s3://b/backups"),
            ("STRATA_TEST_PG_URL", "postgres://x"),
        ];
        Config::from_vars(vars(&set)).unwrap();
    }

    #[test]
    fn meilisearch_is_typed_configuration() {
        let c = Config::from_vars(vars(&[])).unwrap();
        assert!(c.meili.url.is_none());
        let c = Config::from_vars(vars(&[
            ("STRATA_MEILI_URL", "http://127.0.0.1:7700"),
            ("STRATA_MEILI_KEY", "k"),
        ]))
        .unwrap();
        assert_eq!(c.meili.url.as_deref(), Some("http://127.0.0.1:7700"));
        assert_eq!(c.meili.key.as_deref(), Some("k"));
        let err = Config::from_vars(vars(&[("STRATA_MEILI_URL", "127.0.0.1:7700")])).unwrap_err();
        assert!(err.to_string().contains("STRATA_MEILI_URL"), "{err}");
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
        let err = Config::from_vars(vars(&[("STRATA_CONFIG", &p)])).unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
        std::fs::write(&path, "[sqlite]\nreaderz = 2\n").unwrap();
        let err = Config::from_vars(vars(&[("STRATA_CONFIG", &p)])).unwrap_err();
        assert!(err.to_string().contains("readerz"), "{err}");
        let missing = dir.path().join("absent.toml").display().to_string();
        let err = Config::from_vars(vars(&[("STRATA_CONFIG", &missing)])).unwrap_err();
        assert!(err.to_string().contains("STRATA_CONFIG"), "{err}");
    }

    #[test]
    fn file_and_environment_merge_inside_a_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "rate_limit_per_sec = 10\n[sqlite]\nreaders = 2\n[postgres]\nnotify = false\nage = \"off\"\n",
        )
        .unwrap();
        let p = path.display().to_string();
        let c = Config::from_vars(vars(&[
            ("STRATA_CONFIG", &p),
            ("STRATA_SQLITE_SYNCHRONOUS", "NORMAL"),
            ("STRATA_PG_NOTIFY", "on"),
        ]))
        .unwrap();
        assert_eq!(c.sqlite.readers, 2);
        assert_eq!(c.sqlite.synchronous, Synchronous::Normal);
        assert!(c.postgres.notify);
        assert_eq!(c.postgres.age, AgeMode::Off);
        assert_eq!(c.postgres.pool_size, 16);
        assert_eq!((c.rate_limit_per_sec, c.rate_limit_burst), (10, 20));
    }

    #[test]
    fn crdt_settings_have_file_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "compact_schedule = \"0 30 * * * *\"\n[crdt]\nmax_update = 4096\ninline_max = 8192\nretention_secs = 60\nsnapshot_keep_secs = 120\n",
        )
        .unwrap();
        let p = path.display().to_string();
        let c = Config::from_vars(vars(&[("STRATA_CONFIG", &p)])).unwrap();
        assert_eq!(c.crdt.max_update_bytes, 4096);
        assert_eq!(c.crdt.inline_max_bytes, 8192);
        assert_eq!(c.crdt.retention, Duration::from_secs(60));
        assert_eq!(c.crdt.keep_snapshots, Duration::from_secs(120));
        assert_eq!(c.compact_schedule, "0 30 * * * *");
        let c = Config::from_vars(vars(&[
            ("STRATA_CONFIG", &p),
            ("STRATA_CRDT_RETENTION_SECS", "5"),
        ]))
        .unwrap();
        assert_eq!(c.crdt.retention, Duration::from_secs(5));
        assert_eq!(c.crdt.max_update_bytes, 4096);
        let d = Config::from_vars(vars(&[])).unwrap().crdt;
        assert_eq!(d.max_update_bytes, 1 << 20);
        assert_eq!(d.keep_snapshots, Duration::from_secs(7 * 24 * 3600));
    }

    #[test]
    fn embed_settings_have_defaults_variables_and_file_keys() {
        let d = Config::from_vars(vars(&[])).unwrap().embed;
        assert_eq!(
            (d.ollama_url, d.model.as_str(), d.dimensions),
            (None, "nomic-embed-text", 768)
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[embed]\nmodel = \"mxbai-embed-large\"\ndimensions = 1024\n",
        )
        .unwrap();
        let p = path.display().to_string();
        let c = Config::from_vars(vars(&[
            ("STRATA_CONFIG", &p),
            ("STRATA_OLLAMA_URL", "http://127.0.0.1:11434"),
            ("STRATA_EMBED_DIMENSIONS", "512"),
        ]))
        .unwrap()
        .embed;
        assert_eq!(c.ollama_url.as_deref(), Some("http://127.0.0.1:11434"));
        assert_eq!((c.model.as_str(), c.dimensions), ("mxbai-embed-large", 512));
        let err = Config::from_vars(vars(&[("STRATA_EMBED_DIMENSIONS", "0")])).unwrap_err();
        assert!(err.to_string().contains("STRATA_EMBED_DIMENSIONS"), "{err}");
    }

    #[test]
    fn errors_name_the_variable_or_the_key() {
        for (name, value) in [
            ("STRATA_RATE_LIMIT", "fast"),
            ("STRATA_RATE_LIMIT", "5000000000"),
            ("STRATA_AGE", "maybe"),
            ("STRATA_PGVECTOR", "maybe"),
            ("STRATA_PG_NOTIFY", "true"),
            ("STRATA_SQLITE_SYNCHRONOUS", "off"),
            ("STRATA_AUTH", "maybe"),
        ] {
            let err = Config::from_vars(vars(&[(name, value)])).unwrap_err();
            assert!(err.to_string().contains(name), "{name}={value}: {err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[postgres]\npool_size = \"many\"\n").unwrap();
        let p = path.display().to_string();
        let err = Config::from_vars(vars(&[("STRATA_CONFIG", &p)])).unwrap_err();
        assert!(err.to_string().contains("postgres.pool_size"), "{err}");
    }

    #[test]
    fn cors_origins_are_off_by_default_and_read_as_browsers_send_them() {
        assert!(Config::from_vars(vars(&[]))
            .unwrap()
            .cors_origins
            .is_empty());
        let c = Config::from_vars(vars(&[(
            "STRATA_CORS_ORIGINS",
            " https://App.example:443, http://localhost:3000 ,,https://app.example",
        )]))
        .unwrap();
        assert_eq!(
            c.cors_origins,
            ["https://app.example", "http://localhost:3000"]
        );
        let any = Config::from_vars(vars(&[("STRATA_CORS_ORIGINS", "*")])).unwrap();
        assert_eq!(any.cors_origins, ["*"]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "cors_origins = [\"https://a.example:8443\"]\n").unwrap();
        let p = path.display().to_string();
        let c = Config::from_vars(vars(&[("STRATA_CONFIG", &p)])).unwrap();
        assert_eq!(c.cors_origins, ["https://a.example:8443"]);
    }

    #[test]
    fn a_cors_origin_that_is_not_an_origin_stops_the_start() {
        for bad in [
            "app.example",
            "https://app.example/",
            "https://app.example/path",
            "https://app.example?q=1",
            "https://user@app.example",
            "ftp://app.example",
            "*, https://app.example",
            "null",
        ] {
            let err = Config::from_vars(vars(&[("STRATA_CORS_ORIGINS", bad)])).unwrap_err();
            assert!(
                err.to_string().contains("STRATA_CORS_ORIGINS"),
                "{bad}: {err}"
            );
        }
        // Any page could act as the admin of a daemon without keys.
        let err = Config::from_vars(vars(&[
            ("STRATA_CORS_ORIGINS", "*"),
            ("STRATA_AUTH", "off"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("STRATA_AUTH"), "{err}");
        Config::from_vars(vars(&[
            ("STRATA_CORS_ORIGINS", "http://localhost:3000"),
            ("STRATA_AUTH", "off"),
        ]))
        .unwrap();
    }

    #[test]
    fn the_listener_certificate_and_key_go_together() {
        assert!(Config::from_vars(vars(&[])).unwrap().tls.is_none());
        let c = Config::from_vars(vars(&[
            ("STRATA_TLS_CERT", "/etc/strata/chain.pem"),
            ("STRATA_TLS_KEY", "/etc/strata/key.pem"),
        ]))
        .unwrap();
        assert_eq!(
            c.tls,
            Some(crate::tls::TlsFiles {
                cert: "/etc/strata/chain.pem".into(),
                key: "/etc/strata/key.pem".into(),
            })
        );
        for one in ["STRATA_TLS_CERT", "STRATA_TLS_KEY"] {
            let err = Config::from_vars(vars(&[(one, "/etc/strata/x.pem")])).unwrap_err();
            assert!(err.to_string().contains("go together"), "{one}: {err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n").unwrap();
        let p = path.display().to_string();
        let c = Config::from_vars(vars(&[("STRATA_CONFIG", &p)])).unwrap();
        assert_eq!(c.tls.unwrap().key, PathBuf::from("k.pem"));
    }

    #[test]
    fn values_are_text_unless_the_key_says_otherwise() {
        let c = Config::from_vars(vars(&[
            ("STRATA_ADMIN_KEY", "12345678901234567890"),
            ("STRATA_DATA_DIR", "/tmp/0"),
            ("STRATA_BODY_LIMIT", ""),
        ]))
        .unwrap();
        assert_eq!(c.admin_key.as_deref(), Some("12345678901234567890"));
        assert_eq!(c.database_url, "sqlite:///tmp/0/strata.db");
        assert_eq!(c.body_limit, 8 << 20);
    }

    #[test]
    fn oidc_is_all_or_nothing() {
        let all = [
            ("STRATA_OIDC_ISSUER", "https://id.example"),
            ("STRATA_OIDC_AUDIENCE", "strata"),
            ("STRATA_OIDC_JWKS_URL", "https://id.example/jwks"),
        ];
        let c = Config::from_vars(vars(&all)).unwrap();
        let oidc = c.oidc.expect("configured");
        assert_eq!(oidc.claim, "scope");
        assert_eq!(oidc.leeway, Duration::from_secs(30));
        assert!(Config::from_vars(vars(&[])).unwrap().oidc.is_none());
        for missing in 0..all.len() {
            let mut some = all.to_vec();
            some.remove(missing);
            let err = Config::from_vars(vars(&some)).unwrap_err();
            assert!(err.to_string().contains("all of"), "{err}");
        }
        let err = Config::from_vars(vars(&[("STRATA_OIDC_CLAIM", "roles")])).unwrap_err();
        assert!(err.to_string().contains("STRATA_OIDC_ISSUER"), "{err}");
        for (name, bad) in [
            ("STRATA_OIDC_JWKS_URL", "http://id.example/jwks"),
            ("STRATA_OIDC_JWKS_URL", "not a url"),
            ("STRATA_OIDC_CLAIM", "realm_access..roles"),
            ("STRATA_OIDC_LEEWAY_SECS", "3600"),
            ("STRATA_OIDC_JWKS_REFRESH_SECS", "1"),
        ] {
            let mut set = all.to_vec();
            set.retain(|(k, _)| *k != name);
            set.push((name, bad));
            let err = Config::from_vars(vars(&set)).unwrap_err();
            assert!(err.to_string().contains(name), "{name}={bad}: {err}");
        }
        let mut local = all.to_vec();
        local[2].1 = "http://127.0.0.1:8080/jwks";
        assert!(Config::from_vars(vars(&local)).unwrap().oidc.is_some());
    }
}
