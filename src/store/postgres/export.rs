//! A project's rows as stored, a page at a time, for export: each page is
//! read in one REPEATABLE READ transaction, so an entity and its versions
//! agree.

use super::rows::{self, query, time, ENTITY_COLS, REL_COLS};
use super::{pg_err, tenancy, PgStore};
use crate::domain::export::{EntityExport, RelationshipRecord, VersionRecord};
use crate::domain::*;
use crate::store::prelude::*;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_postgres::Row;

fn version(row: &Row) -> DomainResult<VersionRecord> {
    let op: String = row.get(2);
    Ok(VersionRecord {
        entity: row.get(0),
        version: row.get(1),
        op: VersionOp::parse(&op)
            .ok_or_else(|| DomainError::internal(format!("unknown version op {op:?}")))?,
        parent: row.get(3),
        entity_type: row.get(4),
        deleted: row.get(5),
        actor: row.get(6),
        at: time(row.get(7)),
        patch: row.get(8),
        snapshot: row.get(9),
        chain: i64::from(row.get::<_, i32>(10)),
    })
}

#[async_trait]
impl ExportStore for PgStore {
    async fn export_entities(
        &self,
        scope: &Scope,
        after: &str,
        limit: usize,
    ) -> DomainResult<Vec<EntityExport>> {
        let mut c = self.client().await?;
        let tx = c
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(pg_err)?;
        tenancy::get_project(&tx, &scope.org, &scope.project).await?;
        let sql = format!(
            "SELECT {ENTITY_COLS} FROM entities
             WHERE org_id = $1 AND project_id = $2 AND id > $3 ORDER BY id LIMIT $4"
        );
        let mut page: Vec<EntityExport> = query(
            &tx,
            &sql,
            &[&scope.org, &scope.project, &after, &(limit as i64)],
        )
        .await?
        .iter()
        .map(|r| EntityExport {
            entity: rows::entity(r),
            versions: Vec::new(),
        })
        .collect();
        if let (Some(first), Some(last)) = (page.first(), page.last()) {
            let (first, last) = (first.entity.id.clone(), last.entity.id.clone());
            let versions = query(
                &tx,
                "SELECT entity_id, version, op, parent_version, type, deleted, actor, at, patch,
                        snapshot, chain
                 FROM entity_versions
                 WHERE org_id = $1 AND project_id = $2 AND entity_id BETWEEN $3 AND $4
                 ORDER BY entity_id, version",
                &[&scope.org, &scope.project, &first, &last],
            )
            .await?;
            // Both lists are in id order (the same collation): walk them together.
            let mut at = 0;
            for row in &versions {
                let v = version(row)?;
                while at < page.len() && page[at].entity.id != v.entity {
                    at += 1;
                }
                if let Some(e) = page.get_mut(at) {
                    e.versions.push(v);
                }
            }
        }
        super::tx::settle(tx.rollback().await, c)?;
        Ok(page)
    }

    async fn export_relationships(
        &self,
        scope: &Scope,
        after: &str,
        limit: usize,
    ) -> DomainResult<Vec<RelationshipRecord>> {
        let c = self.client().await?;
        tenancy::get_project(&c, &scope.org, &scope.project).await?;
        let sql = format!(
            "SELECT {REL_COLS}, deleted_at FROM relationships
             WHERE org_id = $1 AND project_id = $2 AND id > $3 ORDER BY id LIMIT $4"
        );
        let rows = query(
            &c,
            &sql,
            &[&scope.org, &scope.project, &after, &(limit as i64)],
        )
        .await?;
        Ok(rows
            .iter()
            .map(|r| RelationshipRecord {
                relationship: rows::relationship(r),
                deleted_at: r.get::<_, Option<DateTime<Utc>>>(10).map(time),
            })
            .collect())
    }
}
