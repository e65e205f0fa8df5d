//! Which algorithm searches archs (`--algorithm`), built from the generic ones in
//! [`crate::search`] with the arch operators, and its checkpointable state.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use shiftnas_models::{Arch, Space};

use super::arch_problem::Constraints;
use super::operators::{ArchSampling, GeneMutation, UniformCrossover};
use crate::search::Search;
use crate::search::candidates::Precheck;
use crate::search::evolution::{Evolution, EvolutionConfig, EvolutionState};
use crate::search::nsga2::{Nsga2, Nsga2Config, Nsga2State};
use crate::search::random::{RandomConfig, RandomSearch, RandomState};

/// Which search algorithm runs (`--algorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    /// NSGA-II: multi-objective, rank and crowding survival.
    Nsga2,
    /// SPOS evolution: single objective, top-k parents, mutation and crossover.
    Evolution,
    /// Uniform random sampling under the constraints.
    Random,
}

/// NSGA-II over archs.
pub type ArchNsga2 = Nsga2<Arch, ArchSampling, UniformCrossover, GeneMutation>;
/// SPOS evolution over archs.
pub type ArchEvolution = Evolution<Arch, ArchSampling, UniformCrossover, GeneMutation>;
/// Random search over archs.
pub type ArchRandomSearch = RandomSearch<Arch, ArchSampling>;

/// The running algorithm of an architecture search.
pub enum ArchSearch {
    /// `--algorithm nsga2`.
    Nsga2(ArchNsga2),
    /// `--algorithm evolution`.
    Evolution(ArchEvolution),
    /// `--algorithm random`.
    Random(ArchRandomSearch),
}

/// An [`ArchSearch`]'s state as checkpointed in `state.json` (tagged by `kind`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ArchSearchState {
    /// NSGA-II's population.
    Nsga2(Nsga2State<Arch>),
    /// Evolution's history and top-k.
    Evolution(EvolutionState<Arch>),
    /// Random search's history and kept population.
    Random(RandomState<Arch>),
}

impl ArchSearch {
    /// `algorithm` with `pop` candidates per generation over the archs of `space` (SPOS
    /// settings: mutation probability 0.1, top-k `pop / 5`, half mutated and half crossed
    /// children), continuing from `state` when given. Evolution and random search redraw archs
    /// over the FLOPs/params caps of `constraints`, priced in `space`, before evaluating them.
    ///
    /// # Errors
    /// A `state` of another algorithm (the checkpoint does not belong to this config).
    pub fn new(
        algorithm: Algorithm,
        pop: usize,
        space: &Space,
        constraints: Constraints,
        state: Option<ArchSearchState>,
    ) -> Result<ArchSearch> {
        let choices = space.choices.len();
        let sampling = ArchSampling {
            blocks: space.num_blocks(),
            choices,
        };
        let mutation = GeneMutation { p: 0.1, choices };
        let precheck = || cost_precheck(space.clone(), constraints);
        let other = || -> Result<ArchSearch> {
            bail!("the checkpoint holds another algorithm's state than --algorithm {algorithm:?}")
        };
        Ok(match algorithm {
            Algorithm::Nsga2 => {
                let state = match state {
                    Some(ArchSearchState::Nsga2(s)) => s,
                    None => Nsga2State::default(),
                    Some(_) => return other(),
                };
                ArchSearch::Nsga2(Nsga2::resume(
                    Nsga2Config::new(pop),
                    sampling,
                    UniformCrossover,
                    mutation,
                    state,
                ))
            }
            Algorithm::Evolution => {
                let half = pop / 2;
                let config = EvolutionConfig {
                    population: pop,
                    top_k: (pop / 5).max(2),
                    n_mutation: half,
                    n_crossover: pop - half,
                    max_tries: 100,
                };
                ArchSearch::Evolution(match state {
                    Some(ArchSearchState::Evolution(s)) => Evolution::resume(
                        config,
                        sampling,
                        UniformCrossover,
                        mutation,
                        precheck(),
                        s,
                    ),
                    None => {
                        Evolution::new(config, sampling, UniformCrossover, mutation, precheck())
                    }
                    Some(_) => return other(),
                })
            }
            Algorithm::Random => {
                let config = RandomConfig {
                    batch: pop,
                    keep: pop,
                    max_tries: 100,
                };
                ArchSearch::Random(match state {
                    Some(ArchSearchState::Random(s)) => {
                        RandomSearch::resume(config, sampling, precheck(), s)
                    }
                    None => RandomSearch::new(config, sampling, precheck()),
                    Some(_) => return other(),
                })
            }
        })
    }

    /// The algorithm behind the common ask/tell interface.
    pub fn search(&mut self) -> &mut dyn Search<Arch> {
        match self {
            ArchSearch::Nsga2(a) => a,
            ArchSearch::Evolution(a) => a,
            ArchSearch::Random(a) => a,
        }
    }

    /// A copy of the state to checkpoint.
    pub fn state(&self) -> ArchSearchState {
        match self {
            ArchSearch::Nsga2(a) => ArchSearchState::Nsga2(a.state().clone()),
            ArchSearch::Evolution(a) => ArchSearchState::Evolution(a.state().clone()),
            ArchSearch::Random(a) => ArchSearchState::Random(a.state().clone()),
        }
    }
}

/// How far an arch's FLOPs and params (priced in `space`) exceed the caps of `constraints`
/// (the latency budget is left to the evaluation).
fn cost_precheck(space: Space, constraints: Constraints) -> Precheck<Arch> {
    let caps = Constraints {
        latency_budget: None,
        ..constraints
    };
    Box::new(move |a: &Arch| {
        let c = shiftnas_models::cost::arch_cost(&space, a);
        caps.values(c.flops, c.params, 0.0)
            .iter()
            .map(|g| g.max(0.0))
            .sum()
    })
}

#[cfg(test)]
mod tests {
    //! SPOS evolution and random search on archs with a cap precheck; the pinned digest covers
    //! the arch operators too.

    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::search::observer::GenerationSummary;
    use crate::search::problem::{Evaluation, Problem};
    use crate::search::termination::MaxGenerations;
    use crate::search::{Individual, minimize};

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
