//! The ask/tell bookkeeping that SPOS evolution and random search share: the [`Precheck`] a new
//! candidate must pass, drawing new candidates that pass it and were never evaluated (with
//! bounded retries), and moving the told candidates with their evaluations into the history.

use rand_chacha::ChaCha8Rng;

use super::Individual;
use super::problem::Evaluation;

/// A cheap constraint check run before evaluation: the violation (0 = acceptable), e.g. how far
/// a genome's FLOPs exceed a cap. Candidates that fail it are redrawn instead of evaluated.
pub type Precheck<G> = Box<dyn Fn(&G) -> f64 + Send>;

/// Where new candidates are checked: the precheck, everything evaluated so far, and the number
/// of attempts allowed per wanted candidate.
pub(super) struct Fresh<'a, G> {
    /// The cheap constraint check (a candidate passes at violation ≤ 0).
    pub precheck: &'a Precheck<G>,
    /// Everything evaluated so far (a candidate must not be among them).
    pub history: &'a [Individual<G>],
    /// Attempts per wanted candidate before giving up on it.
    pub max_tries: usize,
}

impl<G: PartialEq> Fresh<'_, G> {
    /// Adds up to `n` candidates made by `make` to `accepted`: each passes the precheck and is
    /// neither in `accepted` nor in the history. Stops after `n × max_tries` attempts, so a
    /// small or tightly capped space yields fewer instead of looping forever.
    pub fn fill(
        &self,
        accepted: &mut Vec<G>,
        n: usize,
        rng: &mut ChaCha8Rng,
        mut make: impl FnMut(&mut ChaCha8Rng) -> G,
    ) {
        let target = accepted.len() + n;
        let mut tries = 0;
        while accepted.len() < target && tries < n * self.max_tries {
            tries += 1;
            let g = make(rng);
            if (self.precheck)(&g) <= 0.0
                && !accepted.contains(&g)
                && !self.history.iter().any(|i| i.genome == g)
            {
                accepted.push(g);
            }
        }
    }
}

/// Appends the `pending` candidates, paired with their `evals` in order, to `history` and
/// empties `pending`; returns how many were told. The caller has checked the evaluations
/// against `pending` (`check_evaluations`).
pub(super) fn record<G>(
    history: &mut Vec<Individual<G>>,
    pending: &mut Vec<G>,
    evals: Vec<Evaluation>,
) -> usize {
    let told = evals.len();
    history.extend(
        std::mem::take(pending)
            .into_iter()
            .zip(evals)
            .map(|(g, e)| Individual::new(g, e)),
    );
    told
}
