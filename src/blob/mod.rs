//! Blob storage for snapshots (and, later, attachments and backups): a tiny
//! trait with a local-directory and an S3 implementation. Keys say what they
//! hold and are written once: `put` on an existing key fails with `Exists`.
//! Callers keep the SHA-256 that `put` returns and read back with
//! `get_verified`, which refuses bytes that do not match.

mod counted;
mod dir;
mod s3;

pub use counted::{FAILURES, OPERATIONS};
pub use dir::DirBlobStore;
pub use s3::S3BlobStore;

use async_trait::async_trait;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob {0} not found")]
    NotFound(String),
    #[error("blob {0} already exists (blobs are never overwritten)")]
    Exists(String),
    #[error("invalid blob key {0:?}: {1}")]
    InvalidKey(String, &'static str),
    #[error("blob {0} does not match its checksum")]
    Corrupt(String),
    #[error("blob store I/O on {key}: {source}")]
    Io {
        key: String,
        #[source]
        source: std::io::Error,
    },
    #[error("blob store backend: {0}")]
    Backend(String),
    #[error("blob store configuration: {0}")]
    Config(String),
}

/// What `put` stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub key: String,
    pub size: u64,
    pub sha256: String,
}

pub use crate::digest::sha256_hex;

/// The one key rule both backends apply: relative, no `..`, no control
/// characters, at most 1024 bytes.
pub fn check_key(key: &str) -> Result<(), BlobError> {
    let bad = |why| Err(BlobError::InvalidKey(key.to_owned(), why));
    if key.is_empty() || key.len() > 1024 {
        return bad("must be 1 to 1024 bytes");
    }
    if key.starts_with('/') || key.ends_with('/') {
        return bad("must not start or end with /");
    }
    if key.chars().any(char::is_control) {
        return bad("must not contain control characters");
    }
    if key
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return bad("must not contain empty, . or .. segments");
    }
    Ok(())
}

#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Stores `bytes` under a new key.
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<BlobInfo, BlobError>;
    async fn get(&self, key: &str) -> Result<Vec<u8>, BlobError>;
    async fn delete(&self, key: &str) -> Result<(), BlobError>;
    async fn exists(&self, key: &str) -> Result<bool, BlobError>;
    /// Keys under `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, BlobError>;
    /// Where the blobs are, for logs and health output.
    fn describe(&self) -> String;

    /// Answers when the store can be reached (readiness): the directory is
    /// there, the bucket answers. This default only asks whether a key
    /// exists, which every store can answer.
    async fn ping(&self) -> Result<(), BlobError> {
        self.exists("readiness-probe").await.map(|_| ())
    }

    /// `get`, refusing bytes whose SHA-256 is not `sha256`.
    async fn get_verified(&self, key: &str, sha256: &str) -> Result<Vec<u8>, BlobError> {
        let bytes = self.get(key).await?;
        if sha256_hex(&bytes) != sha256 {
            return Err(BlobError::Corrupt(key.to_owned()));
        }
        Ok(bytes)
    }
}

/// Opens the store a blob URL names: `file://DIR` or `s3://bucket/prefix`,
/// its failures counted (`FAILURES`).
pub async fn open(url: &str) -> Result<Arc<dyn BlobStore>, BlobError> {
    if let Some(dir) = url.strip_prefix("file://") {
        let store = Arc::new(DirBlobStore::new(dir)?);
        return Ok(Arc::new(counted::Counted(store)));
    }
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let store = Arc::new(S3BlobStore::from_env(bucket, prefix)?);
        return Ok(Arc::new(counted::Counted(store)));
    }
    Err(BlobError::Config(format!(
        "a blob URL starts with file:// or s3://, got {url:?}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(check_key("crdt/acme/app/doc/00000000000000000001.ysnap").is_ok());
        for bad in ["", "/abs", "a/../b", "a//b", "trail/", "a\nb", "./a"] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        assert!(check_key(&"k".repeat(1025)).is_err());
    }
}
