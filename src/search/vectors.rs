//! Embedding vectors as both backends store them (f32 little-endian bytes)
//! and the exact top-k scan over them.

use crate::domain::VectorHit;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// The stored form of a vector.
pub fn encode(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Dot product of a query with a stored vector; None when the stored one has
/// another length (made by another model).
pub fn dot(query: &[f32], stored: &[u8]) -> Option<f32> {
    if stored.len() != query.len() * 4 {
        return None;
    }
    Some(
        stored
            .chunks_exact(4)
            .zip(query)
            .map(|(b, q)| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) * q)
            .sum(),
    )
}

/// The `limit` best hits seen, kept in a min-heap while scanning.
pub struct TopK {
    limit: usize,
    heap: BinaryHeap<Worst>,
}

/// Orders hits worst first, so the heap's top is the one to drop.
struct Worst(VectorHit);

impl PartialEq for Worst {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Worst {}
impl PartialOrd for Worst {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Worst {
    fn cmp(&self, other: &Self) -> Ordering {
        // Lower score is "greater" (worse); ties broken by id for a stable order.
        other
            .0
            .score
            .total_cmp(&self.0.score)
            .then_with(|| self.0.id.cmp(&other.0.id))
    }
}

impl TopK {
    pub fn new(limit: usize) -> Self {
        TopK {
            limit,
            heap: BinaryHeap::with_capacity(limit + 1),
        }
    }

    /// Whether a hit of `score` would be kept now (saves building its id).
    pub fn admits(&self, score: f32) -> bool {
        self.heap.len() < self.limit || self.heap.peek().is_some_and(|w| score > w.0.score)
    }

    pub fn push(&mut self, id: String, score: f32) {
        if self.limit == 0 || !self.admits(score) {
            return;
        }
        self.heap.push(Worst(VectorHit { id, score }));
        if self.heap.len() > self.limit {
            self.heap.pop();
        }
    }

    /// Best first.
    pub fn into_sorted(self) -> Vec<VectorHit> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|w| w.0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_best_in_order() {
        let mut top = TopK::new(2);
        for (id, s) in [("a", 0.1), ("b", 0.9), ("c", 0.5), ("d", -1.0)] {
            top.push(id.into(), s);
        }
        let ids: Vec<_> = top.into_sorted().into_iter().map(|h| h.id).collect();
        assert_eq!(ids, ["b", "c"]);
    }

    #[test]
    fn dot_reads_what_encode_wrote() {
        let v = [0.6f32, 0.8];
        assert_eq!(dot(&v, &encode(&v)), Some(1.0));
        assert_eq!(dot(&[1.0], &encode(&v)), None);
    }
}
