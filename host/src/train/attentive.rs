//! AttentiveNAS (Wang et al., CVPR 2021) best-up / worst-up path sampling.
//!
//! Each step draws a FLOPs bin uniformly ([`super::FlopsBins`], the paper's FLOPs prior made
//! uniform), `k` paths inside it, predicts each one's accuracy with a cheap predictor and trains
//! the best (best-up) or the worst (worst-up) of them. The paper's predictor is a pretrained
//! accuracy predictor; here it is one of the cheap ones ([`AttentiveScore`]).

use serde::{Deserialize, Serialize};
use shiftnas_models::cost::arch_flops;
use shiftnas_models::{Arch, Space};

/// The accuracy predictor of AttentiveNAS sampling (`--attentive-score`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum AttentiveScore {
    /// The current supernet's loss on the step's training batch (lower loss = better; the
    /// paper's "loss on minibatch" variant).
    Loss,
    /// The path's FLOPs (more FLOPs = better), as `shiftnas space flops` counts them.
    Flops,
}

/// Which end of the predicted ranking is trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// Best-up: the highest predicted accuracy.
    Best,
    /// Worst-up: the lowest.
    Worst,
}

/// The index of the candidate to train given the predicted accuracies (higher = better): the
/// argmax for [`Pick::Best`], the argmin for [`Pick::Worst`]; ties go to the earlier candidate.
///
/// # Panics
/// On an empty `scores`.
pub fn pick(scores: &[f64], pick: Pick) -> usize {
    assert!(!scores.is_empty(), "no candidates to pick from");
    let mut best = 0;
    for (i, s) in scores.iter().enumerate().skip(1) {
        let better = match pick {
            Pick::Best => s.total_cmp(&scores[best]).is_gt(),
            Pick::Worst => s.total_cmp(&scores[best]).is_lt(),
        };
        if better {
            best = i;
        }
    }
    best
}

/// Predicted accuracies by FLOPs: each path's multiply-adds as a whole network.
pub fn flops_scores(space: &Space, candidates: &[Arch]) -> Vec<f64> {
    candidates
        .iter()
        .map(|a| arch_flops(space, a) as f64)
        .collect()
}

/// Predicted accuracies from losses: the negated losses.
pub fn loss_scores(losses: &[f64]) -> Vec<f64> {
    losses.iter().map(|l| -l).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pick_is_argmax_or_argmin_first_on_ties() {
        let s = [0.3, 0.9, -1.0, 0.9, -1.0];
        assert_eq!(pick(&s, Pick::Best), 1);
        assert_eq!(pick(&s, Pick::Worst), 2);
        assert_eq!(pick(&[7.0], Pick::Worst), 0);
        assert_eq!(loss_scores(&[1.0, -2.0]), [-1.0, 2.0]);
    }
}
