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

use super::candidates::{Fresh, record};
use super::observer::GenerationSummary;
use super::operators::{Crossover, Mutation, Sampling};
use super::problem::{Evaluation, check_evaluations};
use super::{Individual, Search};

/// A cheap constraint check run before evaluation: the violation (0 = acceptable).
pub type Precheck<G> = Box<dyn Fn(&G) -> f64 + Send>;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::minimize;
    use crate::search::operators::{ArchSampling, GeneMutation, UniformCrossover};
    use crate::search::problem::Problem;
    use crate::search::random::{RandomConfig, RandomSearch};
    use crate::search::termination::MaxGenerations;
    use rand::SeedableRng;
    use shiftnas_models::Arch;

    /// Minimise the gene sum's distance to 30 under the cap "sum ≤ 30" (20 genes, 4 choices).
    struct Target;
    impl Problem for Target {
        type Genome = Arch;
        fn n_obj(&self) -> usize {
            1
        }
        fn n_constr(&self) -> usize {
            1
        }
        fn evaluate(&mut self, gs: &[Arch]) -> anyhow::Result<Vec<Evaluation>> {
            Ok(gs
                .iter()
                .map(|a| {
                    let s: f64 = a.genes().iter().map(|&g| g as f64).sum();
                    Evaluation::with_constraints(vec![(30.0 - s).abs()], &[s - 30.0])
                })
                .collect())
        }
    }

    fn cap(a: &Arch) -> f64 {
        (a.genes().iter().map(|&g| g as f64).sum::<f64>() - 30.0).max(0.0)
    }

    #[test]
    fn spos_evolution_respects_the_cap_and_improves() {
        let mut alg = Evolution::new(
            EvolutionConfig::default(),
            ArchSampling {
                blocks: 20,
                choices: 4,
            },
            UniformCrossover,
            GeneMutation { p: 0.1, choices: 4 },
            Box::new(cap),
        );
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut log: Vec<GenerationSummary> = Vec::new();
        minimize(
            &mut alg,
            &mut Target,
            &MaxGenerations(20),
            &mut log,
            &mut rng,
        )
        .unwrap();
        let hist = &alg.state().history;
        assert!(
            hist.iter().all(|i| cap(&i.genome) == 0.0),
            "precheck let one through"
        );
        for (i, a) in hist.iter().enumerate() {
            assert!(
                hist[i + 1..].iter().all(|b| b.genome != a.genome),
                "re-evaluated"
            );
        }
        assert_eq!(alg.population().len(), 10);
        assert_eq!(alg.population()[0].eval.objectives[0], 0.0);
        assert!(log[19].best[0] <= log[0].best[0]);
        // The state round-trips through JSON.
        let json = serde_json::to_string(alg.state()).unwrap();
        let back: EvolutionState<Arch> = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, alg.state());
    }

    #[test]
    fn random_search_respects_the_cap() {
        let cfg = RandomConfig {
            batch: 30,
            keep: 10,
            max_tries: 100,
        };
        let mut alg = RandomSearch::new(
            cfg,
            ArchSampling {
                blocks: 20,
                choices: 4,
            },
            Box::new(cap),
        );
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        minimize(&mut alg, &mut Target, &MaxGenerations(3), &mut (), &mut rng).unwrap();
        assert_eq!(alg.n_evals(), 90);
        assert!(alg.state().history.iter().all(|i| cap(&i.genome) == 0.0));
        assert_eq!(alg.population().len(), 10);
    }

    /// FNV-1a over the genes of every evaluated genome, in order.
    fn digest(history: &[Individual<Arch>]) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for g in history.iter().flat_map(|i| i.genome.genes()) {
            h = (h ^ u64::from(*g)).wrapping_mul(0x0100_0000_01b3);
        }
        h
    }

    /// The same seed gives the same archive: the candidates of both searches are pinned (values
    /// from the code before mutation, crossover and sampling shared `Fresh::fill`).
    #[test]
    fn the_same_seed_gives_the_same_archive() {
        let sampling = ArchSampling {
            blocks: 20,
            choices: 4,
        };
        let cfg = EvolutionConfig {
            population: 12,
            top_k: 4,
            n_mutation: 6,
            n_crossover: 6,
            max_tries: 100,
        };
        let mutation = GeneMutation { p: 0.1, choices: 4 };
        let mut evo = Evolution::new(cfg, sampling, UniformCrossover, mutation, Box::new(cap));
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        minimize(&mut evo, &mut Target, &MaxGenerations(5), &mut (), &mut rng).unwrap();
        let cfg = RandomConfig {
            batch: 12,
            keep: 4,
            max_tries: 100,
        };
        let mut rs = RandomSearch::new(cfg, sampling, Box::new(cap));
        let mut rng = ChaCha8Rng::seed_from_u64(12);
        minimize(&mut rs, &mut Target, &MaxGenerations(3), &mut (), &mut rng).unwrap();
        let got = (
            evo.n_evals(),
            digest(&evo.state().history),
            rs.n_evals(),
            digest(&rs.state().history),
        );
        assert_eq!(got, (60, 7666821471869097314, 36, 10762399696296040289));
    }

    /// Random search draws the same candidates whatever their scores (the kept population's
    /// ties are broken with a stream of their own), so searches with and without shifting score
    /// the same archs.
    #[test]
    fn random_search_candidates_do_not_depend_on_the_scores() {
        let asked = |score: &dyn Fn(&Arch) -> f64| {
            let cfg = RandomConfig {
                batch: 8,
                keep: 4,
                max_tries: 100,
            };
            let sampling = ArchSampling {
                blocks: 20,
                choices: 4,
            };
            let mut rs = RandomSearch::new(cfg, sampling, Box::new(|_: &Arch| 0.0));
            let mut rng = ChaCha8Rng::seed_from_u64(3);
            let mut all = Vec::new();
            for _ in 0..4 {
                let g = rs.ask(&mut rng);
                let evals = (g.iter())
                    .map(|a| Evaluation::feasible(vec![score(a), 1.0]))
                    .collect();
                all.extend(g);
                rs.tell(evals, &mut rng).unwrap();
            }
            all
        };
        // All tied (the survival draws among them) against all distinct.
        let tied = asked(&|_| 1.0);
        let distinct = asked(&|a| a.genes().iter().map(|&g| f64::from(g)).sum());
        assert_eq!(tied.len(), 32);
        assert_eq!(tied, distinct);
    }

    #[test]
    fn evolution_is_single_objective() {
        let mut alg = Evolution::new(
            EvolutionConfig::default(),
            ArchSampling {
                blocks: 4,
                choices: 2,
            },
            UniformCrossover,
            GeneMutation { p: 0.1, choices: 2 },
            Box::new(|_| 0.0),
        );
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let g = alg.ask(&mut rng);
        // Only 16 archs exist: the sample stops short instead of looping forever.
        assert_eq!(g.len(), 16);
        let evals = vec![Evaluation::feasible(vec![1.0, 2.0]); g.len()];
        let err = format!("{:#}", alg.tell(evals, &mut rng).unwrap_err());
        assert!(err.contains("single-objective"), "{err}");
    }
}
