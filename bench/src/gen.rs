//! Seeded data generators: a pseudo-word vocabulary with Zipf frequencies,
//! a Pokec-like power-law social graph, and a large dependency DAG.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::collections::HashSet;

pub fn rng(seed: u64, stream: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Index drawn from a cumulative weight table.
fn draw(cdf: &[f64], rng: &mut StdRng) -> usize {
    let total = *cdf.last().expect("non-empty");
    let x = rng.random::<f64>() * total;
    cdf.partition_point(|&c| c <= x).min(cdf.len() - 1)
}

fn power_cdf(n: usize, exponent: f64) -> Vec<f64> {
    let mut acc = 0.0;
    (0..n)
        .map(|i| {
            acc += ((i + 1) as f64).powf(-exponent);
            acc
        })
        .collect()
}

/// Pronounceable pseudo-words; rank 0 is the most frequent (Zipf, s = 1).
pub struct Vocab {
    pub words: Vec<String>,
    cdf: Vec<f64>,
}

impl Vocab {
    pub fn new(seed: u64, size: usize) -> Vocab {
        const C: &[&str] = &[
            "b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br",
            "st", "tr", "ch",
        ];
        const V: &[&str] = &["a", "e", "i", "o", "u", "ai", "ou"];
        let mut r = rng(seed, 1);
        let mut seen = HashSet::new();
        let mut words = Vec::with_capacity(size);
        while words.len() < size {
            let syllables = r.random_range(2..=4);
            let mut w = String::new();
            for _ in 0..syllables {
                w.push_str(C[r.random_range(0..C.len())]);
                w.push_str(V[r.random_range(0..V.len())]);
            }
            if r.random_bool(0.3) {
                w.push_str(["n", "r", "s", "x", "m"][r.random_range(0..5)]);
            }
            if seen.insert(w.clone()) {
                words.push(w);
            }
        }
        Vocab {
            cdf: power_cdf(words.len(), 1.0),
            words,
        }
    }

    pub fn zipf(&self, r: &mut StdRng) -> &str {
        &self.words[draw(&self.cdf, r)]
    }

    pub fn uniform(&self, r: &mut StdRng) -> &str {
        &self.words[r.random_range(0..self.words.len())]
    }

    pub fn sentence(&self, r: &mut StdRng, n: usize) -> String {
        (0..n).map(|_| self.zipf(r)).collect::<Vec<_>>().join(" ")
    }
}

fn create_entity(id: &str, ty: &str, props: serde_json::Value) -> String {
    json!({"op": "create_entity", "id": id, "type": ty, "properties": props}).to_string()
}

fn create_rel(id: &str, ty: &str, from: &str, to: &str) -> String {
    json!({"op": "create_relationship", "id": id, "type": ty, "from": from, "to": to}).to_string()
}

// ---- GET / write workloads -------------------------------------------------

pub fn item_id(i: usize) -> String {
    format!("item-{i}")
}

pub fn item_op(vocab: &Vocab, r: &mut StdRng, i: usize) -> String {
    create_entity(&item_id(i), "Item", item_props(vocab, r, i))
}

pub fn item_props(vocab: &Vocab, r: &mut StdRng, i: usize) -> serde_json::Value {
    json!({
        "name": format!("{} {}", vocab.uniform(r), vocab.uniform(r)),
        "description": vocab.sentence(r, 8),
        "status": (["open", "closed", "draft"][i % 3]),
        "priority": r.random_range(1..=5),
        "tags": [vocab.zipf(r), vocab.zipf(r)],
    })
}

// ---- Pokec-like social graph -----------------------------------------------

pub fn user_id(i: u32) -> String {
    format!("u{i}")
}

pub fn user_op(vocab: &Vocab, r: &mut StdRng, i: u32) -> String {
    create_entity(
        &user_id(i),
        "User",
        json!({
            "name": format!("{} {}", vocab.uniform(r), vocab.uniform(r)),
            "age": r.random_range(14..80),
            "gender": if r.random_bool(0.5) { "f" } else { "m" },
            "region": vocab.zipf(r),
            "public": r.random_bool(0.7),
        }),
    )
}

pub fn knows_op(k: usize, from: u32, to: u32) -> String {
    create_rel(&format!("k{k}"), "KNOWS", &user_id(from), &user_id(to))
}

/// Chung-Lu style directed graph: sources and targets drawn independently
/// from power-law weights w_i = (i+1)^-exponent over two random
/// permutations of the nodes (exponent 2/3 ~ degree exponent gamma 2.5).
/// No self-loops, no duplicate (from, to).
pub fn pokec_edges(seed: u64, n: u32, m: usize, exponent: f64) -> Vec<(u32, u32)> {
    let mut r = rng(seed, 2);
    let cdf = power_cdf(n as usize, exponent);
    let mut out_perm: Vec<u32> = (0..n).collect();
    let mut in_perm: Vec<u32> = (0..n).collect();
    out_perm.shuffle(&mut r);
    in_perm.shuffle(&mut r);
    let mut seen = HashSet::with_capacity(m * 2);
    let mut edges = Vec::with_capacity(m);
    let mut attempts = 0usize;
    while edges.len() < m && attempts < m * 50 {
        attempts += 1;
        let a = out_perm[draw(&cdf, &mut r)];
        let b = in_perm[draw(&cdf, &mut r)];
        if a != b && seen.insert(((a as u64) << 32) | b as u64) {
            edges.push((a, b));
        }
    }
    edges
}

// ---- 1M dependency DAG -----------------------------------------------------

pub fn pkg_id(i: u32) -> String {
    format!("n{i}")
}

pub fn pkg_op(vocab: &Vocab, r: &mut StdRng, i: u32) -> String {
    let words = r.random_range(6..=12);
    create_entity(
        &pkg_id(i),
        "Package",
        json!({
            "name": format!("{}-{}", vocab.uniform(r), vocab.uniform(r)),
            "description": vocab.sentence(r, words),
            "category": (vocab.words[r.random_range(0..24)]),
            "downloads": r.random_range(0..1_000_000),
        }),
    )
}

pub fn dep_op(k: usize, from: u32, to: u32) -> String {
    create_rel(&format!("d{k}"), "DEPENDS_ON", &pkg_id(from), &pkg_id(to))
}

/// Out-adjacency of a DAG over 0..n: every edge i -> j has j < i.
/// Out-degree ~ round(mean * Exp(1)) (capped at 64 and i); each target is
/// with probability 1/2 local (one of the `window` nodes just below i) and
/// otherwise global, j = floor(i * u^3), which piles dependents onto low,
/// "popular" ids (a few huge hubs, most nodes with few dependents).
pub fn dag(seed: u64, n: u32, mean_out: f64, window: u32) -> Vec<Vec<u32>> {
    let mut r = rng(seed, 3);
    let mut adj = Vec::with_capacity(n as usize);
    for i in 0..n {
        let e: f64 = -(1.0 - r.random::<f64>()).ln();
        let k = ((mean_out * e).round() as u32).min(64).min(i);
        let mut outs: Vec<u32> = Vec::with_capacity(k as usize);
        let mut tries = 0;
        while (outs.len() as u32) < k && tries < 4 * k + 8 {
            tries += 1;
            let j = if r.random_bool(0.5) {
                i - 1 - r.random_range(0..window.min(i))
            } else {
                ((i as f64) * r.random::<f64>().powi(3)) as u32
            };
            if j < i && !outs.contains(&j) {
                outs.push(j);
            }
        }
        adj.push(outs);
    }
    adj
}
