//! Fast non-dominated sorting (Deb et al. 2002) with constrained domination, and crowding distance.
//!
//! *Constrained domination* (Deb 2000): a feasible solution beats an infeasible one; of two
//! infeasible solutions the one with lower violation wins (equal violations: neither); of two
//! feasible ones, `a` dominates `b` when it is no worse in every objective and better in one.
//! Fronts are therefore: feasible Pareto fronts first, then infeasible solutions in levels of
//! increasing violation.
//!
//! *Crowding distance* follows Deb's definition, as pymoo's `calc_crowding_distance` does: per
//! objective, sort the front (stable, by index on ties), give the two ends `∞` and each inner
//! point `(f[next] − f[prev]) / (max − min)`, and sum over objectives. Two details follow pymoo:
//! an objective whose range on the front is 0 adds nothing (not even the ends' `∞`), and exact
//! duplicates of an earlier point get distance 0 (the first copy is scored as if the others were
//! absent), so survival drops duplicates first. Fronts of at most two distinct points are all `∞`.
//! Unlike pymoo we do not divide the sum by the number of objectives (it changes no ordering).

use std::cmp::Ordering;

use super::problem::Evaluation;

/// The outcome of comparing two evaluations under constrained domination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dominance {
    /// The first argument dominates the second.
    Dominates,
    /// The second argument dominates the first.
    Dominated,
    /// Neither dominates (mutually non-dominated, equal, or equally infeasible).
    Neither,
}

/// Pareto domination between two objective vectors (minimisation).
pub fn pareto(a: &[f64], b: &[f64]) -> Dominance {
    let (mut a_better, mut b_better) = (false, false);
    for (x, y) in a.iter().zip(b) {
        match x.partial_cmp(y) {
            Some(Ordering::Less) => a_better = true,
            Some(Ordering::Greater) => b_better = true,
            _ => {}
        }
        if a_better && b_better {
            return Dominance::Neither;
        }
    }
    match (a_better, b_better) {
        (true, false) => Dominance::Dominates,
        (false, true) => Dominance::Dominated,
        _ => Dominance::Neither,
    }
}

/// Constrained domination (feasibility, then violation, then Pareto) between two evaluations.
pub fn constrained(a: &Evaluation, b: &Evaluation) -> Dominance {
    match (a.is_feasible(), b.is_feasible()) {
        (true, true) => pareto(&a.objectives, &b.objectives),
        (true, false) => Dominance::Dominates,
        (false, true) => Dominance::Dominated,
        (false, false) => match a.violation.partial_cmp(&b.violation) {
            Some(Ordering::Less) => Dominance::Dominates,
            Some(Ordering::Greater) => Dominance::Dominated,
            _ => Dominance::Neither,
        },
    }
}

/// Sorts `evals` into fronts of indices (front 0 is non-dominated), each front in index order.
///
/// Feasible solutions dominate every infeasible one, so their fronts come first and the two sets
/// are sorted apart. Feasible ones go through the efficient non-dominated sort (ENS-SS, Zhang et
/// al. 2015): in lexicographic order of their objectives a solution can only be dominated by one
/// sorted before it, so each joins the first front none of whose members dominates it. That
/// compares a solution with a few fronts instead of with every other solution (Deb's O(M N²),
/// [`deb_sort`], which still sorts infeasible solutions and objectives holding NaN, where the
/// lexicographic argument fails). Both give the same fronts (tested on random sets with ties).
pub fn non_dominated_sort(evals: &[Evaluation]) -> Vec<Vec<usize>> {
    let (feasible, infeasible): (Vec<usize>, Vec<usize>) =
        (0..evals.len()).partition(|&i| evals[i].is_feasible());
    let nan = feasible
        .iter()
        .any(|&i| evals[i].objectives.iter().any(|x| x.is_nan()));
    let mut fronts = if nan {
        deb_sort(evals, &feasible)
    } else {
        ens_sort(evals, feasible)
    };
    fronts.extend(deb_sort(evals, &infeasible));
    fronts
}

/// ENS-SS over `idx`, whose objectives hold no NaN; fronts in index order.
fn ens_sort(evals: &[Evaluation], mut idx: Vec<usize>) -> Vec<Vec<usize>> {
    let obj = |i: usize| evals[i].objectives.as_slice();
    idx.sort_by(|&a, &b| {
        obj(a)
            .iter()
            .zip(obj(b))
            .map(|(x, y)| x.total_cmp(y))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    });
    let mut fronts: Vec<Vec<usize>> = Vec::new();
    for s in idx {
        // Members added last are the likeliest to dominate `s` (closest in the order).
        let free = |front: &Vec<usize>| {
            !front
                .iter()
                .rev()
                .any(|&t| pareto(obj(t), obj(s)) == Dominance::Dominates)
        };
        match fronts.iter().position(free) {
            Some(k) => fronts[k].push(s),
            None => fronts.push(vec![s]),
        }
    }
    for f in &mut fronts {
        f.sort_unstable();
    }
    fronts
}

/// Deb's O(M N²) sort of the solutions `idx` under constrained domination: count how many
/// dominate each, peel off the zero-count ones, and decrement the counts of those they dominate.
fn deb_sort(evals: &[Evaluation], idx: &[usize]) -> Vec<Vec<usize>> {
    let n = idx.len();
    let mut dominated_by_me: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut n_dominating = vec![0usize; n];
    for i in 0..n {
        for j in i + 1..n {
            match constrained(&evals[idx[i]], &evals[idx[j]]) {
                Dominance::Dominates => {
                    dominated_by_me[i].push(j);
                    n_dominating[j] += 1;
                }
                Dominance::Dominated => {
                    dominated_by_me[j].push(i);
                    n_dominating[i] += 1;
                }
                Dominance::Neither => {}
            }
        }
    }
    let mut fronts = Vec::new();
    let mut current: Vec<usize> = (0..n).filter(|&i| n_dominating[i] == 0).collect();
    while !current.is_empty() {
        let mut next = Vec::new();
        for &i in &current {
            for &j in &dominated_by_me[i] {
                n_dominating[j] -= 1;
                if n_dominating[j] == 0 {
                    next.push(j);
                }
            }
        }
        next.sort_unstable();
        let front = std::mem::replace(&mut current, next);
        fronts.push(front.into_iter().map(|i| idx[i]).collect());
    }
    fronts
}

/// The rank (front number, 0 = best) of every evaluation.
pub fn ranks(fronts: &[Vec<usize>], n: usize) -> Vec<usize> {
    let mut rank = vec![usize::MAX; n];
    for (r, front) in fronts.iter().enumerate() {
        for &i in front {
            rank[i] = r;
        }
    }
    rank
}

/// Crowding distance of each point of one front (`objectives[k]` is point k's vector).
pub fn crowding_distance(objectives: &[&[f64]]) -> Vec<f64> {
    let n = objectives.len();
    let mut distance = vec![0.0; n];
    // Representatives: the first copy of each distinct vector; later copies keep distance 0.
    let unique: Vec<usize> = (0..n)
        .filter(|&i| !(0..i).any(|j| objectives[j] == objectives[i]))
        .collect();
    if unique.len() <= 2 {
        for &i in &unique {
            distance[i] = f64::INFINITY;
        }
        return distance;
    }
    let n_obj = objectives[unique[0]].len();
    let mut order = unique.clone();
    // `m` indexes every point's objective vector (clippy reads it as indexing one slice).
    #[allow(clippy::needless_range_loop)]
    for m in 0..n_obj {
        let value = |i: usize| objectives[i][m];
        order.sort_by(|&a, &b| value(a).total_cmp(&value(b)));
        let (lo, hi) = (value(order[0]), value(order[order.len() - 1]));
        let range = hi - lo;
        if range <= 0.0 {
            continue;
        }
        distance[order[0]] = f64::INFINITY;
        distance[order[order.len() - 1]] = f64::INFINITY;
        for w in order.windows(3) {
            distance[w[1]] += (value(w[2]) - value(w[0])) / range;
        }
    }
    distance
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(f: &[f64]) -> Evaluation {
        Evaluation::feasible(f.to_vec())
    }

    fn inf(f: &[f64], v: f64) -> Evaluation {
        Evaluation {
            objectives: f.to_vec(),
            violation: v,
        }
    }

    #[test]
    fn pareto_domination_cases() {
        assert_eq!(pareto(&[1.0, 2.0], &[2.0, 3.0]), Dominance::Dominates);
        assert_eq!(pareto(&[1.0, 3.0], &[1.0, 2.0]), Dominance::Dominated);
        assert_eq!(pareto(&[1.0, 3.0], &[2.0, 2.0]), Dominance::Neither);
        // Equal vectors dominate neither way.
        assert_eq!(pareto(&[1.0, 2.0], &[1.0, 2.0]), Dominance::Neither);
    }

    #[test]
    fn constrained_domination_cases() {
        // Feasible beats infeasible even with much worse objectives.
        assert_eq!(
            constrained(&ev(&[9.0, 9.0]), &inf(&[0.0, 0.0], 0.1)),
            Dominance::Dominates
        );
        // Two infeasible: lower violation wins regardless of objectives.
        assert_eq!(
            constrained(&inf(&[9.0, 9.0], 0.5), &inf(&[0.0, 0.0], 0.2)),
            Dominance::Dominated
        );
        // Equal violation: neither.
        assert_eq!(
            constrained(&inf(&[9.0, 9.0], 0.5), &inf(&[0.0, 0.0], 0.5)),
            Dominance::Neither
        );
    }

    #[test]
    fn fronts_hand_worked() {
        // Points (index: f1, f2):
        //   0: (1, 5)   1: (2, 3)   2: (4, 1)      <- mutually non-dominated: front 0
        //   3: (3, 4)  dominated by 1 only          <- front 1
        //   4: (2, 3)  duplicate of 1: not dominated by it, so front 0 too
        //   5: (5, 5)  dominated by 0..4, incl. 3   <- front 2
        //   6: (0, 0) violation 1.0   infeasible: behind all feasible, and behind 7  <- front 4
        //   7: (0, 0) violation 0.5   infeasible, lower violation than 6              <- front 3
        let evals = vec![
            ev(&[1.0, 5.0]),
            ev(&[2.0, 3.0]),
            ev(&[4.0, 1.0]),
            ev(&[3.0, 4.0]),
            ev(&[2.0, 3.0]),
            ev(&[5.0, 5.0]),
            inf(&[0.0, 0.0], 1.0),
            inf(&[0.0, 0.0], 0.5),
        ];
        let fronts = non_dominated_sort(&evals);
        assert_eq!(
            fronts,
            vec![vec![0, 1, 2, 4], vec![3], vec![5], vec![7], vec![6]]
        );
        assert_eq!(ranks(&fronts, 8), vec![0, 0, 0, 1, 0, 2, 4, 3]);
        assert!(non_dominated_sort(&[]).is_empty());
    }

    /// ENS and Deb's sort give the same fronts on random sets with duplicate points, ties in one
    /// objective, 1–3 objectives and infeasible members (Deb's is the reference).
    #[test]
    fn ens_matches_debs_sort() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for case in 0..300 {
            let n = rng.random_range(0..60);
            let m = rng.random_range(1..=3);
            let evals: Vec<Evaluation> = (0..n)
                .map(|_| {
                    // Few distinct values: many ties and duplicates.
                    let f: Vec<f64> = (0..m).map(|_| rng.random_range(0..6) as f64).collect();
                    let violation = if rng.random_bool(0.2) {
                        rng.random_range(1..4) as f64 / 2.0
                    } else {
                        0.0
                    };
                    Evaluation {
                        objectives: f,
                        violation,
                    }
                })
                .collect();
            let all: Vec<usize> = (0..n).collect();
            assert_eq!(
                non_dominated_sort(&evals),
                deb_sort(&evals, &all),
                "case {case}: {evals:?}"
            );
        }
        // A NaN objective takes Deb's path, which ignores the NaN comparison: 2 dominates 0 on
        // the second objective alone, and 0 dominates 1 the same way.
        let evals = vec![ev(&[f64::NAN, 1.0]), ev(&[1.0, 2.0]), ev(&[2.0, 0.5])];
        assert_eq!(non_dominated_sort(&evals), vec![vec![2], vec![0], vec![1]]);
    }

    #[test]
    fn equally_infeasible_share_a_front() {
        let evals = vec![inf(&[1.0], 2.0), inf(&[5.0], 2.0), ev(&[7.0])];
        assert_eq!(non_dominated_sort(&evals), vec![vec![2], vec![0, 1]]);
    }

    #[test]
    fn crowding_hand_worked() {
        // Front of 4 points: A(0, 4) B(1, 2) C(3, 1) D(4, 0).
        // f1 range 4: sorted A B C D; B gets (3-0)/4 = 0.75, C gets (4-1)/4 = 0.75.
        // f2 range 4: sorted D C B A; C gets (2-0)/4 = 0.5, B gets (4-1)/4 = 0.75.
        // Totals: A ∞, B 1.5, C 1.25, D ∞.
        let pts = [[0.0, 4.0], [1.0, 2.0], [3.0, 1.0], [4.0, 0.0]];
        let refs: Vec<&[f64]> = pts.iter().map(|p| p.as_slice()).collect();
        let d = crowding_distance(&refs);
        assert_eq!(d[0], f64::INFINITY);
        assert!((d[1] - 1.5).abs() < 1e-12);
        assert!((d[2] - 1.25).abs() < 1e-12);
        assert_eq!(d[3], f64::INFINITY);
    }

    #[test]
    fn crowding_duplicates_and_ties() {
        // A(0, 4) B(1, 2) B'(1, 2) C(3, 1) D(4, 0): B' is a copy of B and gets 0; the others are
        // scored as in `crowding_hand_worked`.
        let pts = [[0.0, 4.0], [1.0, 2.0], [1.0, 2.0], [3.0, 1.0], [4.0, 0.0]];
        let refs: Vec<&[f64]> = pts.iter().map(|p| p.as_slice()).collect();
        let d = crowding_distance(&refs);
        assert_eq!(d[0], f64::INFINITY);
        assert!((d[1] - 1.5).abs() < 1e-12);
        assert_eq!(d[2], 0.0);
        assert!((d[3] - 1.25).abs() < 1e-12);
        assert_eq!(d[4], f64::INFINITY);

        // Tie in f2 (range 0): it adds nothing. f1: P(0,1) Q(1,1) R(3,1): P ∞, Q (3-0)/3 = 1, R ∞.
        let pts = [[0.0, 1.0], [1.0, 1.0], [3.0, 1.0]];
        let refs: Vec<&[f64]> = pts.iter().map(|p| p.as_slice()).collect();
        let d = crowding_distance(&refs);
        assert_eq!(d, vec![f64::INFINITY, 1.0, f64::INFINITY]);

        // Two distinct points (plus a copy): both ∞, the copy 0. All copies of one point: ∞, 0, 0.
        let pts = [[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]];
        let refs: Vec<&[f64]> = pts.iter().map(|p| p.as_slice()).collect();
        assert_eq!(
            crowding_distance(&refs),
            vec![f64::INFINITY, f64::INFINITY, 0.0]
        );
        let pts = [[2.0, 2.0]; 3];
        let refs: Vec<&[f64]> = pts.iter().map(|p| p.as_slice()).collect();
        assert_eq!(crowding_distance(&refs), vec![f64::INFINITY, 0.0, 0.0]);
    }
}
