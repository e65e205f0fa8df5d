//! Termination criteria that report progress in [0, 1] (pymoo's `core/termination.py`); the
//! progress bar shows it and the driver stops at 1.

/// When to stop, as a fraction done.
pub trait Termination {
    /// Fraction done in [0, 1] after `generations` generations and `evaluations` evaluations.
    fn progress(&self, generations: usize, evaluations: usize) -> f64;
}

/// Stop after this many generations (the initial population counts as generation 1, as in
/// pymoo's `n_gen`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxGenerations(pub usize);

impl Termination for MaxGenerations {
    fn progress(&self, generations: usize, _: usize) -> f64 {
        fraction(generations, self.0)
    }
}

/// Stop once this many evaluations are done (pymoo's `n_eval`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxEvaluations(pub usize);

impl Termination for MaxEvaluations {
    fn progress(&self, _: usize, evaluations: usize) -> f64 {
        fraction(evaluations, self.0)
    }
}

/// Stop when any of the criteria is met; progress is the largest of theirs.
pub struct TerminateIfAny(pub Vec<Box<dyn Termination>>);

impl Termination for TerminateIfAny {
    fn progress(&self, generations: usize, evaluations: usize) -> f64 {
        self.0
            .iter()
            .map(|t| t.progress(generations, evaluations))
            .fold(0.0, f64::max)
    }
}

fn fraction(done: usize, total: usize) -> f64 {
    if total == 0 {
        1.0
    } else {
        (done as f64 / total as f64).min(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_fractions() {
        assert_eq!(MaxGenerations(4).progress(1, 999), 0.25);
        assert_eq!(MaxGenerations(4).progress(9, 0), 1.0);
        assert_eq!(MaxEvaluations(0).progress(0, 0), 1.0);
        let any = TerminateIfAny(vec![
            Box::new(MaxGenerations(10)),
            Box::new(MaxEvaluations(100)),
        ]);
        assert_eq!(any.progress(2, 50), 0.5);
    }
}
