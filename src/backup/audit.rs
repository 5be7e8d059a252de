//! The audit trail in backups, as `audit` lines after the keys: every event
//! of the store (of deleted orgs too: the record of their deletion), read
//! through the backup's snapshot, with its org and original id. A full
//! backup holds the whole trail; an incremental one the events made since
//! shortly before its parent started (`incremental::changed_since`'s margin),
//! so consecutive backups overlap and an event is stored once by its id. A
//! restore replays rows with a `Caller::replaying` caller, which leaves no
//! trail of its own, then stores these events as they were. Only backups
//! carry the trail; exports do not.

use super::chunks::ChunkWriter;
use crate::domain::export::AuditRecord;
use crate::domain::validate;
use crate::store::{DynStore, Snapshot};
use anyhow::{ensure, Context};
use serde::{Deserialize, Serialize};

/// Events read per call.
const PAGE: usize = 2000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename = "audit")]
pub struct AuditLine {
    #[serde(flatten)]
    pub record: AuditRecord,
}

impl AuditLine {
    /// Whether an NDJSON line is an `audit` record (as `write` writes it).
    pub fn is(line: &[u8]) -> bool {
        line.starts_with(br#"{"kind":"audit""#)
    }

    /// Parses and checks an `audit` line.
    pub fn parse(line: &[u8]) -> anyhow::Result<AuditRecord> {
        let AuditLine { mut record } = serde_json::from_slice(line)?;
        let e = &mut record.event;
        ensure!(
            e.id.parse::<i64>().is_ok_and(|id| id > 0),
            "audit event {:?}: the id is not a positive number",
            e.id
        );
        let id = e.id.clone();
        e.at = validate::id("org id", &record.org)
            .and_then(|_| validate::time("at", &e.at))
            .map_err(|err| anyhow::anyhow!("audit event {id}: {err}"))?;
        Ok(record)
    }
}

/// Writes the snapshot's events made at or after `since` (all without).
pub async fn write(
    snapshot: &dyn Snapshot,
    since: Option<&str>,
    to: &mut ChunkWriter<'_>,
) -> anyhow::Result<()> {
    let mut after = 0;
    while let Some(lines) = next_lines(snapshot, since, &mut after).await? {
        to.push(&lines).await?;
    }
    Ok(())
}

/// The `audit` lines of the next page of events after `after` (moved past
/// them), None after the last.
pub async fn next_lines(
    snapshot: &dyn Snapshot,
    since: Option<&str>,
    after: &mut i64,
) -> anyhow::Result<Option<Vec<u8>>> {
    if *after < 0 {
        return Ok(None);
    }
    let page = snapshot
        .audit(*after, since, PAGE)
        .await
        .context("reading the audit trail")?;
    let mut out = Vec::new();
    for record in &page {
        *after = record.event.id.parse().unwrap_or(*after);
        let line = AuditLine {
            record: record.clone(),
        };
        crate::export::line(&mut out, &line);
    }
    if page.len() < PAGE {
        // The last page: the next call ends.
        *after = -1;
    }
    Ok(Some(out))
}

/// Stores the events of a file of `audit` lines into `target`, a batch at
/// a time; how many were new.
pub async fn store(target: &DynStore, file: &std::path::Path) -> anyhow::Result<u64> {
    use std::io::BufRead;
    let mut stored = 0;
    let mut batch = Vec::with_capacity(PAGE);
    for line in std::io::BufReader::new(std::fs::File::open(file)?).split(b'\n') {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        batch.push(AuditLine::parse(&line)?);
        if batch.len() == PAGE {
            stored += target.import_audit(std::mem::take(&mut batch)).await?;
        }
    }
    if !batch.is_empty() {
        stored += target.import_audit(batch).await?;
    }
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::AuditEvent;
    use serde_json::json;

    fn line(id: &str, at: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let record = AuditRecord {
            org: "acme".into(),
            event: AuditEvent {
                id: id.into(),
                at: at.into(),
                actor: "k1".into(),
                action: "entity.create".into(),
                target: "e1".into(),
                project: Some("app".into()),
                ip: None,
                user_agent: None,
                details: json!({"version": 1}),
            },
        };
        crate::export::line(&mut out, &AuditLine { record });
        out
    }

    #[test]
    fn audit_lines_are_known_by_their_start_and_checked() {
        let good = line("7", "2026-12-04T10:00:00Z");
        assert!(AuditLine::is(&good));
        let parsed = AuditLine::parse(&good).unwrap();
        assert_eq!(parsed.event.at, "2026-12-04T10:00:00.000000Z");
        assert_eq!(parsed.event.details, json!({"version": 1}));
        assert!(AuditLine::parse(&line("x", "2026-12-04T10:00:00Z")).is_err());
        assert!(AuditLine::parse(&line("7", "yesterday")).is_err());
        assert!(!AuditLine::is(br#"{"kind":"entity","id":"audit"}"#));
    }
}
