//! A project's rows as stored, a page at a time, for export: each page is
//! read in one read transaction, so an entity and its versions agree.

use super::rows::{self, ENTITY_COLS, REL_COLS};
use super::{project_exists, sql_err, SqliteStore};
use crate::domain::export::{EntityExport, RelationshipRecord, VersionRecord};
use crate::domain::*;
use crate::store::prelude::*;
use async_trait::async_trait;
use rusqlite::{params, Connection, Row};

fn version(row: &Row) -> rusqlite::Result<VersionRecord> {
    let op: String = row.get(2)?;
    let patch: String = row.get(8)?;
    let snapshot: Option<String> = row.get(9)?;
    Ok(VersionRecord {
        entity: row.get(0)?,
        version: row.get(1)?,
        op: VersionOp::parse(&op).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                2,
                rusqlite::types::Type::Text,
                format!("unknown version op {op:?}").into(),
            )
        })?,
        parent: row.get(3)?,
        entity_type: row.get(4)?,
        deleted: row.get(5)?,
        actor: row.get(6)?,
        at: row.get(7)?,
        patch: serde_json::from_str(&patch).unwrap_or_default(),
        snapshot: snapshot.and_then(|s| serde_json::from_str(&s).ok()),
        chain: row.get(10)?,
    })
}

fn entities(
    conn: &Connection,
    scope: &Scope,
    after: &str,
    limit: usize,
) -> DomainResult<Vec<EntityExport>> {
    let tx = conn.unchecked_transaction().map_err(sql_err)?;
    project_exists(&tx, scope)?;
    let sql = format!(
        "SELECT {ENTITY_COLS} FROM entities
         WHERE org_id = ?1 AND project_id = ?2 AND id > ?3 ORDER BY id LIMIT ?4"
    );
    let mut page: Vec<EntityExport> = tx
        .prepare_cached(&sql)
        .and_then(|mut st| {
            st.query_map(
                params![scope.org, scope.project, after, limit as i64],
                rows::entity,
            )?
            .map(|e| {
                e.map(|entity| EntityExport {
                    entity,
                    versions: Vec::new(),
                })
            })
            .collect()
        })
        .map_err(sql_err)?;
    let (Some(first), Some(last)) = (page.first(), page.last()) else {
        return Ok(page);
    };
    let (first, last) = (first.entity.id.clone(), last.entity.id.clone());
    let mut st = tx
        .prepare_cached(
            "SELECT entity_id, version, op, parent_version, type, deleted, actor, at, patch,
                    snapshot, chain
             FROM entity_versions
             WHERE org_id = ?1 AND project_id = ?2 AND entity_id BETWEEN ?3 AND ?4
             ORDER BY entity_id, version",
        )
        .map_err(sql_err)?;
    let versions = st
        .query_map(params![scope.org, scope.project, first, last], version)
        .map_err(sql_err)?;
    // Both lists are in id order: walk them together.
    let mut at = 0;
    for v in versions {
        let v = v.map_err(sql_err)?;
        while at < page.len() && page[at].entity.id < v.entity {
            at += 1;
        }
        if let Some(e) = page.get_mut(at).filter(|e| e.entity.id == v.entity) {
            e.versions.push(v);
        }
    }
    Ok(page)
}

fn relationships(
    conn: &Connection,
    scope: &Scope,
    after: &str,
    limit: usize,
) -> DomainResult<Vec<RelationshipRecord>> {
    project_exists(conn, scope)?;
    let sql = format!(
        "SELECT {REL_COLS}, deleted_at FROM relationships
         WHERE org_id = ?1 AND project_id = ?2 AND id > ?3 ORDER BY id LIMIT ?4"
    );
    conn.prepare_cached(&sql)
        .and_then(|mut st| {
            st.query_map(
                params![scope.org, scope.project, after, limit as i64],
                |row| {
                    Ok(RelationshipRecord {
                        relationship: rows::relationship(row)?,
                        deleted_at: row.get(10)?,
                    })
                },
            )?
            .collect()
        })
        .map_err(sql_err)
}

#[async_trait]
impl ExportStore for SqliteStore {
    async fn export_entities(
        &self,
        scope: &Scope,
        after: &str,
        limit: usize,
    ) -> DomainResult<Vec<EntityExport>> {
        let (s, after) = (scope.clone(), after.to_owned());
        self.read(move |conn| entities(conn, &s, &after, limit))
            .await
    }

    async fn export_relationships(
        &self,
        scope: &Scope,
        after: &str,
        limit: usize,
    ) -> DomainResult<Vec<RelationshipRecord>> {
        let (s, after) = (scope.clone(), after.to_owned());
        self.read(move |conn| relationships(conn, &s, &after, limit))
            .await
    }
}
