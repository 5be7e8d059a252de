//! Counts the blob store's failures for `/metrics`: every store `open`
//! returns is wrapped, so a bucket that stops answering shows as a rising
//! counter before a job or request reports it. Answers that are part of the
//! contract (not found, exists, a bad key) are not failures.

use super::{BlobError, BlobInfo, BlobStore};
use async_trait::async_trait;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Failures by operation: put, get, delete, exists, list.
pub static FAILURES: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];
pub const OPERATIONS: [&str; 5] = ["put", "get", "delete", "exists", "list"];

pub struct Counted(pub Arc<dyn BlobStore>);

fn count<T>(op: usize, result: Result<T, BlobError>) -> Result<T, BlobError> {
    if let Err(BlobError::Io { .. } | BlobError::Backend(_) | BlobError::Corrupt(_)) = &result {
        FAILURES[op].fetch_add(1, Relaxed);
    }
    result
}

#[async_trait]
impl BlobStore for Counted {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<BlobInfo, BlobError> {
        count(0, self.0.put(key, bytes).await)
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, BlobError> {
        count(1, self.0.get(key).await)
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        count(2, self.0.delete(key).await)
    }

    async fn exists(&self, key: &str) -> Result<bool, BlobError> {
        count(3, self.0.exists(key).await)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, BlobError> {
        count(4, self.0.list(prefix).await)
    }

    async fn get_verified(&self, key: &str, sha256: &str) -> Result<Vec<u8>, BlobError> {
        count(1, self.0.get_verified(key, sha256).await)
    }

    fn describe(&self) -> String {
        self.0.describe()
    }

    async fn ping(&self) -> Result<(), BlobError> {
        self.0.ping().await
    }
}
