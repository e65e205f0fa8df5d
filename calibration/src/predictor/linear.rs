//! Fitted linear predictor: ridge regression of measured subnet latency on arch features, with
//! the feature set and λ chosen by k-fold cross-validation.
//!
//! Two feature sets ([`FeatureSet`]):
//! - `one_hot`: one 0/1 column per (block, choice), n_blocks × n_choices columns (80 for SPOS).
//!   With an intercept this is exactly an additive per-block latency table learned from whole
//!   subnets (the "block LUT from end-to-end measurements" of HELP/BRP-NAS-style predictors).
//! - `stage_counts`: per stage, how many blocks take each choice, plus the stage's MFLOPs:
//!   n_stages × (n_choices + 1) columns. Fewer unknowns, so it needs fewer measured subnets.

use serde::{Deserialize, Serialize};

use super::{ArchFeatures, Predictor, check_finite};
use crate::error::{Error, Result};
use crate::linalg::ridge;
use crate::rng::SplitMix64;
use crate::stats;

/// Which columns the linear model regresses on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureSet {
    /// One-hot choice per block.
    OneHot,
    /// Per-stage choice counts and per-stage MFLOPs.
    StageCounts,
}

impl FeatureSet {
    /// Both feature sets, the default CV candidates.
    pub const ALL: [FeatureSet; 2] = [FeatureSet::OneHot, FeatureSet::StageCounts];
}

impl std::fmt::Display for FeatureSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FeatureSet::OneHot => "one_hot",
            FeatureSet::StageCounts => "stage_counts",
        })
    }
}

/// Sizes of the arch description a linear model was fitted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    /// Searchable blocks per arch.
    pub n_blocks: usize,
    /// Choices per block (largest choice seen + 1).
    pub n_choices: usize,
    /// Stages (largest stage index seen + 1).
    pub n_stages: usize,
}

impl Layout {
    /// The layout covering all `samples`; errors when their block counts differ.
    pub fn of(samples: &[(ArchFeatures, f64)]) -> Result<Layout> {
        let first = samples.first().ok_or(Error::TooFew {
            what: "linear model",
            need: 1,
            got: 0,
        })?;
        let n_blocks = first.0.n_blocks();
        let (mut n_choices, mut n_stages) = (0, 0);
        for (i, (f, _)) in samples.iter().enumerate() {
            f.validate()
                .map_err(|e| Error::Features(format!("sample {i}: {e}")))?;
            if f.n_blocks() != n_blocks {
                return Err(Error::Features(format!(
                    "sample {i} has {} blocks but sample 0 has {n_blocks}; samples must come from one space",
                    f.n_blocks()
                )));
            }
            n_choices = n_choices.max(f.choices.iter().max().map_or(0, |&c| c as usize + 1));
            n_stages = n_stages.max(f.n_stages());
        }
        Ok(Layout {
            n_blocks,
            n_choices,
            n_stages,
        })
    }

    /// Number of columns of `set` under this layout.
    pub fn width(&self, set: FeatureSet) -> usize {
        match set {
            FeatureSet::OneHot => self.n_blocks * self.n_choices,
            FeatureSet::StageCounts => self.n_stages * (self.n_choices + 1),
        }
    }

    /// The feature row of `f`; entries outside the layout are dropped (see [`Predictor::check`]).
    pub fn row(&self, set: FeatureSet, f: &ArchFeatures) -> Vec<f64> {
        let mut row = vec![0.0; self.width(set)];
        let nc = self.n_choices;
        for (i, &c) in f.choices.iter().enumerate() {
            let c = c as usize;
            if c >= nc {
                continue;
            }
            match set {
                FeatureSet::OneHot if i < self.n_blocks => row[i * nc + c] = 1.0,
                FeatureSet::OneHot => {}
                FeatureSet::StageCounts => {
                    let s = f.stage_of_block.get(i).copied().unwrap_or(usize::MAX);
                    if s < self.n_stages {
                        row[s * nc + c] += 1.0;
                    }
                }
            }
        }
        if set == FeatureSet::StageCounts {
            let base = self.n_stages * nc;
            for (i, &fl) in f.block_flops.iter().enumerate() {
                let s = f.stage_of_block.get(i).copied().unwrap_or(usize::MAX);
                if s < self.n_stages {
                    row[base + s] += fl as f64 / 1e6;
                }
            }
        }
        row
    }
}

/// Ridge-regression predictor: `intercept + coef · row(features)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearPredictor {
    /// The feature set the coefficients belong to.
    pub features: FeatureSet,
    /// Sizes of the arch description.
    pub layout: Layout,
    /// Ridge λ used for the fit (on standardised columns, see [`crate::linalg::ridge`]).
    pub lambda: f64,
    /// Intercept (ms).
    pub intercept: f64,
    /// One coefficient per column of [`Layout::row`] (ms per unit).
    pub coef: Vec<f64>,
}

impl LinearPredictor {
    /// Fits on `samples` (arch, measured ms) with the given feature set and λ ≥ 0.
    pub fn fit(samples: &[(ArchFeatures, f64)], features: FeatureSet, lambda: f64) -> Result<Self> {
        let layout = Layout::of(samples)?;
        Self::fit_with_layout(samples, features, lambda, layout)
    }

    fn fit_with_layout(
        samples: &[(ArchFeatures, f64)],
        features: FeatureSet,
        lambda: f64,
        layout: Layout,
    ) -> Result<Self> {
        let rows: Vec<Vec<f64>> = samples
            .iter()
            .map(|(f, _)| layout.row(features, f))
            .collect();
        let y: Vec<f64> = samples.iter().map(|(_, m)| *m).collect();
        if let Some(index) = y.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                series: "measured",
                index,
                value: y[index],
            });
        }
        let (intercept, coef) = ridge(&rows, &y, lambda)?;
        Ok(LinearPredictor {
            features,
            layout,
            lambda,
            intercept,
            coef,
        })
    }

    /// Checks the coefficient count against the layout and that every number is finite.
    pub fn validate(&self) -> Result<()> {
        let want = self.layout.width(self.features);
        if self.coef.len() != want {
            return Err(Error::Field {
                field: "coef".into(),
                reason: format!(
                    "has {} entries but feature set `{}` on {} blocks × {} choices in {} stages needs {want}",
                    self.coef.len(),
                    self.features,
                    self.layout.n_blocks,
                    self.layout.n_choices,
                    self.layout.n_stages
                ),
            });
        }
        check_finite("coef", &self.coef)?;
        check_finite("intercept", &[self.intercept])?;
        check_finite("lambda", &[self.lambda])
    }
}

impl Predictor for LinearPredictor {
    fn predict(&self, f: &ArchFeatures) -> f64 {
        let row = self.layout.row(self.features, f);
        self.intercept + row.iter().zip(&self.coef).map(|(x, b)| x * b).sum::<f64>()
    }

    fn check(&self, f: &ArchFeatures) -> Result<()> {
        f.validate()?;
        let l = &self.layout;
        if f.n_blocks() != l.n_blocks {
            return Err(Error::Features(format!(
                "arch has {} blocks but the linear model was fitted on {}; was it made for another space?",
                f.n_blocks(),
                l.n_blocks
            )));
        }
        if let Some(i) = f.choices.iter().position(|&c| c as usize >= l.n_choices) {
            return Err(Error::Features(format!(
                "block {i} has choice {} but the linear model knows choices 0..{}",
                f.choices[i], l.n_choices
            )));
        }
        if f.n_stages() > l.n_stages {
            return Err(Error::Features(format!(
                "arch has {} stages but the linear model knows {}",
                f.n_stages(),
                l.n_stages
            )));
        }
        Ok(())
    }
}

/// Cross-validated score of one (feature set, λ) candidate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CvScore {
    /// Feature set.
    pub features: FeatureSet,
    /// Ridge λ.
    pub lambda: f64,
    /// RMSPE (%) over all out-of-fold predictions.
    pub rmspe_pct: f64,
}

/// Picks the feature set and λ with the lowest pooled out-of-fold RMSPE by `folds`-fold CV
/// (Hastie, Tibshirani & Friedman, *ESL*, §7.10). Folds come from a shuffle seeded by `seed`;
/// fewer samples than folds means leave-one-out. Returns the best candidate and all scores, in
/// candidate order. Ties go to the earlier candidate.
pub fn cross_validate(
    samples: &[(ArchFeatures, f64)],
    sets: &[FeatureSet],
    lambdas: &[f64],
    folds: usize,
    seed: u64,
) -> Result<(CvScore, Vec<CvScore>)> {
    if sets.is_empty() || lambdas.is_empty() {
        return Err(Error::Options(
            "cross-validation needs at least one feature set and one λ".into(),
        ));
    }
    if samples.len() < 3 {
        return Err(Error::TooFew {
            what: "cross-validation",
            need: 3,
            got: samples.len(),
        });
    }
    if folds < 2 {
        return Err(Error::Options(format!("CV needs ≥ 2 folds, got {folds}")));
    }
    let layout = Layout::of(samples)?;
    let k = folds.min(samples.len());
    let mut order: Vec<usize> = (0..samples.len()).collect();
    SplitMix64::new(seed).shuffle(&mut order);
    let mut fold_of = vec![0; samples.len()];
    for (pos, &i) in order.iter().enumerate() {
        fold_of[i] = pos % k;
    }
    let measured: Vec<f64> = samples.iter().map(|(_, m)| *m).collect();
    let mut scores = Vec::new();
    for &set in sets {
        for &lambda in lambdas {
            let mut pred = vec![0.0; samples.len()];
            for fold in 0..k {
                let train: Vec<(ArchFeatures, f64)> = (0..samples.len())
                    .filter(|&i| fold_of[i] != fold)
                    .map(|i| samples[i].clone())
                    .collect();
                let p = LinearPredictor::fit_with_layout(&train, set, lambda, layout)?;
                for i in (0..samples.len()).filter(|&i| fold_of[i] == fold) {
                    pred[i] = p.predict(&samples[i].0);
                }
            }
            scores.push(CvScore {
                features: set,
                lambda,
                rmspe_pct: stats::rmspe(&pred, &measured)?,
            });
        }
    }
    let best = scores
        .iter()
        .fold(None::<&CvScore>, |best, s| match best {
            Some(b) if b.rmspe_pct <= s.rmspe_pct => Some(b),
            _ => Some(s),
        })
        .cloned()
        .expect("at least one candidate");
    Ok((best, scores))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feats(choices: &[u8], stages: &[usize]) -> ArchFeatures {
        ArchFeatures {
            choices: choices.to_vec(),
            block_flops: choices
                .iter()
                .map(|&c| (c as u64 + 1) * 1_000_000)
                .collect(),
            stage_of_block: stages.to_vec(),
            total_flops: 0,
            params: 0,
        }
    }

    #[test]
    fn rows_have_the_documented_columns() {
        let f = feats(&[1, 0, 1], &[0, 1, 1]);
        let l = Layout {
            n_blocks: 3,
            n_choices: 2,
            n_stages: 2,
        };
        assert_eq!(l.row(FeatureSet::OneHot, &f), vec![0., 1., 1., 0., 0., 1.]);
        // counts [s0c0, s0c1, s1c0, s1c1], then MFLOPs [s0, s1].
        assert_eq!(
            l.row(FeatureSet::StageCounts, &f),
            vec![0., 1., 1., 1., 2., 3.]
        );
    }

    #[test]
    fn one_hot_recovers_an_exact_additive_table() {
        // latency = 1 + Σ table[i][c], every combination of 3 blocks × 2 choices.
        let table = [[0.5, 1.5], [2.0, 2.25], [1.0, 4.0]];
        let samples: Vec<_> = (0..8u8)
            .map(|m| {
                let ch = [m & 1, (m >> 1) & 1, (m >> 2) & 1];
                let y = 1.0 + (0..3).map(|i| table[i][ch[i] as usize]).sum::<f64>();
                (feats(&ch, &[0, 0, 1]), y)
            })
            .collect();
        let p = LinearPredictor::fit(&samples, FeatureSet::OneHot, 1e-12).unwrap();
        for (f, y) in &samples {
            assert!((p.predict(f) - y).abs() < 1e-6, "{} vs {y}", p.predict(f));
        }
        let bad = feats(&[0, 2, 0], &[0, 0, 1]);
        assert!(
            p.check(&bad)
                .unwrap_err()
                .to_string()
                .contains("block 1 has choice 2")
        );
    }
}
