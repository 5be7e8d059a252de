//! Yjs document logs on SQLite: the append-only update log, snapshots and
//! their pruning. Bytes are opaque here; `crate::crdt` knows Yjs.

use super::audit;
use super::sql_err;
use super::SqliteStore;
use crate::clock;
use crate::domain::rules::audit::AuditFact;
use crate::domain::rules::docs as rules;
use crate::domain::*;
use crate::store::prelude::*;
use crate::store::AuditPlace;
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::ops::RangeInclusive;

pub(super) fn info(r: &Row) -> rusqlite::Result<DocInfo> {
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

fn entity_live(conn: &Connection, scope: &Scope, entity: &str) -> DomainResult<bool> {
    conn.prepare_cached(
        "SELECT 1 FROM entities WHERE org_id = ?1 AND project_id = ?2 AND id = ?3 AND deleted_at IS NULL",
    )
    .and_then(|mut st| st.exists(params![scope.org, scope.project, entity]))
    .map_err(sql_err)
}

/// Marks a document changed now (incremental backups ship it again).
fn touch(conn: &Connection, scope: &Scope, doc: &str) -> DomainResult<()> {
    conn.prepare_cached(
        "UPDATE crdt_docs SET changed_at = ?4 WHERE org_id = ?1 AND project_id = ?2 AND id = ?3",
    )
    .and_then(|mut st| st.execute(params![scope.org, scope.project, doc, clock::now()]))
    .map_err(sql_err)?;
    Ok(())
}

/// A visible document (`rules::visible`).
pub fn get(conn: &Connection, scope: &Scope, doc: &str) -> DomainResult<DocInfo> {
    let d = load(conn, scope, doc)?;
    let owner_live = match rules::owner(d.as_ref()) {
        Some(entity) => Some(entity_live(conn, scope, entity)?),
        None => None,
    };
    rules::visible(doc, d, owner_live)
}

fn audit(conn: &Connection, scope: &Scope, caller: &Caller, fact: AuditFact) -> DomainResult<()> {
    let place = AuditPlace::scope(scope, caller);
    audit::record(conn, &place, fact.action, &fact.target, fact.details)
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

/// Appends rows (bytes, origin) to a document's log, creating the
/// document; answers the sequence numbers they took.
pub fn append(
    conn: &Connection,
    scope: &Scope,
    doc: &str,
    rows: &[(&[u8], Option<&str>)],
) -> DomainResult<RangeInclusive<i64>> {
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
    let seqs = rules::append_seqs(d.last_seq, rows.len());
    for (seq, (bytes, origin)) in seqs.clone().zip(rows) {
        st.execute(params![
            scope.org,
            scope.project,
            doc,
            seq,
            bytes,
            origin,
            at
        ])
        .map_err(sql_err)?;
    }
    conn.prepare_cached(
        "UPDATE crdt_docs SET last_seq = ?4, changed_at = ?5
         WHERE org_id = ?1 AND project_id = ?2 AND id = ?3",
    )
    .and_then(|mut st| st.execute(params![scope.org, scope.project, doc, seqs.end(), at]))
    .map_err(sql_err)?;
    Ok(seqs)
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
        rules::linkable(entity, entity_live(conn, scope, entity)?)?;
    }
    create_if_absent(conn, scope, doc)?;
    conn.prepare_cached(
        "UPDATE crdt_docs SET entity_id = ?4, changed_at = ?5
         WHERE org_id = ?1 AND project_id = ?2 AND id = ?3",
    )
    .and_then(|mut st| {
        st.execute(params![
            scope.org,
            scope.project,
            doc,
            entity_id,
            clock::now()
        ])
    })
    .map_err(sql_err)?;
    audit(conn, scope, caller, rules::linked(doc, entity_id))?;
    get(conn, scope, doc)
}

/// Erases documents (their log and snapshot rows); returns snapshot blob keys.
fn erase(conn: &Connection, scope: &Scope, docs: &[String]) -> DomainResult<Vec<String>> {
    let mut removed = Vec::new();
    for doc in docs {
        let run = |sql: &str| {
            conn.prepare_cached(sql)
                .and_then(|mut st| st.execute(params![scope.org, scope.project, doc]))
                .map_err(sql_err)
        };
        run("DELETE FROM crdt_updates WHERE org_id = ?1 AND project_id = ?2 AND doc_id = ?3")?;
        run("DELETE FROM crdt_quarantine WHERE org_id = ?1 AND project_id = ?2 AND doc_id = ?3")?;
        let keys: Vec<Option<String>> = conn
            .prepare_cached(
                "DELETE FROM crdt_snapshots WHERE org_id = ?1 AND project_id = ?2 AND doc_id = ?3
                 RETURNING blob_key",
            )
            .and_then(|mut st| {
                st.query_map(params![scope.org, scope.project, doc], |r| r.get(0))?
                    .collect()
            })
            .map_err(sql_err)?;
        removed.extend(keys);
        run("DELETE FROM crdt_docs WHERE org_id = ?1 AND project_id = ?2 AND id = ?3")?;
    }
    Ok(rules::unreferenced_blobs(removed))
}

pub fn delete(
    conn: &Connection,
    scope: &Scope,
    caller: &Caller,
    doc: &str,
) -> DomainResult<Vec<String>> {
    get(conn, scope, doc)?;
    let blobs = erase(conn, scope, &[doc.to_owned()])?;
    audit(conn, scope, caller, rules::deleted(doc))?;
    Ok(blobs)
}

/// The documents an entity owns are erased with it: their ids, and the
/// blob keys left unreferenced.
pub fn purge_owned_by(
    conn: &Connection,
    scope: &Scope,
    entity: &str,
) -> DomainResult<(Vec<String>, Vec<String>)> {
    let docs: Vec<String> = conn
        .prepare_cached(
            "SELECT id FROM crdt_docs WHERE org_id = ?1 AND project_id = ?2 AND entity_id = ?3",
        )
        .and_then(|mut st| {
            st.query_map(params![scope.org, scope.project, entity], |r| r.get(0))?
                .collect()
        })
        .map_err(sql_err)?;
    let blobs = erase(conn, scope, &docs)?;
    Ok((docs, blobs))
}

pub(super) const SNAPSHOT_COLS: &str =
    "covers_seq, covers_at, created_at, size, sha256, inline, blob_key";

pub(super) fn snapshot(r: &Row) -> rusqlite::Result<DocSnapshot> {
    Ok(DocSnapshot {
        covers_seq: r.get(0)?,
        covers_at: r.get(1)?,
        created_at: r.get(2)?,
        size: r.get(3)?,
        sha256: r.get(4)?,
        data: rules::snapshot_data(r.get(5)?, r.get(6)?),
    })
}

pub(super) fn updates_between(
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
    let snap = conn
        .prepare_cached(&format!(
            "SELECT {SNAPSHOT_COLS} FROM crdt_snapshots
             WHERE org_id = ?1 AND project_id = ?2 AND doc_id = ?3 AND (?4 IS NULL OR covers_at <= ?4)
             ORDER BY covers_seq DESC LIMIT 1"
        ))
        .and_then(|mut st| st.query_row(params![scope.org, scope.project, doc, as_of], snapshot).optional())
        .map_err(sql_err)?;
    let base = rules::log_start(doc, &d, snap.as_ref(), as_of)?;
    let updates = updates_between(conn, scope, doc, base, as_of, i64::MAX)?;
    rules::log(doc, snap, updates, as_of)
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
    rules::existing(doc, load(conn, scope, doc)?)?;
    let (inline, key) = rules::snapshot_columns(&s.data);
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
        touch(conn, scope, doc)?;
    }
    match rules::recorded(doc, s, inserted as u64) {
        Some(fact) => audit(conn, scope, caller, fact),
        None => Ok(()),
    }
}

pub fn prune(
    conn: &Connection,
    scope: &Scope,
    doc: &str,
    updates_before: &str,
    snapshots_before: &str,
) -> DomainResult<Vec<String>> {
    let snapshots: Vec<rules::SnapshotAge<String>> = conn
        .prepare_cached(
            "SELECT covers_seq, created_at FROM crdt_snapshots
             WHERE org_id = ?1 AND project_id = ?2 AND doc_id = ?3",
        )
        .and_then(|mut st| {
            st.query_map(params![scope.org, scope.project, doc], |r| {
                Ok(rules::SnapshotAge {
                    covers_seq: r.get(0)?,
                    created_at: r.get(1)?,
                })
            })?
            .collect()
        })
        .map_err(sql_err)?;
    let Some(cut) = rules::prune(
        &snapshots,
        updates_before.to_owned(),
        &snapshots_before.to_owned(),
    ) else {
        return Ok(Vec::new());
    };
    let through: Option<i64> = conn
        .prepare_cached(
            "SELECT MAX(seq) FROM crdt_updates
             WHERE org_id = ?1 AND project_id = ?2 AND doc_id = ?3 AND seq <= ?4 AND at < ?5",
        )
        .and_then(|mut st| {
            st.query_row(
                params![
                    scope.org,
                    scope.project,
                    doc,
                    cut.updates_through,
                    cut.updates_before
                ],
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
    let mut removed = Vec::new();
    for covers in &cut.snapshots {
        let key: Option<Option<String>> = conn
            .prepare_cached(
                "DELETE FROM crdt_snapshots
                 WHERE org_id = ?1 AND project_id = ?2 AND doc_id = ?3 AND covers_seq = ?4
                 RETURNING blob_key",
            )
            .and_then(|mut st| {
                st.query_row(params![scope.org, scope.project, doc, covers], |r| r.get(0))
                    .optional()
            })
            .map_err(sql_err)?;
        removed.extend(key);
    }
    if through.is_some() || !cut.snapshots.is_empty() {
        touch(conn, scope, doc)?;
    }
    Ok(rules::unreferenced_blobs(removed))
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
    if moved > 0 {
        touch(conn, scope, doc)?;
    }
    Ok(moved)
}

#[async_trait]
impl DocStore for SqliteStore {
    async fn append_batch(&self, appends: Vec<DocAppend>) -> DomainResult<Vec<(i64, i64)>> {
        self.writer
            .write(move |conn, _| {
                let mut answers = vec![(0, 0); appends.len()];
                for run in rules::append_runs(&appends) {
                    run.answer(append(conn, run.scope, run.doc, &run.rows)?, &mut answers);
                }
                Ok(answers)
            })
            .await
    }

    async fn get_doc(&self, scope: &Scope, doc: &str) -> DomainResult<DocInfo> {
        let (s, doc) = (scope.clone(), doc.to_owned());
        self.read(move |conn| get(conn, &s, &doc)).await
    }

    async fn put_doc(
        &self,
        scope: &Scope,
        caller: &Caller,
        doc: &str,
        entity_id: Option<String>,
    ) -> DomainResult<DocInfo> {
        let (s, caller, doc) = (scope.clone(), caller.clone(), doc.to_owned());
        self.writer
            .write(move |conn, _| put(conn, &s, &caller, &doc, entity_id.as_deref()))
            .await
    }

    async fn delete_doc(
        &self,
        scope: &Scope,
        caller: &Caller,
        doc: &str,
    ) -> DomainResult<Vec<String>> {
        let (s, caller, doc) = (scope.clone(), caller.clone(), doc.to_owned());
        self.writer
            .write(move |conn, _| delete(conn, &s, &caller, &doc))
            .await
    }

    async fn doc_log(&self, scope: &Scope, doc: &str, as_of: Option<&str>) -> DomainResult<DocLog> {
        let (s, doc, as_of) = (scope.clone(), doc.to_owned(), as_of.map(str::to_owned));
        self.read(move |conn| log(conn, &s, &doc, as_of.as_deref()))
            .await
    }

    async fn list_doc_updates(
        &self,
        scope: &Scope,
        doc: &str,
        after: i64,
        limit: usize,
    ) -> DomainResult<Vec<DocUpdate>> {
        let (s, doc) = (scope.clone(), doc.to_owned());
        self.read(move |conn| list_updates(conn, &s, &doc, after, limit))
            .await
    }

    async fn list_snapshots(&self, scope: &Scope, doc: &str) -> DomainResult<Vec<DocSnapshot>> {
        let (s, doc) = (scope.clone(), doc.to_owned());
        self.read(move |conn| list_snapshots(conn, &s, &doc)).await
    }

    async fn record_snapshot(
        &self,
        scope: &Scope,
        caller: &Caller,
        doc: &str,
        snapshot: DocSnapshot,
    ) -> DomainResult<()> {
        let (s, caller, doc) = (scope.clone(), caller.clone(), doc.to_owned());
        self.writer
            .write(move |conn, _| record_snapshot(conn, &s, &caller, &doc, &snapshot))
            .await
    }

    async fn prune_doc(
        &self,
        scope: &Scope,
        doc: &str,
        updates_before: &str,
        snapshots_before: &str,
    ) -> DomainResult<Vec<String>> {
        let (s, doc) = (scope.clone(), doc.to_owned());
        let (u, sn) = (updates_before.to_owned(), snapshots_before.to_owned());
        self.writer
            .write(move |conn, _| prune(conn, &s, &doc, &u, &sn))
            .await
    }

    async fn quarantine_updates(
        &self,
        scope: &Scope,
        doc: &str,
        seqs: &[i64],
        reason: &str,
    ) -> DomainResult<usize> {
        let (s, doc, seqs, reason) = (
            scope.clone(),
            doc.to_owned(),
            seqs.to_vec(),
            reason.to_owned(),
        );
        self.writer
            .write(move |conn, _| quarantine(conn, &s, &doc, &seqs, &reason))
            .await
    }

    async fn docs_to_compact(&self, limit: usize) -> DomainResult<Vec<(Scope, String)>> {
        self.read(move |conn| to_compact(conn, limit)).await
    }

    async fn lease_doc(
        &self,
        scope: &Scope,
        doc: &str,
    ) -> DomainResult<Option<crate::store::Lease>> {
        let key = crate::store::lease_key::doc(scope, doc);
        Ok(super::lease::LocalLease::take(&self.leases, key).map(crate::store::Lease::new))
    }
}
