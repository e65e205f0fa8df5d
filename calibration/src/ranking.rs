//! Order-preserving figures: how well one ranking (a supernet's scores) agrees with another (the
//! archs' accuracies after retraining), after Zhang et al. (CVPR 2024, "Boosting
//! Order-Preserving and Transferability for NAS").
//!
//! Given N items with both a score and a true value (both higher-is-better), [`figures`] reports
//!
//! - global order preservation: |score top-k ∩ true top-k| / k (chance level k / N), telling good
//!   items from bad ones;
//! - local order preservation: Kendall τ-b between score and true value among the true top-k,
//!   ordering the good items among themselves;
//! - Kendall τ-b and Spearman ρ over all N ([`crate::stats`]).
//!
//! [`pair`] lines up two keyed lists (e.g. arch → supernet score, arch → accuracy).
//!
//! ```
//! use shiftnas_calibration::ranking::{figures, pair};
//!
//! let scores = [("a", 0.9), ("b", 0.7), ("c", 0.8), ("x", 0.1)];
//! let truth = [("a", 0.93), ("b", 0.91), ("c", 0.92), ("d", 0.5)];
//! let p = pair(&scores, &truth);
//! assert_eq!((p.keys, p.no_score, p.no_truth), (vec!["a", "b", "c"], vec!["d"], vec!["x"]));
//! let f = figures(&p.score, &p.truth, 2)?;
//! assert_eq!((f.overlap, f.global, f.tau_b), (2, 1.0, Some(1.0)));
//! # Ok::<(), shiftnas_calibration::ranking::RankingError>(())
//! ```

use std::collections::HashMap;
use std::hash::Hash;

use serde::Serialize;

use crate::stats::{kendall_tau_b, spearman_rho};

/// Why [`figures`] cannot rank (undefined correlations are notes in [`Figures`], not errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RankingError {
    /// The two series differ in length.
    #[error("{scores} supernet scores for {values} accuracies")]
    LengthMismatch {
        /// Number of scores.
        scores: usize,
        /// Number of true values.
        values: usize,
    },
    /// Fewer than 2 items.
    #[error(
        "only {n} arch has both a supernet score and a retrained accuracy; ranking needs 2 or more"
    )]
    TooFew {
        /// Items given.
        n: usize,
    },
    /// k is 0 or larger than N.
    #[error("--top-k {k} must be between 1 and N = {n} (the archs present in both inputs)")]
    BadK {
        /// The k asked for.
        k: usize,
        /// Items given.
        n: usize,
    },
}

/// The default k: N / 5 kept within 2..=10 (and at most N).
pub fn default_k(n: usize) -> usize {
    (n / 5).clamp(2, 10).min(n)
}

/// Indices of `v` sorted best (highest) first; ties keep input order.
pub fn best_first(v: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]));
    idx
}

/// Two keyed lists lined up: the keys both have, in the truth list's order, and those only one
/// of them has.
#[derive(Debug, Clone, PartialEq)]
pub struct Pairing<K> {
    /// Keys in both lists, in the truth list's order.
    pub keys: Vec<K>,
    /// The score of each key.
    pub score: Vec<f64>,
    /// The true value of each key.
    pub truth: Vec<f64>,
    /// Keys with a true value but no score.
    pub no_score: Vec<K>,
    /// Keys with a score but no true value, in the score list's order.
    pub no_truth: Vec<K>,
}

/// Pairs `scores` with `truth` by key (a key listed twice in `scores` keeps its last value).
pub fn pair<K: Eq + Hash + Clone>(scores: &[(K, f64)], truth: &[(K, f64)]) -> Pairing<K> {
    let s: HashMap<&K, f64> = scores.iter().map(|(k, v)| (k, *v)).collect();
    let t: HashMap<&K, f64> = truth.iter().map(|(k, v)| (k, *v)).collect();
    let mut p = Pairing {
        keys: vec![],
        score: vec![],
        truth: vec![],
        no_score: vec![],
        no_truth: vec![],
    };
    for (key, value) in truth {
        match s.get(key) {
            Some(&score) => {
                p.keys.push(key.clone());
                p.score.push(score);
                p.truth.push(*value);
            }
            None => p.no_score.push(key.clone()),
        }
    }
    p.no_truth = (scores.iter())
        .filter(|(k, _)| !t.contains_key(k))
        .map(|(k, _)| k.clone())
        .collect();
    p
}

/// The order-preserving figures of one pairing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    /// Archs ranked.
    pub n: usize,
    /// Size of the top sets.
    pub k: usize,
    /// |supernet top-k ∩ true top-k|.
    pub overlap: usize,
    /// Global order preservation: `overlap / k`.
    pub global: f64,
    /// What `global` is expected to be for a random ranking: k / N.
    pub global_chance: f64,
    /// Local order preservation: Kendall τ-b among the true top-k (`None` when undefined).
    pub local_tau_b: Option<f64>,
    /// Kendall τ-b over all N.
    pub tau_b: Option<f64>,
    /// Spearman ρ over all N.
    pub spearman_rho: Option<f64>,
    /// Indices (into the pairing) of the supernet's top-k, best first.
    #[serde(skip)]
    pub supernet_top: Vec<usize>,
    /// Indices of the true top-k, best first.
    #[serde(skip)]
    pub true_top: Vec<usize>,
    /// Why a figure is undefined, or where a tie made a top-k set arbitrary.
    pub notes: Vec<String>,
}

/// Global and local order preservation of `supernet` (higher is better) against `accuracy`.
///
/// # Errors
/// Fewer than 2 archs, `k` of 0 or larger than N, lengths that differ.
pub fn figures(supernet: &[f64], accuracy: &[f64], k: usize) -> Result<Figures, RankingError> {
    let n = accuracy.len();
    if supernet.len() != n {
        return Err(RankingError::LengthMismatch {
            scores: supernet.len(),
            values: n,
        });
    }
    if n < 2 {
        return Err(RankingError::TooFew { n });
    }
    if k == 0 || k > n {
        return Err(RankingError::BadK { k, n });
    }
    let mut notes = Vec::new();
    let (so, to) = (best_first(supernet), best_first(accuracy));
    for (name, o, v) in [("supernet", &so, supernet), ("true", &to, accuracy)] {
        if k < n && v[o[k - 1]] == v[o[k]] {
            notes.push(format!(
                "the {name} top-{k} is cut inside a tie (rank {k} and {} are equal); the earlier line in the truth file was taken",
                k + 1
            ));
        }
    }
    let (supernet_top, true_top) = (so[..k].to_vec(), to[..k].to_vec());
    let overlap = supernet_top.iter().filter(|i| true_top.contains(i)).count();
    let mut stat = |what: &str, r: crate::Result<f64>| match r {
        Ok(v) => Some(v),
        Err(e) => {
            notes.push(format!("{what}: {e}"));
            None
        }
    };
    let pick = |v: &[f64]| true_top.iter().map(|&i| v[i]).collect::<Vec<_>>();
    let local_tau_b = stat(
        "local tau-b (x: supernet, y: true accuracy in the true top-k)",
        kendall_tau_b(&pick(supernet), &pick(accuracy)),
    );
    let tau_b = stat("tau-b", kendall_tau_b(supernet, accuracy));
    let spearman_rho = stat("spearman rho", spearman_rho(supernet, accuracy));
    Ok(Figures {
        n,
        k,
        overlap,
        global: overlap as f64 / k as f64,
        global_chance: k as f64 / n as f64,
        local_tau_b,
        tau_b,
        spearman_rho,
        supernet_top,
        true_top,
        notes,
    })
}
