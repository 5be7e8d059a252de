//! Relationship rows. `live` mirrors "not deleted and both ends live", so the
//! graph indexes hold exactly the edges a traversal may walk.

use super::rows::{self, REL_COLS};
use super::threads::Seq;
use super::{outbox, sql_err};
use crate::domain::export::RelationshipRecord;
use crate::domain::rules::relationships::{self as rules, RelationshipOp};
use crate::domain::*;
use crate::store::{cursor, Ctx};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

/// A live relationship, or `None`.
pub fn load(conn: &Connection, scope: &Scope, id: &str) -> DomainResult<Option<Relationship>> {
    let sql = format!(
        "SELECT {REL_COLS} FROM relationships
         WHERE org_id = ?1 AND project_id = ?2 AND id = ?3 AND live = 1"
    );
    conn.prepare_cached(&sql)
        .and_then(|mut st| {
            st.query_row(params![scope.org, scope.project, id], rows::relationship)
                .optional()
        })
        .map_err(sql_err)
}

fn live_ends(conn: &Connection, scope: &Scope, ends: [&str; 2]) -> DomainResult<Vec<String>> {
    let mut live = Vec::new();
    for end in ends {
        let found = conn
            .prepare_cached(
                "SELECT 1 FROM entities
                 WHERE org_id = ?1 AND project_id = ?2 AND id = ?3 AND deleted_at IS NULL",
            )
            .and_then(|mut st| st.exists(params![scope.org, scope.project, end]))
            .map_err(sql_err)?;
        if found {
            live.push(end.to_owned());
        }
    }
    Ok(live)
}

fn taken(conn: &Connection, scope: &Scope, id: &str) -> DomainResult<bool> {
    conn.prepare_cached(
        "SELECT 1 FROM relationships WHERE org_id = ?1 AND project_id = ?2 AND id = ?3",
    )
    .and_then(|mut st| st.exists(params![scope.org, scope.project, id]))
    .map_err(sql_err)
}

/// Applies one relationship op: loads what the rules need, stores what they
/// decide with its outbox row.
pub fn write(
    conn: &Connection,
    seq: &mut Seq,
    ctx: &Ctx,
    id: &str,
    op: RelationshipOp,
) -> DomainResult<WriteOutcome> {
    let (scope, stamp) = (ctx.scope, &ctx.stamp);
    match op {
        RelationshipOp::Create(new) => {
            let live = live_ends(conn, scope, [&new.from, &new.to])?;
            rules::check_ends(&new.from, &new.to, &live)?;
            if taken(conn, scope, id)? {
                return Err(rules::already_exists(id));
            }
            let created = RelationshipRecord {
                relationship: rules::first_version(id, new, stamp),
                deleted_at: None,
            };
            let at = seq.next();
            insert_row(conn, scope, &created, true, at, false)?;
            outbox::record(conn, scope, ("relationship", id, "create", Some(1)), at)?;
            Ok(WriteOutcome::Relationship(created.relationship))
        }
        RelationshipOp::Patch {
            patch,
            rel_type,
            expected,
        } => {
            let rel = rules::live(id, load(conn, scope, id)?, expected)?;
            let rel = rules::patched(rel, &patch, rel_type, stamp)?;
            let at = seq.next();
            conn.prepare_cached(
                "UPDATE relationships SET type = ?4, properties = ?5, version = ?6, updated_at = ?7,
                     updated_by = ?8, seq = ?9
                 WHERE org_id = ?1 AND project_id = ?2 AND id = ?3",
            )
            .and_then(|mut st| {
                st.execute(params![
                    scope.org,
                    scope.project,
                    id,
                    rel.rel_type,
                    Value::Object(rel.properties.clone()).to_string(),
                    rel.version,
                    rel.updated_at,
                    rel.updated_by,
                    at,
                ])
            })
            .map_err(sql_err)?;
            outbox::record(
                conn,
                scope,
                ("relationship", id, "update", Some(rel.version)),
                at,
            )?;
            Ok(WriteOutcome::Relationship(rel))
        }
        RelationshipOp::Delete { expected } => {
            let rel = rules::live(id, load(conn, scope, id)?, expected)?;
            let rel = rules::deleted(rel, stamp);
            let at = seq.next();
            conn.prepare_cached(
                "UPDATE relationships SET deleted_at = ?4, live = 0, version = ?5, updated_at = ?4,
                     updated_by = ?6, seq = ?7
                 WHERE org_id = ?1 AND project_id = ?2 AND id = ?3",
            )
            .and_then(|mut st| {
                st.execute(params![
                    scope.org,
                    scope.project,
                    id,
                    rel.updated_at,
                    rel.version,
                    rel.updated_by,
                    at
                ])
            })
            .map_err(sql_err)?;
            outbox::record(
                conn,
                scope,
                ("relationship", id, "delete", Some(rel.version)),
                at,
            )?;
            Ok(WriteOutcome::Deleted { id: id.to_owned() })
        }
    }
}

/// An end was soft-deleted: its edges leave the graph.
pub fn hide_touching(conn: &Connection, scope: &Scope, entity: &str) -> DomainResult<()> {
    conn.prepare_cached(
        "UPDATE relationships SET live = 0
         WHERE org_id = ?1 AND project_id = ?2 AND (from_id = ?3 OR to_id = ?3) AND live = 1",
    )
    .and_then(|mut st| st.execute(params![scope.org, scope.project, entity]))
    .map_err(sql_err)?;
    Ok(())
}

/// An end was restored: edges not deleted themselves whose other end is
/// live come back.
pub fn revive_touching(conn: &Connection, scope: &Scope, entity: &str) -> DomainResult<()> {
    conn.prepare_cached(
        "UPDATE relationships SET live = 1
         WHERE org_id = ?1 AND project_id = ?2 AND (from_id = ?3 OR to_id = ?3)
           AND live = 0 AND deleted_at IS NULL
           AND EXISTS (SELECT 1 FROM entities e
                       WHERE e.org_id = ?1 AND e.project_id = ?2 AND e.deleted_at IS NULL
                         AND e.id = CASE WHEN relationships.from_id = ?3
                                         THEN relationships.to_id ELSE relationships.from_id END)",
    )
    .and_then(|mut st| st.execute(params![scope.org, scope.project, entity]))
    .map_err(sql_err)?;
    Ok(())
}

pub fn list(
    conn: &Connection,
    scope: &Scope,
    filter: &RelationshipFilter,
    page: &PageRequest,
) -> DomainResult<Page<Relationship>> {
    let after = cursor::after_id(page)?;
    let mut sql = format!(
        "SELECT {REL_COLS} FROM relationships
         WHERE org_id = ?1 AND project_id = ?2 AND id > ?3 AND live = 1"
    );
    let mut args: Vec<rusqlite::types::Value> = vec![
        scope.org.clone().into(),
        scope.project.clone().into(),
        after.into(),
    ];
    for (column, value) in [
        ("from_id", &filter.from),
        ("to_id", &filter.to),
        ("type", &filter.rel_type),
    ] {
        if let Some(v) = value {
            args.push(v.clone().into());
            sql.push_str(&format!(" AND {column} = ?{}", args.len()));
        }
    }
    args.push((page.limit as i64 + 1).into());
    sql.push_str(&format!(" ORDER BY id LIMIT ?{}", args.len()));
    let items: Vec<Relationship> = conn
        .prepare_cached(&sql)
        .and_then(|mut st| {
            st.query_map(rusqlite::params_from_iter(args.iter()), rows::relationship)?
                .collect()
        })
        .map_err(sql_err)?;
    Ok(cursor::page_by(items, page.limit, |r: &Relationship| {
        r.id.clone()
    }))
}

/// Stores a relationship row as given (a new one, or one imported as
/// exported), with its liveness and change sequence; `replace`: over the
/// row of its id, if any (else such a row fails the insert).
pub(super) fn insert_row(
    conn: &Connection,
    scope: &Scope,
    r: &RelationshipRecord,
    live: bool,
    seq: i64,
    replace: bool,
) -> DomainResult<()> {
    const INSERT: &str = "INSERT INTO relationships (org_id, project_id, id, type, from_id,
             to_id, properties, version, created_at, updated_at, created_by, updated_by,
             deleted_at, live, seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)";
    const REPLACE: &str = "ON CONFLICT (org_id, project_id, id) DO UPDATE SET
             type = excluded.type, properties = excluded.properties,
             version = excluded.version, updated_at = excluded.updated_at,
             updated_by = excluded.updated_by, deleted_at = excluded.deleted_at,
             live = excluded.live, seq = excluded.seq";
    let sql = if replace {
        format!("{INSERT} {REPLACE}")
    } else {
        INSERT.to_owned()
    };
    let rel = &r.relationship;
    conn.prepare_cached(&sql)
        .and_then(|mut st| {
            st.execute(params![
                scope.org,
                scope.project,
                rel.id,
                rel.rel_type,
                rel.from,
                rel.to,
                serde_json::to_string(&rel.properties).expect("JSON maps serialise"),
                rel.version,
                rel.created_at,
                rel.updated_at,
                rel.created_by,
                rel.updated_by,
                r.deleted_at,
                live,
                seq,
            ])
        })
        .map_err(sql_err)?;
    Ok(())
}
