//! TEMPORARY minimal blob store (directory only) so the CRDT code compiles
//! while the full module (with S3) is written.

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob {0} not found")]
    NotFound(String),
    #[error("blob {0} exists")]
    Exists(String),
    #[error("invalid key {0}")]
    InvalidKey(String),
    #[error("blob {0} is corrupt")]
    Corrupt(String),
    #[error("blob store: {0}")]
    Backend(String),
}

pub struct BlobInfo {
    pub key: String,
    pub size: u64,
    pub sha256: String,
}

#[async_trait]
pub trait BlobStore: Send + Sync {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<BlobInfo, BlobError>;
    async fn get(&self, key: &str) -> Result<Vec<u8>, BlobError>;
    async fn delete(&self, key: &str) -> Result<(), BlobError>;
    async fn list(&self, prefix: &str) -> Result<Vec<String>, BlobError>;
    async fn get_verified(&self, key: &str, sha256: &str) -> Result<Vec<u8>, BlobError> {
        let bytes = self.get(key).await?;
        let got: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if got != sha256 {
            return Err(BlobError::Corrupt(key.into()));
        }
        Ok(bytes)
    }
}

struct Dir(PathBuf);

#[async_trait]
impl BlobStore for Dir {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<BlobInfo, BlobError> {
        let path = self.0.join(key);
        if path.exists() {
            return Err(BlobError::Exists(key.into()));
        }
        std::fs::create_dir_all(path.parent().unwrap())
            .map_err(|e| BlobError::Backend(e.to_string()))?;
        std::fs::write(&path, &bytes).map_err(|e| BlobError::Backend(e.to_string()))?;
        Ok(BlobInfo {
            key: key.into(),
            size: bytes.len() as u64,
            sha256: Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        })
    }
    async fn get(&self, key: &str) -> Result<Vec<u8>, BlobError> {
        std::fs::read(self.0.join(key)).map_err(|_| BlobError::NotFound(key.into()))
    }
    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        std::fs::remove_file(self.0.join(key)).map_err(|_| BlobError::NotFound(key.into()))
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, BlobError> {
        let dir = self.0.join(prefix);
        let mut out: Vec<String> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| format!("{prefix}{}", e.file_name().to_string_lossy()))
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        Ok(out)
    }
}

pub async fn open(url: &str) -> Result<Arc<dyn BlobStore>, BlobError> {
    let dir = url
        .strip_prefix("file://")
        .ok_or_else(|| BlobError::Backend("only file:// here".into()))?;
    Ok(Arc::new(Dir(PathBuf::from(dir))))
}
