//! Imported rows stored as exported (`rules::import`): one transaction per
//! batch under the lock protocol (locks.rs): the project shared, the
//! batch's entity rows in id order, or a relationship's ends shared before
//! its row. Retried after a collision, as every write is.

use super::rows::{self, execute, parse_time, query, query_opt, ENTITY_COLS, REL_COLS};
use super::{audit, entities, outbox, relationships, tx, PgStore};
use crate::domain::export::{EntityExport, RelationshipRecord, VersionRecord};
use crate::domain::rules::import::{self as rules, ImportCounts, Verdict};
use crate::domain::*;
use crate::store::prelude::*;
use crate::store::{AuditPlace, ImportItem, Imported};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

const IMPORT_OP: &str = "import";

fn time(text: &str) -> DomainResult<DateTime<Utc>> {
    parse_time(text)
}

fn optional_time(text: &Option<String>) -> DomainResult<Option<DateTime<Utc>>> {
    text.as_deref().map(parse_time).transpose()
}

async fn insert_version<C: GenericClient>(
    c: &C,
    scope: &Scope,
    v: &VersionRecord,
    seq: i64,
) -> DomainResult<()> {
    let chain = i32::try_from(v.chain).unwrap_or(i32::MAX);
    execute(
        c,
        "INSERT INTO entity_versions (org_id, project_id, entity_id, version, parent_version, op,
             type, deleted, actor, at, patch, snapshot, chain, seq)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        &[
            &scope.org,
            &scope.project,
            &v.entity,
            &v.version,
            &v.parent,
            &v.op.as_str(),
            &v.entity_type,
            &v.deleted,
            &v.actor,
            &time(&v.at)?,
            &v.patch,
            &v.snapshot,
            &chain,
            &seq,
        ],
    )
    .await?;
    Ok(())
}

async fn entity<C: GenericClient>(
    c: &C,
    scope: &Scope,
    e: &EntityExport,
) -> DomainResult<Imported> {
    let found = query_opt(
        c,
        &format!(
            "SELECT {ENTITY_COLS} FROM entities WHERE org_id = $1 AND project_id = $2 AND id = $3"
        ),
        &[&scope.org, &scope.project, &e.entity.id],
    )
    .await?;
    let stored = found.as_ref().map(rows::entity);
    let verdict = rules::entity(stored.as_ref(), &e.entity);
    let after = match verdict {
        Verdict::Create => 0,
        Verdict::Update { after } => after,
        _ => return Ok(Imported { verdict, seq: 0 }),
    };
    let en = &e.entity;
    let seq = rows::next_seq(c).await?;
    execute(
        c,
        "INSERT INTO entities (org_id, project_id, id, type, properties, version, created_at,
             updated_at, created_by, updated_by, deleted_at, seq)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (org_id, project_id, id) DO UPDATE SET
             type = EXCLUDED.type, properties = EXCLUDED.properties,
             version = EXCLUDED.version, updated_at = EXCLUDED.updated_at,
             updated_by = EXCLUDED.updated_by, deleted_at = EXCLUDED.deleted_at,
             seq = EXCLUDED.seq",
        &[
            &scope.org,
            &scope.project,
            &en.id,
            &en.entity_type,
            &serde_json::Value::Object(en.properties.clone()),
            &en.version,
            &time(&en.created_at)?,
            &time(&en.updated_at)?,
            &en.created_by,
            &en.updated_by,
            &optional_time(&en.deleted_at)?,
            &seq,
        ],
    )
    .await?;
    for v in e.versions.iter().filter(|v| v.version > after) {
        insert_version(c, scope, v, seq).await?;
    }
    let change = ("entity", en.id.as_str(), IMPORT_OP, Some(en.version));
    outbox::record(c, scope, change, seq, Utc::now()).await?;
    if let Some(s) = &stored {
        match (s.deleted_at.is_some(), en.deleted_at.is_some()) {
            (false, true) => relationships::hide_touching(c, scope, &en.id).await?,
            (true, false) => {
                entities::lock_revivable_ends(c, scope, &en.id).await?;
                relationships::revive_touching(c, scope, &en.id).await?
            }
            _ => {}
        }
    }
    Ok(Imported { verdict, seq })
}

async fn relationship<C: GenericClient>(
    c: &C,
    scope: &Scope,
    r: &RelationshipRecord,
) -> DomainResult<Imported> {
    let rel = &r.relationship;
    // The ends first (shared), then the row: the protocol's order.
    let mut ends = vec![rel.from.clone(), rel.to.clone()];
    ends.sort();
    ends.dedup();
    let live_ends: Vec<(String, bool)> = query(
        c,
        "SELECT id, deleted_at IS NULL FROM entities
         WHERE org_id = $1 AND project_id = $2 AND id = ANY($3) ORDER BY id FOR SHARE",
        &[&scope.org, &scope.project, &ends],
    )
    .await?
    .iter()
    .map(|row| (row.get(0), row.get(1)))
    .collect();
    let found = query_opt(
        c,
        &format!(
            "SELECT {REL_COLS}, deleted_at IS NOT NULL FROM relationships
             WHERE org_id = $1 AND project_id = $2 AND id = $3 FOR UPDATE"
        ),
        &[&scope.org, &scope.project, &rel.id],
    )
    .await?;
    let stored = found
        .as_ref()
        .map(|row| (rows::relationship(row), row.get::<_, bool>(10)));
    let verdict = rules::relationship(stored.as_ref().map(|(r, d)| (r, *d)), r);
    if !matches!(verdict, Verdict::Create | Verdict::Update { .. }) {
        return Ok(Imported { verdict, seq: 0 });
    }
    if live_ends.len() != ends.len() {
        let missing = format!("relationship {}: its ends are not in the project", rel.id);
        return Ok(Imported {
            verdict: Verdict::Conflict(missing),
            seq: 0,
        });
    }
    let live = r.deleted_at.is_none() && live_ends.iter().all(|(_, live)| *live);
    let seq = rows::next_seq(c).await?;
    execute(
        c,
        "INSERT INTO relationships (org_id, project_id, id, type, from_id, to_id, properties,
             version, created_at, updated_at, created_by, updated_by, deleted_at, live, seq)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
         ON CONFLICT (org_id, project_id, id) DO UPDATE SET
             type = EXCLUDED.type, properties = EXCLUDED.properties,
             version = EXCLUDED.version, updated_at = EXCLUDED.updated_at,
             updated_by = EXCLUDED.updated_by, deleted_at = EXCLUDED.deleted_at,
             live = EXCLUDED.live, seq = EXCLUDED.seq",
        &[
            &scope.org,
            &scope.project,
            &rel.id,
            &rel.rel_type,
            &rel.from,
            &rel.to,
            &serde_json::Value::Object(rel.properties.clone()),
            &rel.version,
            &time(&rel.created_at)?,
            &time(&rel.updated_at)?,
            &rel.created_by,
            &rel.updated_by,
            &optional_time(&r.deleted_at)?,
            &live,
            &seq,
        ],
    )
    .await?;
    let change = (
        "relationship",
        rel.id.as_str(),
        IMPORT_OP,
        Some(rel.version),
    );
    outbox::record(c, scope, change, seq, Utc::now()).await?;
    Ok(Imported { verdict, seq })
}

impl PgStore {
    async fn import_once(
        &self,
        scope: &Scope,
        caller: &Caller,
        items: &[ImportItem],
    ) -> DomainResult<Vec<Imported>> {
        let tx = tx::WriteTx::new(self.client().await?);
        let c = tx.client();
        tx.begin(scope, async {}).await?;
        // The batch's entity rows, locked in id order before any is read.
        let mut ids: Vec<&str> = items
            .iter()
            .filter_map(|item| match item {
                ImportItem::Entity(e) => Some(e.entity.id.as_str()),
                ImportItem::Relationship(_) => None,
            })
            .collect();
        ids.sort_unstable();
        if !ids.is_empty() {
            execute(
                c,
                "SELECT 1 FROM entities WHERE org_id = $1 AND project_id = $2 AND id = ANY($3)
                 ORDER BY id FOR UPDATE",
                &[&scope.org, &scope.project, &ids],
            )
            .await?;
        }
        let mut done = Vec::with_capacity(items.len());
        let mut counts = ImportCounts::default();
        for item in items {
            let imported = match item {
                ImportItem::Entity(e) => entity(c, scope, e).await?,
                ImportItem::Relationship(r) => relationship(c, scope, r).await?,
            };
            counts.add(&imported.verdict);
            done.push(imported);
        }
        let place = AuditPlace::scope(scope, caller);
        let details = serde_json::to_value(counts).expect("counts serialise");
        audit::record(c, &place, "project.import", &scope.project, details).await?;
        tx.commit().await?;
        for (item, imported) in items.iter().zip(&done) {
            if let (ImportItem::Entity(e), true) = (item, imported.seq > 0) {
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
    ) -> DomainResult<Vec<Imported>> {
        tx::retrying(|| self.import_once(scope, caller, &items)).await
    }
}
