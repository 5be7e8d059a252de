//! Backup chunks: NDJSON cut at line boundaries into pieces of about
//! `CHUNK_BYTES`, each compressed with zstd (on a blocking thread) and
//! written once to the blob store; read back only if their size and
//! SHA-256 match the manifest, and decompressed within a bound.

use super::cipher::ChunkKey;
use super::manifest::{chunk_key, Chunk};
use crate::blob::BlobStore;
use anyhow::{bail, Context};
use std::io::Read;
use std::sync::Arc;

/// Uncompressed bytes per chunk (a chunk ends at the first line end past it).
const CHUNK_BYTES: usize = 32 << 20;
/// The most a chunk may decompress to: a chunk's bytes and its last line.
const MAX_DECOMPRESSED: u64 = (CHUNK_BYTES + crate::import::MAX_LINE) as u64;
const LEVEL: i32 = 3;

/// Writes one backup's chunks.
pub struct ChunkWriter<'a> {
    blobs: &'a dyn BlobStore,
    key: Option<Arc<ChunkKey>>,
    id: String,
    buf: Vec<u8>,
    lines: u64,
    pub chunks: Vec<Chunk>,
}

impl<'a> ChunkWriter<'a> {
    pub fn new(blobs: &'a dyn BlobStore, id: &str, key: Option<Arc<ChunkKey>>) -> Self {
        ChunkWriter {
            blobs,
            key,
            id: id.to_owned(),
            buf: Vec::new(),
            lines: 0,
            chunks: Vec::new(),
        }
    }

    /// Appends whole lines, writing a chunk whenever one is full.
    pub async fn push(&mut self, mut lines: &[u8]) -> anyhow::Result<()> {
        while !lines.is_empty() {
            let room = CHUNK_BYTES.saturating_sub(self.buf.len());
            // Up to the end of the line that crosses the chunk's size.
            let take = match lines.iter().skip(room).position(|b| *b == b'\n') {
                Some(at) => room + at + 1,
                None => lines.len(),
            };
            let (now, rest) = lines.split_at(take);
            self.lines += now.iter().filter(|b| **b == b'\n').count() as u64;
            self.buf.extend_from_slice(now);
            lines = rest;
            if self.buf.len() >= CHUNK_BYTES {
                self.cut().await?;
            }
        }
        Ok(())
    }

    /// Writes what is left; the chunks written, in order.
    pub async fn finish(mut self) -> anyhow::Result<Vec<Chunk>> {
        if !self.buf.is_empty() {
            self.cut().await?;
        }
        Ok(self.chunks)
    }

    async fn cut(&mut self) -> anyhow::Result<()> {
        let plain = std::mem::take(&mut self.buf);
        let key = chunk_key(&self.id, self.chunks.len());
        let (seal, place) = (self.key.clone(), key.clone());
        let packed = tokio::task::spawn_blocking(move || {
            let packed = zstd::encode_all(&plain[..], LEVEL)?;
            Ok::<_, std::io::Error>(match seal {
                Some(k) => k.seal(&place, &packed),
                None => packed,
            })
        })
        .await??;
        let stored = self
            .blobs
            .put(&key, packed)
            .await
            .with_context(|| format!("writing backup chunk {key}"))?;
        self.chunks.push(Chunk {
            key,
            size: stored.size,
            sha256: stored.sha256,
            lines: std::mem::take(&mut self.lines),
        });
        Ok(())
    }
}

/// A chunk's NDJSON, refused unless it is exactly what the manifest lists;
/// opened with `key` when the backup is encrypted.
pub async fn read(
    blobs: &dyn BlobStore,
    chunk: &Chunk,
    key: Option<&ChunkKey>,
) -> anyhow::Result<Vec<u8>> {
    let packed = blobs
        .get_verified(&chunk.key, &chunk.sha256)
        .await
        .with_context(|| format!("reading backup chunk {}", chunk.key))?;
    if packed.len() as u64 != chunk.size {
        bail!(
            "backup chunk {} has {} bytes, the manifest says {}",
            chunk.key,
            packed.len(),
            chunk.size
        );
    }
    let packed = match key {
        Some(k) => k.open(&chunk.key, &packed)?,
        None => packed,
    };
    let key = chunk.key.clone();
    let plain = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        zstd::stream::read::Decoder::new(&packed[..])?
            .take(MAX_DECOMPRESSED + 1)
            .read_to_end(&mut out)?;
        anyhow::ensure!(
            out.len() as u64 <= MAX_DECOMPRESSED,
            "backup chunk {key} decompresses to more than {MAX_DECOMPRESSED} bytes"
        );
        Ok(out)
    })
    .await??;
    let lines = plain.iter().filter(|b| **b == b'\n').count() as u64;
    if lines != chunk.lines || plain.last().is_some_and(|b| *b != b'\n') {
        bail!(
            "backup chunk {} holds {lines} whole lines, the manifest says {}",
            chunk.key,
            chunk.lines
        );
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::DirBlobStore;

    #[tokio::test]
    async fn chunks_round_trip_and_refuse_changes() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = DirBlobStore::new(dir.path().to_str().unwrap()).unwrap();
        let mut w = ChunkWriter::new(&blobs, "b1", None);
        let text = b"{\"a\":1}\n{\"b\":2}\n".repeat(1000);
        w.push(&text).await.unwrap();
        let chunks = w.finish().await.unwrap();
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].lines, 2000);
        assert_eq!(read(&blobs, &chunks[0], None).await.unwrap(), text);

        let mut wrong = chunks[0].clone();
        wrong.lines += 1;
        assert!(read(&blobs, &wrong, None).await.is_err());
        wrong = chunks[0].clone();
        wrong.sha256 = "0".repeat(64);
        assert!(read(&blobs, &wrong, None).await.is_err());
    }
}
