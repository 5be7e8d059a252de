//! Imported document rows stored as exported, as on SQLite
//! (`sqlite/doc_import.rs`): the row, each snapshot (inline) and each
//! retained update, inside the import batch's transaction.

use super::rows::{execute, parse_time, query_opt};
use crate::domain::export::{DocSnapshotRecord, DocUpdateRecord};
use crate::domain::rules::import as rules;
use crate::domain::*;
use crate::store::Imported;
use deadpool_postgres::GenericClient;

fn stored(verdict: rules::Verdict) -> Imported {
    Imported { verdict, seq: 0 }
}

async fn load<C: GenericClient>(c: &C, scope: &Scope, doc: &str) -> DomainResult<Option<DocInfo>> {
    Ok(query_opt(
        c,
        "SELECT id, entity_id, created_at, last_seq, pruned_through FROM crdt_docs
         WHERE org_id = $1 AND project_id = $2 AND id = $3 FOR UPDATE",
        &[&scope.org, &scope.project, &doc],
    )
    .await?
    .map(|r| super::docs::info(&r)))
}

/// The row of a document the file names before its lines: a line of a
/// document whose own line failed fails too.
async fn owner<C: GenericClient>(
    c: &C,
    scope: &Scope,
    doc: &str,
) -> DomainResult<Result<DocInfo, Imported>> {
    Ok(load(c, scope, doc).await?.ok_or_else(|| {
        stored(rules::Verdict::Conflict(format!(
            "document {doc} is not in the project"
        )))
    }))
}

pub async fn doc<C: GenericClient>(c: &C, scope: &Scope, d: &DocInfo) -> DomainResult<Imported> {
    let existing = load(c, scope, &d.id).await?;
    let verdict = rules::doc(existing.as_ref(), d);
    match &verdict {
        rules::Verdict::Create => {
            execute(
                c,
                "INSERT INTO crdt_docs (org_id, project_id, id, entity_id, created_at, last_seq,
                     pruned_through, changed_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, now())",
                &[
                    &scope.org,
                    &scope.project,
                    &d.id,
                    &d.entity_id,
                    &parse_time(&d.created_at)?,
                    &d.last_seq,
                    &d.pruned_through,
                ],
            )
            .await?;
        }
        rules::Verdict::Update { .. } => {
            execute(
                c,
                "UPDATE crdt_docs SET entity_id = $4, last_seq = GREATEST(last_seq, $5),
                     changed_at = now()
                 WHERE org_id = $1 AND project_id = $2 AND id = $3",
                &[&scope.org, &scope.project, &d.id, &d.entity_id, &d.last_seq],
            )
            .await?;
        }
        _ => {}
    }
    Ok(stored(verdict))
}

pub async fn snapshot<C: GenericClient>(
    c: &C,
    scope: &Scope,
    s: &DocSnapshotRecord,
) -> DomainResult<Imported> {
    if let Err(failed) = owner(c, scope, &s.doc).await? {
        return Ok(failed);
    }
    let sha: Option<String> = query_opt(
        c,
        "SELECT sha256 FROM crdt_snapshots
         WHERE org_id = $1 AND project_id = $2 AND doc_id = $3 AND covers_seq = $4",
        &[&scope.org, &scope.project, &s.doc, &s.covers_seq],
    )
    .await?
    .map(|r| r.get(0));
    let verdict = rules::doc_snapshot(sha.as_deref(), s);
    if verdict == rules::Verdict::Create {
        execute(
            c,
            "INSERT INTO crdt_snapshots (org_id, project_id, doc_id, covers_seq, covers_at,
                 created_at, size, sha256, inline, blob_key)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL)",
            &[
                &scope.org,
                &scope.project,
                &s.doc,
                &s.covers_seq,
                &parse_time(&s.covers_at)?,
                &parse_time(&s.created_at)?,
                &(s.state.len() as i64),
                &s.sha256,
                &s.state,
            ],
        )
        .await?;
    }
    Ok(stored(verdict))
}

pub async fn update<C: GenericClient>(
    c: &C,
    scope: &Scope,
    u: &DocUpdateRecord,
) -> DomainResult<Imported> {
    let d = match owner(c, scope, &u.doc).await? {
        Ok(d) => d,
        Err(failed) => return Ok(failed),
    };
    let bytes: Option<Vec<u8>> = query_opt(
        c,
        "SELECT bytes FROM crdt_updates
         WHERE org_id = $1 AND project_id = $2 AND doc_id = $3 AND seq = $4",
        &[&scope.org, &scope.project, &u.doc, &u.seq],
    )
    .await?
    .map(|r| r.get(0));
    let verdict = rules::doc_update(bytes.as_deref(), d.pruned_through, u);
    if verdict == rules::Verdict::Create {
        execute(
            c,
            "INSERT INTO crdt_updates (org_id, project_id, doc_id, seq, bytes, origin, at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &scope.org,
                &scope.project,
                &u.doc,
                &u.seq,
                &u.update,
                &u.origin,
                &parse_time(&u.at)?,
            ],
        )
        .await?;
    }
    Ok(stored(verdict))
}
