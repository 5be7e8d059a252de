//! Yjs document logs on PostgreSQL (see the SQLite twin). Appends lock the
//! document row, so sequence numbers stay dense and ordered across daemons.

use super::rows::{self, execute, query, query_opt};
use super::PgStore;
use crate::domain::rules::audit::AuditFact;
use crate::domain::rules::docs as rules;
use crate::domain::*;
use crate::store::prelude::*;
use crate::store::AuditPlace;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use std::collections::{HashMap, HashSet};
use std::ops::RangeInclusive;
use tokio_postgres::Row;

pub(super) fn info(r: &Row) -> DocInfo {
    DocInfo {
        id: r.get(0),
        entity_id: r.get(1),
        created_at: rows::time(r.get(2)),
        last_seq: r.get(3),
        pruned_through: r.get(4),
    }
}

async fn load<C: GenericClient>(
    c: &C,
    scope: &Scope,
    doc: &str,
    lock: bool,
) -> DomainResult<Option<DocInfo>> {
    let sql = format!(
        "SELECT id, entity_id, created_at, last_seq, pruned_through FROM crdt_docs
         WHERE org_id = $1 AND project_id = $2 AND id = $3{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    Ok(query_opt(c, &sql, &[&scope.org, &scope.project, &doc])
        .await?
        .map(|r| info(&r)))
}

async fn entity_live<C: GenericClient>(c: &C, scope: &Scope, entity: &str) -> DomainResult<bool> {
    let live = query_opt(
        c,
        "SELECT 1 FROM entities WHERE org_id = $1 AND project_id = $2 AND id = $3 AND deleted_at IS NULL",
        &[&scope.org, &scope.project, &entity],
    )
    .await?;
    Ok(live.is_some())
}

/// `rules::visible`, for a document row loaded (and maybe locked) first.
async fn visible<C: GenericClient>(
    c: &C,
    scope: &Scope,
    d: Option<DocInfo>,
    doc: &str,
) -> DomainResult<DocInfo> {
    let owner_live = match rules::owner(d.as_ref()) {
        Some(entity) => Some(entity_live(c, scope, entity).await?),
        None => None,
    };
    rules::visible(doc, d, owner_live)
}

async fn audit<C: GenericClient>(
    c: &C,
    scope: &Scope,
    caller: &Caller,
    fact: AuditFact,
) -> DomainResult<()> {
    let place = AuditPlace::scope(scope, caller);
    super::audit::record(c, &place, fact.action, &fact.target, fact.details).await
}

pub async fn get<C: GenericClient>(c: &C, scope: &Scope, doc: &str) -> DomainResult<DocInfo> {
    let d = load(c, scope, doc, false).await?;
    visible(c, scope, d, doc).await
}

/// Marks a document changed now (incremental backups ship it again).
async fn touch<C: GenericClient>(c: &C, scope: &Scope, doc: &str) -> DomainResult<()> {
    execute(
        c,
        "UPDATE crdt_docs SET changed_at = now() WHERE org_id = $1 AND project_id = $2 AND id = $3",
        &[&scope.org, &scope.project, &doc],
    )
    .await?;
    Ok(())
}

async fn create_if_absent<C: GenericClient>(c: &C, scope: &Scope, doc: &str) -> DomainResult<()> {
    execute(
        c,
        "INSERT INTO crdt_docs (org_id, project_id, id, created_at, last_seq) VALUES ($1, $2, $3, now(), 0)
         ON CONFLICT DO NOTHING",
        &[&scope.org, &scope.project, &doc],
    )
    .await?;
    Ok(())
}

/// Appends one project's runs (in `rules::append_runs` order), creating
/// their documents, with a statement per step for all of them: the group
/// commit's round trips do not grow with its documents. Answers each run's
/// sequence numbers.
async fn append_in_project<C: GenericClient>(
    c: &C,
    scope: &Scope,
    runs: &[rules::AppendRun<'_>],
) -> DomainResult<Vec<RangeInclusive<i64>>> {
    super::tenancy::lock_project(c, scope).await?;
    let ids: Vec<&str> = runs.iter().map(|r| r.doc).collect();
    let (org, project) = (&scope.org, &scope.project);
    // In id order (as the runs are), like the row locks below, so two
    // groups wait for each other instead of deadlocking.
    execute(
        c,
        "INSERT INTO crdt_docs (org_id, project_id, id, created_at, last_seq)
         SELECT $1, $2, u.id, now(), 0 FROM unnest($3::text[]) WITH ORDINALITY AS u(id, n)
         ORDER BY u.n
         ON CONFLICT DO NOTHING",
        &[org, project, &ids],
    )
    .await?;
    let rows = query(
        c,
        "SELECT id, entity_id, created_at, last_seq, pruned_through FROM crdt_docs
         WHERE org_id = $1 AND project_id = $2 AND id = ANY($3) ORDER BY id FOR UPDATE",
        &[org, project, &ids],
    )
    .await?;
    let mut docs: HashMap<String, DocInfo> =
        rows.iter().map(info).map(|d| (d.id.clone(), d)).collect();
    let owners: Vec<&str> = docs
        .values()
        .filter_map(|d| rules::owner(Some(d)))
        .collect();
    let live: HashSet<String> = match owners.is_empty() {
        true => HashSet::new(),
        false => query(
            c,
            "SELECT id FROM entities
             WHERE org_id = $1 AND project_id = $2 AND id = ANY($3) AND deleted_at IS NULL",
            &[org, project, &owners],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect(),
    };
    let mut answers = Vec::with_capacity(runs.len());
    let (mut doc_ids, mut seqs, mut bytes, mut origins) = (vec![], vec![], vec![], vec![]);
    let mut lasts = Vec::with_capacity(runs.len());
    for run in runs {
        let d = docs.remove(run.doc);
        let owner_live = rules::owner(d.as_ref()).map(|entity| live.contains(entity));
        let d = rules::visible(run.doc, d, owner_live)?;
        let taken = rules::append_seqs(d.last_seq, run.rows.len());
        for (seq, (update, origin)) in taken.clone().zip(&run.rows) {
            doc_ids.push(run.doc);
            seqs.push(seq);
            bytes.push(*update);
            origins.push(*origin);
        }
        lasts.push(*taken.end());
        answers.push(taken);
    }
    execute(
        c,
        "INSERT INTO crdt_updates (org_id, project_id, doc_id, seq, bytes, origin, at)
         SELECT $1, $2, u.doc, u.seq, u.bytes, u.origin, $7
         FROM unnest($3::text[], $4::bigint[], $5::bytea[], $6::text[]) AS u(doc, seq, bytes, origin)",
        &[org, project, &doc_ids, &seqs, &bytes, &origins, &Utc::now()],
    )
    .await?;
    execute(
        c,
        "UPDATE crdt_docs d SET last_seq = v.last, changed_at = now()
         FROM unnest($3::text[], $4::bigint[]) AS v(id, last)
         WHERE d.org_id = $1 AND d.project_id = $2 AND d.id = v.id",
        &[org, project, &ids, &lasts],
    )
    .await?;
    Ok(answers)
}

pub async fn put<C: GenericClient>(
    c: &C,
    scope: &Scope,
    caller: &Caller,
    doc: &str,
    entity_id: Option<&str>,
) -> DomainResult<DocInfo> {
    super::tenancy::lock_project(c, scope).await?;
    if let Some(entity) = entity_id {
        rules::linkable(entity, entity_live(c, scope, entity).await?)?;
    }
    create_if_absent(c, scope, doc).await?;
    execute(
        c,
        "UPDATE crdt_docs SET entity_id = $4, changed_at = now()
         WHERE org_id = $1 AND project_id = $2 AND id = $3",
        &[&scope.org, &scope.project, &doc, &entity_id],
    )
    .await?;
    audit(c, scope, caller, rules::linked(doc, entity_id)).await?;
    get(c, scope, doc).await
}

async fn erase<C: GenericClient>(
    c: &C,
    scope: &Scope,
    docs: &[String],
) -> DomainResult<Vec<String>> {
    let mut removed = Vec::new();
    for doc in docs {
        let args: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
            [&scope.org, &scope.project, doc];
        execute(
            c,
            "DELETE FROM crdt_updates WHERE org_id = $1 AND project_id = $2 AND doc_id = $3",
            &args,
        )
        .await?;
        execute(
            c,
            "DELETE FROM crdt_quarantine WHERE org_id = $1 AND project_id = $2 AND doc_id = $3",
            &args,
        )
        .await?;
        let keys = query(
            c,
            "DELETE FROM crdt_snapshots WHERE org_id = $1 AND project_id = $2 AND doc_id = $3
             RETURNING blob_key",
            &args,
        )
        .await?;
        removed.extend(keys.iter().map(|r| r.get::<_, Option<String>>(0)));
        execute(
            c,
            "DELETE FROM crdt_docs WHERE org_id = $1 AND project_id = $2 AND id = $3",
            &args,
        )
        .await?;
    }
    Ok(rules::unreferenced_blobs(removed))
}

pub async fn delete<C: GenericClient>(
    c: &C,
    scope: &Scope,
    caller: &Caller,
    doc: &str,
) -> DomainResult<Vec<String>> {
    let d = load(c, scope, doc, true).await?;
    visible(c, scope, d, doc).await?;
    let blobs = erase(c, scope, &[doc.to_owned()]).await?;
    audit(c, scope, caller, rules::deleted(doc)).await?;
    Ok(blobs)
}

pub async fn purge_owned_by<C: GenericClient>(
    c: &C,
    scope: &Scope,
    entity: &str,
) -> DomainResult<(Vec<String>, Vec<String>)> {
    let docs: Vec<String> = query(
        c,
        "SELECT id FROM crdt_docs WHERE org_id = $1 AND project_id = $2 AND entity_id = $3",
        &[&scope.org, &scope.project, &entity],
    )
    .await?
    .iter()
    .map(|r| r.get(0))
    .collect();
    let blobs = erase(c, scope, &docs).await?;
    Ok((docs, blobs))
}

pub(super) const SNAPSHOT_COLS: &str =
    "covers_seq, covers_at, created_at, size, sha256, inline, blob_key";

pub(super) fn snapshot(r: &Row) -> DocSnapshot {
    DocSnapshot {
        covers_seq: r.get(0),
        covers_at: rows::time(r.get(1)),
        created_at: rows::time(r.get(2)),
        size: r.get(3),
        sha256: r.get(4),
        data: rules::snapshot_data(r.get(5), r.get(6)),
    }
}

pub(super) async fn updates_between<C: GenericClient>(
    c: &C,
    scope: &Scope,
    doc: &str,
    after: i64,
    until: Option<DateTime<Utc>>,
    limit: i64,
) -> DomainResult<Vec<DocUpdate>> {
    Ok(query(
        c,
        "SELECT seq, bytes, origin, at FROM crdt_updates
         WHERE org_id = $1 AND project_id = $2 AND doc_id = $3 AND seq > $4
           AND ($5::timestamptz IS NULL OR at <= $5)
         ORDER BY seq LIMIT $6",
        &[&scope.org, &scope.project, &doc, &after, &until, &limit],
    )
    .await?
    .iter()
    .map(|r| DocUpdate {
        seq: r.get(0),
        bytes: r.get(1),
        origin: r.get(2),
        at: rows::time(r.get(3)),
    })
    .collect())
}

pub async fn list_updates<C: GenericClient>(
    c: &C,
    scope: &Scope,
    doc: &str,
    after: i64,
    limit: usize,
) -> DomainResult<Vec<DocUpdate>> {
    get(c, scope, doc).await?;
    updates_between(c, scope, doc, after, None, limit as i64).await
}

pub async fn log<C: GenericClient>(
    c: &C,
    scope: &Scope,
    doc: &str,
    as_of: Option<&str>,
) -> DomainResult<DocLog> {
    let d = get(c, scope, doc).await?;
    let until = as_of.map(rows::parse_time).transpose()?;
    let sql = format!(
        "SELECT {SNAPSHOT_COLS} FROM crdt_snapshots
         WHERE org_id = $1 AND project_id = $2 AND doc_id = $3 AND ($4::timestamptz IS NULL OR covers_at <= $4)
         ORDER BY covers_seq DESC LIMIT 1"
    );
    let snap = query_opt(c, &sql, &[&scope.org, &scope.project, &doc, &until])
        .await?
        .map(|r| snapshot(&r));
    let base = rules::log_start(doc, &d, snap.as_ref(), as_of)?;
    let updates = updates_between(c, scope, doc, base, until, i64::MAX).await?;
    rules::log(doc, snap, updates, as_of)
}

pub async fn list_snapshots<C: GenericClient>(
    c: &C,
    scope: &Scope,
    doc: &str,
) -> DomainResult<Vec<DocSnapshot>> {
    get(c, scope, doc).await?;
    let sql = format!(
        "SELECT {SNAPSHOT_COLS} FROM crdt_snapshots WHERE org_id = $1 AND project_id = $2 AND doc_id = $3
         ORDER BY covers_seq DESC"
    );
    Ok(query(c, &sql, &[&scope.org, &scope.project, &doc])
        .await?
        .iter()
        .map(snapshot)
        .collect())
}

pub async fn record_snapshot<C: GenericClient>(
    c: &C,
    scope: &Scope,
    caller: &Caller,
    doc: &str,
    s: &DocSnapshot,
) -> DomainResult<()> {
    rules::existing(doc, load(c, scope, doc, false).await?)?;
    let (inline, key) = rules::snapshot_columns(&s.data);
    let covers_at = rows::parse_time(&s.covers_at)?;
    let created_at = rows::parse_time(&s.created_at)?;
    let inserted = execute(
        c,
        "INSERT INTO crdt_snapshots (org_id, project_id, doc_id, covers_seq, covers_at, created_at,
             size, sha256, inline, blob_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
        &[
            &scope.org,
            &scope.project,
            &doc,
            &s.covers_seq,
            &covers_at,
            &created_at,
            &s.size,
            &s.sha256,
            &inline,
            &key,
        ],
    )
    .await?;
    if inserted > 0 {
        touch(c, scope, doc).await?;
    }
    match rules::recorded(doc, s, inserted) {
        Some(fact) => audit(c, scope, caller, fact).await,
        None => Ok(()),
    }
}

pub async fn prune<C: GenericClient>(
    c: &C,
    scope: &Scope,
    doc: &str,
    updates_before: &str,
    snapshots_before: &str,
) -> DomainResult<Vec<String>> {
    let updates_before = rows::parse_time(updates_before)?;
    let snapshots_before = rows::parse_time(snapshots_before)?;
    let snapshots: Vec<rules::SnapshotAge<DateTime<Utc>>> = query(
        c,
        "SELECT covers_seq, created_at FROM crdt_snapshots
         WHERE org_id = $1 AND project_id = $2 AND doc_id = $3",
        &[&scope.org, &scope.project, &doc],
    )
    .await?
    .iter()
    .map(|r| rules::SnapshotAge {
        covers_seq: r.get(0),
        created_at: r.get(1),
    })
    .collect();
    let Some(cut) = rules::prune(&snapshots, updates_before, &snapshots_before) else {
        return Ok(Vec::new());
    };
    let through: Option<i64> = query_opt(
        c,
        "SELECT MAX(seq) FROM crdt_updates
         WHERE org_id = $1 AND project_id = $2 AND doc_id = $3 AND seq <= $4 AND at < $5",
        &[
            &scope.org,
            &scope.project,
            &doc,
            &cut.updates_through,
            &cut.updates_before,
        ],
    )
    .await?
    .and_then(|r| r.get(0));
    if let Some(through) = through {
        execute(
            c,
            "DELETE FROM crdt_updates WHERE org_id = $1 AND project_id = $2 AND doc_id = $3 AND seq <= $4",
            &[&scope.org, &scope.project, &doc, &through],
        )
        .await?;
        execute(
            c,
            "UPDATE crdt_docs SET pruned_through = GREATEST(pruned_through, $4)
             WHERE org_id = $1 AND project_id = $2 AND id = $3",
            &[&scope.org, &scope.project, &doc, &through],
        )
        .await?;
    }
    let removed = query(
        c,
        "DELETE FROM crdt_snapshots
         WHERE org_id = $1 AND project_id = $2 AND doc_id = $3 AND covers_seq = ANY($4)
         RETURNING blob_key",
        &[&scope.org, &scope.project, &doc, &cut.snapshots],
    )
    .await?;
    if through.is_some() || !cut.snapshots.is_empty() {
        touch(c, scope, doc).await?;
    }
    Ok(rules::unreferenced_blobs(
        removed.iter().map(|r| r.get::<_, Option<String>>(0)),
    ))
}

pub async fn to_compact<C: GenericClient>(
    c: &C,
    limit: usize,
) -> DomainResult<Vec<(Scope, String)>> {
    Ok(query(
        c,
        "SELECT d.org_id, d.project_id, d.id FROM crdt_docs d
         WHERE d.last_seq > COALESCE((SELECT MAX(covers_seq) FROM crdt_snapshots s
                                      WHERE s.org_id = d.org_id AND s.project_id = d.project_id
                                        AND s.doc_id = d.id), 0)
         LIMIT $1",
        &[&(limit as i64)],
    )
    .await?
    .iter()
    .map(|r| {
        (
            Scope::new(r.get::<_, String>(0), r.get::<_, String>(1)),
            r.get(2),
        )
    })
    .collect())
}

/// Moves updates out of the log into quarantine; returns how many moved.
pub async fn quarantine<C: GenericClient>(
    c: &C,
    scope: &Scope,
    doc: &str,
    seqs: &[i64],
    reason: &str,
) -> DomainResult<usize> {
    let moved = query(
        c,
        "WITH moved AS (
             DELETE FROM crdt_updates
             WHERE org_id = $1 AND project_id = $2 AND doc_id = $3 AND seq = ANY($4)
             RETURNING org_id, project_id, doc_id, seq, bytes, origin, at)
         INSERT INTO crdt_quarantine
             (org_id, project_id, doc_id, seq, bytes, origin, at, reason, quarantined_at)
         SELECT org_id, project_id, doc_id, seq, bytes, origin, at, $5, now() FROM moved
         RETURNING seq",
        &[&scope.org, &scope.project, &doc, &seqs, &reason],
    )
    .await?;
    if !moved.is_empty() {
        touch(c, scope, doc).await?;
    }
    Ok(moved.len())
}

#[async_trait]
impl DocStore for PgStore {
    async fn append_batch(&self, appends: Vec<DocAppend>) -> DomainResult<Vec<(i64, i64)>> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(super::pg_err)?;
        let mut answers = vec![(0, 0); appends.len()];
        let runs = rules::append_runs(&appends);
        for project in runs.chunk_by(|a, b| a.scope == b.scope) {
            let taken = append_in_project(&tx, project[0].scope, project).await?;
            for (run, seqs) in project.iter().zip(taken) {
                run.answer(seqs, &mut answers);
            }
        }
        super::tx::settle(tx.commit().await, c)?;
        Ok(answers)
    }

    async fn get_doc(&self, scope: &Scope, doc: &str) -> DomainResult<DocInfo> {
        get(&self.client().await?, scope, doc).await
    }

    async fn put_doc(
        &self,
        scope: &Scope,
        caller: &Caller,
        doc: &str,
        entity_id: Option<String>,
    ) -> DomainResult<DocInfo> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(super::pg_err)?;
        let info = put(&tx, scope, caller, doc, entity_id.as_deref()).await?;
        super::tx::settle(tx.commit().await, c)?;
        Ok(info)
    }

    async fn delete_doc(
        &self,
        scope: &Scope,
        caller: &Caller,
        doc: &str,
    ) -> DomainResult<Vec<String>> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(super::pg_err)?;
        let blobs = delete(&tx, scope, caller, doc).await?;
        super::tx::settle(tx.commit().await, c)?;
        Ok(blobs)
    }

    async fn doc_log(&self, scope: &Scope, doc: &str, as_of: Option<&str>) -> DomainResult<DocLog> {
        // One snapshot of the database: the snapshot row and the tail agree.
        let mut c = self.client().await?;
        let tx = c
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(super::pg_err)?;
        let log = log(&tx, scope, doc, as_of).await;
        super::tx::settle(tx.rollback().await, c)?;
        log
    }

    async fn list_doc_updates(
        &self,
        scope: &Scope,
        doc: &str,
        after: i64,
        limit: usize,
    ) -> DomainResult<Vec<DocUpdate>> {
        list_updates(&self.client().await?, scope, doc, after, limit).await
    }

    async fn list_snapshots(&self, scope: &Scope, doc: &str) -> DomainResult<Vec<DocSnapshot>> {
        list_snapshots(&self.client().await?, scope, doc).await
    }

    async fn record_snapshot(
        &self,
        scope: &Scope,
        caller: &Caller,
        doc: &str,
        snapshot: DocSnapshot,
    ) -> DomainResult<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(super::pg_err)?;
        record_snapshot(&tx, scope, caller, doc, &snapshot).await?;
        super::tx::settle(tx.commit().await, c)
    }

    async fn prune_doc(
        &self,
        scope: &Scope,
        doc: &str,
        updates_before: &str,
        snapshots_before: &str,
    ) -> DomainResult<Vec<String>> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(super::pg_err)?;
        let blobs = prune(&tx, scope, doc, updates_before, snapshots_before).await?;
        super::tx::settle(tx.commit().await, c)?;
        Ok(blobs)
    }

    async fn quarantine_updates(
        &self,
        scope: &Scope,
        doc: &str,
        seqs: &[i64],
        reason: &str,
    ) -> DomainResult<usize> {
        quarantine(&self.client().await?, scope, doc, seqs, reason).await
    }

    async fn docs_to_compact(&self, limit: usize) -> DomainResult<Vec<(Scope, String)>> {
        to_compact(&self.client().await?, limit).await
    }

    async fn lease_doc(
        &self,
        scope: &Scope,
        doc: &str,
    ) -> DomainResult<Option<crate::store::Lease>> {
        self.try_lease(crate::store::lease_key::doc(scope, doc))
            .await
    }
}
