//! Entity rows, version history, outbox and (generated) search documents on
//! PostgreSQL. Write functions run inside the caller's transaction and lock
//! the entity row (`FOR UPDATE`), so concurrent daemons serialise per entity.

use super::rows::{self, execute, next_seq, query, query_opt, ENTITY_COLS};
use super::PgStore;
use super::{locks, outbox};
use crate::domain::rules::audit as audit_rules;
use crate::domain::rules::entities::{
    self as entity_rules, Ends, EntityChange, EntityOp, NextVersion, VersionMeta,
};
use crate::domain::rules::history;
use crate::domain::*;
use crate::store::cursor;
use crate::store::prelude::*;
use crate::store::Ctx;
use async_trait::async_trait;
use chrono::Utc;
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
    INSERT INTO outbox (seq, org_id, project_id, kind, target_id, op, at, version)
    SELECT seq, $1, $2, 'entity', $3, 'create', $6, 1 FROM e),
a AS (
    INSERT INTO audit_events (org_id, project_id, at, actor, action, target, ip, user_agent,
        details)
    SELECT $1, $2, now(), $7, $11::text, $3, $12::text, $13::text, $14::jsonb FROM e)
SELECT EXISTS (SELECT 1 FROM p), (SELECT seq FROM e)";

/// Inserts a first version (one statement, CREATE_SQL).
async fn insert<C: GenericClient>(
    c: &C,
    ctx: &Ctx<'_>,
    mut entity: Entity,
) -> DomainResult<WriteOutcome> {
    let row = history::version_row(None, &Map::new(), &entity.properties);
    let audit = audit_rules::of_entity(ctx.action, &entity, true);
    let properties = Value::Object(std::mem::take(&mut entity.properties));
    let answer = query_opt(
        c,
        CREATE_SQL,
        &[
            &ctx.scope.org,
            &ctx.scope.project,
            &entity.id,
            &entity.entity_type,
            &properties,
            &ctx.stamp.time,
            &ctx.actor(),
            &row.patch,
            &row.snapshot,
            &(row.chain as i32),
            &audit.action,
            &ctx.caller.ip,
            &ctx.caller.user_agent,
            &audit.details,
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
        return Err(entity_rules::already_exists(&entity.id));
    };
    let Value::Object(properties) = properties else {
        unreachable!("built from an object above")
    };
    entity.properties = properties;
    entity.change_seq = seq;
    Ok(WriteOutcome::Entity {
        entity,
        created: true,
    })
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
    INSERT INTO outbox (seq, org_id, project_id, kind, target_id, op, at, version)
    SELECT seq, $1, $2, 'entity', $3, $11::text, $7, $6 FROM s),
a AS (
    INSERT INTO audit_events (org_id, project_id, at, actor, action, target, ip, user_agent,
        details)
    VALUES ($1, $2, now(), $8, $15::text, $3, $16::text, $17::text, $18::jsonb))
SELECT seq FROM s";

/// Stores a new version decided by the rules (one statement,
/// WRITE_VERSION_SQL); `chain` is the current version's.
async fn write_version<C: GenericClient>(
    c: &C,
    ctx: &Ctx<'_>,
    next: &mut NextVersion,
    chain: Option<i64>,
) -> DomainResult<()> {
    let e = &next.entity;
    let (parent_version, parent_props) = (&next.parent.0, &next.parent.1);
    let parent_chain = if *parent_version == e.version - 1 {
        chain
    } else {
        version_chain(c, ctx.scope, &e.id, *parent_version).await?
    };
    let row = history::version_row(parent_chain, parent_props, &e.properties);
    let deleted_at = e.deleted_at.as_deref().map(rows::parse_time).transpose()?;
    let audit = audit_rules::of_entity(ctx.action, e, false);
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
            &ctx.stamp.time,
            &ctx.actor(),
            &deleted_at,
            &parent_version,
            &next.op.as_str(),
            &row.patch,
            &row.snapshot,
            &(row.chain as i32),
            &audit.action,
            &ctx.caller.ip,
            &ctx.caller.user_agent,
            &audit.details,
        ],
    )
    .await?;
    next.entity.change_seq = written.map(|r| r.get(0)).unwrap_or_default();
    Ok(())
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

/// Applies one entity op: locks what the decision depends on (locks.rs),
/// lets the rules decide, stores the result. A create is one statement
/// that takes its own locks.
pub async fn write<C: GenericClient>(
    c: &C,
    ctx: &Ctx<'_>,
    id: &str,
    op: EntityOp,
) -> DomainResult<WriteOutcome> {
    let s = ctx.scope;
    if let EntityOp::Create { .. } = op {
        return match entity_rules::decide(id, op, None, None, &ctx.stamp)? {
            EntityChange::Create(entity) => insert(c, ctx, entity).await,
            _ => unreachable!("a create of an unloaded entity creates"),
        };
    }
    if let EntityOp::Restore = op {
        lock_revivable_ends(c, s, id).await?;
    }
    let locked = lock(c, s, id).await?;
    let revert_target = match op.revert_to() {
        Some(v) => state_at(c, s, id, v).await?,
        None => None,
    };
    let chain = locked.as_ref().and_then(|l| l.chain);
    let current = locked.map(|l| l.entity);
    match entity_rules::decide(id, op, current, revert_target, &ctx.stamp)? {
        EntityChange::Create(entity) => insert(c, ctx, entity).await,
        EntityChange::Version(mut next) => {
            write_version(c, ctx, &mut next, chain).await?;
            match next.ends {
                Ends::Hide => {
                    locks::relationships_touching(c, s, id).await?;
                    super::relationships::hide_touching(c, s, id).await?;
                }
                Ends::Revive => super::relationships::revive_touching(c, s, id).await?,
                Ends::Unchanged => {}
            }
            Ok(WriteOutcome::Entity {
                entity: next.entity,
                created: false,
            })
        }
        EntityChange::Purge => {
            let seq = purge(c, s, id).await?;
            let (docs, blobs) = super::docs::purge_owned_by(c, s, id).await?;
            Ok(WriteOutcome::Purged {
                id: id.to_owned(),
                seq,
                docs,
                blobs,
            })
        }
    }
}

/// Before a restore: share-locks the other ends of the relationships it may
/// revive, with the entity itself, in id order, so none can change
/// liveness between the check and the commit. Read unlocked, then locked;
/// once the deleted entity is locked no relationship can gain it as an
/// end, so a second read finds at most the ends that joined in between.
pub(super) async fn lock_revivable_ends<C: GenericClient>(
    c: &C,
    s: &Scope,
    id: &str,
) -> DomainResult<()> {
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
    Ok(())
}

/// Erases the (locked) entity, its history and its relationships; returns
/// the change sequence of the erasure.
async fn purge<C: GenericClient>(c: &C, s: &Scope, id: &str) -> DomainResult<i64> {
    locks::relationships_touching(c, s, id).await?;
    for sql in [
        "DELETE FROM entities WHERE org_id = $1 AND project_id = $2 AND id = $3",
        "DELETE FROM entity_versions WHERE org_id = $1 AND project_id = $2 AND entity_id = $3",
        "DELETE FROM relationships WHERE org_id = $1 AND project_id = $2 AND (from_id = $3 OR to_id = $3)",
    ] {
        execute(c, sql, &[&s.org, &s.project, &id]).await?;
    }
    let seq = next_seq(c).await?;
    outbox::record(c, s, ("entity", id, "purge", None), seq, Utc::now()).await?;
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
        .ok_or_else(|| entity_rules::not_found(id))?;
    let meta = query_opt(
        c,
        "SELECT at, actor, deleted, seq FROM entity_versions
         WHERE org_id = $1 AND project_id = $2 AND entity_id = $3 AND version = $4",
        &[&scope.org, &scope.project, &id, &version],
    )
    .await?
    .map(|r| VersionMeta {
        at: rows::time(r.get(0)),
        actor: r.get(1),
        deleted: r.get(2),
        change_seq: r.get(3),
    });
    let state = state_at(c, scope, id, version).await?;
    entity_rules::at_version(current, version, meta, state)
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

pub async fn versions<C: GenericClient>(
    c: &C,
    scope: &Scope,
    id: &str,
    page: &PageRequest,
) -> DomainResult<Page<VersionInfo>> {
    if load(c, scope, id, false).await?.is_none() {
        return Err(DomainError::not_found(format!("entity {id}")));
    }
    let before = cursor::before_version(page)?;
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
        cursor::VersionCursor { v: v.version }
    }))
}

#[async_trait]
impl EntityStore for PgStore {
    async fn write(
        &self,
        scope: &Scope,
        caller: &Caller,
        ops: Vec<WriteOp>,
    ) -> DomainResult<Vec<WriteOutcome>> {
        let outcomes = super::tx::retrying(|| self.write_once(scope, caller, ops.clone())).await?;
        self.announce(scope, &outcomes);
        Ok(outcomes)
    }

    async fn get_entity(&self, scope: &Scope, id: &str, read: &EntityRead) -> DomainResult<Entity> {
        let c = self.client().await?;
        let version = match (&read.version, &read.as_of) {
            (Some(v), _) => Some(*v),
            (None, Some(at)) => Some(
                version_as_of(&c, scope, id, at)
                    .await?
                    .ok_or_else(|| entity_rules::not_found(id))?,
            ),
            (None, None) => None,
        };
        let entity = match version {
            Some(v) => read_version(&c, scope, id, v).await?,
            None => load(&c, scope, id, false)
                .await?
                .ok_or_else(|| entity_rules::not_found(id))?,
        };
        entity_rules::visible(entity, read)
    }

    async fn list_entities(
        &self,
        scope: &Scope,
        filter: &EntityFilter,
        page: &PageRequest,
    ) -> DomainResult<Page<Entity>> {
        let c = self.client().await?;
        super::tenancy::get_project(&c, &scope.org, &scope.project).await?;
        list(&c, scope, filter, page).await
    }

    async fn list_versions(
        &self,
        scope: &Scope,
        id: &str,
        page: &PageRequest,
    ) -> DomainResult<Page<VersionInfo>> {
        versions(&self.client().await?, scope, id, page).await
    }

    async fn get_relationship(&self, scope: &Scope, id: &str) -> DomainResult<Relationship> {
        super::relationships::load(&self.client().await?, scope, id, false)
            .await?
            .ok_or_else(|| DomainError::not_found(format!("relationship {id}")))
    }

    async fn list_relationships(
        &self,
        scope: &Scope,
        filter: &RelationshipFilter,
        page: &PageRequest,
    ) -> DomainResult<Page<Relationship>> {
        let c = self.client().await?;
        super::tenancy::get_project(&c, &scope.org, &scope.project).await?;
        super::relationships::list(&c, scope, filter, page).await
    }
}
