//! What a generation achieved ([`GenerationSummary`]) and observers that receive it after every
//! generation (pymoo's `core/callback.py`).

use serde::{Deserialize, Serialize};

use super::Individual;

/// What one generation achieved; serialised as one `log.jsonl` line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationSummary {
    /// Completed generations, this one included (1 for the initial population).
    pub generation: usize,
    /// Evaluations so far.
    pub n_evals: usize,
    /// Evaluations in this generation.
    pub n_new: usize,
    /// Population size after survival.
    pub population: usize,
    /// Feasible members of the population.
    pub n_feasible: usize,
    /// Members of the first front (rank 0).
    pub front_size: usize,
    /// Per-objective minimum over the feasible population (empty if none is feasible).
    pub best: Vec<f64>,
    /// Smallest constraint violation in the population (0 once any member is feasible).
    pub min_violation: f64,
}

impl GenerationSummary {
    /// Summarises a population after survival.
    pub fn new<G>(
        generation: usize,
        n_evals: usize,
        n_new: usize,
        population: &[Individual<G>],
    ) -> GenerationSummary {
        let feasible: Vec<&Individual<G>> =
            population.iter().filter(|i| i.eval.is_feasible()).collect();
        let n_obj = population.first().map_or(0, |i| i.eval.objectives.len());
        let best = if feasible.is_empty() {
            Vec::new()
        } else {
            (0..n_obj)
                .map(|m| {
                    feasible
                        .iter()
                        .map(|i| i.eval.objectives[m])
                        .fold(f64::INFINITY, f64::min)
                })
                .collect()
        };
        GenerationSummary {
            generation,
            n_evals,
            n_new,
            population: population.len(),
            n_feasible: feasible.len(),
            front_size: population.iter().filter(|i| i.rank == 0).count(),
            best,
            min_violation: population
                .iter()
                .map(|i| i.eval.violation)
                .fold(f64::INFINITY, f64::min),
        }
    }
}

/// Receives each generation's summary and the population it left (after survival): how
/// progress bars, hypervolume logs and `--json` lines learn about a running search.
pub trait Observer<G> {
    /// Called once per completed generation, after survival.
    fn on_generation(&mut self, summary: &GenerationSummary, population: &[Individual<G>]);
}

/// Ignores everything.
impl<G> Observer<G> for () {
    fn on_generation(&mut self, _: &GenerationSummary, _: &[Individual<G>]) {}
}

/// Records every summary (for tests and reports).
impl<G> Observer<G> for Vec<GenerationSummary> {
    fn on_generation(&mut self, summary: &GenerationSummary, _: &[Individual<G>]) {
        self.push(summary.clone());
    }
}

/// Any closure over the summary is an observer.
impl<G, F: FnMut(&GenerationSummary)> Observer<G> for F {
    fn on_generation(&mut self, summary: &GenerationSummary, _: &[Individual<G>]) {
        self(summary)
    }
}
