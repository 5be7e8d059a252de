//! `strata migrate-store`: copies a whole store into an empty one (SQLite ⇄
//! PostgreSQL, or either to itself elsewhere) and proves the copy: the rows
//! of both, read through one snapshot each, are counted and digested per
//! kind as canonical JSON (keys sorted), and must agree.
//!
//! The copy is the source's export read through one snapshot, spooled to a
//! file and imported as exported, so it carries what exports carry: orgs
//! and projects (names, creation times), entities with every version row,
//! relationships, and documents with their snapshots (those the source kept
//! in its blob store are read from it and stored inline in the copy) and
//! retained updates; and what backups carry beside: live API keys (with
//! their secret hashes) and the audit trail, events keeping their ids. The
//! copy's own writes leave no trail (`Caller::replaying`).

use crate::backup::{audit, keys};
use crate::blob::BlobStore;
use crate::domain::{Caller, PageRequest};
use crate::export::{lines, parts, Part};
use crate::store::{DynStore, Snapshot};
use anyhow::{bail, Context};
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

/// Rows of one kind: how many, and the SHA-256 of their canonical JSON in
/// export order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub rows: u64,
    pub sha256: String,
}

#[derive(Debug, Serialize)]
pub struct CopyReport {
    /// Per kind (`org`, `project`, `entity`, `version`, `relationship`,
    /// `doc`, `doc_snapshot`, `doc_update`, `key`, `audit`).
    pub tallies: BTreeMap<String, Tally>,
}

/// Copies `from` into `to` (which must be empty) and checks the copy.
pub async fn run(
    from: &DynStore,
    from_blobs: Arc<dyn BlobStore>,
    to: &DynStore,
) -> anyhow::Result<CopyReport> {
    let first = PageRequest {
        cursor: None,
        limit: 1,
    };
    if !to.list_orgs(&first).await?.items.is_empty() {
        bail!("the target store is not empty");
    }
    let snapshot: Arc<dyn Snapshot> = from.snapshot().await?.into();
    let all = parts(snapshot.as_ref(), None).await?;
    let orgs = org_ids(&all);
    let spool = tempfile::NamedTempFile::new().context("a spool file for the copy")?;
    {
        let mut out = std::io::BufWriter::new(spool.reopen()?);
        let mut pages = Box::pin(lines(snapshot.clone(), from_blobs.clone(), all));
        while let Some(page) = pages.next().await {
            out.write_all(&page?)?;
        }
        out.flush()?;
    }
    let trail = tempfile::NamedTempFile::new().context("a spool file for the audit trail")?;
    {
        let mut out = std::io::BufWriter::new(trail.reopen()?);
        let mut after = 0;
        while let Some(page) = audit::next_lines(snapshot.as_ref(), None, &mut after).await? {
            out.write_all(&page)?;
        }
        out.flush()?;
    }
    drop(snapshot);
    let keys = keys::lines_of(from, &orgs).await?;
    let mut source = Tallies::default();
    source.add_file(spool.path())?;
    source.add_file(trail.path())?;
    source.add_keys(&keys)?;
    let source = source.finish();

    // The copy's own writes leave no trail: the source's is copied.
    let caller = Caller::replaying("migrate-store");
    let report = crate::import::run(
        to,
        &crate::import::Target::AsExported,
        spool.path(),
        &caller,
        false,
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(f) = report.failures.first() {
        bail!("line {} of the copy was refused: {}", f.line, f.message);
    }
    keys::apply(to, &caller, &keys, keys::Revoke::None).await?;
    audit::store(to, trail.path()).await?;
    // The copy keeps every snapshot inline: it reads no blobs.
    let copied = tally(to, from_blobs).await?;
    if copied != source {
        bail!("the copy differs from the source: source {source:?}, copy {copied:?}");
    }
    Ok(CopyReport { tallies: copied })
}

fn org_ids(parts: &[Part]) -> Vec<String> {
    parts
        .iter()
        .filter_map(|p| match p {
            Part::Org(o) => Some(o.id.clone()),
            Part::Project(_) => None,
        })
        .collect()
}

/// The tallies of every row of `store` (its snapshots kept as blobs read
/// from `blobs`), its live keys and its audit trail, read through one
/// snapshot (the keys beside it).
pub async fn tally(
    store: &DynStore,
    blobs: Arc<dyn BlobStore>,
) -> anyhow::Result<BTreeMap<String, Tally>> {
    let snapshot: Arc<dyn Snapshot> = store.snapshot().await?.into();
    let all = parts(snapshot.as_ref(), None).await?;
    let orgs = org_ids(&all);
    let mut tallies = Tallies::default();
    let mut pages = Box::pin(lines(snapshot.clone(), blobs, all));
    while let Some(page) = pages.next().await {
        tallies.add_lines(&page?)?;
    }
    let mut after = 0;
    while let Some(page) = audit::next_lines(snapshot.as_ref(), None, &mut after).await? {
        tallies.add_lines(&page)?;
    }
    tallies.add_keys(&keys::lines_of(store, &orgs).await?)?;
    Ok(tallies.finish())
}

#[derive(Default)]
struct Tallies(BTreeMap<String, (u64, Sha256)>);

impl Tallies {
    fn add_file(&mut self, path: &std::path::Path) -> anyhow::Result<()> {
        use std::io::BufRead;
        for line in std::io::BufReader::new(std::fs::File::open(path)?).split(b'\n') {
            let line = line?;
            if !line.is_empty() {
                self.add(&line)?;
            }
        }
        Ok(())
    }

    fn add_lines(&mut self, lines: &[u8]) -> anyhow::Result<()> {
        for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            self.add(line)?;
        }
        Ok(())
    }

    fn add_keys(&mut self, keys: &[keys::KeyLine]) -> anyhow::Result<()> {
        for key in keys {
            self.add(&serde_json::to_vec(key)?)?;
        }
        Ok(())
    }

    fn add(&mut self, line: &[u8]) -> anyhow::Result<()> {
        let row: Value = serde_json::from_slice(line)?;
        let kind = row["kind"].as_str().unwrap_or("?").to_owned();
        let mut canonical = Vec::new();
        write_canonical(&row, &mut canonical);
        canonical.push(b'\n');
        let (rows, digest) = self.0.entry(kind).or_default();
        *rows += 1;
        digest.update(&canonical);
        Ok(())
    }

    fn finish(self) -> BTreeMap<String, Tally> {
        self.0
            .into_iter()
            .map(|(kind, (rows, digest))| {
                let sha256 = hex::encode(digest.finalize());
                (kind, Tally { rows, sha256 })
            })
            .collect()
    }
}

/// JSON with every object's keys in sorted order (PostgreSQL's jsonb and
/// SQLite's text keep them in different orders).
fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k).expect("strings serialise");
                out.push(b':');
                write_canonical(&map[k], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar).expect("scalars serialise"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let a: Value =
            serde_json::from_str(r#"{"b":1,"a":{"d":[{"z":1,"y":2}],"c":null}}"#).unwrap();
        let mut out = Vec::new();
        write_canonical(&a, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a":{"c":null,"d":[{"y":2,"z":1}]},"b":1}"#
        );
    }
}
