//! Graph reads as recursive CTEs over the live-edge indexes, as on SQLite:
//! `(node, depth)` pairs stay distinct, so work is bounded by nodes × depth.

use super::rows::{self, query, query_opt, REL_COLS};
use crate::domain::*;
use deadpool_postgres::GenericClient;
use std::collections::HashMap;

/// The neighbours of `w.node` one hop away, as a lateral subquery.
fn step(direction: Direction) -> &'static str {
    match direction {
        Direction::Out => {
            "SELECT r.to_id AS next FROM relationships r
             WHERE r.org_id = $1 AND r.project_id = $2 AND r.from_id = w.node AND r.live
               AND (cardinality($6::text[]) = 0 OR r.type = ANY($6))"
        }
        Direction::In => {
            "SELECT r.from_id AS next FROM relationships r
             WHERE r.org_id = $1 AND r.project_id = $2 AND r.to_id = w.node AND r.live
               AND (cardinality($6::text[]) = 0 OR r.type = ANY($6))"
        }
        Direction::Both => {
            "SELECT r.to_id AS next FROM relationships r
             WHERE r.org_id = $1 AND r.project_id = $2 AND r.from_id = w.node AND r.live
               AND (cardinality($6::text[]) = 0 OR r.type = ANY($6))
             UNION ALL
             SELECT r.from_id FROM relationships r
             WHERE r.org_id = $1 AND r.project_id = $2 AND r.to_id = w.node AND r.live
               AND (cardinality($6::text[]) = 0 OR r.type = ANY($6))"
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
    let sql = format!(
        "WITH RECURSIVE walk(node, depth) AS (
             SELECT $3::text, 0
             UNION
             SELECT n.next, w.depth + 1 FROM walk w CROSS JOIN LATERAL ({}) n
             WHERE w.depth < $4
         ),
         -- PostgreSQL computes a recursive query only as far as it is read
         -- (breadth first): reading a bounded prefix bounds the walk.
         prefix AS (SELECT node, depth FROM walk LIMIT $7)
         SELECT node, MIN(depth) AS d FROM prefix GROUP BY node ORDER BY d, node LIMIT $5",
        step(t.direction)
    );
    let depth = t.max_depth as i32;
    let limit = t.limit as i64;
    let cap = t.row_cap();
    let found = query(
        c,
        &sql,
        &[
            &scope.org,
            &scope.project,
            &t.start,
            &depth,
            &limit,
            &t.types,
            &cap,
        ],
    )
    .await?;
    let depths: Vec<(String, u32)> = found
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i32>(1) as u32))
        .collect();
    let all: Vec<String> = depths.iter().map(|(id, _)| id.clone()).collect();
    let inner: Vec<String> = depths
        .iter()
        .filter(|(_, d)| *d < t.max_depth)
        .map(|(id, _)| id.clone())
        .collect();
    let ends = match t.direction {
        Direction::Out => "from_id = ANY($3) AND to_id = ANY($4)",
        Direction::In => "to_id = ANY($3) AND from_id = ANY($4)",
        Direction::Both => {
            "((from_id = ANY($3) AND to_id = ANY($4)) OR (to_id = ANY($3) AND from_id = ANY($4)))"
        }
    };
    let sql = format!(
        "SELECT {REL_COLS} FROM relationships
         WHERE org_id = $1 AND project_id = $2 AND live AND {ends}
           AND (cardinality($5::text[]) = 0 OR type = ANY($5))
         ORDER BY id"
    );
    let edges = query(
        c,
        &sql,
        &[&scope.org, &scope.project, &inner, &all, &t.types],
    )
    .await?
    .iter()
    .map(rows::relationship)
    .collect();
    let by_id: HashMap<String, u32> = depths.into_iter().collect();
    let mut nodes = node_headers(c, scope, &all, t.include_properties).await?;
    for n in &mut nodes {
        n.depth = by_id[&n.id];
    }
    nodes.sort_by(|a, b| (a.depth, &a.id).cmp(&(b.depth, &b.id)));
    Ok(Subgraph { nodes, edges })
}

pub async fn expand<C: GenericClient>(
    c: &C,
    scope: &Scope,
    nodes: &[String],
    direction: Direction,
    types: &[String],
) -> DomainResult<Vec<Relationship>> {
    let ends = match direction {
        Direction::Out => "from_id = ANY($3)",
        Direction::In => "to_id = ANY($3)",
        Direction::Both => "(from_id = ANY($3) OR to_id = ANY($3))",
    };
    let sql = format!(
        "SELECT {REL_COLS} FROM relationships
         WHERE org_id = $1 AND project_id = $2 AND live AND {ends}
           AND (cardinality($4::text[]) = 0 OR type = ANY($4))"
    );
    Ok(
        query(c, &sql, &[&scope.org, &scope.project, &nodes, &types])
            .await?
            .iter()
            .map(rows::relationship)
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
