//! Crossover: simulated binary crossover (SBX) of real vectors.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::{Bounds, Crossover};

/// Simulated binary crossover (Deb & Agrawal 1995) with bounds, as pymoo's `SBX`.
///
/// With probability `prob` a mating recombines (else the children are copies of the parents);
/// then each variable is recombined with probability `prob_var` (unless the parents are within
/// 1e-14 there), the two children are placed by the bounded spread factor `βq` of distribution
/// index `eta`, given to either child with probability `prob_bin`, and clamped to the bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Sbx {
    /// The box the children are clamped to.
    pub bounds: Bounds,
    /// Distribution index (larger = children closer to parents). pymoo's NSGA-II uses 15.
    pub eta: f64,
    /// Probability that a mating recombines at all (0.9).
    pub prob: f64,
    /// Probability that one variable is recombined (0.5).
    pub prob_var: f64,
    /// Probability that the two children's values of a variable are exchanged (0.5).
    pub prob_bin: f64,
}

impl Sbx {
    /// pymoo's NSGA-II default: `SBX(eta=15, prob=0.9)` (prob_var 0.5, prob_bin 0.5).
    pub fn new(bounds: Bounds) -> Sbx {
        Sbx {
            bounds,
            eta: 15.0,
            prob: 0.9,
            prob_var: 0.5,
            prob_bin: 0.5,
        }
    }
}

impl Crossover<Vec<f64>> for Sbx {
    fn cross(&self, parents: &[&Vec<f64>], rng: &mut ChaCha8Rng) -> Vec<Vec<f64>> {
        let (p1, p2) = (parents[0], parents[1]);
        let mut c1 = p1.clone();
        let mut c2 = p2.clone();
        if rng.random::<f64>() >= self.prob {
            return vec![c1, c2];
        }
        let eta = self.eta;
        let betaq = |beta: f64, u: f64| {
            let alpha = 2.0 - beta.powf(-(eta + 1.0));
            if u <= 1.0 / alpha {
                (u * alpha).powf(1.0 / (eta + 1.0))
            } else {
                (1.0 / (2.0 - u * alpha)).powf(1.0 / (eta + 1.0))
            }
        };
        for i in 0..p1.len() {
            let (lo, hi) = (self.bounds.lower[i], self.bounds.upper[i]);
            let recombine = rng.random::<f64>() < self.prob_var;
            if !recombine || (p1[i] - p2[i]).abs() <= 1e-14 || lo == hi {
                continue;
            }
            let (y1, y2) = if p1[i] < p2[i] {
                (p1[i], p2[i])
            } else {
                (p2[i], p1[i])
            };
            let delta = y2 - y1;
            let u = rng.random::<f64>();
            let low = 0.5 * ((y1 + y2) - betaq(1.0 + 2.0 * (y1 - lo) / delta, u) * delta);
            let high = 0.5 * ((y1 + y2) + betaq(1.0 + 2.0 * (hi - y2) / delta, u) * delta);
            let (a, b) = if rng.random::<f64>() < self.prob_bin {
                (high, low)
            } else {
                (low, high)
            };
            c1[i] = a.clamp(lo, hi);
            c2[i] = b.clamp(lo, hi);
        }
        vec![c1, c2]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn sbx_children_stay_in_bounds_and_keep_the_mean() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let sbx = Sbx {
            prob: 1.0,
            prob_var: 1.0,
            ..Sbx::new(Bounds::uniform(3, 0.0, 1.0))
        };
        let (a, b) = (vec![0.2, 0.5, 0.9], vec![0.4, 0.5, 0.1]);
        for _ in 0..200 {
            let kids = sbx.cross(&[&a, &b], &mut rng);
            assert_eq!(kids.len(), 2);
            for k in &kids {
                assert!(k.iter().all(|x| (0.0..=1.0).contains(x)), "{k:?}");
            }
            // Equal parents at index 1: untouched.
            assert_eq!(kids[0][1], 0.5);
            assert_eq!(kids[1][1], 0.5);
        }
        // Far from the bounds SBX is mean-preserving: (c1 + c2) / 2 = (p1 + p2) / 2 before
        // clamping, and with eta 15 the children stay near the parents.
        let sbx = Sbx {
            prob: 1.0,
            prob_var: 1.0,
            ..Sbx::new(Bounds::uniform(1, -100.0, 100.0))
        };
        for _ in 0..200 {
            let kids = sbx.cross(&[&vec![1.0], &vec![2.0]], &mut rng);
            assert!((kids[0][0] + kids[1][0] - 3.0).abs() < 1e-9);
            assert!((kids[0][0] - kids[1][0]).abs() < 3.0);
        }
        // prob 0: copies.
        let off = Sbx {
            prob: 0.0,
            ..Sbx::new(Bounds::uniform(3, 0.0, 1.0))
        };
        assert_eq!(off.cross(&[&a, &b], &mut rng), vec![a.clone(), b.clone()]);
    }
}
