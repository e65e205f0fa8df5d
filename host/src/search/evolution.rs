//! SPOS evolution (Guo et al. 2020, `evolution_search` of the reference code): single objective,
//! a hard cap checked before evaluation (FLOPs ≤ cap) as a [`Precheck`].
//!
//! Generation 1 samples `population` genomes that pass the precheck. Afterwards each generation
//! makes `n_mutation` children by mutating a random member of the top-k, `n_crossover` by
//! crossing two random top-k members, and tops up with random samples to `population`; every
//! candidate must pass the precheck and be new (never evaluated before), with bounded retries.
//! The top-k is the best `top_k` of everything ever evaluated, by (violation, objective).

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::candidates::{Fresh, Precheck, record};
use super::observer::GenerationSummary;
use super::operators::{Crossover, Mutation, Sampling};
use super::problem::{Evaluation, check_evaluations};
use super::{Individual, Search};

/// SPOS evolution settings (SPOS defaults in [`EvolutionConfig::default`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvolutionConfig {
    /// Candidates per generation (50).
    pub population: usize,
    /// Parents kept: the best this many ever evaluated (10).
    pub top_k: usize,
    /// Mutated children per generation (25).
    pub n_mutation: usize,
    /// Crossed children per generation (25).
    pub n_crossover: usize,
    /// Attempts per wanted candidate before giving up on it (precheck or duplicate failures).
    pub max_tries: usize,
}

impl Default for EvolutionConfig {
    fn default() -> Self {
        EvolutionConfig {
            population: 50,
            top_k: 10,
            n_mutation: 25,
            n_crossover: 25,
            max_tries: 100,
        }
    }
}

/// The resumable state of an [`Evolution`] run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(serialize = "G: Serialize", deserialize = "G: Deserialize<'de>"))]
pub struct EvolutionState<G> {
    /// Completed generations.
    pub generation: usize,
    /// Everything evaluated so far, in order.
    pub history: Vec<Individual<G>>,
    /// The current top-k, best first.
    pub top: Vec<Individual<G>>,
    /// Asked, not yet told.
    pub pending: Vec<G>,
}

/// SPOS evolution over genomes `G`.
pub struct Evolution<G, S, C, M> {
    config: EvolutionConfig,
    sampling: S,
    crossover: C,
    mutation: M,
    precheck: Precheck<G>,
    state: EvolutionState<G>,
}

impl<G, S, C, M> Evolution<G, S, C, M>
where
    G: Clone + PartialEq,
    S: Sampling<G>,
    C: Crossover<G>,
    M: Mutation<G>,
{
    /// A fresh search (pass `Box::new(|_| 0.0)` as `precheck` for no cap).
    pub fn new(
        config: EvolutionConfig,
        sampling: S,
        crossover: C,
        mutation: M,
        precheck: Precheck<G>,
    ) -> Self {
        let state = EvolutionState {
            generation: 0,
            history: Vec::new(),
            top: Vec::new(),
            pending: Vec::new(),
        };
        Self::resume(config, sampling, crossover, mutation, precheck, state)
    }

    /// Continues from a saved state.
    pub fn resume(
        config: EvolutionConfig,
        sampling: S,
        crossover: C,
        mutation: M,
        precheck: Precheck<G>,
        state: EvolutionState<G>,
    ) -> Self {
        Evolution {
            config,
            sampling,
            crossover,
            mutation,
            precheck,
            state,
        }
    }

    /// The state to checkpoint.
    pub fn state(&self) -> &EvolutionState<G> {
        &self.state
    }

    /// Where this generation's candidates are checked (precheck, history, tries).
    fn fresh(&self) -> Fresh<'_, G> {
        Fresh {
            precheck: &self.precheck,
            history: &self.state.history,
            max_tries: self.config.max_tries,
        }
    }

    /// The next generation: mutated and crossed top-k children, topped up with random samples.
    fn candidates(&self, rng: &mut ChaCha8Rng) -> Vec<G> {
        let fresh = self.fresh();
        let mut cands = Vec::with_capacity(self.config.population);
        let top = &self.state.top;
        if !top.is_empty() {
            let k = top.len();
            fresh.fill(&mut cands, self.config.n_mutation, rng, |rng| {
                let parent = &top[rng.random_range(0..k)].genome;
                self.mutation.mutate(parent, rng)
            });
            fresh.fill(&mut cands, self.config.n_crossover, rng, |rng| {
                let a = &top[rng.random_range(0..k)].genome;
                let b = &top[rng.random_range(0..k)].genome;
                self.crossover.cross(&[a, b], rng).swap_remove(0)
            });
        }
        let missing = self.config.population.saturating_sub(cands.len());
        fresh.fill(&mut cands, missing, rng, |rng| self.sampling.sample(rng));
        cands
    }
}

impl<G, S, C, M> Search<G> for Evolution<G, S, C, M>
where
    G: Clone + PartialEq,
    S: Sampling<G>,
    C: Crossover<G>,
    M: Mutation<G>,
{
    fn ask(&mut self, rng: &mut ChaCha8Rng) -> Vec<G> {
        if self.state.pending.is_empty() {
            self.state.pending = self.candidates(rng);
        }
        self.state.pending.clone()
    }

    fn tell(
        &mut self,
        evals: Vec<Evaluation>,
        _rng: &mut ChaCha8Rng,
    ) -> anyhow::Result<GenerationSummary> {
        check_evaluations(&evals, self.state.pending.len(), 1)
            .map_err(|e| e.context("SPOS evolution is single-objective"))?;
        let told = record(&mut self.state.history, &mut self.state.pending, evals);
        let mut order: Vec<usize> = (0..self.state.history.len()).collect();
        let key = |i: usize| {
            let e = &self.state.history[i].eval;
            (e.violation, e.objectives[0])
        };
        order.sort_by(|&a, &b| {
            let (ka, kb) = (key(a), key(b));
            ka.0.total_cmp(&kb.0).then(ka.1.total_cmp(&kb.1))
        });
        self.state.top = order
            .into_iter()
            .take(self.config.top_k)
            .enumerate()
            .map(|(rank, i)| Individual {
                rank,
                ..self.state.history[i].clone()
            })
            .collect();
        self.state.generation += 1;
        Ok(GenerationSummary::new(
            self.state.generation,
            self.state.history.len(),
            told,
            &self.state.top,
        ))
    }

    fn population(&self) -> &[Individual<G>] {
        &self.state.top
    }

    fn generation(&self) -> usize {
        self.state.generation
    }

    fn n_evals(&self) -> usize {
        self.state.history.len()
    }
}
