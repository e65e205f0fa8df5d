//! Variation operators on architectures ([`Arch`]): uniform sampling, per-gene mutation (SPOS)
//! and uniform crossover, plugged into the generic algorithms of [`crate::search`].

use rand_chacha::ChaCha8Rng;
use shiftnas_models::Arch;

use crate::search::operators::{Crossover, Mutation, Sampling};

/// Uniformly random archs of `blocks` genes with `choices` options each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchSampling {
    /// Number of choice blocks.
    pub blocks: usize,
    /// Options per block.
    pub choices: usize,
}

impl Sampling<Arch> for ArchSampling {
    fn sample(&self, rng: &mut ChaCha8Rng) -> Arch {
        Arch::random(self.blocks, self.choices, rng)
    }
}

/// Resample each gene with probability `p` uniformly over `choices` (SPOS; [`Arch::mutate`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeneMutation {
    /// Per-gene resampling probability (SPOS uses 0.1).
    pub p: f64,
    /// Options per block.
    pub choices: usize,
}

impl Mutation<Arch> for GeneMutation {
    fn mutate(&self, genome: &Arch, rng: &mut ChaCha8Rng) -> Arch {
        genome.mutate(self.p, self.choices, rng)
    }
}

/// Uniform crossover (pymoo's `UX`): two children, each gene from either parent with
/// probability ½ (via [`Arch::crossover`], drawn independently for each child).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UniformCrossover;

impl Crossover<Arch> for UniformCrossover {
    fn cross(&self, parents: &[&Arch], rng: &mut ChaCha8Rng) -> Vec<Arch> {
        vec![
            parents[0].crossover(parents[1], rng),
            parents[1].crossover(parents[0], rng),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn gene_mutation_uses_arch_mutate() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let a = Arch::uniform(20, 1);
        let m = GeneMutation { p: 1.0, choices: 4 }.mutate(&a, &mut rng);
        assert!(m.genes().iter().all(|&g| g < 4));
        assert_ne!(m, a);
        assert_eq!(GeneMutation { p: 0.0, choices: 4 }.mutate(&a, &mut rng), a);
    }

    #[test]
    fn uniform_crossover_takes_genes_from_parents() {
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let a = Arch::uniform(20, 0);
        let b = Arch::uniform(20, 3);
        let kids = UniformCrossover.cross(&[&a, &b], &mut rng);
        assert_eq!(kids.len(), 2);
        for k in kids {
            assert!(k.genes().iter().all(|&g| g == 0 || g == 3));
            assert_ne!(k, a);
        }
    }
}
