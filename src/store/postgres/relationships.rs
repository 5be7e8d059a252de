//! Relationship rows on PostgreSQL; `live` has the meaning it has on SQLite.

use super::rows::{self, execute, next_seq, query, query_opt, REL_COLS};
use super::{locks, outbox, Ctx};
use crate::domain::patch::apply_merge_patch;
use crate::domain::*;
use crate::store::cursor;
use chrono::Utc;
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

pub struct NewRelationship<'a> {
    pub id: &'a str,
    pub rel_type: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    pub properties: Properties,
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
    INSERT INTO outbox (seq, org_id, project_id, kind, target_id, op, at)
    SELECT seq, $1, $2, 'relationship', $3, 'create', $8 FROM r),
a AS (
    INSERT INTO audit_events (org_id, project_id, at, actor, action, target, ip, user_agent,
        details)
    SELECT $1, $2, now(), $9, 'relationship.create', $3, $10::text, $11::text,
        jsonb_build_object('version', 1, 'type', $4::text, 'from', $5::text, 'to', $6::text)
    FROM r)
SELECT (SELECT coalesce(array_agg(id), '{}') FROM ends), (SELECT seq FROM r)";

pub async fn create<C: GenericClient>(
    c: &C,
    ctx: &Ctx<'_>,
    new: NewRelationship<'_>,
) -> DomainResult<Relationship> {
    let s = ctx.scope;
    let now = Utc::now();
    let row = query_opt(
        c,
        CREATE_SQL,
        &[
            &s.org,
            &s.project,
            &new.id,
            &new.rel_type,
            &new.from,
            &new.to,
            &Value::Object(new.properties.clone()),
            &now,
            &ctx.actor(),
            &ctx.caller.ip,
            &ctx.caller.user_agent,
        ],
    )
    .await?
    .ok_or_else(|| DomainError::internal("relationship insert answered no row"))?;
    let live: Vec<String> = row.get(0);
    for end in [new.from, new.to] {
        if !live.iter().any(|id| id == end) {
            return Err(DomainError::Unprocessable(format!(
                "entity {end} does not exist in this project"
            )));
        }
    }
    if row.get::<_, Option<i64>>(1).is_none() {
        return Err(DomainError::Conflict(format!(
            "relationship {} already exists",
            new.id
        )));
    }
    Ok(Relationship {
        id: new.id.to_owned(),
        rel_type: new.rel_type.to_owned(),
        from: new.from.to_owned(),
        to: new.to.to_owned(),
        properties: new.properties,
        version: 1,
        created_at: rows::time(now),
        updated_at: rows::time(now),
        created_by: ctx.actor().to_owned(),
        updated_by: ctx.actor().to_owned(),
    })
}

async fn live_or_404<C: GenericClient>(
    c: &C,
    scope: &Scope,
    id: &str,
    expected: Option<i64>,
) -> DomainResult<Relationship> {
    // Ends before the row (locks.rs): neither end changes liveness, nor
    // its vertex, while this write and its projection run.
    locks::ends_of(c, scope, id).await?;
    let rel = load(c, scope, id, true)
        .await?
        .ok_or_else(|| DomainError::not_found(format!("relationship {id}")))?;
    if let Some(expected) = expected.filter(|e| *e != rel.version) {
        return Err(DomainError::PreconditionFailed {
            expected,
            current: rel.version,
        });
    }
    Ok(rel)
}

pub async fn patch<C: GenericClient>(
    c: &C,
    ctx: &Ctx<'_>,
    id: &str,
    patch: &Value,
    rel_type: Option<String>,
    expected: Option<i64>,
) -> DomainResult<Relationship> {
    let mut rel = live_or_404(c, ctx.scope, id, expected).await?;
    let mut merged = Value::Object(std::mem::take(&mut rel.properties));
    apply_merge_patch(&mut merged, patch);
    let Value::Object(properties) = merged else {
        return Err(DomainError::BadRequest(
            "properties must be a JSON object".into(),
        ));
    };
    validate::properties(&properties)?;
    rel.properties = properties;
    if let Some(t) = rel_type {
        rel.rel_type = t;
    }
    let now = Utc::now();
    rel.version += 1;
    rel.updated_at = rows::time(now);
    rel.updated_by = ctx.actor().to_owned();
    let seq = next_seq(c).await?;
    execute(
        c,
        "UPDATE relationships SET type = $4, properties = $5, version = $6, updated_at = $7,
             updated_by = $8, seq = $9
         WHERE org_id = $1 AND project_id = $2 AND id = $3",
        &[
            &ctx.scope.org,
            &ctx.scope.project,
            &id,
            &rel.rel_type,
            &Value::Object(rel.properties.clone()),
            &rel.version,
            &now,
            &ctx.actor(),
            &seq,
        ],
    )
    .await?;
    outbox::record(c, ctx.scope, "relationship", id, "update", seq, now).await?;
    Ok(rel)
}

pub async fn delete<C: GenericClient>(
    c: &C,
    ctx: &Ctx<'_>,
    id: &str,
    expected: Option<i64>,
) -> DomainResult<()> {
    let rel = live_or_404(c, ctx.scope, id, expected).await?;
    let now = Utc::now();
    let seq = next_seq(c).await?;
    execute(
        c,
        "UPDATE relationships SET deleted_at = $4, live = false, version = $5, updated_at = $4,
             updated_by = $6, seq = $7
         WHERE org_id = $1 AND project_id = $2 AND id = $3",
        &[
            &ctx.scope.org,
            &ctx.scope.project,
            &id,
            &now,
            &(rel.version + 1),
            &ctx.actor(),
            &seq,
        ],
    )
    .await?;
    outbox::record(c, ctx.scope, "relationship", id, "delete", seq, now).await?;
    Ok(())
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
