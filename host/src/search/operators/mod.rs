//! Variation operators as small parts passed into an algorithm, as in pymoo's `operators/`.
//!
//! [`Sampling`] draws one genome, [`Crossover`] turns parents into children, [`Mutation`]
//! perturbs one genome; [`selection`] picks parents by tournament. The operators here are for
//! real vectors in box bounds (`Vec<f64>`: [`FloatSampling`], [`Sbx`], [`PolynomialMutation`],
//! used by the ZDT benchmarks); architectures have theirs in the host's `nas::operators`.
//! [`fill_unique`] is pymoo's infill loop: generate, drop duplicates against what exists, repeat
//! up to a cap.

use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub mod crossover;
pub mod mutation;
pub mod sampling;
pub mod selection;

pub use crossover::Sbx;
pub use mutation::PolynomialMutation;
pub use sampling::FloatSampling;
pub use selection::binary_tournament;

/// Draws one new genome.
pub trait Sampling<G> {
    /// One random genome.
    fn sample(&self, rng: &mut ChaCha8Rng) -> G;
}

/// Recombines parents into children.
pub trait Crossover<G> {
    /// Parents per mating (default 2).
    fn n_parents(&self) -> usize {
        2
    }
    /// Children per mating (default 2).
    fn n_offsprings(&self) -> usize {
        2
    }
    /// Children of one mating (`parents.len() == n_parents()`).
    fn cross(&self, parents: &[&G], rng: &mut ChaCha8Rng) -> Vec<G>;
}

/// Perturbs one genome.
pub trait Mutation<G> {
    /// A mutated copy of `genome`.
    fn mutate(&self, genome: &G, rng: &mut ChaCha8Rng) -> G;
}

/// Box bounds of a real-valued genome: `lower[i] ≤ x[i] ≤ upper[i]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bounds {
    /// Lower bound per variable.
    pub lower: Vec<f64>,
    /// Upper bound per variable.
    pub upper: Vec<f64>,
}

impl Bounds {
    /// The same bounds `[lo, hi]` for all `n` variables.
    pub fn uniform(n: usize, lo: f64, hi: f64) -> Bounds {
        Bounds {
            lower: vec![lo; n],
            upper: vec![hi; n],
        }
    }

    /// Number of variables.
    pub fn len(&self) -> usize {
        self.lower.len()
    }

    /// True when there are no variables.
    pub fn is_empty(&self) -> bool {
        self.lower.is_empty()
    }
}

/// Up to `n` new genomes from repeated calls of `batch(remaining, rng)`, dropping any equal to a
/// genome in `existing`, to one already accepted, or to an earlier one in the same batch.
///
/// Stops after `max_iterations` batches (pymoo's `n_max_iterations`, default 100) and then returns
/// fewer than `n`: a small space may simply run out of new genomes.
pub fn fill_unique<G: PartialEq>(
    n: usize,
    existing: &[&G],
    max_iterations: usize,
    rng: &mut ChaCha8Rng,
    mut batch: impl FnMut(usize, &mut ChaCha8Rng) -> Vec<G>,
) -> Vec<G> {
    let mut accepted: Vec<G> = Vec::with_capacity(n);
    for _ in 0..max_iterations {
        if accepted.len() >= n {
            break;
        }
        for g in batch(n - accepted.len(), rng) {
            if accepted.len() >= n {
                break;
            }
            if !existing.iter().any(|e| **e == g) && !accepted.contains(&g) {
                accepted.push(g);
            }
        }
    }
    accepted
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn fill_unique_drops_duplicates_and_is_bounded() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        // Only 5 distinct values exist and 2 of them already do: at most 3 new ones.
        let existing = [0u8, 1u8];
        let refs: Vec<&u8> = existing.iter().collect();
        let mut calls = 0;
        let got = fill_unique(10, &refs, 20, &mut rng, |k, rng| {
            calls += 1;
            (0..k).map(|_| rng.random_range(0..5u8)).collect()
        });
        assert_eq!(calls, 20);
        let mut sorted = got.clone();
        sorted.sort();
        assert_eq!(sorted, vec![2, 3, 4]);
    }
}
