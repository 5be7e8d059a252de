//! Graph questions on top of the store: parameter rules shared by the graph
//! routes, and shortest paths by bidirectional breadth-first search over the
//! store's one-level `expand` (each level is one indexed query).

use crate::domain::*;
use crate::store::Store;
use serde::Serialize;
use std::collections::{HashMap, HashSet};

pub const MAX_NEIGHBOR_DEPTH: u32 = 10;
pub const MAX_CLOSURE_DEPTH: u32 = 64;
pub const DEFAULT_CLOSURE_DEPTH: u32 = 10;
pub const DEFAULT_PATH_DEPTH: u32 = 6;
pub const DEFAULT_NODE_LIMIT: usize = 1000;
pub const MAX_NODE_LIMIT: usize = 10_000;
pub const DEFAULT_DEPENDENCY_TYPE: &str = "DEPENDS_ON";
/// A shortest-path search gives up when a frontier grows past this.
const MAX_FRONTIER: usize = 100_000;

/// `types=A,B` as validated identifiers (empty = every type).
pub fn parse_types(types: Option<&str>) -> DomainResult<Vec<String>> {
    let Some(types) = types else {
        return Ok(Vec::new());
    };
    let list: Vec<String> = types
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    if list.len() > 64 {
        return Err(DomainError::BadRequest("at most 64 types".into()));
    }
    for t in &list {
        validate::type_name("types", t)?;
    }
    Ok(list)
}

pub fn bounded(value: Option<u32>, default: u32, max: u32, name: &str) -> DomainResult<u32> {
    match value {
        None => Ok(default),
        Some(v) if (1..=max).contains(&v) => Ok(v),
        Some(_) => Err(DomainError::BadRequest(format!(
            "{name} must be between 1 and {max}"
        ))),
    }
}

/// A checked traversal request.
#[allow(clippy::too_many_arguments)]
pub fn traversal(
    start: &str,
    direction: Direction,
    types: Option<&str>,
    depth: Option<u32>,
    max_depth: u32,
    default_depth: u32,
    limit: Option<usize>,
    include_properties: bool,
) -> DomainResult<Traversal> {
    let limit = match limit {
        None => DEFAULT_NODE_LIMIT,
        Some(n) if (1..=MAX_NODE_LIMIT).contains(&n) => n,
        Some(_) => {
            return Err(DomainError::BadRequest(format!(
                "limit must be between 1 and {MAX_NODE_LIMIT}"
            )));
        }
    };
    Ok(Traversal {
        start: start.to_owned(),
        direction,
        types: parse_types(types)?,
        max_depth: bounded(depth, default_depth, max_depth, "depth")?,
        limit,
        include_properties,
    })
}

pub struct PathQuery {
    pub from: String,
    pub to: String,
    pub direction: Direction,
    pub types: Vec<String>,
    pub max_depth: u32,
}

#[derive(Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct GraphPath {
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<Relationship>,
}

/// One side of the bidirectional search: how each reached node was reached.
struct Side {
    parent: HashMap<String, Option<EdgeRef>>,
    frontier: Vec<String>,
    /// Walk edges forward (from → to) on this side.
    forward: bool,
}

impl Side {
    fn new(start: &str, forward: bool) -> Self {
        Side {
            parent: HashMap::from([(start.to_owned(), None)]),
            frontier: vec![start.to_owned()],
            forward,
        }
    }
}

/// One shortest path from `q.from` to `q.to`, or `None` within `max_depth`.
pub async fn shortest_path(
    store: &dyn Store,
    scope: &Scope,
    q: &PathQuery,
) -> DomainResult<Option<GraphPath>> {
    let ends = store
        .node_headers(scope, &[q.from.clone(), q.to.clone()], false)
        .await?;
    for id in [&q.from, &q.to] {
        if !ends.iter().any(|n| &n.id == id) {
            return Err(DomainError::not_found(format!("entity {id}")));
        }
    }
    let mut a = Side::new(&q.from, true);
    let mut b = Side::new(&q.to, false);
    let mut meet = (q.from == q.to).then(|| q.from.clone());
    let mut depth = 0;
    while meet.is_none() && depth < q.max_depth {
        // Grow the smaller frontier: the search stays near the cheaper end.
        let (grow, other) = if a.frontier.len() <= b.frontier.len() {
            (&mut a, &b)
        } else {
            (&mut b, &a)
        };
        if grow.frontier.is_empty() || grow.frontier.len() > MAX_FRONTIER {
            return Ok(None);
        }
        let dir = match (q.direction, grow.forward) {
            (Direction::Both, _) => Direction::Both,
            (_, true) => Direction::Out,
            (_, false) => Direction::In,
        };
        let mut edges = store.expand(scope, &grow.frontier, dir, &q.types).await?;
        edges.sort_by(|x, y| x.id.cmp(&y.id));
        let here: HashSet<&String> = grow.frontier.iter().collect();
        let mut next = Vec::new();
        for edge in edges {
            // The node this edge leads to from the frontier, honouring direction.
            let candidates = [(&edge.from, &edge.to), (&edge.to, &edge.from)];
            for (near, far) in candidates {
                let along = if grow.forward {
                    near == &edge.from
                } else {
                    near == &edge.to
                };
                if !here.contains(near) || (dir != Direction::Both && !along) {
                    continue;
                }
                if grow.parent.contains_key(far) {
                    continue;
                }
                grow.parent.insert(far.clone(), Some(edge.clone()));
                next.push(far.clone());
                if meet.is_none() && other.parent.contains_key(far) {
                    meet = Some(far.clone());
                }
            }
        }
        grow.frontier = next;
        depth += 1;
    }
    let Some(meet) = meet else {
        return Ok(None);
    };
    // Walk back from the meeting node to each end.
    let trail = |side: &Side| {
        let mut edges = Vec::new();
        let mut at = meet.clone();
        while let Some(Some(edge)) = side.parent.get(&at) {
            at = if edge.to == at {
                edge.from.clone()
            } else {
                edge.to.clone()
            };
            edges.push(edge.clone());
        }
        edges
    };
    let mut refs = trail(&a);
    refs.reverse();
    refs.extend(trail(&b));
    let mut edges = Vec::with_capacity(refs.len());
    for r in &refs {
        match store.get_relationship(scope, &r.id).await {
            Ok(edge) => edges.push(edge),
            Err(DomainError::NotFound(_)) => {
                return Err(DomainError::Conflict(
                    "an edge of the path was deleted while it was searched; retry".into(),
                ))
            }
            Err(e) => return Err(e),
        }
    }
    let mut order = vec![q.from.clone()];
    for e in &edges {
        let last = order.last().expect("starts with from");
        order.push(if &e.from == last {
            e.to.clone()
        } else {
            e.from.clone()
        });
    }
    let headers = store.node_headers(scope, &order, false).await?;
    let nodes = order
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let node_type = headers
                .iter()
                .find(|h| &h.id == id)
                .map(|h| h.node_type.clone())
                .unwrap_or_default();
            GraphNode {
                id: id.clone(),
                node_type,
                depth: i as u32,
                properties: None,
            }
        })
        .collect();
    Ok(Some(GraphPath { nodes, edges }))
}
