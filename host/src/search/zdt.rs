//! The ZDT1–3 benchmarks (Zitzler, Deb & Thiele 2000): two objectives, `n_var` variables in
//! [0, 1] (30 by default), as in pymoo's `problems/multi/zdt.py`.
//!
//! `f1 = x1`, `g = 1 + 9/(n−1) Σ_{i≥2} x_i`, `f2 = g·h(f1, g)` with
//! ZDT1 `h = 1 − √(f1/g)`, ZDT2 `h = 1 − (f1/g)²`, ZDT3 `h = 1 − √(f1/g) − (f1/g)·sin(10π f1)`.
//! The Pareto set is `x_{i≥2} = 0` (g = 1).

use super::operators::Bounds;
use super::problem::{Evaluation, Problem};

/// Which ZDT function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ZdtKind {
    /// Convex front `f2 = 1 − √f1`.
    Zdt1,
    /// Concave front `f2 = 1 − f1²`.
    Zdt2,
    /// Disconnected front `f2 = 1 − √f1 − f1 sin(10π f1)`.
    Zdt3,
}

/// A ZDT problem instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zdt {
    /// The function.
    pub kind: ZdtKind,
    /// Number of variables (≥ 2).
    pub n_var: usize,
}

impl Zdt {
    /// ZDT1 with 30 variables.
    pub fn zdt1() -> Zdt {
        Zdt::new(ZdtKind::Zdt1)
    }

    /// `kind` with 30 variables.
    pub fn new(kind: ZdtKind) -> Zdt {
        Zdt { kind, n_var: 30 }
    }

    /// The box [0, 1]^n_var.
    pub fn bounds(&self) -> Bounds {
        Bounds::uniform(self.n_var, 0.0, 1.0)
    }

    /// `f2` on the true front as a function of `f1` (g = 1).
    pub fn front_f2(&self, f1: f64) -> f64 {
        self.h(f1, 1.0)
    }

    fn h(&self, f1: f64, g: f64) -> f64 {
        let r = f1 / g;
        match self.kind {
            ZdtKind::Zdt1 => 1.0 - r.sqrt(),
            ZdtKind::Zdt2 => 1.0 - r * r,
            ZdtKind::Zdt3 => 1.0 - r.sqrt() - r * (10.0 * std::f64::consts::PI * f1).sin(),
        }
    }

    /// Both objectives of one point.
    pub fn objectives(&self, x: &[f64]) -> [f64; 2] {
        let f1 = x[0];
        let g = 1.0 + 9.0 / (x.len() - 1) as f64 * x[1..].iter().sum::<f64>();
        [f1, g * self.h(f1, g)]
    }

    /// Hypervolume of the true front w.r.t. `reference`, integrated numerically.
    ///
    /// The region dominated by the front is `{(x, y) : y ≥ m(x)}` with `m(x) = min_{t ≤ x} f2(t)`
    /// (the running minimum of the front curve; it also handles ZDT3's dominated pieces), so
    /// `HV = ∫_0^{r1} (r2 − min(m(x), r2))⁺ dx`, taken with the midpoint rule on `steps` cells of
    /// [0, 1] plus the exact tail `(r1 − 1)·(r2 − m(1))`. ZDT1 and ZDT2 have closed forms,
    /// checked in the tests: for r = (1.1, 1.1), ZDT1 `0.1 + 2/3 + 0.11 = 0.876667`, ZDT2
    /// `0.1 + 1/3 + 0.11 = 0.543333`.
    pub fn true_front_hypervolume(&self, reference: [f64; 2], steps: usize) -> f64 {
        let mut running = f64::INFINITY;
        let mut volume = 0.0;
        let dx = 1.0 / steps as f64;
        for k in 0..steps {
            let x = (k as f64 + 0.5) * dx;
            running = running.min(self.front_f2(x));
            volume += (reference[1] - running.min(reference[1])).max(0.0) * dx;
        }
        running = running.min(self.front_f2(1.0));
        volume + (reference[0] - 1.0).max(0.0) * (reference[1] - running).max(0.0)
    }
}

impl Problem for Zdt {
    type Genome = Vec<f64>;

    fn n_obj(&self) -> usize {
        2
    }

    fn n_constr(&self) -> usize {
        0
    }

    fn evaluate(&mut self, genomes: &[Vec<f64>]) -> anyhow::Result<Vec<Evaluation>> {
        genomes
            .iter()
            .map(|x| {
                anyhow::ensure!(
                    x.len() == self.n_var,
                    "{:?} expects {} variables, got {}",
                    self.kind,
                    self.n_var,
                    x.len()
                );
                Ok(Evaluation::feasible(self.objectives(x).to_vec()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objectives_known_values() {
        // x = (0.25, 0, …, 0): g = 1, f2 = 1 − √0.25 = 0.5 (ZDT1), 1 − 0.0625 (ZDT2),
        // 0.5 − 0.25·sin(2.5π) = 0.25 (ZDT3).
        let mut x = vec![0.0; 30];
        x[0] = 0.25;
        assert_eq!(Zdt::new(ZdtKind::Zdt1).objectives(&x), [0.25, 0.5]);
        assert_eq!(Zdt::new(ZdtKind::Zdt2).objectives(&x), [0.25, 0.9375]);
        assert!((Zdt::new(ZdtKind::Zdt3).objectives(&x)[1] - 0.25).abs() < 1e-12);
        // All ones: g = 1 + 9 = 10; ZDT1 f2 = 10 (1 − √0.1).
        let ones = vec![1.0; 30];
        let f = Zdt::zdt1().objectives(&ones);
        assert!((f[1] - 10.0 * (1.0 - 0.1f64.sqrt())).abs() < 1e-12);
    }

    #[test]
    fn true_front_hypervolume_matches_closed_forms() {
        let r = [1.1, 1.1];
        let hv1 = Zdt::new(ZdtKind::Zdt1).true_front_hypervolume(r, 200_000);
        assert!((hv1 - (0.1 + 2.0 / 3.0 + 0.11)).abs() < 1e-5, "{hv1}");
        let hv2 = Zdt::new(ZdtKind::Zdt2).true_front_hypervolume(r, 200_000);
        assert!((hv2 - (0.1 + 1.0 / 3.0 + 0.11)).abs() < 1e-5, "{hv2}");
        // ZDT3 has no closed form; the integral converges (coarse vs fine grid).
        let z3 = Zdt::new(ZdtKind::Zdt3);
        let (a, b) = (
            z3.true_front_hypervolume(r, 100_000),
            z3.true_front_hypervolume(r, 400_000),
        );
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
}
