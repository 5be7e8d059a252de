//! Graph reads as recursive CTEs over the live-edge indexes. The walk keeps
//! (node, depth) pairs distinct, so cycles and dense regions cost at most
//! nodes × depth rows: reachability, never path enumeration.

use super::{relationships, sql_err};
use crate::domain::*;
use rusqlite::{params, Connection};
use std::collections::HashMap;

fn types_clause(types: &[String], param: usize) -> String {
    if types.is_empty() {
        String::new()
    } else {
        format!(" AND r.type IN (SELECT value FROM json_each(?{param}))")
    }
}

fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).expect("strings serialise")
}

/// Positional parameters; the type list goes last and only when used.
fn args(mut fixed: Vec<rusqlite::types::Value>, types: &[String]) -> Vec<rusqlite::types::Value> {
    if !types.is_empty() {
        fixed.push(json_list(types).into());
    }
    fixed
}

/// One recursive step per direction walked. The planner, without
/// statistics, prefers the plain end indexes; the covering live-edge indexes
/// answer a step without touching the table (about a third faster).
fn steps(direction: Direction, types: &str) -> Vec<String> {
    let step = |next: &str, here: &str, index: &str| {
        format!(
            "SELECT r.{next}, w.depth + 1 FROM walk w CROSS JOIN relationships r INDEXED BY {index}
               ON r.org_id = ?1 AND r.project_id = ?2 AND r.{here} = w.node AND r.live = 1{types}
             WHERE w.depth < ?4"
        )
    };
    let out = || step("to_id", "from_id", "relationships_out");
    let inward = || step("from_id", "to_id", "relationships_in");
    match direction {
        Direction::Out => vec![out()],
        Direction::In => vec![inward()],
        Direction::Both => vec![out(), inward()],
    }
}

pub fn traverse(conn: &Connection, scope: &Scope, t: &Traversal) -> DomainResult<Subgraph> {
    let start_live = conn
        .prepare_cached(
            "SELECT 1 FROM entities WHERE org_id = ?1 AND project_id = ?2 AND id = ?3
             AND deleted_at IS NULL",
        )
        .and_then(|mut st| st.exists(params![scope.org, scope.project, t.start]))
        .map_err(sql_err)?;
    if !start_live {
        return Err(DomainError::not_found(format!("entity {}", t.start)));
    }
    // The walk is breadth-first (a FIFO queue), so each node first appears
    // at its shortest depth; a node appears at most once per depth, so the
    // first `limit × (depth + 1)` rows hold at least `limit` distinct nodes
    // and the walk can stop there instead of exhausting the reachable set.
    let types = types_clause(&t.types, 7);
    let sql = format!(
        "WITH RECURSIVE walk(node, depth) AS (
             VALUES (?3, 0)
             UNION {}
             LIMIT ?6
         )
         SELECT node, MIN(depth) AS d FROM walk GROUP BY node ORDER BY d, node LIMIT ?5",
        steps(t.direction, &types).join(" UNION ")
    );
    let mut st = conn.prepare_cached(&sql).map_err(sql_err)?;
    let depth_rows: Vec<(String, u32)> = st
        .query_map(
            rusqlite::params_from_iter(args(
                vec![
                    scope.org.clone().into(),
                    scope.project.clone().into(),
                    t.start.clone().into(),
                    (t.max_depth as i64).into(),
                    (t.limit as i64).into(),
                    t.row_cap().into(),
                ],
                &t.types,
            )),
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .and_then(|rows| rows.collect())
        .map_err(sql_err)?;

    let all: Vec<String> = depth_rows.iter().map(|(id, _)| id.clone()).collect();
    let inner: Vec<String> = depth_rows
        .iter()
        .filter(|(_, d)| *d < t.max_depth)
        .map(|(id, _)| id.clone())
        .collect();
    let edges = walked_edges(conn, scope, t, &inner, &all)?;
    let depths: HashMap<String, u32> = depth_rows.into_iter().collect();
    let mut nodes = node_headers(conn, scope, &all, t.include_properties)?;
    for n in &mut nodes {
        n.depth = depths[&n.id];
    }
    nodes.sort_by(|a, b| (a.depth, &a.id).cmp(&(b.depth, &b.id)));
    Ok(Subgraph { nodes, edges })
}

/// Edges from a node short of the depth limit to any node found.
fn walked_edges(
    conn: &Connection,
    scope: &Scope,
    t: &Traversal,
    inner: &[String],
    all: &[String],
) -> DomainResult<Vec<Relationship>> {
    live_edges(conn, scope, t.direction, inner, Some(all), &t.types)
}

/// One step of a walk: the live edges leaving `nodes` in `direction`.
pub fn expand(
    conn: &Connection,
    scope: &Scope,
    nodes: &[String],
    direction: Direction,
    types: &[String],
) -> DomainResult<Vec<Relationship>> {
    live_edges(conn, scope, direction, nodes, None, types)
}

/// Live edges with their near end in `near` (and, when given, their far end
/// in `far`), one indexed lookup per node and direction. An `OR` of both
/// ends, or a plain planner's choice, would scan the project's edges.
fn live_edges(
    conn: &Connection,
    scope: &Scope,
    direction: Direction,
    near: &[String],
    far: Option<&[String]>,
    types: &[String],
) -> DomainResult<Vec<Relationship>> {
    let types_sql = types_clause(types, if far.is_some() { 5 } else { 4 });
    let cols = relationships::COLS
        .split(", ")
        .map(|c| format!("r.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let one_way = |near_col: &str, far_col: &str, index: &str| {
        let far_sql = if far.is_some() {
            format!(" AND r.{far_col} IN (SELECT value FROM json_each(?4))")
        } else {
            String::new()
        };
        format!(
            "SELECT {cols} FROM relationships r INDEXED BY {index}
             WHERE r.org_id = ?1 AND r.project_id = ?2 AND r.live = 1
               AND r.{near_col} IN (SELECT value FROM json_each(?3)){far_sql}{types_sql}"
        )
    };
    let mut queries = Vec::new();
    if direction != Direction::In {
        queries.push(one_way("from_id", "to_id", "relationships_out"));
    }
    if direction != Direction::Out {
        queries.push(one_way("to_id", "from_id", "relationships_in"));
    }
    let mut fixed: Vec<rusqlite::types::Value> = vec![
        scope.org.clone().into(),
        scope.project.clone().into(),
        json_list(near).into(),
    ];
    if let Some(far) = far {
        fixed.push(json_list(far).into());
    }
    let params = args(fixed, types);
    let mut edges: Vec<Relationship> = Vec::new();
    for sql in queries {
        let found: Vec<Relationship> = conn
            .prepare_cached(&sql)
            .and_then(|mut st| {
                st.query_map(
                    rusqlite::params_from_iter(params.iter()),
                    relationships::from_row,
                )?
                .collect()
            })
            .map_err(sql_err)?;
        edges.extend(found);
    }
    edges.sort_by(|a, b| a.id.cmp(&b.id));
    edges.dedup_by(|a, b| a.id == b.id);
    Ok(edges)
}

pub fn node_headers(
    conn: &Connection,
    scope: &Scope,
    ids: &[String],
    include_properties: bool,
) -> DomainResult<Vec<GraphNode>> {
    let props = if include_properties {
        "properties"
    } else {
        "NULL"
    };
    let sql = format!(
        "SELECT id, type, {props} FROM entities
         WHERE org_id = ?1 AND project_id = ?2 AND deleted_at IS NULL
           AND id IN (SELECT value FROM json_each(?3))"
    );
    conn.prepare_cached(&sql)
        .and_then(|mut st| {
            st.query_map(params![scope.org, scope.project, json_list(ids)], |r| {
                let props: Option<String> = r.get(2)?;
                Ok(GraphNode {
                    id: r.get(0)?,
                    node_type: r.get(1)?,
                    depth: 0,
                    properties: props.and_then(|p| serde_json::from_str(&p).ok()),
                })
            })?
            .collect()
        })
        .map_err(sql_err)
}
