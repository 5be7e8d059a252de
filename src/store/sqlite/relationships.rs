//! Relationship rows. `live` mirrors "not deleted and both ends live", so the
//! graph indexes hold exactly the edges a traversal may walk.

use super::threads::Seq;
use super::{outbox, sql_err};
use crate::clock;
use crate::domain::patch::apply_merge_patch;
use crate::domain::*;
use crate::store::cursor;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::Value;

pub const COLS: &str = "id, type, from_id, to_id, properties, version, created_at, updated_at, \
                        created_by, updated_by";

pub fn from_row(row: &Row) -> rusqlite::Result<Relationship> {
    let props: String = row.get(4)?;
    Ok(Relationship {
        id: row.get(0)?,
        rel_type: row.get(1)?,
        from: row.get(2)?,
        to: row.get(3)?,
        properties: serde_json::from_str(&props).unwrap_or_default(),
        version: row.get(5)?,
        created_at: row.get(6)?,
        updated_at: row.get(7)?,
        created_by: row.get(8)?,
        updated_by: row.get(9)?,
    })
}

/// A live relationship, or `None`.
pub fn load(conn: &Connection, scope: &Scope, id: &str) -> DomainResult<Option<Relationship>> {
    let sql = format!(
        "SELECT {COLS} FROM relationships
         WHERE org_id = ?1 AND project_id = ?2 AND id = ?3 AND live = 1"
    );
    conn.prepare_cached(&sql)
        .and_then(|mut st| {
            st.query_row(params![scope.org, scope.project, id], from_row)
                .optional()
        })
        .map_err(sql_err)
}

fn entity_is_live(conn: &Connection, scope: &Scope, id: &str) -> DomainResult<bool> {
    conn.prepare_cached(
        "SELECT 1 FROM entities
         WHERE org_id = ?1 AND project_id = ?2 AND id = ?3 AND deleted_at IS NULL",
    )
    .and_then(|mut st| st.exists(params![scope.org, scope.project, id]))
    .map_err(sql_err)
}

#[allow(clippy::too_many_arguments)]
pub fn create(
    conn: &Connection,
    seq: &mut Seq,
    scope: &Scope,
    actor: &str,
    id: &str,
    rel_type: &str,
    from: &str,
    to: &str,
    properties: Properties,
) -> DomainResult<Relationship> {
    for end in [from, to] {
        if !entity_is_live(conn, scope, end)? {
            return Err(DomainError::Unprocessable(format!(
                "entity {end} does not exist in this project"
            )));
        }
    }
    let taken = conn
        .prepare_cached(
            "SELECT 1 FROM relationships WHERE org_id = ?1 AND project_id = ?2 AND id = ?3",
        )
        .and_then(|mut st| st.exists(params![scope.org, scope.project, id]))
        .map_err(sql_err)?;
    if taken {
        return Err(DomainError::Conflict(format!(
            "relationship {id} already exists"
        )));
    }
    let now = clock::now();
    let rel = Relationship {
        id: id.to_owned(),
        rel_type: rel_type.to_owned(),
        from: from.to_owned(),
        to: to.to_owned(),
        properties,
        version: 1,
        created_at: now.clone(),
        updated_at: now,
        created_by: actor.to_owned(),
        updated_by: actor.to_owned(),
    };
    let at = seq.next();
    conn.prepare_cached(
        "INSERT INTO relationships (org_id, project_id, id, type, from_id, to_id, properties,
             version, created_at, updated_at, created_by, updated_by, live, seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1, ?8, ?8, ?9, ?9, 1, ?10)",
    )
    .and_then(|mut st| {
        st.execute(params![
            scope.org,
            scope.project,
            rel.id,
            rel.rel_type,
            rel.from,
            rel.to,
            Value::Object(rel.properties.clone()).to_string(),
            rel.created_at,
            actor,
            at,
        ])
    })
    .map_err(sql_err)?;
    outbox::record(conn, scope, "relationship", id, "create", at)?;
    Ok(rel)
}

fn live_or_404(
    conn: &Connection,
    scope: &Scope,
    id: &str,
    expected: Option<i64>,
) -> DomainResult<Relationship> {
    let rel = load(conn, scope, id)?
        .ok_or_else(|| DomainError::not_found(format!("relationship {id}")))?;
    if let Some(expected) = expected.filter(|e| *e != rel.version) {
        return Err(DomainError::PreconditionFailed {
            expected,
            current: rel.version,
        });
    }
    Ok(rel)
}

#[allow(clippy::too_many_arguments)]
pub fn patch(
    conn: &Connection,
    seq: &mut Seq,
    scope: &Scope,
    actor: &str,
    id: &str,
    patch: &Value,
    rel_type: Option<String>,
    expected: Option<i64>,
) -> DomainResult<Relationship> {
    let mut rel = live_or_404(conn, scope, id, expected)?;
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
    rel.version += 1;
    rel.updated_at = clock::now();
    rel.updated_by = actor.to_owned();
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
            actor,
            at,
        ])
    })
    .map_err(sql_err)?;
    outbox::record(conn, scope, "relationship", id, "update", at)?;
    Ok(rel)
}

pub fn delete(
    conn: &Connection,
    seq: &mut Seq,
    scope: &Scope,
    actor: &str,
    id: &str,
    expected: Option<i64>,
) -> DomainResult<()> {
    let rel = live_or_404(conn, scope, id, expected)?;
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
            clock::now(),
            rel.version + 1,
            actor,
            at
        ])
    })
    .map_err(sql_err)?;
    outbox::record(conn, scope, "relationship", id, "delete", at)?;
    Ok(())
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
        "SELECT {COLS} FROM relationships
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
            st.query_map(rusqlite::params_from_iter(args.iter()), from_row)?
                .collect()
        })
        .map_err(sql_err)?;
    Ok(cursor::page_by(items, page.limit, |r: &Relationship| {
        r.id.clone()
    }))
}
