//! What a backup is, as stored: its manifest (`backups/<id>/manifest.json`,
//! written last, so a backup without one never finished) and the names of
//! its keys. The manifest carries the SHA-256 of its own canonical JSON, so
//! a changed manifest is found as surely as a changed chunk, and, when the
//! chunks are encrypted, a tag made with the backup key over the same JSON:
//! a checksum anyone can compute again, so without the tag whoever can
//! write to the bucket could drop chunks from a manifest unnoticed.

use super::cipher::ChunkKey;
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
    /// With `key_id`: the backup key's tag (`ChunkKey::tag`) over this
    /// manifest's canonical JSON with `checksum` empty and no tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The SHA-256 of this manifest's canonical JSON with this field empty.
    pub checksum: String,
}

impl Manifest {
    /// The manifest's own checksum, as `checksum` should hold it.
    pub fn compute_checksum(&self) -> String {
        sha256_hex(&self.canonical(self.tag.clone()))
    }

    /// Sets the checksum, and the tag when `key` encrypts the chunks.
    pub fn seal(mut self, key: Option<&ChunkKey>) -> Self {
        self.tag = key.map(|k| k.tag(&manifest_key(&self.id), &self.canonical(None)));
        self.checksum = self.compute_checksum();
        self
    }

    /// Whether the manifest carries a tag `key` made for it.
    pub fn authentic(&self, key: &ChunkKey) -> bool {
        self.tag
            .as_deref()
            .is_some_and(|tag| key.verify_tag(&manifest_key(&self.id), &self.canonical(None), tag))
    }

    /// The JSON the checksum and the tag cover: no checksum, and `tag`.
    fn canonical(&self, tag: Option<String>) -> Vec<u8> {
        let copy = Manifest {
            checksum: String::new(),
            tag,
            ..self.clone()
        };
        serde_json::to_vec(&copy).expect("manifests serialise")
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

    fn manifest(key_id: Option<String>) -> Manifest {
        Manifest {
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
            chunks: vec![Chunk {
                key: "k".into(),
                size: 1,
                sha256: "s".into(),
                lines: 1,
            }],
            bytes: 0,
            key_id,
            lines: 0,
            tag: None,
            checksum: String::new(),
        }
    }

    #[test]
    fn a_changed_manifest_is_no_longer_sealed() {
        let m = manifest(None).seal(None);
        assert!(m.sealed());
        assert!(m.tag.is_none());
        let mut changed = m.clone();
        changed.last_seq = 10;
        assert!(!changed.sealed());
    }

    /// The checksum is anyone's to compute again; the tag is the key
    /// holder's alone.
    #[test]
    fn a_manifest_changed_without_the_key_is_not_authentic() {
        let key = ChunkKey::parse(&"ab".repeat(32)).unwrap();
        let m = manifest(Some(key.id.clone())).seal(Some(&key));
        assert!(m.sealed() && m.authentic(&key));
        let mut cut = m.clone();
        cut.chunks.clear();
        cut.checksum = cut.compute_checksum();
        assert!(cut.sealed(), "the checksum matches again");
        assert!(!cut.authentic(&key), "but the tag does not");
        let mut stripped = m.clone();
        stripped.tag = None;
        stripped.checksum = stripped.compute_checksum();
        assert!(!stripped.authentic(&key), "a manifest without a tag");
        let other = ChunkKey::parse(&"cd".repeat(32)).unwrap();
        assert!(!m.authentic(&other));
        // A tag is bound to its manifest's place.
        let mut moved = m.clone();
        moved.id = new_id(Kind::Full);
        assert!(!moved.authentic(&key));
    }
}
