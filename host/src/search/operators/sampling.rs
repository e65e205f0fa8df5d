//! Initial sampling: uniform points in box bounds.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::{Bounds, Sampling};

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
