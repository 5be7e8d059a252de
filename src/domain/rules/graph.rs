//! A bounded breadth-first walk's bookkeeping, the same on every backend:
//! each backend only fetches the next level's far ends, the walked edges
//! and the node headers.

use crate::domain::*;
use std::collections::{HashMap, HashSet};

/// Which nodes a walk found, each at its shortest depth.
pub struct Walk<'a> {
    t: &'a Traversal,
    depths: HashMap<String, u32>,
    frontier: Vec<String>,
    depth: u32,
}

impl<'a> Walk<'a> {
    pub fn new(t: &'a Traversal) -> Self {
        Walk {
            t,
            depths: HashMap::from([(t.start.clone(), 0)]),
            frontier: vec![t.start.clone()],
            depth: 0,
        }
    }

    /// The nodes to expand next, or None when the walk is over (depth or
    /// node limit reached, or nothing new found).
    pub fn frontier(&self) -> Option<&[String]> {
        let over = self.frontier.is_empty()
            || self.depth >= self.t.max_depth
            || self.depths.len() >= self.t.limit;
        (!over).then_some(self.frontier.as_slice())
    }

    /// The far ends found from the frontier: the next level.
    pub fn admit(&mut self, found: impl IntoIterator<Item = String>) {
        self.depth += 1;
        self.frontier = self.t.admit_level(&mut self.depths, found, self.depth);
    }

    /// Every node found.
    pub fn nodes(&self) -> Vec<String> {
        self.depths.keys().cloned().collect()
    }

    /// The nodes short of the depth limit: the walked edges leave these.
    pub fn inner(&self) -> Vec<String> {
        self.depths
            .iter()
            .filter(|(_, d)| **d < self.t.max_depth)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Whether an edge was walked: from an inner node to a found one, in
    /// the walk's direction.
    pub fn walked(&self, inner: &HashSet<&str>, from: &str, to: &str) -> bool {
        let forward = inner.contains(from) && self.depths.contains_key(to);
        let backward = inner.contains(to) && self.depths.contains_key(from);
        match self.t.direction {
            Direction::Out => forward,
            Direction::In => backward,
            Direction::Both => forward || backward,
        }
    }

    /// The answer: nodes with their depths, by depth then id.
    pub fn subgraph(&self, mut nodes: Vec<GraphNode>, edges: Vec<Relationship>) -> Subgraph {
        for n in &mut nodes {
            n.depth = self.depths[&n.id];
        }
        nodes.sort_by(|a, b| (a.depth, &a.id).cmp(&(b.depth, &b.id)));
        Subgraph { nodes, edges }
    }
}
