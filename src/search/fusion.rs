//! Hybrid ranking: reciprocal rank fusion of several ranked lists (text and
//! semantic). Each list gives an id `1 / (K + rank)`; ids are ranked by the
//! sum. Ranks, not scores, are fused: BM25 and cosine are not on one scale.

use std::collections::HashMap;

/// The usual damping constant: a first place is worth little more than a
/// tenth, so agreement between lists outweighs one list's top spot.
const K: f64 = 60.0;

/// The fused ranking of `lists` (each best first), best first, at most
/// `limit` ids with their fused scores.
pub fn reciprocal_rank_fusion(lists: &[Vec<String>], limit: usize) -> Vec<(String, f64)> {
    let mut scores: HashMap<&str, (f64, usize)> = HashMap::new();
    let mut order = 0;
    for list in lists {
        for (rank, id) in list.iter().enumerate() {
            let entry = scores.entry(id).or_insert_with(|| {
                order += 1;
                (0.0, order)
            });
            entry.0 += 1.0 / (K + rank as f64 + 1.0);
        }
    }
    let mut fused: Vec<(&str, (f64, usize))> = scores.into_iter().collect();
    // Ties keep the order ids were first seen in (the first list's first).
    fused.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0).then(a.1 .1.cmp(&b.1 .1)));
    fused
        .into_iter()
        .take(limit)
        .map(|(id, (score, _))| (id.to_owned(), score))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn agreement_beats_one_top_spot() {
        let text = ids(&["a", "b", "c"]);
        let semantic = ids(&["d", "b", "a"]);
        let fused: Vec<String> = reciprocal_rank_fusion(&[text, semantic], 10)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(fused, ["a", "b", "d", "c"]);
    }

    #[test]
    fn one_list_keeps_its_order_and_the_limit_holds() {
        let fused = reciprocal_rank_fusion(&[ids(&["x", "y", "z"]), vec![]], 2);
        assert_eq!(fused.len(), 2);
        assert_eq!(fused[0].0, "x");
        assert!(fused[0].1 > fused[1].1);
    }
}
