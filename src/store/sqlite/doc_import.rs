//! Imported document rows stored as exported (`rules::import`): the row,
//! each snapshot (kept inline: a restored store's states are in the
//! database, and compaction sends later large ones to the blob store) and
//! each retained update. Documents are not in the change feed.

use super::sql_err;
use crate::domain::export::{DocSnapshotRecord, DocUpdateRecord};
use crate::domain::rules::import as rules;
use crate::domain::*;
use crate::store::Imported;
use rusqlite::{params, Connection, OptionalExtension};

fn stored(verdict: rules::Verdict) -> Imported {
    Imported { verdict, seq: 0 }
}

fn load(conn: &Connection, scope: &Scope, doc: &str) -> DomainResult<Option<DocInfo>> {
    conn.prepare_cached(
        "SELECT id, entity_id, created_at, last_seq, pruned_through FROM crdt_docs
         WHERE org_id = ?1 AND project_id = ?2 AND id = ?3",
    )
    .and_then(|mut st| {
        st.query_row(params![scope.org, scope.project, doc], super::docs::info)
            .optional()
    })
    .map_err(sql_err)
}

/// The row of a document the file names before its lines: a line of a
/// document whose own line failed fails too.
fn owner(conn: &Connection, scope: &Scope, doc: &str) -> DomainResult<Result<DocInfo, Imported>> {
    Ok(load(conn, scope, doc)?.ok_or_else(|| {
        stored(rules::Verdict::Conflict(format!(
            "document {doc} is not in the project"
        )))
    }))
}

pub fn doc(conn: &Connection, scope: &Scope, d: &DocInfo) -> DomainResult<Imported> {
    let existing = load(conn, scope, &d.id)?;
    let verdict = rules::doc(existing.as_ref(), d);
    match &verdict {
        rules::Verdict::Create => conn
            .prepare_cached(
                "INSERT INTO crdt_docs (org_id, project_id, id, entity_id, created_at, last_seq,
                     pruned_through, changed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    scope.org,
                    scope.project,
                    d.id,
                    d.entity_id,
                    d.created_at,
                    d.last_seq,
                    d.pruned_through,
                    crate::clock::now()
                ])
            })
            .map_err(sql_err)?,
        rules::Verdict::Update { .. } => conn
            .prepare_cached(
                "UPDATE crdt_docs SET entity_id = ?4, last_seq = MAX(last_seq, ?5), changed_at = ?6
                 WHERE org_id = ?1 AND project_id = ?2 AND id = ?3",
            )
            .and_then(|mut st| {
                st.execute(params![
                    scope.org,
                    scope.project,
                    d.id,
                    d.entity_id,
                    d.last_seq,
                    crate::clock::now()
                ])
            })
            .map_err(sql_err)?,
        _ => 0,
    };
    Ok(stored(verdict))
}

pub fn snapshot(conn: &Connection, scope: &Scope, s: &DocSnapshotRecord) -> DomainResult<Imported> {
    if let Err(failed) = owner(conn, scope, &s.doc)? {
        return Ok(failed);
    }
    let sha: Option<String> = conn
        .prepare_cached(
            "SELECT sha256 FROM crdt_snapshots
             WHERE org_id = ?1 AND project_id = ?2 AND doc_id = ?3 AND covers_seq = ?4",
        )
        .and_then(|mut st| {
            st.query_row(
                params![scope.org, scope.project, s.doc, s.covers_seq],
                |r| r.get(0),
            )
            .optional()
        })
        .map_err(sql_err)?;
    let verdict = rules::doc_snapshot(sha.as_deref(), s);
    if verdict == rules::Verdict::Create {
        conn.prepare_cached(
            "INSERT INTO crdt_snapshots (org_id, project_id, doc_id, covers_seq, covers_at,
                 created_at, size, sha256, inline, blob_key)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL)",
        )
        .and_then(|mut st| {
            st.execute(params![
                scope.org,
                scope.project,
                s.doc,
                s.covers_seq,
                s.covers_at,
                s.created_at,
                s.state.len() as i64,
                s.sha256,
                s.state
            ])
        })
        .map_err(sql_err)?;
    }
    Ok(stored(verdict))
}

pub fn update(conn: &Connection, scope: &Scope, u: &DocUpdateRecord) -> DomainResult<Imported> {
    let d = match owner(conn, scope, &u.doc)? {
        Ok(d) => d,
        Err(failed) => return Ok(failed),
    };
    let bytes: Option<Vec<u8>> = conn
        .prepare_cached(
            "SELECT bytes FROM crdt_updates
             WHERE org_id = ?1 AND project_id = ?2 AND doc_id = ?3 AND seq = ?4",
        )
        .and_then(|mut st| {
            st.query_row(params![scope.org, scope.project, u.doc, u.seq], |r| {
                r.get(0)
            })
            .optional()
        })
        .map_err(sql_err)?;
    let verdict = rules::doc_update(bytes.as_deref(), d.pruned_through, u);
    if verdict == rules::Verdict::Create {
        conn.prepare_cached(
            "INSERT INTO crdt_updates (org_id, project_id, doc_id, seq, bytes, origin, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .and_then(|mut st| {
            st.execute(params![
                scope.org,
                scope.project,
                u.doc,
                u.seq,
                u.update,
                u.origin,
                u.at
            ])
        })
        .map_err(sql_err)?;
    }
    Ok(stored(verdict))
}
