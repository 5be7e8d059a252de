//! Imported rows stored as exported (`rules::import`), set at a time: a
//! batch is a handful of statements whatever its size (the rows travel as
//! arrays through `unnest`), in one transaction under the lock protocol
//! (locks.rs): the project shared, then the batch's entity rows in id
//! order, or a relationship batch's ends (shared) then its rows, in id
//! order. Retried after a collision, as every write is. A batch holds one
//! kind of row and each id once (`crate::import` makes its batches so).

use super::rows::{self, execute, parse_time, query, ENTITY_COLS, REL_COLS};
use super::{audit, entities, relationships, tenancy, tx, PgStore};
use super::{bulk, doc_import};
use crate::domain::export::{EntityExport, RelationshipRecord};
use crate::domain::rules::entities::Ends;
use crate::domain::rules::import::{self as rules, ImportCounts, Verdict};
use crate::domain::*;
use crate::store::prelude::*;
use crate::store::{AuditPlace, ImportItem, Imported};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::Value;
use std::collections::HashMap;

/// The rows of `table` with the given ids (sorted), locked with `lock` in
/// id order. Each is found by its primary key: with `id = ANY(...)` the
/// planner may scan a whole project through a secondary index instead.
fn by_ids(cols: &str, table: &str, lock: &str) -> String {
    format!(
        "SELECT r.* FROM unnest($3::text[]) WITH ORDINALITY AS w(id, n),
         LATERAL (SELECT {cols} FROM {table}
                  WHERE org_id = $1 AND project_id = $2 AND id = w.id {lock}) AS r
         ORDER BY w.n"
    )
}

pub(super) fn optional_time(text: &Option<String>) -> DomainResult<Option<DateTime<Utc>>> {
    text.as_deref().map(parse_time).transpose()
}

/// `n` new change sequences, in one statement.
pub(super) async fn sequences<C: GenericClient>(c: &C, n: usize) -> DomainResult<Vec<i64>> {
    let n = i32::try_from(n).unwrap_or(i32::MAX);
    Ok(query(
        c,
        "SELECT nextval('change_seq') FROM generate_series(1, $1::int)",
        &[&n],
    )
    .await?
    .iter()
    .map(|r| r.get(0))
    .collect())
}

/// Outbox rows for stored rows: `(seq, id, version)` each.
/// An imported row's change for the feed (`Verdict::feed_op`).
pub(super) struct Change<'a> {
    pub seq: i64,
    pub id: &'a str,
    pub version: i64,
    pub op: &'static str,
}

pub(super) async fn outbox<C: GenericClient>(
    c: &C,
    scope: &Scope,
    kind: &str,
    rows: &[Change<'_>],
) -> DomainResult<()> {
    let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
    let ids: Vec<&str> = rows.iter().map(|r| r.id).collect();
    let versions: Vec<i64> = rows.iter().map(|r| r.version).collect();
    let ops: Vec<&str> = rows.iter().map(|r| r.op).collect();
    execute(
        c,
        "INSERT INTO outbox (seq, org_id, project_id, kind, target_id, op, at, version)
         SELECT t.seq, $1, $2, $3, t.id, t.op, now(), t.version
         FROM unnest($4::bigint[], $5::text[], $6::bigint[], $7::text[]) AS t(seq, id, version, op)",
        &[&scope.org, &scope.project, &kind, &seqs, &ids, &versions, &ops],
    )
    .await?;
    Ok(())
}

async fn entity_batch<C: GenericClient>(
    c: &C,
    scope: &Scope,
    batch: &[&EntityExport],
) -> DomainResult<Vec<Imported>> {
    let mut ids: Vec<&str> = batch.iter().map(|e| e.entity.id.as_str()).collect();
    ids.sort_unstable();
    // Locked in id order and read in the same statement.
    let stored: HashMap<String, Entity> = query(
        c,
        &by_ids(ENTITY_COLS, "entities", "FOR UPDATE"),
        &[&scope.org, &scope.project, &ids],
    )
    .await?
    .iter()
    .map(|r| {
        let e = rows::entity(r);
        (e.id.clone(), e)
    })
    .collect();
    let verdicts: Vec<Verdict> = batch
        .iter()
        .map(|e| rules::entity(stored.get(&e.entity.id), &e.entity))
        .collect();
    let storing: Vec<(usize, i64)> = verdicts
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.stores_after().map(|after| (i, after)))
        .collect();
    let seqs = sequences(c, storing.len()).await?;

    let mut e_cols = EntityColumns::default();
    let mut v_cols = VersionColumns::default();
    for (&(i, after), &seq) in storing.iter().zip(&seqs) {
        let e = batch[i];
        e_cols.push(&e.entity, seq)?;
        for v in e.versions.iter().filter(|v| v.version > after) {
            v_cols.push(v, seq)?;
        }
    }
    if !storing.is_empty() {
        e_cols.store(c, scope).await?;
        v_cols.store(c, scope).await?;
        let changes: Vec<Change> = storing
            .iter()
            .zip(&seqs)
            .map(|(&(i, _), &seq)| {
                let e = &batch[i].entity;
                let op = verdicts[i].feed_op(e.deleted_at.is_some());
                Change {
                    seq,
                    id: &e.id,
                    version: e.version,
                    op,
                }
            })
            .collect();
        outbox(c, scope, "entity", &changes).await?;
    }
    for &(i, _) in &storing {
        let en = &batch[i].entity;
        let stored_deleted = stored.get(&en.id).map(|s| s.deleted_at.is_some());
        match rules::ends(stored_deleted, en) {
            Ends::Hide => relationships::hide_touching(c, scope, &en.id).await?,
            Ends::Revive => {
                entities::lock_revivable_ends(c, scope, &en.id).await?;
                relationships::revive_touching(c, scope, &en.id).await?
            }
            Ends::Unchanged => {}
        }
    }
    let stored_at: Vec<usize> = storing.iter().map(|&(i, _)| i).collect();
    Ok(imported(verdicts, &stored_at, seqs))
}

/// Each item's verdict with the change sequence it was stored at (`seqs`
/// in the order of `stored`, the indices of the items stored; 0 for the rest).
pub(super) fn imported(verdicts: Vec<Verdict>, stored: &[usize], seqs: Vec<i64>) -> Vec<Imported> {
    let seq_of: HashMap<usize, i64> = stored.iter().copied().zip(seqs).collect();
    verdicts
        .into_iter()
        .enumerate()
        .map(|(i, verdict)| Imported {
            verdict,
            seq: seq_of.get(&i).copied().unwrap_or(0),
        })
        .collect()
}

/// Entity rows as column arrays for one `unnest` insert.
#[derive(Default)]
struct EntityColumns<'a> {
    id: Vec<&'a str>,
    ty: Vec<&'a str>,
    properties: Vec<Value>,
    version: Vec<i64>,
    created_at: Vec<DateTime<Utc>>,
    updated_at: Vec<DateTime<Utc>>,
    created_by: Vec<&'a str>,
    updated_by: Vec<&'a str>,
    deleted_at: Vec<Option<DateTime<Utc>>>,
    seq: Vec<i64>,
}

impl<'a> EntityColumns<'a> {
    fn push(&mut self, e: &'a Entity, seq: i64) -> DomainResult<()> {
        self.id.push(&e.id);
        self.ty.push(&e.entity_type);
        self.properties.push(Value::Object(e.properties.clone()));
        self.version.push(e.version);
        self.created_at.push(parse_time(&e.created_at)?);
        self.updated_at.push(parse_time(&e.updated_at)?);
        self.created_by.push(&e.created_by);
        self.updated_by.push(&e.updated_by);
        self.deleted_at.push(optional_time(&e.deleted_at)?);
        self.seq.push(seq);
        Ok(())
    }

    async fn store<C: GenericClient>(&self, c: &C, scope: &Scope) -> DomainResult<()> {
        execute(
            c,
            "INSERT INTO entities (org_id, project_id, id, type, properties, version, created_at,
                 updated_at, created_by, updated_by, deleted_at, seq)
             SELECT $1, $2, t.* FROM unnest($3::text[], $4::text[], $5::jsonb[], $6::bigint[],
                 $7::timestamptz[], $8::timestamptz[], $9::text[], $10::text[],
                 $11::timestamptz[], $12::bigint[]) AS t
             ON CONFLICT (org_id, project_id, id) DO UPDATE SET
                 type = EXCLUDED.type, properties = EXCLUDED.properties,
                 version = EXCLUDED.version, updated_at = EXCLUDED.updated_at,
                 updated_by = EXCLUDED.updated_by, deleted_at = EXCLUDED.deleted_at,
                 seq = EXCLUDED.seq",
            &[
                &scope.org,
                &scope.project,
                &self.id,
                &self.ty,
                &self.properties,
                &self.version,
                &self.created_at,
                &self.updated_at,
                &self.created_by,
                &self.updated_by,
                &self.deleted_at,
                &self.seq,
            ],
        )
        .await?;
        Ok(())
    }
}

/// Version rows as column arrays for one `unnest` insert.
#[derive(Default)]
struct VersionColumns<'a> {
    entity: Vec<&'a str>,
    version: Vec<i64>,
    parent: Vec<Option<i64>>,
    op: Vec<&'static str>,
    ty: Vec<&'a str>,
    deleted: Vec<bool>,
    actor: Vec<&'a str>,
    at: Vec<DateTime<Utc>>,
    patch: Vec<&'a Value>,
    snapshot: Vec<Option<&'a Value>>,
    chain: Vec<i32>,
    seq: Vec<i64>,
}

impl<'a> VersionColumns<'a> {
    fn push(&mut self, v: &'a crate::domain::export::VersionRecord, seq: i64) -> DomainResult<()> {
        self.entity.push(&v.entity);
        self.version.push(v.version);
        self.parent.push(v.parent);
        self.op.push(v.op.as_str());
        self.ty.push(&v.entity_type);
        self.deleted.push(v.deleted);
        self.actor.push(&v.actor);
        self.at.push(parse_time(&v.at)?);
        self.patch.push(&v.patch);
        self.snapshot.push(v.snapshot.as_ref());
        self.chain.push(i32::try_from(v.chain).unwrap_or(i32::MAX));
        self.seq.push(seq);
        Ok(())
    }

    async fn store<C: GenericClient>(&self, c: &C, scope: &Scope) -> DomainResult<()> {
        execute(
            c,
            "INSERT INTO entity_versions (org_id, project_id, entity_id, version, parent_version,
                 op, type, deleted, actor, at, patch, snapshot, chain, seq)
             SELECT $1, $2, t.* FROM unnest($3::text[], $4::bigint[], $5::bigint[], $6::text[],
                 $7::text[], $8::bool[], $9::text[], $10::timestamptz[], $11::jsonb[],
                 $12::jsonb[], $13::int[], $14::bigint[]) AS t",
            &[
                &scope.org,
                &scope.project,
                &self.entity,
                &self.version,
                &self.parent,
                &self.op,
                &self.ty,
                &self.deleted,
                &self.actor,
                &self.at,
                &self.patch,
                &self.snapshot,
                &self.chain,
                &self.seq,
            ],
        )
        .await?;
        Ok(())
    }
}

/// Outbox rows for the relationships of `batch` at `stored`, stored at `seqs`.
pub(super) async fn relationship_outbox<C: GenericClient>(
    c: &C,
    scope: &Scope,
    (batch, verdicts): (&[&RelationshipRecord], &[Verdict]),
    stored: &[usize],
    seqs: &[i64],
) -> DomainResult<()> {
    let changes: Vec<Change> = stored
        .iter()
        .zip(seqs)
        .map(|(&i, &seq)| {
            let rel = &batch[i].relationship;
            Change {
                seq,
                id: &rel.id,
                version: rel.version,
                op: verdicts[i].feed_op(batch[i].deleted_at.is_some()),
            }
        })
        .collect();
    outbox(c, scope, "relationship", &changes).await
}

/// Whether each end of the batch's relationships is live, shared-locked in
/// id order; ends the project lacks are left out.
pub(super) async fn live_ends<C: GenericClient>(
    c: &C,
    scope: &Scope,
    batch: &[&RelationshipRecord],
) -> DomainResult<HashMap<String, bool>> {
    let mut ends: Vec<&str> = batch
        .iter()
        .flat_map(|r| [r.relationship.from.as_str(), r.relationship.to.as_str()])
        .collect();
    ends.sort_unstable();
    ends.dedup();
    Ok(query(
        c,
        &by_ids("id, deleted_at IS NULL", "entities", "FOR SHARE"),
        &[&scope.org, &scope.project, &ends],
    )
    .await?
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect())
}

async fn relationship_batch<C: GenericClient>(
    c: &C,
    scope: &Scope,
    batch: &[&RelationshipRecord],
) -> DomainResult<Vec<Imported>> {
    // The ends first (shared, in id order), then the rows: the protocol's order.
    let live = live_ends(c, scope, batch).await?;
    let mut ids: Vec<&str> = batch.iter().map(|r| r.relationship.id.as_str()).collect();
    ids.sort_unstable();
    let stored: HashMap<String, (Relationship, bool)> = query(
        c,
        &by_ids(
            &format!("{REL_COLS}, deleted_at IS NOT NULL"),
            "relationships",
            "FOR UPDATE",
        ),
        &[&scope.org, &scope.project, &ids],
    )
    .await?
    .iter()
    .map(|r| {
        let rel = rows::relationship(r);
        (rel.id.clone(), (rel, r.get::<_, bool>(10)))
    })
    .collect();
    let (verdicts, live): (Vec<Verdict>, Vec<bool>) = batch
        .iter()
        .map(|r| {
            let rel = &r.relationship;
            let ends = [live.get(&rel.from).copied(), live.get(&rel.to).copied()];
            rules::relationship(stored.get(&rel.id).map(|(s, d)| (s, *d)), r, ends)
        })
        .unzip();
    let storing: Vec<usize> = (0..batch.len())
        .filter(|&i| verdicts[i].stores_after().is_some())
        .collect();
    let seqs = sequences(c, storing.len()).await?;
    if !storing.is_empty() {
        let mut cols = RelationshipColumns::default();
        for (&i, &seq) in storing.iter().zip(&seqs) {
            cols.push(batch[i], live[i], seq)?;
        }
        cols.store(c, scope).await?;
        relationship_outbox(c, scope, (batch, &verdicts), &storing, &seqs).await?;
    }
    Ok(imported(verdicts, &storing, seqs))
}

/// Relationship rows as column arrays for one `unnest` insert.
#[derive(Default)]
struct RelationshipColumns<'a> {
    id: Vec<&'a str>,
    ty: Vec<&'a str>,
    from: Vec<&'a str>,
    to: Vec<&'a str>,
    properties: Vec<Value>,
    version: Vec<i64>,
    created_at: Vec<DateTime<Utc>>,
    updated_at: Vec<DateTime<Utc>>,
    created_by: Vec<&'a str>,
    updated_by: Vec<&'a str>,
    deleted_at: Vec<Option<DateTime<Utc>>>,
    live: Vec<bool>,
    seq: Vec<i64>,
}

impl<'a> RelationshipColumns<'a> {
    fn push(&mut self, r: &'a RelationshipRecord, live: bool, seq: i64) -> DomainResult<()> {
        let rel = &r.relationship;
        self.id.push(&rel.id);
        self.ty.push(&rel.rel_type);
        self.from.push(&rel.from);
        self.to.push(&rel.to);
        self.properties.push(Value::Object(rel.properties.clone()));
        self.version.push(rel.version);
        self.created_at.push(parse_time(&rel.created_at)?);
        self.updated_at.push(parse_time(&rel.updated_at)?);
        self.created_by.push(&rel.created_by);
        self.updated_by.push(&rel.updated_by);
        self.deleted_at.push(optional_time(&r.deleted_at)?);
        self.live.push(live);
        self.seq.push(seq);
        Ok(())
    }

    async fn store<C: GenericClient>(&self, c: &C, scope: &Scope) -> DomainResult<()> {
        execute(
            c,
            "INSERT INTO relationships (org_id, project_id, id, type, from_id, to_id, properties,
                 version, created_at, updated_at, created_by, updated_by, deleted_at, live, seq)
             SELECT $1, $2, t.* FROM unnest($3::text[], $4::text[], $5::text[], $6::text[],
                 $7::jsonb[], $8::bigint[], $9::timestamptz[], $10::timestamptz[], $11::text[],
                 $12::text[], $13::timestamptz[], $14::bool[], $15::bigint[]) AS t
             ON CONFLICT (org_id, project_id, id) DO UPDATE SET
                 type = EXCLUDED.type, properties = EXCLUDED.properties,
                 version = EXCLUDED.version, updated_at = EXCLUDED.updated_at,
                 updated_by = EXCLUDED.updated_by, deleted_at = EXCLUDED.deleted_at,
                 live = EXCLUDED.live, seq = EXCLUDED.seq",
            &[
                &scope.org,
                &scope.project,
                &self.id,
                &self.ty,
                &self.from,
                &self.to,
                &self.properties,
                &self.version,
                &self.created_at,
                &self.updated_at,
                &self.created_by,
                &self.updated_by,
                &self.deleted_at,
                &self.live,
                &self.seq,
            ],
        )
        .await?;
        Ok(())
    }
}

/// A batch of document lines, one at a time in file order (a document's
/// row comes before its snapshots and updates).
async fn doc_batch<C: GenericClient>(
    c: &C,
    scope: &Scope,
    items: &[ImportItem],
) -> DomainResult<Vec<Imported>> {
    let mut done = Vec::with_capacity(items.len());
    for item in items {
        done.push(match item {
            ImportItem::Doc(d) => doc_import::doc(c, scope, d).await?,
            ImportItem::DocSnapshot(s) => doc_import::snapshot(c, scope, s).await?,
            ImportItem::DocUpdate(u) => doc_import::update(c, scope, u).await?,
            _ => return Err(DomainError::internal("a document batch holds other rows")),
        });
    }
    Ok(done)
}

impl PgStore {
    /// Statistics that lag far behind an import's growth make the planner
    /// read the lookups by id through a project-wide index scan (a fresh
    /// table looks empty): after a batch that added `grown` rows to a table
    /// whose statistics count fewer than ten times that, it is analysed, so
    /// this happens a few times per import (at about 10x steps), not per batch.
    async fn refresh_statistics(&self, table: &str, grown: usize) -> DomainResult<()> {
        if grown == 0 {
            return Ok(());
        }
        let c = self.client().await?;
        let counted: f32 = rows::query_one(
            &c,
            "SELECT reltuples FROM pg_class WHERE oid = to_regclass($1)",
            &[&table],
        )
        .await?
        .get(0);
        if counted < (grown * 10) as f32 {
            c.batch_execute(&format!("ANALYZE {table}"))
                .await
                .map_err(rows::pg_err)?;
        }
        Ok(())
    }

    async fn import_once(
        &self,
        scope: &Scope,
        caller: &Caller,
        items: &[ImportItem],
        fresh: bool,
    ) -> DomainResult<Vec<Imported>> {
        let tx = tx::WriteTx::new(self.client().await?);
        let c = tx.client();
        tx.begin(scope, async {}).await?;
        let entities: Vec<&EntityExport> = items
            .iter()
            .filter_map(|item| match item {
                ImportItem::Entity(e) => Some(e),
                _ => None,
            })
            .collect();
        let relationships: Vec<&RelationshipRecord> = items
            .iter()
            .filter_map(|item| match item {
                ImportItem::Relationship(r) => Some(r),
                _ => None,
            })
            .collect();
        let kinds = [!entities.is_empty(), !relationships.is_empty()];
        let docs = entities.len() + relationships.len() < items.len();
        if kinds.iter().filter(|k| **k).count() + usize::from(docs) > 1 {
            return Err(DomainError::internal(
                "an import batch mixes entities, relationships and documents",
            ));
        }
        let copied = match (fresh && !docs, entities.is_empty()) {
            (false, _) => None,
            (true, true) => bulk::relationships(c, scope, &relationships).await?,
            (true, false) => bulk::entities(c, scope, &entities).await?,
        };
        let done = if let Some(done) = copied {
            done
        } else if docs {
            doc_batch(c, scope, items).await?
        } else if entities.is_empty() {
            relationship_batch(c, scope, &relationships).await?
        } else {
            entity_batch(c, scope, &entities).await?
        };
        let place = AuditPlace::scope(scope, caller);
        let details = ImportCounts::audit_details(done.iter().map(|d| &d.verdict));
        audit::record(c, &place, "project.import", &scope.project, details).await?;
        tx.commit().await?;
        let created = done.iter().filter(|d| d.verdict == Verdict::Create).count();
        if !docs {
            let table = if entities.is_empty() {
                "relationships"
            } else {
                "entities"
            };
            self.refresh_statistics(table, created).await?;
        }
        for (e, imported) in entities.iter().zip(&done) {
            if imported.seq > 0 {
                self.notifier
                    .entity_changed(scope, &e.entity.id, imported.seq);
            }
        }
        Ok(done)
    }
}

#[async_trait]
impl ImportStore for PgStore {
    async fn import(
        &self,
        scope: &Scope,
        caller: &Caller,
        items: Vec<ImportItem>,
        fresh: bool,
    ) -> DomainResult<Vec<Imported>> {
        tx::retrying(|| self.import_once(scope, caller, &items, fresh)).await
    }

    async fn import_start(&self, scope: &Scope) -> DomainResult<bool> {
        let c = self.client().await?;
        Ok(rows::query_one(
            &c,
            "SELECT NOT EXISTS (SELECT 1 FROM entities WHERE org_id = $1 AND project_id = $2)
                AND NOT EXISTS (SELECT 1 FROM relationships WHERE org_id = $1 AND project_id = $2)",
            &[&scope.org, &scope.project],
        )
        .await?
        .get(0))
    }

    async fn import_finish(&self) -> DomainResult<()> {
        Ok(())
    }

    async fn import_org(&self, caller: &Caller, org: &Org) -> DomainResult<bool> {
        let at = parse_time(&org.created_at)?;
        let c = self.client().await?;
        crate::store::made(tenancy::insert_org(&c, caller, &org.id, &org.name, Some(at)).await)
    }

    async fn import_project(&self, caller: &Caller, p: &Project) -> DomainResult<bool> {
        let at = parse_time(&p.created_at)?;
        let c = self.client().await?;
        crate::store::made(
            tenancy::insert_project(&c, caller, &p.org, &p.id, &p.name, Some(at)).await,
        )
    }

    async fn import_audit(
        &self,
        events: Vec<crate::domain::export::AuditRecord>,
    ) -> DomainResult<u64> {
        let c = self.client().await?;
        c.batch_execute("BEGIN").await.map_err(rows::pg_err)?;
        match audit::insert_all(&c, &events).await {
            Ok(stored) => {
                c.batch_execute("COMMIT").await.map_err(rows::pg_err)?;
                Ok(stored)
            }
            Err(e) => {
                let _ = c.batch_execute("ROLLBACK").await;
                Err(e)
            }
        }
    }
}
