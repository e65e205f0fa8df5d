//! A generic multi-objective optimiser in the style of pymoo: NSGA-II, SPOS evolution and random
//! search over any genome.
//!
//! A [`Problem`](problem::Problem) scores batches of genomes; an algorithm is an ask/tell loop
//! ([`Search`]) that a driver runs ([`minimize`] is the plain one; the architecture search, the
//! host's `nas` module, runs its own loop with shifting and checkpoints around `ask` and `tell`).
//! Operators ([`operators`]) are parts passed in; survival ([`survival`]) sorts by constrained
//! non-domination ([`nds`]) and crowding. A [`Termination`](termination::Termination) says when
//! to stop and an [`Observer`](observer::Observer) receives every generation's summary.
//!
//! Nothing here knows about architectures, data, training, latency, boards or run dirs: apart from
//! `archive` (the NAS archive's records, which are moving out of this folder), no file in it
//! imports `shiftnas_models` or another module of this crate, so the optimiser could become a
//! crate of its own. Check: `grep -rn "shiftnas_models\|crate::" host/src/search | grep -v
//! "crate::search\|//"` lists only `archive.rs`.
//!
//! ```
//! use rand::SeedableRng;
//! use shiftnas::search::{minimize, nsga2, operators::*, termination::MaxGenerations, zdt::Zdt};
//!
//! let problem = Zdt::zdt1();
//! let b = problem.bounds();
//! let mut alg = nsga2::Nsga2::new(
//!     nsga2::Nsga2Config::new(20),
//!     FloatSampling { bounds: b.clone() },
//!     Sbx::new(b.clone()),
//!     PolynomialMutation::new(b),
//! );
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! let mut problem = problem;
//! minimize(&mut alg, &mut problem, &MaxGenerations(5), &mut (), &mut rng).unwrap();
//! assert_eq!(alg.state().population.len(), 20);
//! ```

use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub mod candidates;
pub mod evolution;
pub mod hypervolume;
pub mod nds;
pub mod nsga2;
pub mod observer;
pub mod operators;
pub mod problem;
pub mod random;
pub mod survival;
pub mod termination;
pub mod zdt;

use observer::{GenerationSummary, Observer};
use problem::{Evaluation, Problem};
use termination::Termination;

/// One evaluated genome with its standing in the current population.
///
/// NSGA-II and random search store the front number and crowding distance; evolution (single
/// objective) stores the position in its ranking as `rank` and `∞` as `crowding`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Individual<G> {
    /// The genome.
    pub genome: G,
    /// Its evaluation.
    pub eval: Evaluation,
    /// Front number (0 = non-dominated) or ranking position.
    pub rank: usize,
    /// Crowding distance within its front; `∞` is stored as JSON `null`.
    #[serde(with = "inf_as_null")]
    pub crowding: f64,
}

impl<G> Individual<G> {
    /// A not yet ranked individual (rank 0, crowding ∞).
    pub fn new(genome: G, eval: Evaluation) -> Individual<G> {
        Individual {
            genome,
            eval,
            rank: 0,
            crowding: f64::INFINITY,
        }
    }
}

/// The ask/tell shape shared by all algorithms, so one driver runs any of them.
pub trait Search<G> {
    /// Genomes to evaluate next (the same ones again if asked twice before `tell`).
    fn ask(&mut self, rng: &mut ChaCha8Rng) -> Vec<G>;
    /// Their evaluations, in order; returns what this generation achieved.
    fn tell(
        &mut self,
        evals: Vec<Evaluation>,
        rng: &mut ChaCha8Rng,
    ) -> anyhow::Result<GenerationSummary>;
    /// The current population (best first).
    fn population(&self) -> &[Individual<G>];
    /// Completed generations (`tell`s).
    fn generation(&self) -> usize;
    /// Evaluations told so far.
    fn n_evals(&self) -> usize;
}

/// Runs `search` on `problem` until `termination` is reached, reporting each generation.
pub fn minimize<G, P>(
    search: &mut impl Search<G>,
    problem: &mut P,
    termination: &dyn Termination,
    observer: &mut dyn Observer<G>,
    rng: &mut ChaCha8Rng,
) -> anyhow::Result<()>
where
    P: Problem<Genome = G>,
{
    while termination.progress(search.generation(), search.n_evals()) < 1.0 {
        let genomes = search.ask(rng);
        let evals = problem.evaluate(&genomes)?;
        let summary = search.tell(evals, rng)?;
        observer.on_generation(&summary, search.population());
    }
    Ok(())
}

/// Serde for `f64` fields that may be `+∞` (JSON has no infinity): `∞` ↔ `null`.
mod inf_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_some(v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::INFINITY))
    }
}
