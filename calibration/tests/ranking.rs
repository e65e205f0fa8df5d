//! Order-preserving figures against hand counts and scipy.

use shiftnas_calibration::ranking::{RankingError, best_first, default_k, figures, pair};

/// 12 archs: retrained accuracy (%) and supernet error; shared with the scipy references.
const ACC: [f64; 12] = [
    91.2, 90.5, 89.9, 92.3, 88.1, 90.5, 87.0, 93.1, 89.0, 91.8, 86.2, 90.0,
];
const ERR: [f64; 12] = [
    0.31, 0.33, 0.30, 0.28, 0.36, 0.34, 0.37, 0.29, 0.35, 0.28, 0.40, 0.32,
];
// python -c "from scipy.stats import kendalltau, spearmanr; a=[...ACC]; g=[-x for x in ERR];
//   print(kendalltau(g,a,variant='b').statistic, spearmanr(g,a).statistic)"
const SCIPY_TAU_ALL: f64 = 0.7384615384615385;
const SCIPY_RHO_ALL: f64 = 0.8842105263157896;
// Same, restricted to the true top-4 (indices 7, 3, 9, 0):
// python -c "from scipy.stats import kendalltau; print(kendalltau([-0.29,-0.28,-0.28,-0.31],
//   [93.1,92.3,91.8,91.2],variant='b').statistic)"
const SCIPY_TAU_TOP4: f64 = 0.18257418583505539;

fn goodness() -> Vec<f64> {
    ERR.iter().map(|e| -e).collect()
}

#[test]
fn rank_figures_match_hand_counts_and_scipy() {
    let f = figures(&goodness(), &ACC, 4).unwrap();
    // True top-4: 93.1 (7), 92.3 (3), 91.8 (9), 91.2 (0); supernet top-4 by lowest error:
    // 0.28 (3), 0.28 (9), 0.29 (7), 0.30 (2) → {3, 9, 7} shared.
    assert_eq!(f.true_top, vec![7, 3, 9, 0]);
    assert_eq!(f.supernet_top, vec![3, 9, 7, 2]);
    assert_eq!((f.overlap, f.global), (3, 0.75));
    assert!((f.global_chance - 4.0 / 12.0).abs() < 1e-15);
    assert!((f.tau_b.unwrap() - SCIPY_TAU_ALL).abs() < 1e-12);
    assert!((f.spearman_rho.unwrap() - SCIPY_RHO_ALL).abs() < 1e-12);
    assert!((f.local_tau_b.unwrap() - SCIPY_TAU_TOP4).abs() < 1e-12);
    assert!(f.notes.is_empty(), "{:?}", f.notes);
}

#[test]
fn rank_perfect_and_reversed_orders() {
    let acc = [0.9, 0.8, 0.7, 0.6, 0.5];
    let f = figures(&acc, &acc, 2).unwrap();
    assert_eq!(
        (f.overlap, f.local_tau_b, f.tau_b),
        (2, Some(1.0), Some(1.0))
    );
    let rev: Vec<f64> = acc.iter().map(|a| -a).collect();
    let f = figures(&rev, &acc, 2).unwrap();
    assert_eq!(
        (f.overlap, f.local_tau_b, f.tau_b),
        (0, Some(-1.0), Some(-1.0))
    );
    assert!((f.spearman_rho.unwrap() + 1.0).abs() < 1e-12);
}

#[test]
fn rank_undefined_figures_and_boundary_ties_are_noted() {
    // k = 1: no pairs among the top; supernet constant: tau undefined; tie at the cut.
    let f = figures(&[0.5, 0.5, 0.5], &[0.9, 0.8, 0.7], 1).unwrap();
    assert_eq!((f.local_tau_b, f.tau_b, f.spearman_rho), (None, None, None));
    let notes = f.notes.join("\n");
    assert!(
        notes.contains("supernet top-1 is cut inside a tie"),
        "{notes}"
    );
    assert!(notes.contains("needs at least 2"), "{notes}");
    assert!(notes.contains("constant"), "{notes}");
}

#[test]
fn rank_bad_k_and_too_few_archs_are_errors() {
    let e = figures(&[1.0, 2.0], &[1.0, 2.0], 3)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--top-k 3") && e.contains("N = 2"), "{e}");
    assert!(figures(&[1.0, 2.0], &[1.0, 2.0], 0).is_err());
    let e = figures(&[1.0], &[1.0], 1).unwrap_err().to_string();
    assert!(e.contains("needs 2"), "{e}");
    assert_eq!(
        (default_k(3), default_k(12), default_k(50), default_k(500)),
        (2, 2, 10, 10)
    );
    assert_eq!(default_k(30), 6);
    assert_eq!(
        figures(&[1.0, 2.0], &[1.0], 1).unwrap_err(),
        RankingError::LengthMismatch {
            scores: 2,
            values: 1
        }
    );
}

#[test]
fn best_first_keeps_input_order_in_ties() {
    assert_eq!(best_first(&[0.1, 0.3, 0.2, 0.3]), vec![1, 3, 2, 0]);
    assert!(best_first(&[]).is_empty());
}

#[test]
fn pair_keeps_the_truth_order_and_lists_the_unpaired() {
    let scores = [("c", -0.2), ("a", -0.4), ("z", -0.1), ("b", -0.3)];
    let truth = [("a", 0.7), ("y", 0.5), ("b", 0.8), ("c", 0.9)];
    let p = pair(&scores, &truth);
    assert_eq!(p.keys, vec!["a", "b", "c"]);
    assert_eq!(p.score, vec![-0.4, -0.3, -0.2]);
    assert_eq!(p.truth, vec![0.7, 0.8, 0.9]);
    assert_eq!((p.no_score, p.no_truth), (vec!["y"], vec!["z"]));
    let none = pair::<&str>(&[], &truth);
    assert!(none.keys.is_empty() && none.no_score.len() == 4);
}
