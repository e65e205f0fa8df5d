//! Mutation: polynomial mutation (PM) of real vectors.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::{Bounds, Mutation};

/// Polynomial mutation (Deb & Goyal 1996) with bounds, as pymoo's `PM`.
///
/// With probability `prob` an individual is mutated; then each variable with probability
/// `prob_var` (default `min(0.5, 1/n)`) is moved by the bounded polynomial perturbation of
/// distribution index `eta` and clamped to the bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct PolynomialMutation {
    /// The box.
    pub bounds: Bounds,
    /// Distribution index (pymoo's NSGA-II uses 20).
    pub eta: f64,
    /// Probability that an individual is mutated at all (pymoo's `PM` default 0.9).
    pub prob: f64,
    /// Per-variable probability; `None` means `min(0.5, 1/n)`.
    pub prob_var: Option<f64>,
}

impl PolynomialMutation {
    /// pymoo's NSGA-II default: `PM(eta=20)` (prob 0.9, prob_var 1/n).
    pub fn new(bounds: Bounds) -> PolynomialMutation {
        PolynomialMutation {
            bounds,
            eta: 20.0,
            prob: 0.9,
            prob_var: None,
        }
    }
}

impl Mutation<Vec<f64>> for PolynomialMutation {
    fn mutate(&self, genome: &Vec<f64>, rng: &mut ChaCha8Rng) -> Vec<f64> {
        let mut x = genome.clone();
        if rng.random::<f64>() > self.prob {
            return x;
        }
        let n = x.len().max(1) as f64;
        let prob_var = self.prob_var.unwrap_or((1.0 / n).min(0.5));
        let pow = 1.0 / (self.eta + 1.0);
        for (i, xi) in x.iter_mut().enumerate() {
            let (lo, hi) = (self.bounds.lower[i], self.bounds.upper[i]);
            if rng.random::<f64>() >= prob_var || lo == hi {
                continue;
            }
            let d1 = (*xi - lo) / (hi - lo);
            let d2 = (hi - *xi) / (hi - lo);
            let u = rng.random::<f64>();
            let deltaq = if u <= 0.5 {
                let val = 2.0 * u + (1.0 - 2.0 * u) * (1.0 - d1).powf(self.eta + 1.0);
                val.powf(pow) - 1.0
            } else {
                let val = 2.0 * (1.0 - u) + 2.0 * (u - 0.5) * (1.0 - d2).powf(self.eta + 1.0);
                1.0 - val.powf(pow)
            };
            *xi = (*xi + deltaq * (hi - lo)).clamp(lo, hi);
        }
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn pm_stays_in_bounds_and_moves_about_one_gene() {
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let pm = PolynomialMutation::new(Bounds::uniform(30, 0.0, 1.0));
        let x: Vec<f64> = (0..30).map(|i| i as f64 / 29.0).collect();
        let mut changed = 0;
        let trials = 2000;
        for _ in 0..trials {
            let y = pm.mutate(&x, &mut rng);
            assert!(y.iter().all(|v| (0.0..=1.0).contains(v)));
            changed += x.iter().zip(&y).filter(|(a, b)| a != b).count();
        }
        // Expected genes changed per call: 0.9 × 30 × 1/30 = 0.9 (minus the few at a bound that
        // stay put); allow sampling noise.
        let mean = changed as f64 / trials as f64;
        assert!((0.75..1.0).contains(&mean), "mean changed genes {mean}");
    }
}
