//! Random search: each generation samples `batch` new genomes that pass the precheck; the
//! population is the best `keep` of everything evaluated by rank and crowding (so it works for
//! one objective or several). The baseline every NAS paper compares against.

use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::candidates::{Fresh, Precheck, record};
use super::observer::GenerationSummary;
use super::operators::Sampling;
use super::problem::{Evaluation, check_evaluations};
use super::survival::rank_and_crowding;
use super::{Individual, Search};

/// Random search settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomConfig {
    /// New genomes per generation.
    pub batch: usize,
    /// Population kept (rank and crowding over all evaluated).
    pub keep: usize,
    /// Attempts per wanted genome (precheck or duplicate failures).
    pub max_tries: usize,
}

/// The resumable state of a [`RandomSearch`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(serialize = "G: Serialize", deserialize = "G: Deserialize<'de>"))]
pub struct RandomState<G> {
    /// Completed generations.
    pub generation: usize,
    /// Everything evaluated.
    pub history: Vec<Individual<G>>,
    /// The kept population, best first.
    pub population: Vec<Individual<G>>,
    /// Asked, not yet told.
    pub pending: Vec<G>,
}

/// Random search over genomes `G`.
pub struct RandomSearch<G, S> {
    config: RandomConfig,
    sampling: S,
    precheck: Precheck<G>,
    state: RandomState<G>,
}

impl<G: Clone + PartialEq, S: Sampling<G>> RandomSearch<G, S> {
    /// A fresh search.
    pub fn new(config: RandomConfig, sampling: S, precheck: Precheck<G>) -> Self {
        let state = RandomState {
            generation: 0,
            history: Vec::new(),
            population: Vec::new(),
            pending: Vec::new(),
        };
        Self::resume(config, sampling, precheck, state)
    }

    /// Continues from a saved state.
    pub fn resume(
        config: RandomConfig,
        sampling: S,
        precheck: Precheck<G>,
        state: RandomState<G>,
    ) -> Self {
        RandomSearch {
            config,
            sampling,
            precheck,
            state,
        }
    }

    /// The state to checkpoint.
    pub fn state(&self) -> &RandomState<G> {
        &self.state
    }
}

impl<G: Clone + PartialEq, S: Sampling<G>> Search<G> for RandomSearch<G, S> {
    fn ask(&mut self, rng: &mut ChaCha8Rng) -> Vec<G> {
        if self.state.pending.is_empty() {
            let fresh = Fresh {
                precheck: &self.precheck,
                history: &self.state.history,
                max_tries: self.config.max_tries,
            };
            let mut cands = Vec::with_capacity(self.config.batch);
            fresh.fill(&mut cands, self.config.batch, rng, |rng| {
                self.sampling.sample(rng)
            });
            self.state.pending = cands;
        }
        self.state.pending.clone()
    }

    fn tell(
        &mut self,
        evals: Vec<Evaluation>,
        rng: &mut ChaCha8Rng,
    ) -> anyhow::Result<GenerationSummary> {
        let n_obj = self
            .state
            .history
            .first()
            .map(|i| i.eval.objectives.len())
            .or_else(|| evals.first().map(|e| e.objectives.len()))
            .unwrap_or(0);
        check_evaluations(&evals, self.state.pending.len(), n_obj)?;
        let told = record(&mut self.state.history, &mut self.state.pending, evals);
        let all: Vec<Evaluation> = self.state.history.iter().map(|i| i.eval.clone()).collect();
        // Ties are broken with a stream of their own, seeded by one draw: `rng` then advances
        // the same whatever the scores, so the candidates drawn never depend on them (searches
        // with and without shifting score the same archs).
        let mut ties = ChaCha8Rng::seed_from_u64(rng.random());
        self.state.population = rank_and_crowding(&all, self.config.keep, &mut ties)
            .into_iter()
            .map(|s| Individual {
                rank: s.rank,
                crowding: s.crowding,
                ..self.state.history[s.index].clone()
            })
            .collect();
        self.state.generation += 1;
        Ok(GenerationSummary::new(
            self.state.generation,
            self.state.history.len(),
            told,
            &self.state.population,
        ))
    }

    fn population(&self) -> &[Individual<G>] {
        &self.state.population
    }

    fn generation(&self) -> usize {
        self.state.generation
    }

    fn n_evals(&self) -> usize {
        self.state.history.len()
    }
}
