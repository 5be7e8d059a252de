//! Relationship rows on PostgreSQL; `live` has the meaning it has on SQLite.

use super::rows::{self, execute, next_seq, query, query_opt, REL_COLS};
use super::{locks, outbox};
use crate::domain::rules::audit as audit_rules;
use crate::domain::rules::relationships::{self as rules, RelationshipOp};
use crate::domain::*;
use crate::store::cursor;
use crate::store::Ctx;
use deadpool_postgres::GenericClient;
use serde_json::Value;

pub async fn load<C: GenericClient>(
    c: &C,
    scope: &Scope,
    id: &str,
    lock: bool,
) -> DomainResult<Option<Relationship>> {
    let sql = format!(
        "SELECT {REL_COLS} FROM relationships
         WHERE org_id = $1 AND project_id = $2 AND id = $3 AND live{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    Ok(query_opt(c, &sql, &[&scope.org, &scope.project, &id])
        .await?
        .map(|r| rows::relationship(&r)))
}

/// The live ends share-locked in id order (locks.rs: no end can change
/// liveness until commit), then row, outbox entry and audit row: one
/// statement. Answers the live ends found and the new row's change sequence
/// (none when the id is taken or an end is missing).
const CREATE_SQL: &str = "
WITH ends AS (
    SELECT id FROM entities
    WHERE org_id = $1 AND project_id = $2 AND id IN ($5, $6) AND deleted_at IS NULL
    ORDER BY id
    FOR SHARE),
checked AS (
    SELECT count(*) = CASE WHEN $5 = $6 THEN 1 ELSE 2 END AS ends_live FROM ends),
r AS (
    INSERT INTO relationships (org_id, project_id, id, type, from_id, to_id, properties,
        version, created_at, updated_at, created_by, updated_by, live, seq)
    SELECT $1, $2, $3, $4, $5, $6, $7, 1, $8, $8, $9, $9, true, nextval('change_seq')
    FROM checked WHERE checked.ends_live
    ON CONFLICT DO NOTHING
    RETURNING seq),
o AS (
    INSERT INTO outbox (seq, org_id, project_id, kind, target_id, op, at, version)
    SELECT seq, $1, $2, 'relationship', $3, 'create', $8, 1 FROM r),
a AS (
    INSERT INTO audit_events (org_id, project_id, at, actor, action, target, ip, user_agent,
        details)
    SELECT $1, $2, now(), $9, $12::text, $3, $10::text, $11::text, $13::jsonb FROM r)
SELECT (SELECT coalesce(array_agg(id), '{}') FROM ends), (SELECT seq FROM r)";

/// Applies one relationship op: locks what the rules need (locks.rs), lets
/// them decide, stores the result with its outbox row.
pub async fn write<C: GenericClient>(
    c: &C,
    ctx: &Ctx<'_>,
    id: &str,
    op: RelationshipOp,
) -> DomainResult<WriteOutcome> {
    let (s, stamp) = (ctx.scope, &ctx.stamp);
    match op {
        RelationshipOp::Create(new) => {
            let rel = rules::first_version(id, new, stamp);
            create(c, ctx, rel).await.map(WriteOutcome::Relationship)
        }
        RelationshipOp::Patch {
            patch,
            rel_type,
            expected,
        } => {
            let rel = rules::live(id, lock_live(c, s, id).await?, expected)?;
            let rel = rules::patched(rel, &patch, rel_type, stamp)?;
            let seq = next_seq(c).await?;
            execute(
                c,
                "UPDATE relationships SET type = $4, properties = $5, version = $6, updated_at = $7,
                     updated_by = $8, seq = $9
                 WHERE org_id = $1 AND project_id = $2 AND id = $3",
                &[
                    &s.org,
                    &s.project,
                    &id,
                    &rel.rel_type,
                    &Value::Object(rel.properties.clone()),
                    &rel.version,
                    &stamp.time,
                    &rel.updated_by,
                    &seq,
                ],
            )
            .await?;
            outbox::record(
                c,
                s,
                ("relationship", id, "update", Some(rel.version)),
                seq,
                stamp.time,
            )
            .await?;
            Ok(WriteOutcome::Relationship(rel))
        }
        RelationshipOp::Delete { expected } => {
            let rel = rules::live(id, lock_live(c, s, id).await?, expected)?;
            let rel = rules::deleted(rel, stamp);
            let seq = next_seq(c).await?;
            execute(
                c,
                "UPDATE relationships SET deleted_at = $4, live = false, version = $5, updated_at = $4,
                     updated_by = $6, seq = $7
                 WHERE org_id = $1 AND project_id = $2 AND id = $3",
                &[&s.org, &s.project, &id, &stamp.time, &rel.version, &rel.updated_by, &seq],
            )
            .await?;
            outbox::record(
                c,
                s,
                ("relationship", id, "delete", Some(rel.version)),
                seq,
                stamp.time,
            )
            .await?;
            Ok(WriteOutcome::Deleted { id: id.to_owned() })
        }
    }
}

/// Inserts a relationship whose ends are live (one statement, CREATE_SQL).
async fn create<C: GenericClient>(
    c: &C,
    ctx: &Ctx<'_>,
    rel: Relationship,
) -> DomainResult<Relationship> {
    let s = ctx.scope;
    let audit = audit_rules::of_relationship(ctx.action, &rel);
    let row = query_opt(
        c,
        CREATE_SQL,
        &[
            &s.org,
            &s.project,
            &rel.id,
            &rel.rel_type,
            &rel.from,
            &rel.to,
            &Value::Object(rel.properties.clone()),
            &ctx.stamp.time,
            &ctx.actor(),
            &ctx.caller.ip,
            &ctx.caller.user_agent,
            &audit.action,
            &audit.details,
        ],
    )
    .await?
    .ok_or_else(|| DomainError::internal("relationship insert answered no row"))?;
    rules::check_ends(&rel.from, &rel.to, &row.get::<_, Vec<String>>(0))?;
    if row.get::<_, Option<i64>>(1).is_none() {
        return Err(rules::already_exists(&rel.id));
    }
    Ok(rel)
}

/// The live row, locked, after its ends (locks.rs): neither end changes
/// liveness, nor its vertex, while this write and its projection run.
async fn lock_live<C: GenericClient>(
    c: &C,
    scope: &Scope,
    id: &str,
) -> DomainResult<Option<Relationship>> {
    locks::ends_of(c, scope, id).await?;
    load(c, scope, id, true).await
}

pub async fn hide_touching<C: GenericClient>(
    c: &C,
    scope: &Scope,
    entity: &str,
) -> DomainResult<()> {
    execute(
        c,
        "UPDATE relationships SET live = false
         WHERE org_id = $1 AND project_id = $2 AND (from_id = $3 OR to_id = $3) AND live",
        &[&scope.org, &scope.project, &entity],
    )
    .await?;
    Ok(())
}

pub async fn revive_touching<C: GenericClient>(
    c: &C,
    scope: &Scope,
    entity: &str,
) -> DomainResult<()> {
    execute(
        c,
        "UPDATE relationships r SET live = true
         WHERE r.org_id = $1 AND r.project_id = $2 AND (r.from_id = $3 OR r.to_id = $3)
           AND NOT r.live AND r.deleted_at IS NULL
           AND EXISTS (SELECT 1 FROM entities e
                       WHERE e.org_id = $1 AND e.project_id = $2 AND e.deleted_at IS NULL
                         AND e.id = CASE WHEN r.from_id = $3 THEN r.to_id ELSE r.from_id END)",
        &[&scope.org, &scope.project, &entity],
    )
    .await?;
    Ok(())
}

/// Sets `live` wherever it disagrees with the invariant (not deleted, both
/// ends live); answers how many were hidden and how many revived.
pub async fn repair_liveness<C: GenericClient>(c: &C, scope: &Scope) -> DomainResult<(u64, u64)> {
    let changed = query(
        c,
        "WITH want AS (
             SELECT r.id, r.deleted_at IS NULL AND f.deleted_at IS NULL AND t.deleted_at IS NULL
                          AND f.id IS NOT NULL AND t.id IS NOT NULL AS live
             FROM relationships r
             LEFT JOIN entities f
               ON f.org_id = r.org_id AND f.project_id = r.project_id AND f.id = r.from_id
             LEFT JOIN entities t
               ON t.org_id = r.org_id AND t.project_id = r.project_id AND t.id = r.to_id
             WHERE r.org_id = $1 AND r.project_id = $2)
         UPDATE relationships r SET live = want.live
         FROM want
         WHERE r.org_id = $1 AND r.project_id = $2 AND r.id = want.id AND r.live <> want.live
         RETURNING want.live",
        &[&scope.org, &scope.project],
    )
    .await?;
    let revived = changed.iter().filter(|r| r.get::<_, bool>(0)).count() as u64;
    Ok((changed.len() as u64 - revived, revived))
}

pub async fn list<C: GenericClient>(
    c: &C,
    scope: &Scope,
    filter: &RelationshipFilter,
    page: &PageRequest,
) -> DomainResult<Page<Relationship>> {
    let after = cursor::after_id(page)?;
    let sql = format!(
        "SELECT {REL_COLS} FROM relationships
         WHERE org_id = $1 AND project_id = $2 AND id > $3 AND live
           AND ($4::text IS NULL OR from_id = $4)
           AND ($5::text IS NULL OR to_id = $5)
           AND ($6::text IS NULL OR type = $6)
         ORDER BY id LIMIT $7"
    );
    let limit = page.limit as i64 + 1;
    let found = query(
        c,
        &sql,
        &[
            &scope.org,
            &scope.project,
            &after,
            &filter.from,
            &filter.to,
            &filter.rel_type,
            &limit,
        ],
    )
    .await?;
    let items = found.iter().map(rows::relationship).collect();
    Ok(cursor::page_by(items, page.limit, |r: &Relationship| {
        r.id.clone()
    }))
}
