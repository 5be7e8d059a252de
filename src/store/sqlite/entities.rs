//! Entity rows, their version history, outbox and FTS rows. Write functions
//! run on the writer thread inside its transaction; reads on a reader.

use super::rows::{self, StoredEntity, ENTITY_COLS};
use super::threads::Seq;
use super::SqliteStore;
use super::{outbox, search, sql_err};
use crate::domain::export::VersionRecord;
use crate::domain::rules::entities::{
    self as entity_rules, Ends, EntityChange, EntityOp, NextVersion, VersionMeta,
};
use crate::domain::rules::history;
use crate::domain::*;
use crate::store::prelude::*;
use crate::store::{cursor, Ctx};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{Map, Value};

pub fn load(conn: &Connection, scope: &Scope, id: &str) -> DomainResult<Option<StoredEntity>> {
    let sql = format!(
        "SELECT {ENTITY_COLS} FROM entities WHERE org_id = ?1 AND project_id = ?2 AND id = ?3"
    );
    conn.prepare_cached(&sql)
        .and_then(|mut st| {
            st.query_row(params![scope.org, scope.project, id], rows::stored_entity)
                .optional()
        })
        .map_err(sql_err)
}

/// What a new version row records.
struct NewVersion<'a> {
    op: VersionOp,
    parent: Option<(i64, &'a Properties)>,
    entity: &'a Entity,
    actor: &'a str,
}

fn insert_version(conn: &Connection, scope: &Scope, v: NewVersion) -> DomainResult<()> {
    let parent_chain: Option<i64> = match v.parent {
        Some((p, _)) => conn
            .prepare_cached(
                "SELECT chain FROM entity_versions
                 WHERE org_id = ?1 AND project_id = ?2 AND entity_id = ?3 AND version = ?4",
            )
            .and_then(|mut st| {
                st.query_row(params![scope.org, scope.project, v.entity.id, p], |r| {
                    r.get(0)
                })
                .optional()
            })
            .map_err(sql_err)?,
        None => None,
    };
    let empty = Map::new();
    let parent_props = v.parent.map_or(&empty, |(_, props)| props);
    let row = history::version_row(parent_chain, parent_props, &v.entity.properties);
    let record = VersionRecord {
        entity: v.entity.id.clone(),
        version: v.entity.version,
        parent: v.parent.map(|(p, _)| p),
        op: v.op,
        entity_type: v.entity.entity_type.clone(),
        deleted: v.entity.deleted_at.is_some(),
        actor: v.actor.to_owned(),
        at: v.entity.updated_at.clone(),
        patch: row.patch,
        snapshot: row.snapshot,
        chain: row.chain,
    };
    store_version(conn, scope, &record, v.entity.change_seq)
}

/// Stores one version row as given (a write's, or an imported one).
pub(super) fn store_version(
    conn: &Connection,
    scope: &Scope,
    v: &VersionRecord,
    seq: i64,
) -> DomainResult<()> {
    store_version_json(conn, scope, v, &VersionJson::of(v), seq)
}

/// A version row's JSON columns as text.
pub(super) struct VersionJson {
    patch: String,
    snapshot: Option<String>,
}

impl VersionJson {
    pub(super) fn of(v: &VersionRecord) -> Self {
        VersionJson {
            patch: v.patch.to_string(),
            snapshot: v.snapshot.as_ref().map(|s| s.to_string()),
        }
    }
}

/// `store_version` with the JSON columns already written out.
pub(super) fn store_version_json(
    conn: &Connection,
    scope: &Scope,
    v: &VersionRecord,
    json: &VersionJson,
    seq: i64,
) -> DomainResult<()> {
    conn.prepare_cached(
        "INSERT INTO entity_versions (org_id, project_id, entity_id, version, parent_version, op,
             type, deleted, actor, at, patch, snapshot, chain, seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )
    .and_then(|mut st| {
        st.execute(params![
            scope.org,
            scope.project,
            v.entity,
            v.version,
            v.parent,
            v.op.as_str(),
            v.entity_type,
            v.deleted,
            v.actor,
            v.at,
            json.patch,
            json.snapshot,
            v.chain,
            seq,
        ])
    })
    .map_err(sql_err)?;
    Ok(())
}

fn props_json(props: &Properties) -> String {
    serde_json::to_string(props).expect("JSON maps serialise")
}

/// Inserts the entity's row with the change sequence `seq`; its rowid.
pub(super) fn insert_row(
    conn: &Connection,
    scope: &Scope,
    e: &Entity,
    seq: i64,
) -> DomainResult<i64> {
    insert_row_json(conn, scope, e, &props_json(&e.properties), seq)
}

/// `insert_row` with the properties already written out as `properties`.
pub(super) fn insert_row_json(
    conn: &Connection,
    scope: &Scope,
    e: &Entity,
    properties: &str,
    seq: i64,
) -> DomainResult<i64> {
    conn.prepare_cached(
        "INSERT INTO entities (org_id, project_id, id, type, properties, version, created_at,
             updated_at, created_by, updated_by, deleted_at, seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )
    .and_then(|mut st| {
        st.execute(params![
            scope.org,
            scope.project,
            e.id,
            e.entity_type,
            properties,
            e.version,
            e.created_at,
            e.updated_at,
            e.created_by,
            e.updated_by,
            e.deleted_at,
            seq,
        ])
    })
    .map_err(sql_err)?;
    Ok(conn.last_insert_rowid())
}

pub(super) fn update_row(conn: &Connection, rowid: i64, e: &Entity) -> DomainResult<()> {
    conn.prepare_cached(
        "UPDATE entities SET type = ?2, properties = ?3, version = ?4, updated_at = ?5,
             updated_by = ?6, deleted_at = ?7, seq = ?8
         WHERE rowid = ?1",
    )
    .and_then(|mut st| {
        st.execute(params![
            rowid,
            e.entity_type,
            props_json(&e.properties),
            e.version,
            e.updated_at,
            e.updated_by,
            e.deleted_at,
            e.change_seq,
        ])
    })
    .map_err(sql_err)?;
    Ok(())
}

/// Applies one entity op: loads the row, lets the rules decide, stores the
/// result with its version, search and outbox rows.
pub fn write(
    conn: &Connection,
    seq: &mut Seq,
    ctx: &Ctx,
    id: &str,
    op: EntityOp,
) -> DomainResult<WriteOutcome> {
    let scope = ctx.scope;
    let stored = load(conn, scope, id)?;
    let revert_target = match op.revert_to() {
        Some(v) => state_at(conn, scope, id, v)?,
        None => None,
    };
    let rowid = stored.as_ref().map(|s| s.rowid);
    let current = stored.map(|s| s.entity);
    match entity_rules::decide(id, op, current, revert_target, &ctx.stamp)? {
        EntityChange::Create(mut entity) => {
            entity.change_seq = seq.next();
            let rowid = insert_row(conn, scope, &entity, entity.change_seq)?;
            let version = NewVersion {
                op: VersionOp::Create,
                parent: None,
                entity: &entity,
                actor: ctx.actor(),
            };
            insert_version(conn, scope, version)?;
            search::index(conn, scope, rowid, &entity.properties)?;
            outbox::record(
                conn,
                scope,
                ("entity", id, "create", Some(1)),
                entity.change_seq,
            )?;
            Ok(WriteOutcome::Entity {
                entity,
                created: true,
            })
        }
        EntityChange::Version(next) => {
            let rowid = rowid.expect("a new version has a row");
            let NextVersion {
                mut entity,
                op,
                parent,
                ends,
            } = next;
            entity.change_seq = seq.next();
            update_row(conn, rowid, &entity)?;
            let version = NewVersion {
                op,
                parent: Some((parent.0, &parent.1)),
                entity: &entity,
                actor: ctx.actor(),
            };
            insert_version(conn, scope, version)?;
            search::remove(conn, rowid)?;
            if entity.deleted_at.is_none() {
                search::index(conn, scope, rowid, &entity.properties)?;
            }
            let change = ("entity", id, op.as_str(), Some(entity.version));
            outbox::record(conn, scope, change, entity.change_seq)?;
            match ends {
                Ends::Hide => super::relationships::hide_touching(conn, scope, id)?,
                Ends::Revive => super::relationships::revive_touching(conn, scope, id)?,
                Ends::Unchanged => {}
            }
            Ok(WriteOutcome::Entity {
                entity,
                created: false,
            })
        }
        EntityChange::Purge => {
            let seq = purge(
                conn,
                seq,
                scope,
                rowid.expect("a purged entity has a row"),
                id,
            )?;
            let (docs, blobs) = super::docs::purge_owned_by(conn, scope, id)?;
            Ok(WriteOutcome::Purged {
                id: id.to_owned(),
                seq,
                docs,
                blobs,
            })
        }
    }
}

/// Erases the entity, its history and its relationships; returns the change
/// sequence of the erasure.
fn purge(
    conn: &Connection,
    seq: &mut Seq,
    scope: &Scope,
    rowid: i64,
    id: &str,
) -> DomainResult<i64> {
    search::remove(conn, rowid)?;
    let s = (scope.org.as_str(), scope.project.as_str(), id);
    for sql in [
        "DELETE FROM entities WHERE org_id = ?1 AND project_id = ?2 AND id = ?3",
        "DELETE FROM entity_versions WHERE org_id = ?1 AND project_id = ?2 AND entity_id = ?3",
        "DELETE FROM relationships WHERE org_id = ?1 AND project_id = ?2 AND (from_id = ?3 OR to_id = ?3)",
    ] {
        conn.prepare_cached(sql)
            .and_then(|mut st| st.execute(s))
            .map_err(sql_err)?;
    }
    let at = seq.next();
    outbox::record(conn, scope, ("entity", id, "purge", None), at)?;
    Ok(at)
}

/// Type and properties of `version`, rebuilt from the nearest snapshot.
pub fn state_at(
    conn: &Connection,
    scope: &Scope,
    id: &str,
    version: i64,
) -> DomainResult<Option<(String, Properties)>> {
    let mut st = conn
        .prepare_cached(
            "SELECT parent_version, type, patch, snapshot FROM entity_versions
             WHERE org_id = ?1 AND project_id = ?2 AND entity_id = ?3 AND version = ?4",
        )
        .map_err(sql_err)?;
    let mut entity_type = None;
    let props = history::rebuild(version, |v| {
        let row: Option<(Option<i64>, String, String, Option<String>)> = st
            .query_row(params![scope.org, scope.project, id, v], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()
            .map_err(sql_err)?;
        let Some((parent, ty, patch, snapshot)) = row else {
            return Ok(None);
        };
        entity_type.get_or_insert(ty);
        let json = |t: &str| serde_json::from_str::<Value>(t).map_err(DomainError::internal);
        Ok(Some(history::ChainLink {
            parent,
            patch: json(&patch)?,
            snapshot: snapshot.as_deref().map(json).transpose()?,
        }))
    })?;
    Ok(props.map(|p| (entity_type.unwrap_or_default(), p)))
}

/// The entity as it was at `version` (metadata from that version's row).
pub fn read_version(
    conn: &Connection,
    scope: &Scope,
    id: &str,
    version: i64,
) -> DomainResult<Entity> {
    let current = load(conn, scope, id)?
        .ok_or_else(|| entity_rules::not_found(id))?
        .entity;
    let meta = conn
        .prepare_cached(
            "SELECT at, actor, deleted, seq FROM entity_versions
             WHERE org_id = ?1 AND project_id = ?2 AND entity_id = ?3 AND version = ?4",
        )
        .and_then(|mut st| {
            st.query_row(params![scope.org, scope.project, id, version], |r| {
                Ok(VersionMeta {
                    at: r.get(0)?,
                    actor: r.get(1)?,
                    deleted: r.get(2)?,
                    change_seq: r.get(3)?,
                })
            })
            .optional()
        })
        .map_err(sql_err)?;
    let state = state_at(conn, scope, id, version)?;
    entity_rules::at_version(current, version, meta, state)
}

/// The version current at time `at`, if the entity existed then.
pub fn version_as_of(
    conn: &Connection,
    scope: &Scope,
    id: &str,
    at: &str,
) -> DomainResult<Option<i64>> {
    conn.prepare_cached(
        "SELECT MAX(version) FROM entity_versions
         WHERE org_id = ?1 AND project_id = ?2 AND entity_id = ?3 AND at <= ?4",
    )
    .and_then(|mut st| st.query_row(params![scope.org, scope.project, id, at], |r| r.get(0)))
    .map_err(sql_err)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct IdCursor {
    id: String,
}

/// One page of live entities in id order, filtered.
pub fn list(
    conn: &Connection,
    scope: &Scope,
    filter: &EntityFilter,
    page: &PageRequest,
) -> DomainResult<Page<Entity>> {
    let after = match &page.cursor {
        Some(c) => cursor::decode::<IdCursor>(c)?.id,
        None => String::new(),
    };
    let mut sql = format!(
        "SELECT {ENTITY_COLS} FROM entities WHERE org_id = ?1 AND project_id = ?2 AND id > ?3
         AND deleted_at IS NULL"
    );
    let mut args: Vec<rusqlite::types::Value> = vec![
        scope.org.clone().into(),
        scope.project.clone().into(),
        after.into(),
    ];
    if let Some(t) = &filter.entity_type {
        args.push(t.clone().into());
        sql.push_str(&format!(" AND type = ?{}", args.len()));
    }
    if let Some(since) = &filter.updated_since {
        args.push(since.clone().into());
        sql.push_str(&format!(" AND updated_at >= ?{}", args.len()));
    }
    // Top-level scalar keys narrow the scan in SQL; the exact containment
    // test below decides.
    if let Some(contains) = &filter.contains {
        for (key, value) in contains {
            // Strings and booleans have one JSON spelling; numbers do not (1 = 1.0).
            let exact = value.is_string() || value.is_boolean();
            if exact && !key.contains(['"', '\\']) {
                args.push(format!("$.\"{key}\"").into());
                args.push(value.to_string().into());
                sql.push_str(&format!(
                    " AND properties -> ?{} = ?{}",
                    args.len() - 1,
                    args.len()
                ));
            }
        }
    }
    // Fetch in chunks until the page is full or a bounded scan ends.
    let chunk = page.limit.max(64);
    args.push((chunk as i64).into());
    sql.push_str(&format!(" ORDER BY id LIMIT ?{}", args.len()));
    let needle = filter.contains.clone().map(Value::Object);
    let mut st = conn.prepare_cached(&sql).map_err(sql_err)?;
    let mut items = Vec::new();
    let mut scanned = 0usize;
    loop {
        let rows: Vec<StoredEntity> = st
            .query_map(rusqlite::params_from_iter(args.iter()), rows::stored_entity)
            .and_then(|rows| rows.collect())
            .map_err(sql_err)?;
        let exhausted = rows.len() < chunk;
        scanned += rows.len();
        let mut last = None;
        let mut stopped_early = false;
        let count = rows.len();
        for (i, row) in rows.into_iter().enumerate() {
            last = Some(row.entity.id.clone());
            let keep = needle.as_ref().is_none_or(|n| {
                patch::json_contains(&Value::Object(row.entity.properties.clone()), n)
            });
            if keep {
                items.push(row.entity);
                if items.len() == page.limit {
                    stopped_early = i + 1 < count;
                    break;
                }
            }
        }
        let full = items.len() == page.limit;
        if full || exhausted {
            let more = full && (stopped_early || !exhausted);
            let next_cursor = more
                .then(|| {
                    items
                        .last()
                        .map(|e| cursor::encode(&IdCursor { id: e.id.clone() }))
                })
                .flatten();
            return Ok(Page { items, next_cursor });
        }
        // Give up on a sparse filter after a bounded scan: hand back a cursor
        // where the scan stopped so the client continues from there.
        if scanned >= page.limit.max(1) * 64 {
            let next_cursor = last.map(|id| cursor::encode(&IdCursor { id }));
            return Ok(Page { items, next_cursor });
        }
        args[2] = last.expect("a non-exhausted chunk has rows").into();
    }
}

pub fn versions(
    conn: &Connection,
    scope: &Scope,
    id: &str,
    page: &PageRequest,
) -> DomainResult<Page<VersionInfo>> {
    if load(conn, scope, id)?.is_none() {
        return Err(DomainError::not_found(format!("entity {id}")));
    }
    let before = cursor::before_version(page)?;
    let mut st = conn
        .prepare_cached(
            "SELECT version, parent_version, op, actor, at, patch FROM entity_versions
             WHERE org_id = ?1 AND project_id = ?2 AND entity_id = ?3 AND version < ?4
             ORDER BY version DESC LIMIT ?5",
        )
        .map_err(sql_err)?;
    let limit = page.limit as i64 + 1;
    let items: Vec<VersionInfo> = st
        .query_map(params![scope.org, scope.project, id, before, limit], |r| {
            let op: String = r.get(2)?;
            let patch: String = r.get(5)?;
            Ok(VersionInfo {
                version: r.get(0)?,
                parent_version: r.get(1)?,
                op: VersionOp::parse(&op).unwrap_or(VersionOp::Update),
                actor: r.get(3)?,
                at: r.get(4)?,
                patch: serde_json::from_str(&patch).unwrap_or(Value::Null),
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(sql_err)?;
    Ok(cursor::page_after(items, page.limit, |v: &VersionInfo| {
        cursor::VersionCursor { v: v.version }
    }))
}

#[async_trait]
impl EntityStore for SqliteStore {
    async fn write(
        &self,
        scope: &Scope,
        caller: &Caller,
        ops: Vec<WriteOp>,
    ) -> DomainResult<Vec<WriteOutcome>> {
        let (scope, caller) = (scope.clone(), caller.clone());
        self.writer
            .write(move |conn, seq| {
                super::project_exists(conn, &scope)?;
                ops.into_iter()
                    .enumerate()
                    .map(|(index, op)| {
                        super::apply(conn, seq, &scope, &caller, op)
                            .map_err(crate::store::in_batch(index))
                    })
                    .collect::<DomainResult<Vec<_>>>()
            })
            .await
    }

    async fn get_entity(&self, scope: &Scope, id: &str, read: &EntityRead) -> DomainResult<Entity> {
        let (s, id, read) = (scope.clone(), id.to_owned(), read.clone());
        self.read(move |conn| {
            let version = match (&read.version, &read.as_of) {
                (Some(v), _) => Some(*v),
                (None, Some(at)) => Some(
                    version_as_of(conn, &s, &id, at)?
                        .ok_or_else(|| entity_rules::not_found(&id))?,
                ),
                (None, None) => None,
            };
            let entity = match version {
                Some(v) => read_version(conn, &s, &id, v)?,
                None => {
                    load(conn, &s, &id)?
                        .ok_or_else(|| entity_rules::not_found(&id))?
                        .entity
                }
            };
            entity_rules::visible(entity, &read)
        })
        .await
    }

    async fn list_entities(
        &self,
        scope: &Scope,
        filter: &EntityFilter,
        page: &PageRequest,
    ) -> DomainResult<Page<Entity>> {
        let (s, filter, page) = (scope.clone(), filter.clone(), page.clone());
        self.read(move |conn| {
            super::project_exists(conn, &s)?;
            list(conn, &s, &filter, &page)
        })
        .await
    }

    async fn list_versions(
        &self,
        scope: &Scope,
        id: &str,
        page: &PageRequest,
    ) -> DomainResult<Page<VersionInfo>> {
        let (s, id, page) = (scope.clone(), id.to_owned(), page.clone());
        self.read(move |conn| versions(conn, &s, &id, &page)).await
    }

    async fn get_relationship(&self, scope: &Scope, id: &str) -> DomainResult<Relationship> {
        let (s, id) = (scope.clone(), id.to_owned());
        self.read(move |conn| {
            super::relationships::load(conn, &s, &id)?
                .ok_or_else(|| DomainError::not_found(format!("relationship {id}")))
        })
        .await
    }

    async fn list_relationships(
        &self,
        scope: &Scope,
        filter: &RelationshipFilter,
        page: &PageRequest,
    ) -> DomainResult<Page<Relationship>> {
        let (s, filter, page) = (scope.clone(), filter.clone(), page.clone());
        self.read(move |conn| {
            super::project_exists(conn, &s)?;
            super::relationships::list(conn, &s, &filter, &page)
        })
        .await
    }
}
