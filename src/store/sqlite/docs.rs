//! Yjs document logs on SQLite: the append-only update log, snapshots and
//! their pruning. Bytes are opaque here; `crate::crdt` knows Yjs.

use super::audit::{self, AuditPlace};
use super::sql_err;
use crate::clock;
use crate::domain::*;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::json;

fn info(r: &Row) -> rusqlite::Result<DocInfo> {
    Ok(DocInfo {
        id: r.get(0)?,
        entity_id: r.get(1)?,
        created_at: r.get(2)?,
        last_seq: r.get(3)?,
        pruned_through: r.get(4)?,
    })
}

fn load(conn: &Connection, scope: &Scope, doc: &str) -> DomainResult<Option<DocInfo>> {
    conn.prepare_cached(
        "SELECT id, entity_id, created_at, last_seq, pruned_through FROM crdt_docs
         WHERE org_id = ?1 AND project_id = ?2 AND id = ?3",
    )
    .and_then(|mut st| {
        st.query_row(params![scope.org, scope.project, doc], info)
            .optional()
    })
    .map_err(sql_err)
}

/// A visible document: it exists and its owning entity (if any) is live.
pub fn get(conn: &Connection, scope: &Scope, doc: &str) -> DomainResult<DocInfo> {
    let missing = || DomainError::not_found(format!("document {doc}"));
    let d = load(conn, scope, doc)?.ok_or_else(missing)?;
    if let Some(entity) = &d.entity_id {
        let live = conn
            .prepare_cached(
                "SELECT 1 FROM entities WHERE org_id = ?1 AND project_id = ?2 AND id = ?3
                 AND deleted_at IS NULL",
            )
            .and_then(|mut st| st.exists(params![scope.org, scope.project, entity]))
            .map_err(sql_err)?;
        if !live {
            return Err(missing());
        }
    }
    Ok(d)
}

fn create_if_absent(conn: &Connection, scope: &Scope, doc: &str) -> DomainResult<()> {
    conn.prepare_cached(
        "INSERT INTO crdt_docs (org_id, project_id, id, created_at, last_seq) VALUES (?1, ?2, ?3, ?4, 0)
         ON CONFLICT DO NOTHING",
    )
    .and_then(|mut st| st.execute(params![scope.org, scope.project, doc, clock::now()]))
    .map_err(sql_err)?;
    Ok(())
}

pub fn append(
    conn: &Connection,
    scope: &Scope,
    doc: &str,
    updates: &[Vec<u8>],
    origin: Option<&str>,
) -> DomainResult<(i64, i64)> {
    super::tenancy::get_project(conn, &scope.org, &scope.project)?;
    create_if_absent(conn, scope, doc)?;
    let d = get(conn, scope, doc)?;
    let at = clock::now();
    let mut st = conn
        .prepare_cached(
            "INSERT INTO crdt_updates (org_id, project_id, doc_id, seq, bytes, origin, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .map_err(sql_err)?;
    let first = d.last_seq + 1;
    for (i, bytes) in updates.iter().enumerate() {
        st.execute(params![
            scope.org,
            scope.project,
            doc,
            first + i as i64,
            bytes,
            origin,
            at
        ])
        .map_err(sql_err)?;
    }
    let last = d.last_seq + updates.len() as i64;
    conn.prepare_cached(
        "UPDATE crdt_docs SET last_seq = ?4 WHERE org_id = ?1 AND project_id = ?2 AND id = ?3",
    )
    .and_then(|mut st| st.execute(params![scope.org, scope.project, doc, last]))
    .map_err(sql_err)?;
    Ok((first, last))
}

pub fn put(
    conn: &Connection,
    scope: &Scope,
    caller: &Caller,
    doc: &str,
    entity_id: Option<&str>,
) -> DomainResult<DocInfo> {
    super::tenancy::get_project(conn, &scope.org, &scope.project)?;
    if let Some(entity) = entity_id {
        let live = conn
            .prepare_cached(
                "SELECT 1 FROM entities WHERE org_id = ?1 AND project_id = ?2 AND id = ?3 AND deleted_at IS NULL",
            )
            .and_then(|mut st| st.exists(params![scope.org, scope.project, entity]))
            .map_err(sql_err)?;
        if !live {
            return Err(DomainError::Unprocessable(format!(
                "entity {entity} does not exist in this project"
            )));
        }
    }
    create_if_absent(conn, scope, doc)?;
    conn.prepare_cached(
        "UPDATE crdt_docs SET entity_id = ?4 WHERE org_id = ?1 AND project_id = ?2 AND id = ?3",
    )
    .and_then(|mut st| st.execute(params![scope.org, scope.project, doc, entity_id]))
    .map_err(sql_err)?;
    let place = AuditPlace {
        org: &scope.org,
        project: Some(&scope.project),
        caller,
    };
    audit::record(
        conn,
        &place,
        "doc.link",
        doc,
        json!({ "entity_id": entity_id }),
    )?;
    get(conn, scope, doc)
}

/// Erases documents (their log and snapshot rows); returns snapshot blob keys.
fn erase(conn: &Connection, scope: &Scope, docs: &[String]) -> DomainResult<Vec<String>> {
    let mut blobs = Vec::new();
    for doc in docs {
        let keys: Vec<String> = conn
            .prepare_cached(
                "SELECT blob_key FROM crdt_snapshots
                 WHERE org_id = ?1 AND project_id = ?2 AND doc_id = ?3 AND blob_key IS NOT NULL",
            )
            .and_then(|mut st| {
                st.query_map(params![scope.org, scope.project, doc], |r| r.get(0))?
                    .collect()
            })
            .map_err(sql_err)?;
        blobs.extend(keys);
        for sql in [
            "DELETE FROM crdt_updates WHERE org_id = ?1 AND project_id = ?2 AND doc_id = ?3",
            "DELETE FROM crdt_quarantine WHERE org_id = ?1 AND project_id = ?2 AND doc_id = ?3",
            "DELETE FROM crdt_snapshots WHERE org_id = ?1 AND project_id = ?2 AND doc_id = ?3",
            "DELETE FROM crdt_docs WHERE org_id = ?1 AND project_id = ?2 AND id = ?3",
        ] {
            conn.prepare_cached(sql)
                .and_then(|mut st| st.execute(params![scope.org, scope.project, doc]))
                .map_err(sql_err)?;
        }
    }
    Ok(blobs)
}

pub fn delete(
    conn: &Connection,
    scope: &Scope,
    caller: &Caller,
    doc: &str,
) -> DomainResult<Vec<String>> {
    get(conn, scope, doc)?;
    let blobs = erase(conn, scope, &[doc.to_owned()])?;
    let place = AuditPlace {
        org: &scope.org,
        project: Some(&scope.project),
        caller,
    };
    audit::record(conn, &place, "doc.delete", doc, json!({}))?;
    Ok(blobs)
}

/// The documents an entity owns are erased with it.
pub fn purge_owned_by(conn: &Connection, scope: &Scope, entity: &str) -> DomainResult<Vec<String>> {
    let docs: Vec<String> = conn
        .prepare_cached(
            "SELECT id FROM crdt_docs WHERE org_id = ?1 AND project_id = ?2 AND entity_id = ?3",
        )
        .and_then(|mut st| {
            st.query_map(params![scope.org, scope.project, entity], |r| r.get(0))?
                .collect()
        })
        .map_err(sql_err)?;
    erase(conn, scope, &docs)
}

const SNAPSHOT_COLS: &str = "covers_seq, covers_at, created_at, size, sha256, inline, blob_key";

fn snapshot(r: &Row) -> rusqlite::Result<DocSnapshot> {
    let inline: Option<Vec<u8>> = r.get(5)?;
    let key: Option<String> = r.get(6)?;
    Ok(DocSnapshot {
        covers_seq: r.get(0)?,
        covers_at: r.get(1)?,
        created_at: r.get(2)?,
        size: r.get(3)?,
        sha256: r.get(4)?,
        data: match inline {
            Some(bytes) => SnapshotData::Inline(bytes),
            None => SnapshotData::Blob(key.unwrap_or_default()),
        },
    })
}

fn updates_between(
    conn: &Connection,
    scope: &Scope,
    doc: &str,
    after: i64,
    until_at: Option<&str>,
    limit: i64,
) -> DomainResult<Vec<DocUpdate>> {
    conn.prepare_cached(
        "SELECT seq, bytes, origin, at FROM crdt_updates
         WHERE org_id = ?1 AND project_id = ?2 AND doc_id = ?3 AND seq > ?4 AND (?5 IS NULL OR at <= ?5)
         ORDER BY seq LIMIT ?6",
    )
    .and_then(|mut st| {
        st.query_map(params![scope.org, scope.project, doc, after, until_at, limit], |r| {
            Ok(DocUpdate {
                seq: r.get(0)?,
                bytes: r.get(1)?,
                origin: r.get(2)?,
                at: r.get(3)?,
            })
        })?
        .collect()
    })
    .map_err(sql_err)
}

pub fn list_updates(
    conn: &Connection,
    scope: &Scope,
    doc: &str,
    after: i64,
    limit: usize,
) -> DomainResult<Vec<DocUpdate>> {
    get(conn, scope, doc)?;
    updates_between(conn, scope, doc, after, None, limit as i64)
}

pub fn log(
    conn: &Connection,
    scope: &Scope,
    doc: &str,
    as_of: Option<&str>,
) -> DomainResult<DocLog> {
    let d = get(conn, scope, doc)?;
    // The newest snapshot whose state is entirely at or before `as_of`.
    let snap = conn
        .prepare_cached(&format!(
            "SELECT {SNAPSHOT_COLS} FROM crdt_snapshots
             WHERE org_id = ?1 AND project_id = ?2 AND doc_id = ?3 AND (?4 IS NULL OR covers_at <= ?4)
             ORDER BY covers_seq DESC LIMIT 1"
        ))
        .and_then(|mut st| st.query_row(params![scope.org, scope.project, doc, as_of], snapshot).optional())
        .map_err(sql_err)?;
    let base = snap.as_ref().map_or(0, |s| s.covers_seq);
    if d.pruned_through > base {
        // Updates after the snapshot were pruned: only the present is whole.
        if as_of.is_some() {
            return Err(DomainError::Gone(format!(
                "the retained history of document {doc} no longer reaches that time"
            )));
        }
        return Err(DomainError::internal(format!(
            "document {doc} lost updates after its snapshot"
        )));
    }
    let updates = updates_between(conn, scope, doc, base, as_of, i64::MAX)?;
    if as_of.is_some() && snap.is_none() && updates.is_empty() {
        return Err(DomainError::not_found(format!(
            "document {doc} at that time"
        )));
    }
    let last_seq = updates.last().map_or(base, |u| u.seq);
    Ok(DocLog {
        snapshot: snap,
        updates,
        last_seq,
    })
}

pub fn list_snapshots(
    conn: &Connection,
    scope: &Scope,
    doc: &str,
) -> DomainResult<Vec<DocSnapshot>> {
    get(conn, scope, doc)?;
    conn.prepare_cached(&format!(
        "SELECT {SNAPSHOT_COLS} FROM crdt_snapshots WHERE org_id = ?1 AND project_id = ?2 AND doc_id = ?3
         ORDER BY covers_seq DESC"
    ))
    .and_then(|mut st| st.query_map(params![scope.org, scope.project, doc], snapshot)?.collect())
    .map_err(sql_err)
}

pub fn record_snapshot(
    conn: &Connection,
    scope: &Scope,
    caller: &Caller,
    doc: &str,
    s: &DocSnapshot,
) -> DomainResult<()> {
    load(conn, scope, doc)?.ok_or_else(|| DomainError::not_found(format!("document {doc}")))?;
    let (inline, key) = match &s.data {
        SnapshotData::Inline(bytes) => (Some(bytes.as_slice()), None),
        SnapshotData::Blob(key) => (None, Some(key.as_str())),
    };
    let inserted = conn
        .prepare_cached(
            "INSERT INTO crdt_snapshots (org_id, project_id, doc_id, covers_seq, covers_at, created_at,
                 size, sha256, inline, blob_key)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT DO NOTHING",
        )
        .and_then(|mut st| {
            st.execute(params![
                scope.org, scope.project, doc, s.covers_seq, s.covers_at, s.created_at, s.size, s.sha256, inline, key
            ])
        })
        .map_err(sql_err)?;
    if inserted > 0 {
        let place = AuditPlace {
            org: &scope.org,
            project: Some(&scope.project),
            caller,
        };
        let details = json!({ "covers_seq": s.covers_seq, "bytes": s.size, "blob": key });
        audit::record(conn, &place, "doc.compact", doc, details)?;
    }
    Ok(())
}

pub fn prune(
    conn: &Connection,
    scope: &Scope,
    doc: &str,
    updates_before: &str,
    snapshots_before: &str,
) -> DomainResult<Vec<String>> {
    let Some(newest) = conn
        .prepare_cached(
            "SELECT MAX(covers_seq) FROM crdt_snapshots WHERE org_id = ?1 AND project_id = ?2 AND doc_id = ?3",
        )
        .and_then(|mut st| st.query_row(params![scope.org, scope.project, doc], |r| r.get::<_, Option<i64>>(0)))
        .map_err(sql_err)?
    else {
        return Ok(Vec::new());
    };
    // Only a prefix of the log goes: the newest pruned seq bounds it.
    let through: Option<i64> = conn
        .prepare_cached(
            "SELECT MAX(seq) FROM crdt_updates
             WHERE org_id = ?1 AND project_id = ?2 AND doc_id = ?3 AND seq <= ?4 AND at < ?5",
        )
        .and_then(|mut st| {
            st.query_row(
                params![scope.org, scope.project, doc, newest, updates_before],
                |r| r.get(0),
            )
        })
        .map_err(sql_err)?;
    if let Some(through) = through {
        conn.prepare_cached("DELETE FROM crdt_updates WHERE org_id = ?1 AND project_id = ?2 AND doc_id = ?3 AND seq <= ?4")
            .and_then(|mut st| st.execute(params![scope.org, scope.project, doc, through]))
            .map_err(sql_err)?;
        conn.prepare_cached(
            "UPDATE crdt_docs SET pruned_through = MAX(pruned_through, ?4)
             WHERE org_id = ?1 AND project_id = ?2 AND id = ?3",
        )
        .and_then(|mut st| st.execute(params![scope.org, scope.project, doc, through]))
        .map_err(sql_err)?;
    }
    let old: Vec<(i64, Option<String>)> = conn
        .prepare_cached(
            "SELECT covers_seq, blob_key FROM crdt_snapshots
             WHERE org_id = ?1 AND project_id = ?2 AND doc_id = ?3 AND created_at < ?4 AND covers_seq < ?5",
        )
        .and_then(|mut st| {
            st.query_map(params![scope.org, scope.project, doc, snapshots_before, newest], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
        .map_err(sql_err)?;
    for (covers, _) in &old {
        conn.prepare_cached(
            "DELETE FROM crdt_snapshots WHERE org_id = ?1 AND project_id = ?2 AND doc_id = ?3 AND covers_seq = ?4",
        )
        .and_then(|mut st| st.execute(params![scope.org, scope.project, doc, covers]))
        .map_err(sql_err)?;
    }
    Ok(old.into_iter().filter_map(|(_, k)| k).collect())
}

pub fn to_compact(conn: &Connection, limit: usize) -> DomainResult<Vec<(Scope, String)>> {
    conn.prepare_cached(
        "SELECT d.org_id, d.project_id, d.id FROM crdt_docs d
         WHERE d.last_seq > COALESCE((SELECT MAX(covers_seq) FROM crdt_snapshots s
                                      WHERE s.org_id = d.org_id AND s.project_id = d.project_id
                                        AND s.doc_id = d.id), 0)
         LIMIT ?1",
    )
    .and_then(|mut st| {
        st.query_map([limit as i64], |r| {
            Ok((
                Scope::new(r.get::<_, String>(0)?, r.get::<_, String>(1)?),
                r.get(2)?,
            ))
        })?
        .collect()
    })
    .map_err(sql_err)
}

/// Moves updates out of the log into quarantine; returns how many moved.
pub fn quarantine(
    conn: &Connection,
    scope: &Scope,
    doc: &str,
    seqs: &[i64],
    reason: &str,
) -> DomainResult<usize> {
    let now = crate::clock::now();
    let mut moved = 0;
    for seq in seqs {
        conn.prepare_cached(
            "INSERT INTO crdt_quarantine
                 (org_id, project_id, doc_id, seq, bytes, origin, at, reason, quarantined_at)
             SELECT org_id, project_id, doc_id, seq, bytes, origin, at, ?5, ?6 FROM crdt_updates
             WHERE org_id = ?1 AND project_id = ?2 AND doc_id = ?3 AND seq = ?4",
        )
        .and_then(|mut st| st.execute(params![scope.org, scope.project, doc, seq, reason, now]))
        .map_err(sql_err)?;
        moved += conn
            .prepare_cached(
                "DELETE FROM crdt_updates WHERE org_id = ?1 AND project_id = ?2 AND doc_id = ?3 AND seq = ?4",
            )
            .and_then(|mut st| st.execute(params![scope.org, scope.project, doc, seq]))
            .map_err(sql_err)?;
    }
    Ok(moved)
}
