//! Entity rows, version history, outbox and (generated) search documents on
//! PostgreSQL. Write functions run inside the caller's transaction and lock
//! the entity row (`FOR UPDATE`), so concurrent daemons serialise per entity.

use super::rows::{self, execute, next_seq, query, query_opt, ENTITY_COLS};
use super::{locks, outbox, Ctx};
use crate::domain::patch::apply_merge_patch;
use crate::domain::rules::history;
use crate::domain::*;
use crate::store::cursor;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::{json, Map, Value};

pub async fn load<C: GenericClient>(
    c: &C,
    scope: &Scope,
    id: &str,
    lock: bool,
) -> DomainResult<Option<Entity>> {
    let sql = format!(
        "SELECT {ENTITY_COLS} FROM entities WHERE org_id = $1 AND project_id = $2 AND id = $3{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    Ok(query_opt(c, &sql, &[&scope.org, &scope.project, &id])
        .await?
        .map(|r| rows::entity(&r)))
}

/// The current row, locked for this transaction, with the history `chain`
/// of its version, so writing the next version needs no further lookup.
struct Locked {
    entity: Entity,
    chain: Option<i64>,
}

async fn lock<C: GenericClient>(c: &C, scope: &Scope, id: &str) -> DomainResult<Option<Locked>> {
    let row = query_opt(
        c,
        "SELECT e.id, e.type, e.properties, e.version, e.created_at, e.updated_at, e.created_by,
                e.updated_by, e.deleted_at, e.seq,
                (SELECT v.chain FROM entity_versions v
                 WHERE v.org_id = $1 AND v.project_id = $2 AND v.entity_id = $3
                   AND v.version = e.version)
         FROM entities e
         WHERE e.org_id = $1 AND e.project_id = $2 AND e.id = $3
         FOR UPDATE OF e",
        &[&scope.org, &scope.project, &id],
    )
    .await?;
    Ok(row.map(|r| Locked {
        entity: rows::entity(&r),
        chain: r.get::<_, Option<i32>>(10).map(i64::from),
    }))
}

async fn lock_live<C: GenericClient>(c: &C, scope: &Scope, id: &str) -> DomainResult<Locked> {
    match lock(c, scope, id).await? {
        Some(l) if l.entity.deleted_at.is_none() => Ok(l),
        _ => Err(DomainError::not_found(format!("entity {id}"))),
    }
}

fn check_expected(expected: Option<i64>, current: i64) -> DomainResult<()> {
    match expected {
        Some(expected) if expected != current => {
            Err(DomainError::PreconditionFailed { expected, current })
        }
        _ => Ok(()),
    }
}

/// The project's share lock, row, first version, outbox entry and audit
/// row in one statement, so that a create alone needs no transaction
/// around it. Answers whether the project was found and the new row's
/// change sequence (none when the id is taken).
const CREATE_SQL: &str = "
WITH p AS (
    SELECT pk FROM projects WHERE org_id = $1 AND id = $2 FOR SHARE),
e AS (
    INSERT INTO entities (org_id, project_id, id, type, properties, version, created_at,
        updated_at, created_by, updated_by, seq)
    SELECT $1, $2, $3, $4, $5, 1, $6, $6, $7, $7, nextval('change_seq') FROM p
    ON CONFLICT DO NOTHING
    RETURNING seq),
v AS (
    INSERT INTO entity_versions (org_id, project_id, entity_id, version, parent_version, op,
        type, deleted, actor, at, patch, snapshot, chain, seq)
    SELECT $1, $2, $3, 1, NULL, 'create', $4, false, $7, $6, $8::jsonb, $9::jsonb, $10::int, seq
    FROM e),
o AS (
    INSERT INTO outbox (seq, org_id, project_id, kind, target_id, op, at)
    SELECT seq, $1, $2, 'entity', $3, 'create', $6 FROM e),
a AS (
    INSERT INTO audit_events (org_id, project_id, at, actor, action, target, ip, user_agent,
        details)
    SELECT $1, $2, now(), $7, 'entity.create', $3, $11::text, $12::text,
        jsonb_build_object('version', 1, 'type', $4::text)
    FROM e)
SELECT EXISTS (SELECT 1 FROM p), (SELECT seq FROM e)";

pub async fn create<C: GenericClient>(
    c: &C,
    ctx: &Ctx<'_>,
    id: &str,
    entity_type: &str,
    properties: Properties,
) -> DomainResult<Entity> {
    let now = Utc::now();
    let row = history::version_row(None, &Map::new(), &properties);
    let properties_json = Value::Object(properties);
    let answer = query_opt(
        c,
        CREATE_SQL,
        &[
            &ctx.scope.org,
            &ctx.scope.project,
            &id,
            &entity_type,
            &properties_json,
            &now,
            &ctx.actor(),
            &row.patch,
            &row.snapshot,
            &(row.chain as i32),
            &ctx.caller.ip,
            &ctx.caller.user_agent,
        ],
    )
    .await?
    .ok_or_else(|| DomainError::internal("entity insert answered no row"))?;
    if !answer.get::<_, bool>(0) {
        return Err(DomainError::not_found(format!(
            "project {}",
            ctx.scope.project
        )));
    }
    let Some(seq) = answer.get::<_, Option<i64>>(1) else {
        return Err(DomainError::Conflict(format!("entity {id} already exists")));
    };
    let Value::Object(properties) = properties_json else {
        unreachable!("built from an object above")
    };
    Ok(Entity {
        id: id.to_owned(),
        entity_type: entity_type.to_owned(),
        properties,
        version: 1,
        created_at: rows::time(now),
        updated_at: rows::time(now),
        created_by: ctx.actor().to_owned(),
        updated_by: ctx.actor().to_owned(),
        deleted_at: None,
        change_seq: seq,
    })
}

/// A change that makes a new version of an existing entity.
pub struct Change {
    pub op: VersionOp,
    pub entity_type: Option<String>,
    pub properties: Option<Properties>,
    /// The parent when it is not the current version (revert).
    pub parent: Option<(i64, Properties)>,
}

impl Change {
    pub fn new(op: VersionOp) -> Self {
        Change {
            op,
            entity_type: None,
            properties: None,
            parent: None,
        }
    }
}

/// Row update, version row, outbox entry and audit row in one statement.
const WRITE_VERSION_SQL: &str = "
WITH s AS (SELECT nextval('change_seq') AS seq),
u AS (
    UPDATE entities SET type = $4, properties = $5, version = $6, updated_at = $7,
        updated_by = $8, deleted_at = $9, seq = (SELECT seq FROM s)
    WHERE org_id = $1 AND project_id = $2 AND id = $3),
v AS (
    INSERT INTO entity_versions (org_id, project_id, entity_id, version, parent_version, op,
        type, deleted, actor, at, patch, snapshot, chain, seq)
    SELECT $1, $2, $3, $6, $10::bigint, $11::text, $4, $9::timestamptz IS NOT NULL, $8, $7,
        $12::jsonb, $13::jsonb, $14::int, seq
    FROM s),
o AS (
    INSERT INTO outbox (seq, org_id, project_id, kind, target_id, op, at)
    SELECT seq, $1, $2, 'entity', $3, $11::text, $7 FROM s),
a AS (
    INSERT INTO audit_events (org_id, project_id, at, actor, action, target, ip, user_agent,
        details)
    VALUES ($1, $2, now(), $8, $15::text, $3, $16::text, $17::text,
        jsonb_build_object('version', $6::bigint, 'type', $4::text)))
SELECT seq FROM s";

async fn write_version<C: GenericClient>(
    c: &C,
    ctx: &Ctx<'_>,
    old: Locked,
    change: Change,
) -> DomainResult<Entity> {
    let now = Utc::now();
    let Locked { entity: old, chain } = old;
    let mut e = old.clone();
    if let Some(t) = change.entity_type {
        e.entity_type = t;
    }
    if let Some(p) = change.properties {
        e.properties = p;
    }
    validate::properties(&e.properties)?;
    e.version = old.version + 1;
    e.updated_at = rows::time(now);
    e.updated_by = ctx.actor().to_owned();
    let deleted_at: Option<DateTime<Utc>> = match change.op {
        VersionOp::Delete => Some(now),
        VersionOp::Restore => None,
        _ => old
            .deleted_at
            .as_deref()
            .map(rows::parse_time)
            .transpose()?,
    };
    e.deleted_at = deleted_at.map(rows::time);
    let (parent_version, parent_chain, parent_props) = match &change.parent {
        Some((v, props)) => (*v, version_chain(c, ctx.scope, &e.id, *v).await?, props),
        None => (old.version, chain, &old.properties),
    };
    let row = history::version_row(parent_chain, parent_props, &e.properties);
    let written = query_opt(
        c,
        WRITE_VERSION_SQL,
        &[
            &ctx.scope.org,
            &ctx.scope.project,
            &e.id,
            &e.entity_type,
            &Value::Object(e.properties.clone()),
            &e.version,
            &now,
            &ctx.actor(),
            &deleted_at,
            &parent_version,
            &change.op.as_str(),
            &row.patch,
            &row.snapshot,
            &(row.chain as i32),
            &ctx.action.as_str(),
            &ctx.caller.ip,
            &ctx.caller.user_agent,
        ],
    )
    .await?;
    e.change_seq = written.map(|r| r.get(0)).unwrap_or_default();
    Ok(e)
}

async fn version_chain<C: GenericClient>(
    c: &C,
    scope: &Scope,
    id: &str,
    version: i64,
) -> DomainResult<Option<i64>> {
    Ok(query_opt(
        c,
        "SELECT chain FROM entity_versions
         WHERE org_id = $1 AND project_id = $2 AND entity_id = $3 AND version = $4",
        &[&scope.org, &scope.project, &id, &version],
    )
    .await?
    .map(|r| i64::from(r.get::<_, i32>(0))))
}

pub async fn put<C: GenericClient>(
    c: &C,
    ctx: &Ctx<'_>,
    id: &str,
    entity_type: &str,
    properties: Properties,
    expected: Option<i64>,
) -> DomainResult<(Entity, bool)> {
    match lock(c, ctx.scope, id).await? {
        None => {
            if let Some(expected) = expected {
                return Err(DomainError::PreconditionFailed {
                    expected,
                    current: 0,
                });
            }
            create(c, ctx, id, entity_type, properties)
                .await
                .map(|e| (e, true))
        }
        Some(l) if l.entity.deleted_at.is_some() => Err(DomainError::Conflict(format!(
            "entity {id} is deleted; restore it before replacing it"
        ))),
        Some(l) => {
            check_expected(expected, l.entity.version)?;
            let mut change = Change::new(VersionOp::Replace);
            change.entity_type = Some(entity_type.to_owned());
            change.properties = Some(properties);
            write_version(c, ctx, l, change).await.map(|e| (e, false))
        }
    }
}

pub async fn patch<C: GenericClient>(
    c: &C,
    ctx: &Ctx<'_>,
    id: &str,
    patch: &Value,
    entity_type: Option<String>,
    expected: Option<i64>,
) -> DomainResult<Entity> {
    let l = lock_live(c, ctx.scope, id).await?;
    check_expected(expected, l.entity.version)?;
    let mut merged = Value::Object(l.entity.properties.clone());
    apply_merge_patch(&mut merged, patch);
    let Value::Object(properties) = merged else {
        return Err(DomainError::BadRequest(
            "properties must be a JSON object".into(),
        ));
    };
    let mut change = Change::new(VersionOp::Update);
    change.entity_type = entity_type;
    change.properties = Some(properties);
    write_version(c, ctx, l, change).await
}

pub async fn delete<C: GenericClient>(
    c: &C,
    ctx: &Ctx<'_>,
    id: &str,
    expected: Option<i64>,
) -> DomainResult<Entity> {
    let l = lock_live(c, ctx.scope, id).await?;
    check_expected(expected, l.entity.version)?;
    let e = write_version(c, ctx, l, Change::new(VersionOp::Delete)).await?;
    locks::relationships_touching(c, ctx.scope, id).await?;
    super::relationships::hide_touching(c, ctx.scope, id).await?;
    Ok(e)
}

/// Restores the entity and revives its hidden relationships whose other end
/// is live. Those other ends are share-locked first (locks.rs), so none can
/// change liveness between the check and the commit.
pub async fn restore<C: GenericClient>(c: &C, ctx: &Ctx<'_>, id: &str) -> DomainResult<Entity> {
    let s = ctx.scope;
    // Read unlocked, then locked in id order together with the entity. Once
    // the deleted entity is locked no relationship can gain it as an end,
    // so a second read finds at most the ends that joined in between.
    let ends = locks::revivable_ends(c, s, id).await?;
    locks::entities(c, s, id, &ends).await?;
    let joined: Vec<String> = locks::revivable_ends(c, s, id)
        .await?
        .into_iter()
        .filter(|end| !ends.contains(end))
        .collect();
    if !joined.is_empty() {
        // Out of order, rarely: a deadlock here is retried.
        locks::entities(c, s, id, &joined).await?;
    }
    let l = lock(c, s, id)
        .await?
        .ok_or_else(|| DomainError::not_found(format!("entity {id}")))?;
    if l.entity.deleted_at.is_none() {
        return Err(DomainError::Conflict(format!("entity {id} is not deleted")));
    }
    let e = write_version(c, ctx, l, Change::new(VersionOp::Restore)).await?;
    super::relationships::revive_touching(c, s, id).await?;
    Ok(e)
}

pub async fn revert<C: GenericClient>(
    c: &C,
    ctx: &Ctx<'_>,
    id: &str,
    to_version: i64,
    expected: Option<i64>,
) -> DomainResult<Entity> {
    let l = lock_live(c, ctx.scope, id).await?;
    check_expected(expected, l.entity.version)?;
    let (entity_type, properties) =
        state_at(c, ctx.scope, id, to_version)
            .await?
            .ok_or_else(|| {
                DomainError::Unprocessable(format!("entity {id} has no version {to_version}"))
            })?;
    let mut change = Change::new(VersionOp::Revert);
    change.entity_type = Some(entity_type);
    change.properties = Some(properties.clone());
    change.parent = Some((to_version, properties));
    write_version(c, ctx, l, change).await
}

/// Erases the entity, its history and its relationships; returns the change
/// sequence of the erasure.
pub async fn purge<C: GenericClient>(c: &C, ctx: &Ctx<'_>, id: &str) -> DomainResult<i64> {
    if load(c, ctx.scope, id, true).await?.is_none() {
        return Err(DomainError::not_found(format!("entity {id}")));
    }
    let s = ctx.scope;
    locks::relationships_touching(c, s, id).await?;
    for sql in [
        "DELETE FROM entities WHERE org_id = $1 AND project_id = $2 AND id = $3",
        "DELETE FROM entity_versions WHERE org_id = $1 AND project_id = $2 AND entity_id = $3",
        "DELETE FROM relationships WHERE org_id = $1 AND project_id = $2 AND (from_id = $3 OR to_id = $3)",
    ] {
        execute(c, sql, &[&s.org, &s.project, &id]).await?;
    }
    let seq = next_seq(c).await?;
    outbox::record(c, s, "entity", id, "purge", seq, Utc::now()).await?;
    Ok(seq)
}

/// Type and properties of `version`, rebuilt from the nearest snapshot.
pub async fn state_at<C: GenericClient>(
    c: &C,
    scope: &Scope,
    id: &str,
    version: i64,
) -> DomainResult<Option<(String, Properties)>> {
    // Fetch the chain in one query: at most SNAPSHOT_EVERY rows up the tree.
    let rows = query(
        c,
        "WITH RECURSIVE chain AS (
             SELECT version, parent_version, type, patch, snapshot, 0 AS n FROM entity_versions
             WHERE org_id = $1 AND project_id = $2 AND entity_id = $3 AND version = $4
             UNION ALL
             SELECT v.version, v.parent_version, v.type, v.patch, v.snapshot, chain.n + 1
             FROM chain JOIN entity_versions v
               ON v.org_id = $1 AND v.project_id = $2 AND v.entity_id = $3
              AND v.version = chain.parent_version
             WHERE chain.snapshot IS NULL AND chain.n < $5::bigint
         )
         SELECT version, parent_version, type, patch, snapshot FROM chain",
        &[
            &scope.org,
            &scope.project,
            &id,
            &version,
            &(history::SNAPSHOT_EVERY + 1),
        ],
    )
    .await?;
    let entity_type: Option<String> = rows.first().map(|r| r.get(2));
    let props = history::rebuild(version, |v| {
        Ok(rows
            .iter()
            .find(|r| r.get::<_, i64>(0) == v)
            .map(|r| history::ChainLink {
                parent: r.get(1),
                patch: r.get(3),
                snapshot: r.get(4),
            }))
    })?;
    Ok(props.map(|p| (entity_type.unwrap_or_default(), p)))
}

pub async fn read_version<C: GenericClient>(
    c: &C,
    scope: &Scope,
    id: &str,
    version: i64,
) -> DomainResult<Entity> {
    let current = load(c, scope, id, false)
        .await?
        .ok_or_else(|| DomainError::not_found(format!("entity {id}")))?;
    let missing = || DomainError::not_found(format!("version {version} of entity {id}"));
    let meta = query_opt(
        c,
        "SELECT at, actor, deleted, seq FROM entity_versions
         WHERE org_id = $1 AND project_id = $2 AND entity_id = $3 AND version = $4",
        &[&scope.org, &scope.project, &id, &version],
    )
    .await?
    .ok_or_else(missing)?;
    let (entity_type, properties) = state_at(c, scope, id, version).await?.ok_or_else(missing)?;
    let at = rows::time(meta.get(0));
    Ok(Entity {
        id: id.to_owned(),
        entity_type,
        properties,
        version,
        created_at: current.created_at,
        updated_at: at.clone(),
        created_by: current.created_by,
        updated_by: meta.get(1),
        deleted_at: meta.get::<_, bool>(2).then_some(at),
        change_seq: meta.get(3),
    })
}

pub async fn version_as_of<C: GenericClient>(
    c: &C,
    scope: &Scope,
    id: &str,
    at: &str,
) -> DomainResult<Option<i64>> {
    let at = rows::parse_time(at)?;
    let row = query_opt(
        c,
        "SELECT MAX(version) FROM entity_versions
         WHERE org_id = $1 AND project_id = $2 AND entity_id = $3 AND at <= $4",
        &[&scope.org, &scope.project, &id, &at],
    )
    .await?;
    Ok(row.and_then(|r| r.get(0)))
}

pub async fn list<C: GenericClient>(
    c: &C,
    scope: &Scope,
    filter: &EntityFilter,
    page: &PageRequest,
) -> DomainResult<Page<Entity>> {
    let after = cursor::after_id(page)?;
    let since = filter
        .updated_since
        .as_deref()
        .map(rows::parse_time)
        .transpose()?;
    let contains = filter
        .contains
        .clone()
        .map(Value::Object)
        .unwrap_or(json!({}));
    // Two statements, so that a type filter can use the type index.
    let type_filter = match filter.entity_type {
        Some(_) => "type = $4",
        None => "$4::text IS NULL",
    };
    let sql = format!(
        "SELECT {ENTITY_COLS} FROM entities
         WHERE org_id = $1 AND project_id = $2 AND id > $3 AND deleted_at IS NULL
           AND {type_filter}
           AND ($5::timestamptz IS NULL OR updated_at >= $5)
           AND properties @> $6
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
            &filter.entity_type,
            &since,
            &contains,
            &limit,
        ],
    )
    .await?;
    let items = found.iter().map(rows::entity).collect();
    Ok(cursor::page_by(items, page.limit, |e: &Entity| {
        e.id.clone()
    }))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct VersionCursor {
    v: i64,
}

pub async fn versions<C: GenericClient>(
    c: &C,
    scope: &Scope,
    id: &str,
    page: &PageRequest,
) -> DomainResult<Page<VersionInfo>> {
    if load(c, scope, id, false).await?.is_none() {
        return Err(DomainError::not_found(format!("entity {id}")));
    }
    let before = match &page.cursor {
        Some(cur) => cursor::decode::<VersionCursor>(cur)?.v,
        None => i64::MAX,
    };
    let limit = page.limit as i64 + 1;
    let found = query(
        c,
        "SELECT version, parent_version, op, actor, at, patch FROM entity_versions
         WHERE org_id = $1 AND project_id = $2 AND entity_id = $3 AND version < $4
         ORDER BY version DESC LIMIT $5",
        &[&scope.org, &scope.project, &id, &before, &limit],
    )
    .await?;
    let items: Vec<VersionInfo> = found
        .iter()
        .map(|r| VersionInfo {
            version: r.get(0),
            parent_version: r.get(1),
            op: VersionOp::parse(r.get(2)).unwrap_or(VersionOp::Update),
            actor: r.get(3),
            at: rows::time(r.get(4)),
            patch: r.get(5),
        })
        .collect();
    Ok(cursor::page_after(items, page.limit, |v: &VersionInfo| {
        VersionCursor { v: v.version }
    }))
}

/// Full-text search: `to_tsquery` over sanitised prefix terms, `ts_rank`.
pub async fn search<C: GenericClient>(
    c: &C,
    scope: &Scope,
    terms: &[String],
    entity_type: Option<&str>,
    limit: usize,
) -> DomainResult<Vec<SearchHit>> {
    // Terms are alphanumeric words (see search::query_terms): no tsquery syntax.
    let tsquery = terms
        .iter()
        .map(|t| format!("{t}:*"))
        .collect::<Vec<_>>()
        .join(" & ");
    let sql = format!(
        "SELECT {ENTITY_COLS}, ts_rank(search, q) AS rank
         FROM entities, to_tsquery('english', $3) q
         WHERE org_id = $1 AND project_id = $2 AND deleted_at IS NULL AND search @@ q
           AND ($4::text IS NULL OR type = $4)
         ORDER BY rank DESC, id LIMIT $5"
    );
    let found = query(
        c,
        &sql,
        &[
            &scope.org,
            &scope.project,
            &tsquery,
            &entity_type,
            &(limit as i64),
        ],
    )
    .await?;
    Ok(found
        .iter()
        .map(|r| {
            let entity = rows::entity(r);
            SearchHit {
                highlights: crate::search::highlights(&entity.properties, terms),
                entity,
                score: f64::from(r.get::<_, f32>(10)),
            }
        })
        .collect())
}
