//! Logical backups, the same on both backends: a backup is a manifest and
//! zstd-compressed NDJSON chunks in a blob store (a directory or S3),
//! written once, the manifest last. A full backup is the export of every
//! org and project (`crate::export`) read through one `Snapshot`, so it is
//! one moment of the store taken while writes go on; an incremental one
//! holds what the change feed says changed since its parent
//! (`incremental.rs`). `restore.rs` replays a chain into an empty store.
//!
//! One backup runs at a time across every daemon sharing the store (the
//! `backups` lease). A backup that fails writes no manifest: its chunks are
//! orphans, deleted by `expire`. Running and failed backups are known to
//! the daemon that ran them; complete ones to every daemon, from the
//! manifests.

pub mod audit;
pub mod chunks;
pub mod cipher;
pub mod incremental;
pub mod keys;
pub mod manifest;
pub mod physical;
pub mod restore;

use crate::blob::{BlobError, BlobStore};
use crate::config::Config;
use crate::domain::{DomainError, DomainResult};
use crate::store::{DynStore, Lease};
use anyhow::Context;
use chunks::ChunkWriter;
use cipher::ChunkKey;
use manifest::{Kind, Manifest};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// What this process's backups did, for `/metrics`.
pub mod stats {
    use std::sync::atomic::AtomicU64;
    pub static COMPLETED: AtomicU64 = AtomicU64::new(0);
    pub static FAILED: AtomicU64 = AtomicU64::new(0);
    pub static RUNNING: AtomicU64 = AtomicU64::new(0);
    /// Unix seconds when the newest complete backup finished (0: none yet).
    pub static LAST_SUCCESS: AtomicU64 = AtomicU64::new(0);
    /// Compressed bytes of the newest complete backup.
    pub static LAST_BYTES: AtomicU64 = AtomicU64::new(0);
}

/// The lease one backup at a time holds, and the feed cursor that keeps
/// changes for the next incremental backup (saved only while incremental
/// backups are scheduled).
const FEED_CURSOR: &str = "backups";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Running,
    Complete,
    Failed,
}

/// A backup as the API lists it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BackupInfo {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: Kind,
    #[schema(required = true)]
    pub parent: Option<String>,
    pub state: State,
    pub started_at: String,
    #[schema(required = true)]
    pub finished_at: Option<String>,
    pub first_seq: i64,
    pub last_seq: i64,
    /// Compressed bytes of its chunks.
    pub bytes: u64,
    pub chunks: usize,
    /// Why a failed backup failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl From<&Manifest> for BackupInfo {
    fn from(m: &Manifest) -> Self {
        BackupInfo {
            id: m.id.clone(),
            kind: m.kind,
            parent: m.parent.clone(),
            state: State::Complete,
            started_at: m.started_at.clone(),
            finished_at: Some(m.finished_at.clone()),
            first_seq: m.first_seq,
            last_seq: m.last_seq,
            bytes: m.bytes,
            chunks: m.chunks.len(),
            error: None,
        }
    }
}

/// What `verify` found.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Verification {
    pub ok: bool,
    pub problems: Vec<String>,
}

/// What `expire` deleted.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Expired {
    pub backups: Vec<String>,
    pub orphans: Vec<String>,
}

impl std::fmt::Display for Expired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} backups expired, {} unfinished backups' chunks deleted",
            self.backups.len(),
            self.orphans.len()
        )
    }
}

/// What a backup is to hold: changes up to feed position `head`, after its
/// parent's (a full backup has none).
struct Plan {
    head: i64,
    parent: Option<Manifest>,
}

impl Plan {
    fn kind(&self) -> Kind {
        match self.parent {
            Some(_) => Kind::Incr,
            None => Kind::Full,
        }
    }
}

/// The backup service; cheap to clone.
#[derive(Clone)]
pub struct Backups {
    store: DynStore,
    /// The store's own blob store, where large document snapshots are kept.
    documents: Arc<dyn BlobStore>,
    /// Where backups are written.
    blobs: Arc<dyn BlobStore>,
    keep_full: u32,
    keep_days: u32,
    /// Whether incremental backups are scheduled (the feed is kept for them).
    hold_feed: bool,
    /// This daemon's running and failed backups.
    local: Arc<Mutex<BTreeMap<String, BackupInfo>>>,
    /// Chunks are encrypted with it when set (`cipher.rs`).
    key: Option<Arc<ChunkKey>>,
}

/// How often taking the backups' lease is tried, 25 ms apart.
const LEASE_TRIES: usize = 20;

impl Backups {
    pub fn new(
        store: DynStore,
        documents: Arc<dyn BlobStore>,
        blobs: Arc<dyn BlobStore>,
        config: &Config,
    ) -> Self {
        Backups {
            store,
            documents,
            blobs,
            keep_full: config.backup.keep_full,
            keep_days: config.backup.keep_days,
            hold_feed: config.backup.incr_schedule.is_some(),
            local: Arc::default(),
            key: config.backup.key.as_deref().map(|k| {
                let key = ChunkKey::parse(k)
                    .expect("the backup key is checked when the configuration loads");
                Arc::new(key)
            }),
        }
    }

    /// The key a backup's chunks open with: none for a plaintext backup;
    /// the configured one when its fingerprint is the backup's.
    fn key_for(&self, m: &Manifest) -> anyhow::Result<Option<&ChunkKey>> {
        let Some(wanted) = &m.key_id else {
            return Ok(None);
        };
        match self.key.as_deref() {
            Some(key) if &key.id == wanted => Ok(Some(key)),
            Some(key) => anyhow::bail!(
                "backup {} is encrypted with key {wanted}; the configured STRATA_BACKUP_KEY is {}",
                m.id,
                key.id
            ),
            None => anyhow::bail!(
                "backup {} is encrypted (key {wanted}): set STRATA_BACKUP_KEY",
                m.id
            ),
        }
    }

    /// Starts a backup in the background; Conflict while one is running
    /// on any daemon.
    pub async fn start(&self, kind: Kind) -> DomainResult<BackupInfo> {
        let lease = self.lease().await?;
        let plan = self.plan(kind).await?;
        let info = self.begin(&plan);
        let this = self.clone();
        let id = info.id.clone();
        tokio::spawn(async move {
            let _lease = lease;
            this.run(id, plan).await
        });
        Ok(info)
    }

    /// Takes a backup to its end (the CLI and the scheduled jobs).
    pub async fn take(&self, kind: Kind) -> DomainResult<BackupInfo> {
        let _lease = self.lease().await?;
        let plan = self.plan(kind).await?;
        let info = self.begin(&plan);
        self.run(info.id, plan).await
    }

    /// What a backup of `kind` will hold. The feed position is read first:
    /// every change up to it is committed, so the snapshot taken after it
    /// holds them. An incremental backup continues the newest backup; with
    /// none, or when the feed no longer reaches back to it, it is a full one.
    async fn plan(&self, kind: Kind) -> DomainResult<Plan> {
        let bounds = self.store.feed_bounds().await?;
        let parent = match kind {
            Kind::Full => None,
            Kind::Incr => {
                let newest = self.manifests().await.map_err(internal)?.pop();
                let key_id = self.key.as_ref().map(|k| k.id.clone());
                match newest {
                    // A restore opens a chain with one key.
                    Some(p) if p.key_id != key_id => {
                        tracing::info!(
                            parent = p.id,
                            "the backup key changed since the newest backup: taking a full one"
                        );
                        None
                    }
                    Some(p) if p.last_seq >= bounds.horizon => Some(p),
                    Some(p) => {
                        tracing::warn!(parent = p.id, "the change feed no longer reaches back to the newest backup: taking a full one");
                        None
                    }
                    None => {
                        tracing::info!("no backup to continue: taking a full one");
                        None
                    }
                }
            }
        };
        Ok(Plan {
            head: bounds.head,
            parent,
        })
    }

    async fn lease(&self) -> DomainResult<Lease> {
        // A backup that has just ended releases its lease on a task of its
        // own (PostgreSQL): a moment's grace before calling it busy.
        for _ in 0..LEASE_TRIES {
            if let Some(lease) = self.store.lease_consumer(FEED_CURSOR).await? {
                return Ok(lease);
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        Err(DomainError::Conflict("a backup is running already".into()))
    }

    fn begin(&self, plan: &Plan) -> BackupInfo {
        let info = BackupInfo {
            id: manifest::new_id(plan.kind()),
            kind: plan.kind(),
            parent: plan.parent.as_ref().map(|p| p.id.clone()),
            state: State::Running,
            started_at: crate::clock::now(),
            finished_at: None,
            first_seq: plan.parent.as_ref().map_or(0, |p| p.last_seq),
            last_seq: plan.head,
            bytes: 0,
            chunks: 0,
            error: None,
        };
        self.remember(info.clone());
        info
    }

    fn remember(&self, info: BackupInfo) {
        self.local
            .lock()
            .expect("backups lock")
            .insert(info.id.clone(), info);
    }

    /// Runs the backup `id` and records how it ended.
    async fn run(&self, id: String, plan: Plan) -> DomainResult<BackupInfo> {
        use std::sync::atomic::Ordering::Relaxed;
        let started_at = self.local.lock().expect("backups lock")[&id]
            .started_at
            .clone();
        stats::RUNNING.fetch_add(1, Relaxed);
        let written = self.write(&id, &plan, &started_at).await;
        stats::RUNNING.fetch_sub(1, Relaxed);
        match written {
            Ok(m) => {
                stats::COMPLETED.fetch_add(1, Relaxed);
                let now = chrono::Utc::now().timestamp().max(0) as u64;
                stats::LAST_SUCCESS.store(now, Relaxed);
                stats::LAST_BYTES.store(m.bytes, Relaxed);
                self.local.lock().expect("backups lock").remove(&id);
                tracing::info!(
                    id,
                    kind = m.kind.as_str(),
                    bytes = m.bytes,
                    "backup complete"
                );
                Ok(BackupInfo::from(&m))
            }
            Err(e) => {
                stats::FAILED.fetch_add(1, Relaxed);
                tracing::warn!(id, error = %format!("{e:#}"), "backup failed");
                let mut failed = self.local.lock().expect("backups lock")[&id].clone();
                failed.state = State::Failed;
                failed.finished_at = Some(crate::clock::now());
                failed.error = Some(format!("{e:#}"));
                self.remember(failed.clone());
                Ok(failed)
            }
        }
    }

    /// Writes the chunks, then the manifest.
    async fn write(&self, id: &str, plan: &Plan, started_at: &str) -> anyhow::Result<Manifest> {
        let parent = &plan.parent;
        let snapshot = self.store.snapshot().await?;
        let snapshot_seq = snapshot.seq();
        let parts = crate::export::parts(snapshot.as_ref(), None).await?;
        let orgs: Vec<String> = parts
            .iter()
            .filter_map(|p| match p {
                crate::export::Part::Org(o) => Some(o.id.clone()),
                crate::export::Part::Project(_) => None,
            })
            .collect();
        let mut writer = ChunkWriter::new(self.blobs.as_ref(), id, self.key.clone());
        let snapshot: Arc<dyn crate::store::Snapshot> = snapshot.into();
        let since = match &parent {
            None => {
                let (snapshot, documents) = (snapshot.clone(), self.documents.clone());
                let mut lines = Box::pin(crate::export::lines(snapshot, documents, parts));
                while let Some(page) = futures_util::StreamExt::next(&mut lines).await {
                    writer.push(&page?).await?;
                }
                None
            }
            Some(parent) => {
                // Every change the snapshot holds is at or before the head read
                // now that it is open: each row changed since the parent is
                // written as of the snapshot, so the backup is one moment.
                let upto = self.store.feed_bounds().await?.head.max(plan.head);
                let changed = incremental::changed(&self.store, parent.last_seq, upto).await?;
                // The feed may have been pruned since `plan` checked it.
                let horizon = self.store.feed_bounds().await?.horizon;
                anyhow::ensure!(
                    horizon <= parent.last_seq,
                    "the change feed was pruned past backup {} while it was read: the next backup will be a full one",
                    parent.id
                );
                let since = incremental::changed_since(&parent.started_at)?;
                let documents = self.documents.as_ref();
                incremental::write(
                    snapshot.as_ref(),
                    documents,
                    parts,
                    &changed,
                    &since,
                    &mut writer,
                )
                .await?;
                Some(since)
            }
        };
        keys::write(&self.store, &orgs, &mut writer).await?;
        audit::write(snapshot.as_ref(), since.as_deref(), &mut writer).await?;
        let chunks = writer.finish().await?;
        let m = Manifest {
            format: manifest::FORMAT,
            id: id.to_owned(),
            kind: plan.kind(),
            parent: parent.as_ref().map(|p| p.id.clone()),
            first_seq: parent.as_ref().map_or(0, |p| p.last_seq),
            last_seq: plan.head,
            snapshot_seq,
            schema_version: crate::store::migrate::SQLITE.len(),
            backend: self.store.backend().to_owned(),
            strata_version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at: started_at.to_owned(),
            finished_at: crate::clock::now(),
            bytes: chunks.iter().map(|c| c.size).sum(),
            key_id: self.key.as_ref().map(|k| k.id.clone()),
            lines: chunks.iter().map(|c| c.lines).sum(),
            chunks,
            tag: None,
            checksum: String::new(),
        };
        let m = m.seal(self.key.as_deref());
        let text = serde_json::to_vec_pretty(&m)?;
        self.blobs
            .put(&manifest::manifest_key(id), text)
            .await
            .context("writing the manifest")?;
        // The manifest makes the backup complete; a cursor left behind only
        // holds the feed a little longer.
        if self.hold_feed {
            if let Err(e) = self.store.save_feed_cursor(FEED_CURSOR, m.last_seq).await {
                tracing::warn!(id, error = %e, "backup complete, but its feed cursor was not saved");
            }
        }
        Ok(m)
    }

    /// Every complete backup, oldest first.
    pub async fn manifests(&self) -> anyhow::Result<Vec<Manifest>> {
        Ok(self.read_manifests().await?.0)
    }

    /// Every manifest that reads and passes its seal, oldest first, and
    /// the ids whose manifest is there but does not (or did not answer).
    async fn read_manifests(&self) -> anyhow::Result<(Vec<Manifest>, Vec<String>)> {
        let keys = self.blobs.list(manifest::PREFIX).await?;
        let mut out = Vec::new();
        let mut unreadable = Vec::new();
        for key in keys.iter().filter(|k| k.ends_with("/manifest.json")) {
            let id = manifest::id_of_key(key).unwrap_or_default();
            match self.manifest(id).await {
                Ok(m) => out.push(m),
                Err(e) => {
                    tracing::warn!(key, error = %format!("{e:#}"), "unreadable backup manifest");
                    unreadable.push(id.to_owned());
                }
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok((out, unreadable))
    }

    /// The manifest of `id`, refused unless it is sealed.
    pub async fn manifest(&self, id: &str) -> anyhow::Result<Manifest> {
        let bytes = self.blobs.get(&manifest::manifest_key(id)).await?;
        let m: Manifest =
            serde_json::from_slice(&bytes).with_context(|| format!("manifest of {id}"))?;
        anyhow::ensure!(
            m.format == manifest::FORMAT,
            "backup {id}: unknown format {}",
            m.format
        );
        anyhow::ensure!(m.id == id, "backup {id}: the manifest names {}", m.id);
        anyhow::ensure!(
            m.sealed(),
            "backup {id}: the manifest does not match its checksum"
        );
        // Encrypted with the configured key: the manifest must carry its tag
        // (without the key, its chunks do not open anyway).
        if let Some(key) = self
            .key
            .as_deref()
            .filter(|k| m.key_id.as_ref() == Some(&k.id))
        {
            anyhow::ensure!(
                m.authentic(key),
                "backup {id}: the manifest does not carry the backup key's tag (changed by someone without the key)"
            );
        }
        Ok(m)
    }

    /// Complete backups and this daemon's running and failed ones, oldest first.
    pub async fn list(&self) -> DomainResult<Vec<BackupInfo>> {
        let mut all: BTreeMap<String, BackupInfo> = self
            .manifests()
            .await
            .map_err(internal)?
            .iter()
            .map(|m| (m.id.clone(), BackupInfo::from(m)))
            .collect();
        for (id, info) in self.local.lock().expect("backups lock").iter() {
            all.entry(id.clone()).or_insert_with(|| info.clone());
        }
        Ok(all.into_values().collect())
    }

    pub async fn get(&self, id: &str) -> DomainResult<BackupInfo> {
        if !manifest::valid_id(id) {
            return Err(DomainError::not_found(format!("backup {id}")));
        }
        if let Some(info) = self.local.lock().expect("backups lock").get(id) {
            return Ok(info.clone());
        }
        match self.manifest(id).await {
            Ok(m) => Ok(BackupInfo::from(&m)),
            Err(e) if is_missing(&e) => Err(DomainError::not_found(format!("backup {id}"))),
            Err(e) => Err(internal(e)),
        }
    }

    /// Checks a backup and the chain it needs: every manifest sealed and
    /// present, every chunk's size, checksum and line count, and every
    /// record as an import would check it.
    pub async fn verify(&self, id: &str) -> DomainResult<Verification> {
        let missing = || DomainError::not_found(format!("backup {id}"));
        if !manifest::valid_id(id) {
            return Err(missing());
        }
        if let Some(local) = self.local.lock().expect("backups lock").get(id) {
            return Ok(Verification {
                ok: false,
                problems: vec![
                    format!("backup {id} is {:?}, not complete", local.state).to_lowercase()
                ],
            });
        }
        let manifest = manifest::manifest_key(id);
        if !self
            .blobs
            .exists(&manifest)
            .await
            .map_err(|e| internal(e.into()))?
        {
            return Err(missing());
        }
        let mut problems = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut next = Some(id.to_owned());
        while let Some(id) = next.take() {
            if !seen.insert(id.clone()) || seen.len() > restore::MAX_CHAIN {
                problems.push(format!("backup {id}: the chain of parents loops"));
                break;
            }
            let m = match self.manifest(&id).await {
                Ok(m) => m,
                Err(e) => {
                    problems.push(format!("{e:#}"));
                    break;
                }
            };
            if m.kind == Kind::Incr && m.parent.is_none() {
                problems.push(format!(
                    "backup {id}: an incremental backup without a parent"
                ));
            }
            let checked = match self.key_for(&m) {
                Ok(key) => restore::check_records(self.blobs.as_ref(), &m, key).await,
                Err(e) => Err(e),
            };
            if let Err(e) = checked {
                problems.push(format!("backup {id}: {e:#}"));
            }
            next = m.parent;
        }
        Ok(Verification {
            ok: problems.is_empty(),
            problems,
        })
    }

    /// Deletes the chains past retention (keeping the newest `keep_full`
    /// chains and, with `keep_days`, only chains with a backup that recent;
    /// the newest chain always stays) and the chunks of backups that never
    /// finished (older than a day, so a running one is never touched).
    ///
    /// A chain is a full backup and every backup whose parents lead to it,
    /// and chains are ordered by their newest backup. While any manifest
    /// does not read, no chain is deleted: which chain a backup belongs to
    /// cannot be told, and a read that failed once is no reason to lose one.
    pub async fn expire(&self) -> anyhow::Result<Expired> {
        let (manifests, unreadable) = self.read_manifests().await?;
        let mut out = Expired::default();
        if unreadable.is_empty() {
            let cutoff = (self.keep_days > 0).then(|| {
                crate::clock::format(
                    chrono::Utc::now() - chrono::Duration::days(self.keep_days.into()),
                )
            });
            let chains = chains(&manifests);
            let count = chains.len();
            for (n, chain) in chains.iter().enumerate() {
                let from_newest = count - n;
                let newest = chain
                    .iter()
                    .map(|m| m.finished_at.as_str())
                    .max()
                    .unwrap_or_default();
                let too_many = self.keep_full > 0 && from_newest > self.keep_full as usize;
                let too_old = cutoff.as_deref().is_some_and(|c| newest < c);
                if from_newest > 1 && (too_many || too_old) {
                    // Newest first, so a chain cut short stays restorable.
                    for m in chain.iter().rev() {
                        self.delete_backup(&m.id).await?;
                        out.backups.push(m.id.clone());
                    }
                }
            }
        } else {
            tracing::warn!(
                ?unreadable,
                "backup manifests did not read: no chain expired this time"
            );
        }
        // Unfinished: keys under an id with no manifest at all, a day old.
        let keys = self.blobs.list(manifest::PREFIX).await?;
        let finished: std::collections::HashSet<&str> = keys
            .iter()
            .filter(|k| k.ends_with("/manifest.json"))
            .filter_map(|k| manifest::id_of_key(k))
            .collect();
        let day_ago = (chrono::Utc::now() - chrono::Duration::days(1))
            .format("%Y%m%dT%H%M%S%3fZ")
            .to_string();
        let mut orphans = std::collections::BTreeSet::new();
        for key in &keys {
            if let Some(id) = manifest::id_of_key(key) {
                if !finished.contains(id) && id < day_ago.as_str() {
                    orphans.insert(id.to_owned());
                }
            }
        }
        for id in orphans {
            self.delete_backup(&id).await?;
            out.orphans.push(id);
        }
        Ok(out)
    }

    /// Deletes a backup: its manifest first, so it is never half-listed.
    async fn delete_backup(&self, id: &str) -> anyhow::Result<()> {
        let manifest = manifest::manifest_key(id);
        match self.blobs.delete(&manifest).await {
            Ok(()) | Err(BlobError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        for key in self
            .blobs
            .list(&format!("{}{id}/", manifest::PREFIX))
            .await?
        {
            match self.blobs.delete(&key).await {
                Ok(()) | Err(BlobError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// The chains of `manifests`: each full backup with every backup whose
/// parents lead to it, oldest first within a chain, the chains ordered by
/// their newest backup. A backup whose parents do not lead to a full one
/// (a parent gone, or a loop) is in no chain, so it is never expired here.
fn chains(manifests: &[Manifest]) -> Vec<Vec<&Manifest>> {
    let by_id: std::collections::HashMap<&str, &Manifest> =
        manifests.iter().map(|m| (m.id.as_str(), m)).collect();
    let root = |m: &Manifest| -> Option<&str> {
        let mut at = by_id.get(m.id.as_str()).copied()?;
        for _ in 0..=manifests.len() {
            match (&at.kind, &at.parent) {
                (Kind::Full, _) => return Some(at.id.as_str()),
                (Kind::Incr, Some(parent)) => at = by_id.get(parent.as_str()).copied()?,
                (Kind::Incr, None) => return None,
            }
        }
        None
    };
    let mut by_root: BTreeMap<&str, Vec<&Manifest>> = BTreeMap::new();
    for m in manifests {
        match root(m) {
            Some(r) => by_root.entry(r).or_default().push(m),
            None => tracing::warn!(id = m.id, "backup whose parents lead to no full backup"),
        }
    }
    let mut chains: Vec<Vec<&Manifest>> = by_root.into_values().collect();
    chains.sort_by(|a, b| a.last().map(|m| &m.id).cmp(&b.last().map(|m| &m.id)));
    chains
}

fn is_missing(e: &anyhow::Error) -> bool {
    matches!(e.downcast_ref::<BlobError>(), Some(BlobError::NotFound(_)))
}

fn internal(e: anyhow::Error) -> DomainError {
    DomainError::internal(format!("{e:#}"))
}
