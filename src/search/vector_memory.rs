//! A project's vectors of one model held in memory as 8-bit codes, for the
//! embedded store's semantic search: scanning N x 384 bytes is a quarter
//! of the memory traffic of the f32 vectors and needs no row decoding, so
//! 100k vectors rank in milliseconds. The codes only choose candidates
//! (`oversample` times the limit); the store ranks those by their exact
//! f32 vectors, so scores are exact and the top k differs from an exact
//! scan only when a true neighbour falls outside every candidate.

use std::collections::HashMap;

/// Candidates ranked exactly per hit asked for, and at least this many.
pub const OVERSAMPLE: usize = 4;
pub const MIN_CANDIDATES: usize = 40;
/// Sets of at least this many vectors are scanned on two threads.
const PARALLEL_FROM: usize = 20_000;

/// One project's vectors of one model.
pub struct VectorSet {
    dims: usize,
    ids: Vec<String>,
    versions: Vec<i64>,
    /// Index into `type_names` of each slot's entity type.
    types: Vec<u32>,
    type_names: Vec<String>,
    /// `dims` codes per slot: the vector scaled so its largest component is 127.
    codes: Vec<i8>,
    /// What a code is worth: the largest component's value / 127.
    scales: Vec<f32>,
    slot_of: HashMap<String, usize>,
}

impl VectorSet {
    pub fn new(dims: usize) -> Self {
        VectorSet {
            dims,
            ids: Vec::new(),
            versions: Vec::new(),
            types: Vec::new(),
            type_names: Vec::new(),
            codes: Vec::new(),
            scales: Vec::new(),
            slot_of: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Bytes held, about: codes, scales, ids and the id map.
    pub fn bytes(&self) -> usize {
        self.codes.len() + self.ids.iter().map(|id| 2 * id.len() + 80).sum::<usize>()
    }

    /// Stores an entity's vector unless a newer version's is held (the
    /// store's own rule). A vector of another length is ignored.
    pub fn put(&mut self, id: &str, entity_type: &str, version: i64, vector: &[f32]) {
        if vector.len() != self.dims {
            return;
        }
        let ty = self.type_index(entity_type);
        let (scale, codes) = quantize(vector);
        match self.slot_of.get(id) {
            Some(&slot) if self.versions[slot] > version => {}
            Some(&slot) => {
                self.versions[slot] = version;
                self.types[slot] = ty;
                self.scales[slot] = scale;
                self.codes[slot * self.dims..(slot + 1) * self.dims].copy_from_slice(&codes);
            }
            None => {
                self.slot_of.insert(id.to_owned(), self.ids.len());
                self.ids.push(id.to_owned());
                self.versions.push(version);
                self.types.push(ty);
                self.scales.push(scale);
                self.codes.extend_from_slice(&codes);
            }
        }
    }

    /// Forgets an entity's vector: the last slot moves into its place.
    pub fn remove(&mut self, id: &str) {
        let Some(slot) = self.slot_of.remove(id) else {
            return;
        };
        let last = self.ids.len() - 1;
        self.ids.swap_remove(slot);
        self.versions.swap_remove(slot);
        self.types.swap_remove(slot);
        self.scales.swap_remove(slot);
        if slot != last {
            let d = self.dims;
            self.codes.copy_within(last * d..(last + 1) * d, slot * d);
            self.slot_of.insert(self.ids[slot].clone(), slot);
        }
        self.codes.truncate(last * self.dims);
    }

    /// The ids of the `n` slots whose codes score best against `query`
    /// (of `entity_type` when given), best first by approximate score. A
    /// large set is scanned in two halves on two threads.
    pub fn candidates(&self, query: &[f32], entity_type: Option<&str>, n: usize) -> Vec<String> {
        if query.len() != self.dims || n == 0 {
            return Vec::new();
        }
        let wanted = match entity_type {
            Some(t) => match self.type_names.iter().position(|name| name == t) {
                Some(i) => Some(i as u32),
                None => return Vec::new(),
            },
            None => None,
        };
        // The query's own scale is one factor for every slot: the order needs none.
        let (_, query) = quantize(query);
        let scan = |slots: std::ops::Range<usize>| self.best_of(&query, wanted, slots, n);
        let len = self.len();
        let mut best = if len >= PARALLEL_FROM {
            let (low, high) = std::thread::scope(|s| {
                let high = s.spawn(|| scan(len / 2..len));
                (scan(0..len / 2), high.join())
            });
            let mut both = low;
            both.extend(high.unwrap_or_default());
            both.sort_by(|a, b| b.0.total_cmp(&a.0));
            both
        } else {
            scan(0..len)
        };
        best.truncate(n);
        best.into_iter()
            .map(|(_, slot)| self.ids[slot].clone())
            .collect()
    }

    /// The best `n` (approximate score, slot) among `slots`, best first.
    fn best_of(
        &self,
        query: &[i8],
        wanted: Option<u32>,
        slots: std::ops::Range<usize>,
        n: usize,
    ) -> Vec<(f32, usize)> {
        let dot_i8 = dot_i8();
        let mut best: Vec<(f32, usize)> = Vec::with_capacity(n + 1);
        let mut worst_kept = f32::NEG_INFINITY;
        for slot in slots {
            if wanted.is_some_and(|t| self.types[slot] != t) {
                continue;
            }
            let codes = &self.codes[slot * self.dims..(slot + 1) * self.dims];
            let score = dot_i8(query, codes) as f32 * self.scales[slot];
            if best.len() == n && score <= worst_kept {
                continue;
            }
            let at = best.partition_point(|(s, _)| *s >= score);
            best.insert(at, (score, slot));
            best.truncate(n);
            if best.len() == n {
                worst_kept = best[n - 1].0;
            }
        }
        best
    }

    fn type_index(&mut self, name: &str) -> u32 {
        match self.type_names.iter().position(|t| t == name) {
            Some(i) => i as u32,
            None => {
                self.type_names.push(name.to_owned());
                (self.type_names.len() - 1) as u32
            }
        }
    }
}

/// How many candidates to rank exactly for `limit` hits.
pub fn candidate_count(limit: usize) -> usize {
    (limit * OVERSAMPLE).max(MIN_CANDIDATES)
}

/// Scales a vector so its largest component is ±127 and rounds it.
fn quantize(v: &[f32]) -> (f32, Vec<i8>) {
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    if max == 0.0 || !max.is_finite() {
        return (0.0, vec![0; v.len()]);
    }
    let to_code = 127.0 / max;
    let codes = v
        .iter()
        .map(|x| (x * to_code).round().clamp(-127.0, 127.0) as i8)
        .collect();
    (max / 127.0, codes)
}

/// Integer dot product in 16 independent lanes, which the compiler turns
/// into SIMD multiply-adds; with AVX2 where the processor has it (checked
/// once per search), as the portable build targets SSE2 only.
fn dot_i8_lanes(a: &[i8], b: &[i8]) -> i32 {
    let mut acc = [0i32; 16];
    let (ac, bc) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: i32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| i32::from(*x) * i32::from(*y))
        .sum();
    for (x, y) in ac.zip(bc) {
        for i in 0..16 {
            acc[i] += i32::from(x[i]) * i32::from(y[i]);
        }
    }
    acc.iter().sum::<i32>() + tail
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dot_i8_avx2(a: &[i8], b: &[i8]) -> i32 {
    dot_i8_lanes(a, b)
}

fn dot_i8_avx2_checked(a: &[i8], b: &[i8]) -> i32 {
    // SAFETY: chosen by `dot_i8` only after the processor reported AVX2.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        dot_i8_avx2(a, b)
    }
    #[cfg(not(target_arch = "x86_64"))]
    dot_i8_lanes(a, b)
}

/// The fastest integer dot product this processor runs.
fn dot_i8() -> fn(&[i8], &[i8]) -> i32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        return dot_i8_avx2_checked;
    }
    dot_i8_lanes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A seeded xorshift: unit vectors drawn around a few centres.
    fn cloud(n: usize, dims: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut s = seed | 1;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % 2_000_001) as f32 / 1_000_000.0 - 1.0
        };
        let centres: Vec<Vec<f32>> = (0..8)
            .map(|_| (0..dims).map(|_| next()).collect())
            .collect();
        (0..n)
            .map(|i| {
                let v: Vec<f32> = centres[i % 8].iter().map(|c| c + 0.8 * next()).collect();
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.into_iter().map(|x| x / norm).collect()
            })
            .collect()
    }

    fn exact_top(vectors: &[Vec<f32>], q: &[f32], k: usize) -> Vec<String> {
        let mut scored: Vec<(f32, usize)> = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| (v.iter().zip(q).map(|(a, b)| a * b).sum(), i))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored
            .iter()
            .take(k)
            .map(|(_, i)| format!("e{i}"))
            .collect()
    }

    #[test]
    fn candidates_hold_the_exact_top_ten() {
        let dims = 384;
        let vectors = cloud(5_000, dims, 7);
        let mut set = VectorSet::new(dims);
        for (i, v) in vectors.iter().enumerate() {
            set.put(&format!("e{i}"), "t", 1, v);
        }
        let queries = cloud(50, dims, 99);
        let mut found = 0;
        for q in &queries {
            let candidates = set.candidates(q, None, candidate_count(10));
            found += exact_top(&vectors, q, 10)
                .iter()
                .filter(|id| candidates.contains(id))
                .count();
        }
        assert!(
            found >= 495,
            "{found} of 500 true top-10 hits among the candidates"
        );
    }

    #[test]
    fn put_keeps_the_newest_version_and_remove_moves_the_last_slot() {
        let mut set = VectorSet::new(2);
        set.put("a", "x", 2, &[1.0, 0.0]);
        set.put("a", "x", 1, &[0.0, 1.0]);
        set.put("b", "y", 1, &[0.0, 1.0]);
        set.put("c", "y", 1, &[0.6, 0.8]);
        assert_eq!(set.candidates(&[1.0, 0.0], None, 1), ["a"]);
        set.remove("a");
        assert_eq!(set.len(), 2);
        assert_eq!(set.candidates(&[1.0, 0.0], None, 2), ["c", "b"]);
        assert_eq!(
            set.candidates(&[1.0, 0.0], Some("x"), 2),
            Vec::<String>::new()
        );
        set.remove("c");
        assert_eq!(set.candidates(&[1.0, 0.0], Some("y"), 5), ["b"]);
        set.put("d", "y", 1, &[1.0]);
        assert_eq!(set.len(), 1, "a vector of another length is ignored");
    }
}
