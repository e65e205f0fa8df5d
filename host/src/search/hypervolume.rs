//! Hypervolume (S-metric) of a point set for minimisation, w.r.t. a reference point.
//!
//! [`hv2d`] is exact in O(n log n): sort by f1 and add one rectangle per improvement in f2.
//! [`hypervolume`] handles any dimension by slicing on the last objective (HSO, While et al.
//! 2006), recursing down to [`hv2d`]; it is O(n^(d−1) log n), fine for ≤ 3 objectives and the
//! front sizes of a search. Points not strictly better than the reference in every objective
//! contribute nothing. [`front_hypervolume`] measures a population's feasible first front.

use super::Individual;

/// Exact 2-D hypervolume of `points` (each `[f1, f2]`) w.r.t. `reference`.
pub fn hv2d(points: &[[f64; 2]], reference: [f64; 2]) -> f64 {
    let mut pts: Vec<[f64; 2]> = points
        .iter()
        .copied()
        .filter(|p| p[0] < reference[0] && p[1] < reference[1])
        .collect();
    pts.sort_by(|a, b| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1])));
    let mut volume = 0.0;
    let mut floor = reference[1];
    for p in pts {
        if p[1] < floor {
            volume += (reference[0] - p[0]) * (floor - p[1]);
            floor = p[1];
        }
    }
    volume
}

/// Exact hypervolume of `points` (all of the reference's dimension) w.r.t. `reference`.
pub fn hypervolume(points: &[Vec<f64>], reference: &[f64]) -> f64 {
    let d = reference.len();
    let inside: Vec<&[f64]> = points
        .iter()
        .filter(|p| p.len() == d && p.iter().zip(reference).all(|(x, r)| x < r))
        .map(|p| p.as_slice())
        .collect();
    slice(&inside, reference)
}

/// Hypervolume of the feasible first front (rank 0) of `population` w.r.t. the first
/// objectives-many coordinates of `reference` (so one reference serves single- and
/// two-objective searches); 0 when no front member is feasible.
pub fn front_hypervolume<G>(population: &[Individual<G>], reference: &[f64]) -> f64 {
    let pts: Vec<Vec<f64>> = population
        .iter()
        .filter(|i| i.rank == 0 && i.eval.is_feasible())
        .map(|i| i.eval.objectives.clone())
        .collect();
    if pts.is_empty() {
        return 0.0;
    }
    hypervolume(&pts, &reference[..pts[0].len()])
}

fn slice(points: &[&[f64]], reference: &[f64]) -> f64 {
    let d = reference.len();
    match d {
        0 => 0.0,
        1 => points
            .iter()
            .map(|p| reference[0] - p[0])
            .fold(0.0, f64::max),
        2 => {
            let pts: Vec<[f64; 2]> = points.iter().map(|p| [p[0], p[1]]).collect();
            hv2d(&pts, [reference[0], reference[1]])
        }
        _ => {
            let mut sorted: Vec<&[f64]> = points.to_vec();
            sorted.sort_by(|a, b| a[d - 1].total_cmp(&b[d - 1]));
            let mut volume = 0.0;
            for i in 0..sorted.len() {
                let top = if i + 1 < sorted.len() {
                    sorted[i + 1][d - 1]
                } else {
                    reference[d - 1]
                };
                let depth = top - sorted[i][d - 1];
                if depth > 0.0 {
                    let below: Vec<&[f64]> = sorted[..=i].iter().map(|p| &p[..d - 1]).collect();
                    volume += depth * slice(&below, &reference[..d - 1]);
                }
            }
            volume
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_d_hand_computed() {
        // Reference (4, 4); points (1, 3), (2, 2), (3, 1): a staircase of three strips
        //   (4−1)(4−3) + (4−2)(3−2) + (4−3)(2−1) = 3 + 2 + 1 = 6.
        let pts = [[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]];
        assert_eq!(hv2d(&pts, [4.0, 4.0]), 6.0);
        // Dominated (3, 3), duplicate (2, 2) and outside (5, 0) points change nothing.
        let more = [
            [1.0, 3.0],
            [2.0, 2.0],
            [3.0, 1.0],
            [3.0, 3.0],
            [2.0, 2.0],
            [5.0, 0.0],
        ];
        assert_eq!(hv2d(&more, [4.0, 4.0]), 6.0);
        // On the reference boundary: nothing.
        assert_eq!(hv2d(&[[4.0, 0.0]], [4.0, 4.0]), 0.0);
        assert_eq!(hv2d(&[], [1.0, 1.0]), 0.0);
    }

    #[test]
    fn three_d_hand_computed() {
        // Reference (2, 2, 2). One point (1, 1, 1): a unit cube, 1.
        assert_eq!(hypervolume(&[vec![1.0, 1.0, 1.0]], &[2.0; 3]), 1.0);
        // (0, 1, 1) and (1, 0, 1) and (1, 1, 0): each box is 2×1×1 = 2; pairwise overlaps are
        // 1×1×1 = 1 each (three of them); the triple overlap is 1. Inclusion–exclusion:
        // 3·2 − 3·1 + 1 = 4.
        let pts = vec![
            vec![0.0, 1.0, 1.0],
            vec![1.0, 0.0, 1.0],
            vec![1.0, 1.0, 0.0],
        ];
        assert_eq!(hypervolume(&pts, &[2.0; 3]), 4.0);
        // The general version agrees with hv2d in 2-D.
        let pts2 = vec![vec![1.0, 3.0], vec![2.0, 2.0], vec![3.0, 1.0]];
        assert_eq!(hypervolume(&pts2, &[4.0, 4.0]), 6.0);
    }

    /// Only feasible rank-0 members count, and the reference is cut to the objective count.
    #[test]
    fn front_hypervolume_counts_the_feasible_first_front() {
        use crate::search::problem::Evaluation;
        let member = |objectives: Vec<f64>, rank: usize, violation: f64| Individual {
            rank,
            ..Individual::new(
                (),
                Evaluation {
                    objectives,
                    violation,
                },
            )
        };
        let pop = [
            member(vec![1.0, 3.0], 0, 0.0),
            member(vec![3.0, 1.0], 0, 0.0),
            member(vec![0.0, 0.0], 0, 0.5),
            member(vec![0.5, 0.5], 1, 0.0),
        ];
        // (4−1)(4−3) + (4−3)(3−1) = 3 + 2.
        assert_eq!(front_hypervolume(&pop, &[4.0, 4.0]), 5.0);
        let single = [member(vec![1.0], 0, 0.0)];
        assert_eq!(front_hypervolume(&single, &[4.0, 99.0]), 3.0);
        assert_eq!(front_hypervolume(&pop[2..], &[4.0, 4.0]), 0.0);
    }
}
