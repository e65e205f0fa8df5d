//! Rank-and-crowding survival (NSGA-II's environmental selection).
//!
//! As pymoo's `RankAndCrowding`: take whole fronts in order while they fit; on the front that
//! does not fit, keep the points with the largest crowding distance, breaking ties at random with
//! the RNG passed in (shuffle, then a stable sort). Crowding is computed on each whole front
//! before truncation, and that is the value the mating tournament later reads.

use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::nds::{crowding_distance, non_dominated_sort};
use super::problem::Evaluation;

/// One survivor: its index in the input, its front number and its crowding distance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Survivor {
    /// Index into the evaluations given to [`rank_and_crowding`].
    pub index: usize,
    /// Front number (0 = non-dominated).
    pub rank: usize,
    /// Crowding distance within its whole front (`∞` at the ends).
    pub crowding: f64,
}

/// Chooses `n_survive` of `evals` (all of them if fewer), best front first.
pub fn rank_and_crowding(
    evals: &[Evaluation],
    n_survive: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<Survivor> {
    let mut survivors = Vec::with_capacity(n_survive.min(evals.len()));
    for (rank, front) in non_dominated_sort(evals).into_iter().enumerate() {
        if survivors.len() >= n_survive {
            break;
        }
        let objectives: Vec<&[f64]> = front
            .iter()
            .map(|&i| evals[i].objectives.as_slice())
            .collect();
        let crowding = crowding_distance(&objectives);
        let mut members: Vec<Survivor> = front
            .iter()
            .zip(&crowding)
            .map(|(&index, &crowding)| Survivor {
                index,
                rank,
                crowding,
            })
            .collect();
        let room = n_survive - survivors.len();
        if members.len() > room {
            members.shuffle(rng);
            members.sort_by(|a, b| b.crowding.total_cmp(&a.crowding));
            members.truncate(room);
        }
        survivors.extend(members);
    }
    survivors
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn ev(f: &[f64]) -> Evaluation {
        Evaluation::feasible(f.to_vec())
    }

    #[test]
    fn whole_fronts_first_then_crowding() {
        // Front 0: A(0,4) B(1,2) C(3,1) D(4,0)  (crowding A ∞, B 1.5, C 1.25, D ∞)
        // Front 1: E(5,5)
        // Keep 3: front 0 splits; A and D (∞) then B (1.5) survive, C is dropped, E never seen.
        let evals = vec![
            ev(&[5.0, 5.0]),
            ev(&[0.0, 4.0]),
            ev(&[1.0, 2.0]),
            ev(&[3.0, 1.0]),
            ev(&[4.0, 0.0]),
        ];
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let s = rank_and_crowding(&evals, 3, &mut rng);
        let mut kept: Vec<usize> = s.iter().map(|s| s.index).collect();
        kept.sort();
        assert_eq!(kept, vec![1, 2, 4]);
        assert!(s.iter().all(|s| s.rank == 0));
        // Keep 5: everything; E has rank 1 and is alone in its front (∞).
        let s = rank_and_crowding(&evals, 5, &mut rng);
        assert_eq!(s.len(), 5);
        assert_eq!(s[4].index, 0);
        assert_eq!(s[4].rank, 1);
        assert_eq!(s[4].crowding, f64::INFINITY);
        // Asking for more than there is returns everything.
        assert_eq!(rank_and_crowding(&evals, 50, &mut rng).len(), 5);
    }

    #[test]
    fn ties_are_broken_by_the_rng() {
        // Ends (0,2) and (2,0) plus five copies of (1,1) (indices 2..=6), all in front 0.
        // Distinct points: ends ∞, (1,1) gets 1 + 1 = 2 (index 2, the first copy); copies 3..=6
        // get 0. Keeping 4 takes 0, 1, 2 and one zero-distance copy, chosen by the RNG.
        let mut evals = vec![ev(&[0.0, 2.0]), ev(&[2.0, 0.0])];
        evals.extend((0..5).map(|_| ev(&[1.0, 1.0])));
        let pick = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let s = rank_and_crowding(&evals, 4, &mut rng);
            let mut kept: Vec<usize> = s.iter().map(|s| s.index).collect();
            kept.sort();
            assert_eq!(&kept[..3], &[0, 1, 2]);
            kept[3]
        };
        let chosen: std::collections::BTreeSet<usize> = (0..40).map(pick).collect();
        assert!(chosen.len() > 1, "tie-break never varied: {chosen:?}");
        assert!(chosen.iter().all(|&i| (3..7).contains(&i)));
        assert_eq!(pick(11), pick(11));
    }
}
