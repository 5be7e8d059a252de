//! Graph reads over the live-edge indexes: a breadth-first walk, one
//! indexed query per level, each node expanded once, so cycles and dense
//! regions cost the nodes found and their edges: reachability, never path
//! enumeration.

use super::SqliteStore;
use super::{rows, sql_err};
use crate::domain::rules::graph::Walk;
use crate::domain::*;
use crate::store::prelude::*;
use async_trait::async_trait;
use rusqlite::{params, Connection};

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

pub fn traverse(conn: &Connection, scope: &Scope, t: &Traversal) -> DomainResult<Subgraph> {
    // One snapshot for the walk, its edges and its nodes.
    let _snapshot = conn.unchecked_transaction().map_err(sql_err)?;
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
    // Breadth-first, one indexed query per level, each node expanded once:
    // the work is bounded by the nodes found and their edges, however many
    // paths lead to them. (A recursive CTE can only keep `(node, depth)`
    // pairs distinct, so on a DAG it expands a node again at every depth it
    // is reached at; on the 1M-node graph that was 300 ms per `dependents`.)
    let mut walk = Walk::new(t);
    while let Some(frontier) = walk.frontier() {
        let found = next_level(conn, scope, t, frontier)?;
        walk.admit(found);
    }
    let (all, inner) = (walk.nodes(), walk.inner());
    let edges = walked_edges(conn, scope, t, &inner, &all)?;
    let nodes = node_headers(conn, scope, &all, t.include_properties)?;
    Ok(walk.subgraph(nodes, edges))
}

/// `INDEXED BY index`, or nothing while a bulk load has deferred the index
/// (`bulk.rs`): the hint would fail the query instead of slowing it.
fn index_hint(conn: &Connection, index: &str) -> DomainResult<String> {
    let exists: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?1)",
        )
        .and_then(|mut st| st.query_row([index], |r| r.get(0)))
        .map_err(sql_err)?;
    Ok(if exists {
        format!("INDEXED BY {index}")
    } else {
        String::new()
    })
}

/// The far ends of the live edges leaving `frontier` in the walk's direction.
fn next_level(
    conn: &Connection,
    scope: &Scope,
    t: &Traversal,
    frontier: &[String],
) -> DomainResult<Vec<String>> {
    let types = types_clause(&t.types, 4);
    let one_way = |far: &str, near: &str, index: &str| {
        format!(
            "SELECT r.{far} FROM relationships r {index}
             WHERE r.org_id = ?1 AND r.project_id = ?2 AND r.live = 1
               AND r.{near} IN (SELECT value FROM json_each(?3)){types}"
        )
    };
    let mut queries = Vec::new();
    if t.direction != Direction::In {
        queries.push(one_way(
            "to_id",
            "from_id",
            &index_hint(conn, "relationships_out")?,
        ));
    }
    if t.direction != Direction::Out {
        queries.push(one_way(
            "from_id",
            "to_id",
            &index_hint(conn, "relationships_in")?,
        ));
    }
    let params = args(
        vec![
            scope.org.clone().into(),
            scope.project.clone().into(),
            json_list(frontier).into(),
        ],
        &t.types,
    );
    let mut ends = Vec::new();
    for sql in queries {
        let mut st = conn.prepare_cached(&sql).map_err(sql_err)?;
        let rows = st
            .query_map(rusqlite::params_from_iter(params.iter()), |r| r.get(0))
            .map_err(sql_err)?;
        for end in rows {
            ends.push(end.map_err(sql_err)?);
        }
    }
    Ok(ends)
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
) -> DomainResult<Vec<EdgeRef>> {
    let edges = live_edges(conn, scope, direction, nodes, None, types)?;
    Ok(edges
        .into_iter()
        .map(|r| EdgeRef {
            id: r.id,
            from: r.from,
            to: r.to,
        })
        .collect())
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
    let cols = rows::REL_COLS
        .split(", ")
        .map(|c| format!("r.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let one_way = |near_col: &str, far_col: &str, index: &str| {
        // `+` keeps the far end out of the index seek: as a seek key, an IN
        // list on both ends multiplies (near × far seeks: 1M for two lists
        // of 1,000 ids, 0.9 s); as a filter it costs one probe per edge.
        let far_sql = if far.is_some() {
            format!(" AND +r.{far_col} IN (SELECT value FROM json_each(?4))")
        } else {
            String::new()
        };
        format!(
            "SELECT {cols} FROM relationships r {index}
             WHERE r.org_id = ?1 AND r.project_id = ?2 AND r.live = 1
               AND r.{near_col} IN (SELECT value FROM json_each(?3)){far_sql}{types_sql}"
        )
    };
    let mut queries = Vec::new();
    if direction != Direction::In {
        queries.push(one_way(
            "from_id",
            "to_id",
            &index_hint(conn, "relationships_out")?,
        ));
    }
    if direction != Direction::Out {
        queries.push(one_way(
            "to_id",
            "from_id",
            &index_hint(conn, "relationships_in")?,
        ));
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
                    rows::relationship,
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

#[async_trait]
impl GraphStore for SqliteStore {
    async fn cypher(
        &self,
        _scope: &Scope,
        _query: &str,
        _params: &serde_json::Map<String, serde_json::Value>,
    ) -> DomainResult<CypherResult> {
        Err(DomainError::NotImplemented(
            "the sqlite backend has no Cypher engine; use the graph endpoints, or server mode with Apache AGE".into(),
        ))
    }

    async fn sync_graph(&self, _scope: &Scope) -> DomainResult<GraphSync> {
        Err(DomainError::NotImplemented(
            "the sqlite backend keeps no graph projection".into(),
        ))
    }

    async fn traverse(&self, scope: &Scope, t: &Traversal) -> DomainResult<Subgraph> {
        let (s, t) = (scope.clone(), t.clone());
        self.read(move |conn| traverse(conn, &s, &t)).await
    }

    async fn expand(
        &self,
        scope: &Scope,
        nodes: &[String],
        direction: Direction,
        types: &[String],
    ) -> DomainResult<Vec<EdgeRef>> {
        let (s, nodes, types) = (scope.clone(), nodes.to_vec(), types.to_vec());
        self.read(move |conn| expand(conn, &s, &nodes, direction, &types))
            .await
    }

    async fn node_headers(
        &self,
        scope: &Scope,
        ids: &[String],
        include_properties: bool,
    ) -> DomainResult<Vec<GraphNode>> {
        let (s, ids) = (scope.clone(), ids.to_vec());
        self.read(move |conn| node_headers(conn, &s, &ids, include_properties))
            .await
    }
}
