//! Graph reads over the live-edge indexes, as on SQLite: breadth-first
//! walks, one indexed query per level, each node expanded once.

use super::rows::{self, query, query_opt, REL_COLS};
use super::PgStore;
use crate::domain::rules::graph::Walk;
use crate::domain::*;
use crate::store::prelude::*;
use async_trait::async_trait;
use deadpool_postgres::GenericClient;

/// The far ends of the live edges leaving the nodes in `$3`.
fn next_level_sql(direction: Direction) -> &'static str {
    match direction {
        Direction::Out => {
            "SELECT to_id FROM relationships
             WHERE org_id = $1 AND project_id = $2 AND from_id = ANY($3) AND live
               AND (cardinality($4::text[]) = 0 OR type = ANY($4))"
        }
        Direction::In => {
            "SELECT from_id FROM relationships
             WHERE org_id = $1 AND project_id = $2 AND to_id = ANY($3) AND live
               AND (cardinality($4::text[]) = 0 OR type = ANY($4))"
        }
        Direction::Both => {
            "SELECT to_id FROM relationships
             WHERE org_id = $1 AND project_id = $2 AND from_id = ANY($3) AND live
               AND (cardinality($4::text[]) = 0 OR type = ANY($4))
             UNION ALL
             SELECT from_id FROM relationships
             WHERE org_id = $1 AND project_id = $2 AND to_id = ANY($3) AND live
               AND (cardinality($4::text[]) = 0 OR type = ANY($4))"
        }
    }
}

pub async fn traverse<C: GenericClient>(
    c: &C,
    scope: &Scope,
    t: &Traversal,
) -> DomainResult<Subgraph> {
    let start = query_opt(
        c,
        "SELECT 1 FROM entities WHERE org_id = $1 AND project_id = $2 AND id = $3 AND deleted_at IS NULL",
        &[&scope.org, &scope.project, &t.start],
    )
    .await?;
    if start.is_none() {
        return Err(DomainError::not_found(format!("entity {}", t.start)));
    }
    // Breadth-first, one indexed query per level, each node expanded once
    // (a recursive CTE can only keep (node, depth) pairs distinct and
    // re-expands a node at every depth it is reached at).
    let mut walk = Walk::new(t);
    while let Some(frontier) = walk.frontier() {
        let rows = query(
            c,
            next_level_sql(t.direction),
            &[&scope.org, &scope.project, &frontier, &t.types],
        )
        .await?;
        walk.admit(rows.iter().map(|r| r.get(0)));
    }
    let (all, inner) = (walk.nodes(), walk.inner());
    // Edges from a node short of the depth limit to any node found. The far
    // end is checked here: as `= ANY($4)` PostgreSQL compares it with every
    // element of the array for each index entry.
    let near = match t.direction {
        Direction::Out => "from_id = ANY($3)",
        Direction::In => "to_id = ANY($3)",
        Direction::Both => "(from_id = ANY($3) OR to_id = ANY($3))",
    };
    let sql = format!(
        "SELECT {REL_COLS} FROM relationships
         WHERE org_id = $1 AND project_id = $2 AND live AND {near}
           AND (cardinality($4::text[]) = 0 OR type = ANY($4))
         ORDER BY id"
    );
    let is_inner: std::collections::HashSet<&str> = inner.iter().map(String::as_str).collect();
    let edges: Vec<Relationship> = query(c, &sql, &[&scope.org, &scope.project, &inner, &t.types])
        .await?
        .iter()
        .map(rows::relationship)
        .filter(|r| walk.walked(&is_inner, &r.from, &r.to))
        .collect();
    let nodes = node_headers(c, scope, &all, t.include_properties).await?;
    Ok(walk.subgraph(nodes, edges))
}

pub async fn expand<C: GenericClient>(
    c: &C,
    scope: &Scope,
    nodes: &[String],
    direction: Direction,
    types: &[String],
) -> DomainResult<Vec<EdgeRef>> {
    // Answered from the live-edge indexes alone (they include the id): a
    // hub's thousands of edges cost no heap reads.
    let ends = match direction {
        Direction::Out => "from_id = ANY($3)",
        Direction::In => "to_id = ANY($3)",
        Direction::Both => "(from_id = ANY($3) OR to_id = ANY($3))",
    };
    let sql = format!(
        "SELECT id, from_id, to_id FROM relationships
         WHERE org_id = $1 AND project_id = $2 AND live AND {ends}
           AND (cardinality($4::text[]) = 0 OR type = ANY($4))"
    );
    Ok(
        query(c, &sql, &[&scope.org, &scope.project, &nodes, &types])
            .await?
            .iter()
            .map(|r| EdgeRef {
                id: r.get(0),
                from: r.get(1),
                to: r.get(2),
            })
            .collect(),
    )
}

pub async fn node_headers<C: GenericClient>(
    c: &C,
    scope: &Scope,
    ids: &[String],
    include_properties: bool,
) -> DomainResult<Vec<GraphNode>> {
    let found = query(
        c,
        "SELECT id, type, CASE WHEN $4 THEN properties END FROM entities
         WHERE org_id = $1 AND project_id = $2 AND deleted_at IS NULL AND id = ANY($3)",
        &[&scope.org, &scope.project, &ids, &include_properties],
    )
    .await?;
    Ok(found
        .iter()
        .map(|r| GraphNode {
            id: r.get(0),
            node_type: r.get(1),
            depth: 0,
            properties: r
                .get::<_, Option<serde_json::Value>>(2)
                .and_then(|v| v.as_object().cloned()),
        })
        .collect())
}

#[async_trait]
impl GraphStore for PgStore {
    async fn traverse(&self, scope: &Scope, t: &Traversal) -> DomainResult<Subgraph> {
        traverse(&self.client().await?, scope, t).await
    }

    async fn expand(
        &self,
        scope: &Scope,
        nodes: &[String],
        direction: Direction,
        types: &[String],
    ) -> DomainResult<Vec<EdgeRef>> {
        expand(&self.client().await?, scope, nodes, direction, types).await
    }

    async fn node_headers(
        &self,
        scope: &Scope,
        ids: &[String],
        include_properties: bool,
    ) -> DomainResult<Vec<GraphNode>> {
        node_headers(&self.client().await?, scope, ids, include_properties).await
    }

    async fn cypher(
        &self,
        scope: &Scope,
        query: &str,
        params: &serde_json::Map<String, serde_json::Value>,
    ) -> DomainResult<CypherResult> {
        let Some(age) = &self.age else {
            return Err(DomainError::NotImplemented(
                "this PostgreSQL has no Apache AGE: Cypher is not available; use the graph endpoints".into(),
            ));
        };
        let mut c = self.client().await?;
        let tx = c
            .build_transaction()
            .read_only(true)
            .start()
            .await
            .map_err(super::pg_err)?;
        if self.statement_timeout_ms > 0 {
            let set = format!(
                "SET LOCAL statement_timeout = {}",
                self.statement_timeout_ms
            );
            tx.batch_execute(&set).await.map_err(super::pg_err)?;
        }
        let pk = super::tenancy::project_pk(&tx, scope).await?;
        let result = age
            .query(&tx, pk, query, params, super::MAX_CYPHER_ROWS)
            .await;
        super::tx::settle(tx.rollback().await, c)?;
        result
    }

    async fn sync_graph(&self, scope: &Scope) -> DomainResult<GraphSync> {
        let Some(age) = &self.age else {
            return Err(DomainError::NotImplemented(
                "this PostgreSQL has no Apache AGE".into(),
            ));
        };
        let (report, new_labels) = super::tx::retrying(|| async {
            let mut c = self.client().await?;
            let tx = c.transaction().await.map_err(super::pg_err)?;
            // Exclusive: the project's writers wait until the graph is whole.
            let pk = super::tenancy::lock_project_exclusive(&tx, scope).await?;
            let mut new_labels = super::age::NewLabels::default();
            let report = age.sync(&tx, pk, scope, &mut new_labels).await?;
            super::tx::settle(tx.commit().await, c)?;
            Ok((report, new_labels))
        })
        .await?;
        age.remember(new_labels);
        Ok(report)
    }
}
