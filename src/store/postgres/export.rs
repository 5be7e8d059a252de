//! The store as of one moment (`Snapshot`), for exports and backups: one
//! `REPEATABLE READ` read-only transaction on a connection of its own.

use super::rows::{self, query, time, ENTITY_COLS, REL_COLS};
use super::{audit, docs, pg_err, tenancy, PgStore};
use crate::domain::export::{AuditRecord, EntityExport, RelationshipRecord, VersionRecord};
use crate::domain::*;
use crate::store::prelude::*;
use crate::store::Which;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;
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

/// A snapshot's connection, out of the pool's hands from the start: it is
/// closed when the snapshot is dropped, which ends the transaction (no
/// connection goes back to the pool inside one).
struct PgSnapshot {
    client: Option<deadpool_postgres::Object>,
    seq: i64,
}

impl Drop for PgSnapshot {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            drop(deadpool_postgres::Object::take(c));
        }
    }
}

impl PgSnapshot {
    fn client(&self) -> &deadpool_postgres::Object {
        self.client.as_ref().expect("held until dropped")
    }
}

#[async_trait]
impl Snapshot for PgSnapshot {
    fn seq(&self) -> i64 {
        self.seq
    }

    async fn orgs(&self) -> DomainResult<Vec<Org>> {
        let rows = query(
            self.client(),
            "SELECT id, name, created_at FROM orgs ORDER BY id",
            &[],
        )
        .await?;
        Ok(rows.iter().map(tenancy::org).collect())
    }

    async fn projects(&self, org: &str) -> DomainResult<Vec<Project>> {
        let rows = query(
            self.client(),
            "SELECT org_id, id, name, created_at FROM projects WHERE org_id = $1 ORDER BY id",
            &[&org],
        )
        .await?;
        Ok(rows.iter().map(tenancy::project).collect())
    }

    async fn entities(&self, scope: &Scope, which: &Which) -> DomainResult<Vec<EntityExport>> {
        let c = self.client();
        tenancy::get_project(c, &scope.org, &scope.project).await?;
        let sql = rows_sql(ENTITY_COLS, "entities", which);
        let mut page: Vec<EntityExport> = query(c, &sql, &which_args(scope, which))
            .await?
            .iter()
            .map(|r| EntityExport {
                entity: rows::entity(r),
                versions: Vec::new(),
            })
            .collect();
        if let (Some(first), Some(last)) = (page.first(), page.last()) {
            let (first, last) = (first.entity.id.clone(), last.entity.id.clone());
            const VERSIONS: &str =
                "SELECT entity_id, version, op, parent_version, type, deleted, actor, at, patch,
                        snapshot, chain
                 FROM entity_versions WHERE org_id = $1 AND project_id = $2";
            let versions = match which {
                Which::After(..) => {
                    let sql = format!(
                        "{VERSIONS} AND entity_id BETWEEN $3 AND $4 ORDER BY entity_id, version"
                    );
                    query(c, &sql, &[&scope.org, &scope.project, &first, &last]).await?
                }
                Which::Ids(ids) => {
                    let sql = format!(
                        "SELECT v.* FROM unnest($3::text[]) AS want(id)
                         CROSS JOIN LATERAL ({VERSIONS} AND entity_id = want.id) v
                         ORDER BY v.entity_id, v.version"
                    );
                    query(c, &sql, &[&scope.org, &scope.project, ids]).await?
                }
            };
            // Both lists are in id order (the same collation) and hold the
            // same ids: walk them together.
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
        Ok(page)
    }

    async fn relationships(
        &self,
        scope: &Scope,
        which: &Which,
    ) -> DomainResult<Vec<RelationshipRecord>> {
        let c = self.client();
        tenancy::get_project(c, &scope.org, &scope.project).await?;
        let sql = rows_sql(&format!("{REL_COLS}, deleted_at"), "relationships", which);
        let rows = query(c, &sql, &which_args(scope, which)).await?;
        Ok(rows
            .iter()
            .map(|r| RelationshipRecord {
                relationship: rows::relationship(r),
                deleted_at: r.get::<_, Option<DateTime<Utc>>>(10).map(time),
            })
            .collect())
    }

    async fn docs(&self, scope: &Scope, which: &Which) -> DomainResult<Vec<DocInfo>> {
        let c = self.client();
        tenancy::get_project(c, &scope.org, &scope.project).await?;
        let cols = "id, entity_id, created_at, last_seq, pruned_through";
        let sql = rows_sql(cols, "crdt_docs", which);
        let rows = query(c, &sql, &which_args(scope, which)).await?;
        Ok(rows.iter().map(docs::info).collect())
    }

    async fn doc_snapshots(&self, scope: &Scope, doc: &str) -> DomainResult<Vec<DocSnapshot>> {
        let sql = format!(
            "SELECT {} FROM crdt_snapshots WHERE org_id = $1 AND project_id = $2 AND doc_id = $3
             ORDER BY covers_seq",
            docs::SNAPSHOT_COLS
        );
        let rows = query(self.client(), &sql, &[&scope.org, &scope.project, &doc]).await?;
        Ok(rows.iter().map(docs::snapshot).collect())
    }

    async fn doc_updates(
        &self,
        scope: &Scope,
        doc: &str,
        after: i64,
        limit: usize,
    ) -> DomainResult<Vec<DocUpdate>> {
        docs::updates_between(self.client(), scope, doc, after, None, limit as i64).await
    }

    async fn docs_changed(&self, scope: &Scope, since: &str) -> DomainResult<Vec<String>> {
        let since: DateTime<Utc> = since
            .parse()
            .map_err(|e| DomainError::internal(format!("a stored time {since:?}: {e}")))?;
        let rows = query(
            self.client(),
            "SELECT id FROM crdt_docs
             WHERE org_id = $1 AND project_id = $2 AND (changed_at IS NULL OR changed_at >= $3)
             ORDER BY id",
            &[&scope.org, &scope.project, &since],
        )
        .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn audit(
        &self,
        after: i64,
        since: Option<&str>,
        limit: usize,
    ) -> DomainResult<Vec<AuditRecord>> {
        audit::all_after(self.client(), after, since, limit).await
    }
}

/// The statement reading a project's rows `which` names, by id ($1, $2
/// the scope, $3 the `Which`'s parameter). Listed ids are looked up one by
/// one through the primary key (a lateral join): `id = ANY($3)` would let a
/// plan made on stale statistics scan the project and filter.
fn rows_sql(cols: &str, table: &str, which: &Which) -> String {
    match which {
        Which::After(_, limit) => format!(
            "SELECT {cols} FROM {table}
             WHERE org_id = $1 AND project_id = $2 AND id > $3 ORDER BY id LIMIT {limit}"
        ),
        Which::Ids(_) => format!(
            "SELECT r.* FROM unnest($3::text[]) AS want(id)
             CROSS JOIN LATERAL (SELECT {cols} FROM {table}
                                 WHERE org_id = $1 AND project_id = $2 AND id = want.id) r
             ORDER BY r.id"
        ),
    }
}

/// The scope's two parameters and the `Which`'s one.
fn which_args<'a>(scope: &'a Scope, which: &'a Which) -> [&'a (dyn ToSql + Sync); 3] {
    let third: &(dyn ToSql + Sync) = match which {
        Which::After(after, _) => after,
        Which::Ids(ids) => ids,
    };
    [&scope.org, &scope.project, third]
}

#[async_trait]
impl ExportStore for PgStore {
    async fn snapshot(&self) -> DomainResult<Box<dyn Snapshot>> {
        let client = self.client().await?;
        let mut snapshot = PgSnapshot {
            client: Some(client),
            seq: 0,
        };
        // Statements of a long backup may take longer than a request's.
        snapshot
            .client()
            .batch_execute(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL statement_timeout = 0",
            )
            .await
            .map_err(pg_err)?;
        // The first statement after BEGIN fixes the view; the sequence's
        // last value bounds every change it can hold.
        let row = query(
            snapshot.client(),
            "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM change_seq",
            &[],
        )
        .await?;
        snapshot.seq = row[0].get(0);
        Ok(Box::new(snapshot))
    }
}
