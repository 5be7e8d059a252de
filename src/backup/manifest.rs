//! What a backup is, as stored: its manifest (`backups/<id>/manifest.json`,
//! written last, so a backup without one never finished) and the names of
//! its keys. The manifest carries the SHA-256 of its own canonical JSON, so
//! a changed manifest is found as surely as a changed chunk.

use crate::digest::sha256_hex;
use serde::{Deserialize, Serialize};

/// The manifest format this build writes and reads.
pub const FORMAT: u32 = 1;
/// Where every backup's keys live in the blob store.
pub const PREFIX: &str = "backups/";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Every row of the store.
    Full,
    /// The rows changed after the parent backup, and what was purged.
    Incr,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Full => "full",
            Kind::Incr => "incr",
        }
    }
}

/// One chunk: zstd-compressed NDJSON, written once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Chunk {
    pub key: String,
    /// Compressed bytes.
    pub size: u64,
    /// Of the compressed bytes.
    pub sha256: String,
    /// Lines (records) in it.
    pub lines: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub id: String,
    #[serde(rename = "type")]
    pub kind: Kind,
    /// The backup an incremental one continues (None for a full one).
    pub parent: Option<String>,
    /// The change feed window: changes after `first_seq` up to `last_seq`
    /// (feed positions; `first_seq` is 0 for a full backup).
    pub first_seq: i64,
    pub last_seq: i64,
    /// The store's change sequence at the snapshot.
    pub snapshot_seq: i64,
    /// Migrations applied to the store the backup was taken from.
    pub schema_version: usize,
    pub backend: String,
    pub strata_version: String,
    pub started_at: String,
    pub finished_at: String,
    pub chunks: Vec<Chunk>,
    /// Compressed bytes of every chunk.
    pub bytes: u64,
    /// The fingerprint of the key the chunks are encrypted with (none:
    /// plaintext).
    #[serde(default)]
    pub key_id: Option<String>,
    pub lines: u64,
    /// The SHA-256 of this manifest's canonical JSON with this field empty.
    pub checksum: String,
}

impl Manifest {
    /// The manifest's own checksum, as `checksum` should hold it.
    pub fn compute_checksum(&self) -> String {
        let mut copy = self.clone();
        copy.checksum = String::new();
        sha256_hex(&serde_json::to_vec(&copy).expect("manifests serialise"))
    }

    pub fn seal(mut self) -> Self {
        self.checksum = self.compute_checksum();
        self
    }

    pub fn sealed(&self) -> bool {
        self.checksum == self.compute_checksum()
    }
}

/// A backup id: its start time (so ids sort by age), its kind and a random
/// tail (two daemons starting in the same millisecond differ).
pub fn new_id(kind: Kind) -> String {
    let now = chrono::Utc::now().format("%Y%m%dT%H%M%S%3fZ");
    let tail = &uuid::Uuid::new_v4().simple().to_string()[..8];
    format!("{now}-{}-{tail}", kind.as_str())
}

/// Whether `id` could name a backup: the shape `new_id` makes, so a path
/// parameter never becomes an arbitrary blob key.
pub fn valid_id(id: &str) -> bool {
    id.len() <= 64
        && !id.is_empty()
        && id.bytes().all(|b| {
            b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'-' || b == b'T' || b == b'Z'
        })
}

pub fn manifest_key(id: &str) -> String {
    format!("{PREFIX}{id}/manifest.json")
}

pub fn chunk_key(id: &str, n: usize) -> String {
    format!("{PREFIX}{id}/chunk-{n:05}.ndjson.zst")
}

/// The backup a key belongs to.
pub fn id_of_key(key: &str) -> Option<&str> {
    key.strip_prefix(PREFIX)?.split('/').next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_valid_and_sort_by_time() {
        let a = new_id(Kind::Full);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id(Kind::Incr);
        assert!(valid_id(&a) && valid_id(&b), "{a} {b}");
        assert!(a < b);
        assert_eq!(id_of_key(&manifest_key(&a)), Some(a.as_str()));
        for bad in ["", "../x", "a/b", "A", &"1".repeat(65)] {
            assert!(!valid_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_changed_manifest_is_no_longer_sealed() {
        let m = Manifest {
            format: FORMAT,
            id: new_id(Kind::Full),
            kind: Kind::Full,
            parent: None,
            first_seq: 0,
            last_seq: 9,
            snapshot_seq: 9,
            schema_version: 8,
            backend: "sqlite".into(),
            strata_version: "0".into(),
            started_at: "t".into(),
            finished_at: "t".into(),
            chunks: vec![],
            bytes: 0,
            key_id: None,
            lines: 0,
            checksum: String::new(),
        }
        .seal();
        assert!(m.sealed());
        let mut changed = m.clone();
        changed.last_seq = 10;
        assert!(!changed.sealed());
    }
}
