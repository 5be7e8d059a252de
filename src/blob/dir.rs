//! Blobs as files under a directory (the embedded default).
//!
//! A put writes a temporary file in the target directory, fsyncs it, then
//! hard-links it to its key: the link fails if the key exists, so two writers
//! of one key cannot both win and nothing is overwritten; the directory is
//! fsynced so the new name survives a crash. All file I/O runs on the
//! blocking pool.

use super::{check_key, sha256_hex, BlobError, BlobInfo, BlobStore};
use async_trait::async_trait;
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct DirBlobStore {
    root: PathBuf,
}

fn io(key: &str) -> impl FnOnce(std::io::Error) -> BlobError + '_ {
    move |source| BlobError::Io {
        key: key.to_owned(),
        source,
    }
}

impl DirBlobStore {
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, BlobError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(io(""))?;
        Ok(DirBlobStore { root })
    }

    fn path(&self, key: &str) -> Result<PathBuf, BlobError> {
        check_key(key)?;
        Ok(self.root.join(key))
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BlobError> + Send + 'static,
) -> Result<T, BlobError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BlobError::Backend(format!("blob I/O task failed: {e}")))?
}

fn put_file(path: &Path, key: &str, bytes: &[u8]) -> Result<(), BlobError> {
    let dir = path.parent().expect("keys have a file name");
    std::fs::create_dir_all(dir).map_err(io(key))?;
    let tmp = dir.join(format!(".tmp-{:016x}", rand::random::<u64>()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::hard_link(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    match result {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(BlobError::Exists(key.to_owned()))
        }
        Err(e) => return Err(io(key)(e)),
    }
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(key))
}

#[async_trait]
impl BlobStore for DirBlobStore {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<BlobInfo, BlobError> {
        let path = self.path(key)?;
        let info = BlobInfo {
            key: key.to_owned(),
            size: bytes.len() as u64,
            sha256: sha256_hex(&bytes),
        };
        let key = key.to_owned();
        blocking(move || put_file(&path, &key, &bytes)).await?;
        Ok(info)
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, BlobError> {
        let path = self.path(key)?;
        let key = key.to_owned();
        blocking(move || match std::fs::read(&path) {
            Ok(bytes) => Ok(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(BlobError::NotFound(key)),
            Err(e) => Err(io(&key)(e)),
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        let path = self.path(key)?;
        let key = key.to_owned();
        blocking(move || match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(BlobError::NotFound(key)),
            Err(e) => Err(io(&key)(e)),
        })
        .await
    }

    async fn exists(&self, key: &str) -> Result<bool, BlobError> {
        let path = self.path(key)?;
        blocking(move || Ok(path.is_file())).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, BlobError> {
        let root = self.root.clone();
        let prefix = prefix.to_owned();
        blocking(move || {
            let mut keys = Vec::new();
            let mut stack = vec![root.clone()];
            while let Some(dir) = stack.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io(&prefix)(e)),
                };
                for entry in entries {
                    let entry = entry.map_err(io(&prefix))?;
                    let path = entry.path();
                    let name = entry.file_name();
                    if name.to_string_lossy().starts_with(".tmp-") {
                        continue;
                    }
                    if path.is_dir() {
                        stack.push(path);
                    } else if let Ok(rel) = path.strip_prefix(&root) {
                        let key = rel
                            .to_string_lossy()
                            .replace(std::path::MAIN_SEPARATOR, "/");
                        if key.starts_with(&prefix) {
                            keys.push(key);
                        }
                    }
                }
            }
            keys.sort();
            Ok(keys)
        })
        .await
    }

    fn describe(&self) -> String {
        format!("file://{}", self.root.display())
    }

    /// The root is a directory that can be read. A missing one counts as
    /// a failure although a write would make it again: it was made at
    /// start, so its volume has most likely gone.
    async fn ping(&self) -> Result<(), BlobError> {
        let root = self.root.clone();
        blocking(move || {
            if !root.is_dir() {
                return Err(BlobError::Backend(format!(
                    "{} is not a directory",
                    root.display()
                )));
            }
            std::fs::read_dir(&root).map_err(io(""))?;
            Ok(())
        })
        .await
    }
}
