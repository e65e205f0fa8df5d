//! Initial sampling: uniformly random archs, or uniform points in box bounds.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use shiftnas_models::Arch;

use super::{Bounds, Sampling};

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

/// Uniform points in box bounds (pymoo's `FloatRandomSampling`).
#[derive(Debug, Clone, PartialEq)]
pub struct FloatSampling {
    /// The box.
    pub bounds: Bounds,
}

impl Sampling<Vec<f64>> for FloatSampling {
    fn sample(&self, rng: &mut ChaCha8Rng) -> Vec<f64> {
        self.bounds
            .lower
            .iter()
            .zip(&self.bounds.upper)
            .map(|(&lo, &hi)| lo + rng.random::<f64>() * (hi - lo))
            .collect()
    }
}
