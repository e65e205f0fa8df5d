//! What a search optimises: a [`Problem`] declares its sizes and scores a batch of genomes.
//!
//! Shaped like pymoo's `core/problem.py` (`n_obj`, `n_ieq_constr`, `_evaluate` filling F and G),
//! except that constraints arrive already folded into one number: [`Evaluation::violation`] is
//! the sum of the positive parts of all constraints `g_j(x) ≤ 0` (pymoo's CV), so 0 means
//! feasible and larger means "more infeasible" (Deb's constrained domination compares it).
//! All objectives are minimised; maximise `f` by returning `-f`.

use serde::{Deserialize, Serialize};

/// The score of one genome: its objectives (minimised) and its total constraint violation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Objective values, all minimised, in the problem's order.
    pub objectives: Vec<f64>,
    /// Sum of constraint violations, `Σ max(0, g_j)`; 0 means feasible.
    pub violation: f64,
}

impl Evaluation {
    /// A feasible evaluation (violation 0).
    pub fn feasible(objectives: Vec<f64>) -> Evaluation {
        Evaluation {
            objectives,
            violation: 0.0,
        }
    }

    /// An evaluation from objectives and raw constraint values `g_j` (feasible when `g_j ≤ 0`).
    pub fn with_constraints(objectives: Vec<f64>, constraints: &[f64]) -> Evaluation {
        Evaluation {
            objectives,
            violation: constraints.iter().map(|g| g.max(0.0)).sum(),
        }
    }

    /// True when no constraint is violated.
    pub fn is_feasible(&self) -> bool {
        self.violation <= 0.0
    }
}

/// An optimisation problem: sizes, and a batch evaluation (one [`Evaluation`] per genome, in order).
pub trait Problem {
    /// What a candidate solution is (`Vec<f64>` for ZDT, `Arch` for architecture search).
    type Genome;

    /// Number of objectives (all minimised).
    fn n_obj(&self) -> usize;

    /// Number of inequality constraints folded into [`Evaluation::violation`] (0 if unconstrained).
    fn n_constr(&self) -> usize;

    /// Scores `genomes`, returning exactly one evaluation per genome in the same order.
    fn evaluate(&mut self, genomes: &[Self::Genome]) -> anyhow::Result<Vec<Evaluation>>;
}

/// Checks that a batch of evaluations matches the batch asked for and the problem's sizes.
pub fn check_evaluations(
    evals: &[Evaluation],
    expected: usize,
    n_obj: usize,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        evals.len() == expected,
        "got {} evaluations for {expected} candidates: tell() needs one evaluation per genome from ask()",
        evals.len()
    );
    for (i, e) in evals.iter().enumerate() {
        anyhow::ensure!(
            e.objectives.len() == n_obj,
            "evaluation {i} has {} objectives, the search expects {n_obj}",
            e.objectives.len()
        );
        anyhow::ensure!(
            e.objectives.iter().all(|f| f.is_finite()) && e.violation.is_finite(),
            "evaluation {i} is not finite ({e:?}); score a failed candidate with a large finite violation instead"
        );
    }
    Ok(())
}
