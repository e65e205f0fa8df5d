//! Binary tournament for NSGA-II mating, as pymoo's `nsga2.binary_tournament`.
//!
//! Contestants are drawn from concatenated random permutations of the population, so every
//! individual enters about equally often. A duel is decided by: if either is infeasible, lower
//! violation; otherwise Pareto domination; otherwise larger crowding distance; a remaining tie
//! is a coin flip from the RNG.

use std::cmp::Ordering;

use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::search::nds::{Dominance, pareto};
use crate::search::problem::Evaluation;

/// Indices of `n_winners` tournament winners among `evals` (with their `crowding` distances).
///
/// # Panics
/// If `evals` is empty or `crowding` has a different length (internal invariants).
pub fn binary_tournament(
    evals: &[&Evaluation],
    crowding: &[f64],
    n_winners: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<usize> {
    assert!(!evals.is_empty(), "tournament on an empty population");
    assert_eq!(evals.len(), crowding.len());
    let mut entrants = Vec::with_capacity(2 * n_winners + evals.len());
    while entrants.len() < 2 * n_winners {
        let mut perm: Vec<usize> = (0..evals.len()).collect();
        perm.shuffle(rng);
        entrants.extend(perm);
    }
    entrants
        .chunks_exact(2)
        .take(n_winners)
        .map(|pair| duel(pair[0], pair[1], evals, crowding, rng))
        .collect()
}

/// The winner of one duel between `a` and `b`.
fn duel(
    a: usize,
    b: usize,
    evals: &[&Evaluation],
    crowding: &[f64],
    rng: &mut ChaCha8Rng,
) -> usize {
    let (ea, eb) = (evals[a], evals[b]);
    let order = if !ea.is_feasible() || !eb.is_feasible() {
        ea.violation.total_cmp(&eb.violation)
    } else {
        match pareto(&ea.objectives, &eb.objectives) {
            Dominance::Dominates => Ordering::Less,
            Dominance::Dominated => Ordering::Greater,
            Dominance::Neither => crowding[b].total_cmp(&crowding[a]),
        }
    };
    match order {
        Ordering::Less => a,
        Ordering::Greater => b,
        Ordering::Equal => {
            if rng.random_bool(0.5) {
                a
            } else {
                b
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn duel_order() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let feasible_bad = Evaluation::feasible(vec![9.0, 9.0]);
        let infeasible_good = Evaluation {
            objectives: vec![0.0, 0.0],
            violation: 0.3,
        };
        let infeasible_worse = Evaluation {
            objectives: vec![0.0, 0.0],
            violation: 0.7,
        };
        let dominating = Evaluation::feasible(vec![1.0, 1.0]);
        let left = Evaluation::feasible(vec![0.0, 5.0]);
        let evals = [
            &feasible_bad,
            &infeasible_good,
            &infeasible_worse,
            &dominating,
            &left,
        ];
        let crowding = [0.0, 0.0, 0.0, 0.1, 5.0];
        // Feasibility first.
        assert_eq!(duel(0, 1, &evals, &crowding, &mut rng), 0);
        // Lower violation.
        assert_eq!(duel(2, 1, &evals, &crowding, &mut rng), 1);
        // Domination beats crowding.
        assert_eq!(duel(0, 3, &evals, &crowding, &mut rng), 3);
        // Non-dominated: larger crowding.
        assert_eq!(duel(3, 4, &evals, &crowding, &mut rng), 4);
        // Full tie: both outcomes happen.
        let picks: Vec<usize> = (0..30)
            .map(|_| duel(0, 0, &evals, &crowding, &mut rng))
            .collect();
        assert!(picks.iter().all(|&p| p == 0));
        let twin = feasible_bad.clone();
        let evals2 = [&feasible_bad, &twin];
        let picks: std::collections::BTreeSet<usize> = (0..30)
            .map(|_| duel(0, 1, &evals2, &[1.0, 1.0], &mut rng))
            .collect();
        assert_eq!(picks.len(), 2);
    }

    #[test]
    fn every_entrant_appears_evenly() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let e = Evaluation::feasible(vec![1.0]);
        let evals = vec![&e; 10];
        let winners = binary_tournament(&evals, &[0.0; 10], 25, &mut rng);
        assert_eq!(winners.len(), 25);
        assert!(winners.iter().all(|&w| w < 10));
    }
}
