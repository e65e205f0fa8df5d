//! GreedyNAS (You et al., CVPR 2020): multi-path sampling with rejection and a candidate pool.
//!
//! Each step draws `m` paths, each from the pool with probability `q` (exploitation) or
//! uniformly (exploration), scores them on a held-out validation batch with the current supernet,
//! trains the `k` with the lowest loss and rejects the other `m − k`. The pool keeps the `P`
//! lowest-loss paths seen so far; a pool path drawn again is re-scored and its loss replaced.
//! `q` grows linearly from 0 to [`MAX_EXPLOIT`] over the steps after the path warm-up.

use rand::Rng;
use rand::seq::index;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use shiftnas_models::Arch;

/// The paper's final exploitation probability.
pub const MAX_EXPLOIT: f64 = 0.8;

/// One pool entry: a path and its latest validation loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolEntry {
    /// The path's choice indices.
    pub genes: Vec<u8>,
    /// Its validation loss when last scored.
    pub loss: f64,
}

impl PoolEntry {
    /// The path.
    pub fn arch(&self) -> Arch {
        Arch::new(self.genes.clone())
    }
}

/// The candidate pool: at most `capacity` paths, lowest loss first (ties: smaller genes first).
///
/// Serialised whole into a checkpoint (`greedy_pool.json`), so a resumed run continues with the
/// same pool; serde_json writes f64 losses so that they read back bit for bit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GreedyPool {
    /// Most paths kept (`--greedy-pool`).
    pub capacity: usize,
    /// The paths, sorted by loss.
    pub entries: Vec<PoolEntry>,
}

impl GreedyPool {
    /// An empty pool of `capacity` paths.
    pub fn new(capacity: usize) -> GreedyPool {
        GreedyPool {
            capacity,
            entries: Vec::new(),
        }
    }

    /// Paths in the pool.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `arch` is in the pool.
    pub fn contains(&self, arch: &Arch) -> bool {
        self.entries.iter().any(|e| e.genes == arch.genes())
    }

    /// Records `arch`'s new `loss` (replacing its old one when pooled), then keeps the
    /// `capacity` lowest.
    pub fn offer(&mut self, arch: &Arch, loss: f64) {
        match self.entries.iter_mut().find(|e| e.genes == arch.genes()) {
            Some(e) => e.loss = loss,
            None => self.entries.push(PoolEntry {
                genes: arch.genes().to_vec(),
                loss,
            }),
        }
        self.entries.sort_by(|a, b| {
            a.loss
                .total_cmp(&b.loss)
                .then_with(|| a.genes.cmp(&b.genes))
        });
        self.entries.truncate(self.capacity);
    }

    /// `n` distinct pool paths drawn uniformly (all of them when `n ≥ len`).
    pub fn draw(&self, n: usize, rng: &mut ChaCha8Rng) -> Vec<Arch> {
        let n = n.min(self.len());
        index::sample(rng, self.len(), n)
            .into_iter()
            .map(|i| self.entries[i].arch())
            .collect()
    }
}

/// The exploitation probability at `step` of a run of `steps` whose warm-up ends at `warmup`:
/// 0 at the warm-up's end, rising linearly to [`MAX_EXPLOIT`] at the last step.
pub fn exploit_prob(step: u64, warmup: u64, steps: u64) -> f64 {
    let span = steps.saturating_sub(warmup).max(1) as f64;
    MAX_EXPLOIT * (step.saturating_sub(warmup) as f64 / span).min(1.0)
}

/// `m` distinct candidate paths: each from the pool with probability `q` (distinct pool paths,
/// while any are left), otherwise uniform over `choices` per block.
pub fn candidates(
    pool: &GreedyPool,
    m: usize,
    q: f64,
    blocks: usize,
    choices: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<Arch> {
    let from_pool = (0..m)
        .filter(|_| !pool.is_empty() && rng.random_bool(q))
        .count();
    let mut out = pool.draw(from_pool, rng);
    while out.len() < m {
        let a = Arch::random(blocks, choices, rng);
        if !out.contains(&a) {
            out.push(a);
        }
    }
    out
}

/// Indices of the `k` lowest of `losses` (ties: the earlier), in increasing loss; the rest are
/// rejected.
pub fn keep_best(losses: &[f64], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..losses.len()).collect();
    order.sort_by(|&a, &b| losses[a].total_cmp(&losses[b]).then(a.cmp(&b)));
    order.truncate(k);
    order
}

/// GreedyNAS's selection of one step: keeps the `k` lowest-loss candidates, records them in the
/// pool, and re-records every pooled candidate's new loss (kept or rejected). Returns the kept.
pub fn select(pool: &mut GreedyPool, candidates: &[Arch], losses: &[f64], k: usize) -> Vec<Arch> {
    let kept = keep_best(losses, k);
    for (i, (arch, &loss)) in candidates.iter().zip(losses).enumerate() {
        if kept.contains(&i) || pool.contains(arch) {
            pool.offer(arch, loss);
        }
    }
    kept.into_iter().map(|i| candidates[i].clone()).collect()
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn pool_keeps_the_lowest_and_rescores() {
        let mut pool = GreedyPool::new(2);
        let a = |g: u8| Arch::uniform(3, g);
        pool.offer(&a(0), 3.0);
        pool.offer(&a(1), 1.0);
        pool.offer(&a(2), 2.0);
        let genes = |p: &GreedyPool| p.entries.iter().map(|e| e.genes[0]).collect::<Vec<_>>();
        assert_eq!(genes(&pool), [1, 2]);
        // Re-scored worse than the worst: it falls out (capacity 2, three candidates known).
        pool.offer(&a(1), 5.0);
        assert_eq!(genes(&pool), [2, 1]);
        pool.offer(&a(0), 0.5);
        assert_eq!(genes(&pool), [0, 2]);
        assert_eq!(pool.entries[0].loss, 0.5);
    }

    #[test]
    fn selection_keeps_k_lowest_and_updates_pooled_rejects() {
        let mut pool = GreedyPool::new(10);
        let c: Vec<Arch> = (0..4).map(|g| Arch::uniform(2, g)).collect();
        pool.offer(&c[3], 0.1);
        let kept = select(&mut pool, &c, &[0.9, 0.2, 0.5, 1.5], 2);
        assert_eq!(kept, [c[1].clone(), c[2].clone()]);
        // c[3] was pooled and rejected: its loss is the new one; c[0] (rejected) is not pooled.
        let got: Vec<(u8, f64)> = pool.entries.iter().map(|e| (e.genes[0], e.loss)).collect();
        assert_eq!(got, [(1, 0.2), (2, 0.5), (3, 1.5)]);
        assert_eq!(keep_best(&[1.0, 1.0, 0.0], 2), [2, 0]);
    }

    #[test]
    fn exploitation_ramps_and_candidates_are_distinct() {
        assert_eq!(exploit_prob(5, 10, 110), 0.0);
        assert_eq!(exploit_prob(10, 10, 110), 0.0);
        assert!((exploit_prob(60, 10, 110) - 0.4).abs() < 1e-12);
        assert_eq!(exploit_prob(110, 10, 110), MAX_EXPLOIT);
        let mut pool = GreedyPool::new(3);
        for g in 0..3 {
            pool.offer(&Arch::uniform(4, g), f64::from(g));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let (mut pooled, mut n) = (0usize, 0usize);
        for _ in 0..200 {
            let c = candidates(&pool, 5, 0.4, 4, 4, &mut rng);
            assert_eq!(c.len(), 5);
            for (i, a) in c.iter().enumerate() {
                assert!(!c[..i].contains(a));
                pooled += usize::from(pool.contains(a));
                n += 1;
            }
        }
        // q = 0.4 of 5 draws = 2 on average, capped by the pool's 3 paths (random archs of
        // 4^4 rarely hit the pool): ~0.4 of all candidates.
        let share = pooled as f64 / n as f64;
        assert!((0.33..0.45).contains(&share), "{share}");
        // An empty pool: every candidate is a uniform draw, whatever q.
        assert_eq!(
            candidates(&GreedyPool::new(3), 4, 1.0, 4, 4, &mut rng).len(),
            4
        );
    }
}
