//! Calibration: split measured subnets into train and holdout, fit each predictor on the train
//! part, score both on the holdout part, and keep the one with the lower held-out RMSPE.
//!
//! The stored predictor is the one fitted on the train part only, so the holdout figures in the
//! file describe exactly the model in it.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::file::{PredictorFile, Provenance};
use crate::predictor::linear::{CvScore, cross_validate};
use crate::predictor::{
    ArchFeatures, BlockTable, FeatureSet, Kind, LinearPredictor, LutPredictor, Model, Predictor,
};
use crate::rng::SplitMix64;
use crate::stats::{self, Report};

/// Settings of [`calibrate`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FitOptions {
    /// Fraction of subnets held out for scoring, in (0, 1). Default 0.2.
    pub holdout: f64,
    /// Seed of the split and of the CV folds. Default 0.
    pub seed: u64,
    /// CV folds for the linear model's feature set and λ. Default 5.
    pub folds: usize,
    /// Candidate ridge λs (on standardised columns). Default 1e-6 … 1.
    pub lambdas: Vec<f64>,
    /// Candidate feature sets. Default both.
    pub feature_sets: Vec<FeatureSet>,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            holdout: 0.2,
            seed: 0,
            folds: 5,
            lambdas: vec![1e-6, 1e-4, 1e-3, 1e-2, 1e-1, 1.0],
            feature_sets: FeatureSet::ALL.to_vec(),
        }
    }
}

/// A latency proxy whose rank agreement with measurements is reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Proxy {
    /// [`ArchFeatures::total_flops`].
    Flops,
    /// [`ArchFeatures::params`].
    Params,
}

/// Kendall τ-b of each proxy against measured latency; `None` when undefined (constant).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProxyTaus {
    /// τ-b of total FLOPs vs latency.
    pub flops: Option<f64>,
    /// τ-b of params vs latency.
    pub params: Option<f64>,
}

/// Kendall τ-b between `proxy` and the measured latency over `samples`.
pub fn proxy_tau(samples: &[(ArchFeatures, f64)], proxy: Proxy) -> Result<f64> {
    let x: Vec<f64> = samples
        .iter()
        .map(|(f, _)| match proxy {
            Proxy::Flops => f.total_flops as f64,
            Proxy::Params => f.params as f64,
        })
        .collect();
    let y: Vec<f64> = samples.iter().map(|(_, m)| *m).collect();
    stats::kendall_tau_b(&x, &y)
}

/// [`proxy_tau`] for every proxy; constant proxies give `None`, other errors propagate.
pub fn proxy_taus(samples: &[(ArchFeatures, f64)]) -> Result<ProxyTaus> {
    let one = |p| match proxy_tau(samples, p) {
        Ok(t) => Ok(Some(t)),
        Err(Error::Constant { .. }) => Ok(None),
        Err(e) => Err(e),
    };
    Ok(ProxyTaus {
        flops: one(Proxy::Flops)?,
        params: one(Proxy::Params)?,
    })
}

/// The linear candidate: what CV picked and how it held out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearFit {
    /// Feature set picked by CV.
    pub features: FeatureSet,
    /// λ picked by CV.
    pub lambda: f64,
    /// Every CV candidate's pooled out-of-fold RMSPE.
    pub cv: Vec<CvScore>,
    /// Scores on the holdout subnets.
    pub holdout: Report,
}

/// The block-table candidate and how it held out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LutFit {
    /// Fitted correction slope.
    pub a: f64,
    /// Fitted correction offset (ms).
    pub b: f64,
    /// Scores on the holdout subnets, with the correction.
    pub holdout: Report,
    /// Scores of the bare table sum (a = 1, b = 0), to show what the correction buys.
    pub holdout_uncorrected: Report,
}

/// What [`calibrate`] did: the split, both candidates' held-out scores, and the choice.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FitReport {
    /// Seed of the split.
    pub seed: u64,
    /// Requested holdout fraction.
    pub holdout_fraction: f64,
    /// Subnets fitted on.
    pub n_train: usize,
    /// Subnets scored on.
    pub n_holdout: usize,
    /// The block-table candidate; `None` without a block table.
    pub lut: Option<LutFit>,
    /// The linear candidate.
    pub linear: LinearFit,
    /// The kind kept: lower held-out RMSPE, the block table on a tie.
    pub chosen: Kind,
    /// Proxies' τ-b against latency over all samples, for comparison with `chosen`'s.
    pub proxies: ProxyTaus,
}

/// Deterministic train/holdout split of `n` samples: a SplitMix64-seeded Fisher–Yates shuffle,
/// the first round(holdout·n) (at least 2) held out, at least 3 left to train. Both index lists
/// are sorted.
pub fn split(n: usize, holdout: f64, seed: u64) -> Result<(Vec<usize>, Vec<usize>)> {
    if !(holdout > 0.0 && holdout < 1.0) {
        return Err(Error::Options(format!(
            "holdout fraction must be in (0, 1), got {holdout}"
        )));
    }
    let n_hold = ((holdout * n as f64).round() as usize).max(2);
    if n < n_hold + 3 {
        return Err(Error::TooFew {
            what: "calibration (2 held out + 3 to train, at this holdout fraction)",
            need: n_hold.max(2) + 3,
            got: n,
        });
    }
    let mut order: Vec<usize> = (0..n).collect();
    SplitMix64::new(seed).shuffle(&mut order);
    let mut hold = order[..n_hold].to_vec();
    let mut train = order[n_hold..].to_vec();
    hold.sort_unstable();
    train.sort_unstable();
    Ok((train, hold))
}

fn score(p: &impl Predictor, samples: &[(ArchFeatures, f64)]) -> Result<Report> {
    let pred: Vec<f64> = samples.iter().map(|(f, _)| p.predict(f)).collect();
    let meas: Vec<f64> = samples.iter().map(|(_, m)| *m).collect();
    Report::compute(&pred, &meas)
}

/// Everything [`calibrate_all`] fitted: the file, the report, both candidates and the split.
#[derive(Clone, Debug)]
pub struct Calibration {
    /// The predictor file with the chosen model.
    pub file: PredictorFile,
    /// How the candidates held out and which was chosen (also in `file.holdout`).
    pub report: FitReport,
    /// The ridge candidate, fitted on the train part.
    pub linear: LinearPredictor,
    /// The block-table candidate, fitted on the train part; `None` without a block table.
    pub lut: Option<LutPredictor>,
    /// Sample indices fitted on (sorted).
    pub train: Vec<usize>,
    /// Sample indices scored on (sorted).
    pub holdout: Vec<usize>,
}

/// Fits both predictors on measured subnets (arch, ms) and returns the better one as a file,
/// with the report of how it was chosen. Without `block_table` only the linear model is fitted.
pub fn calibrate(
    samples: &[(ArchFeatures, f64)],
    block_table: Option<BlockTable>,
    opts: &FitOptions,
    provenance: Provenance,
) -> Result<(PredictorFile, FitReport)> {
    let c = calibrate_all(samples, block_table, opts, provenance)?;
    Ok((c.file, c.report))
}

/// [`calibrate`], also returning both fitted candidates and the split, so that a caller can
/// show each candidate's predictions.
pub fn calibrate_all(
    samples: &[(ArchFeatures, f64)],
    block_table: Option<BlockTable>,
    opts: &FitOptions,
    provenance: Provenance,
) -> Result<Calibration> {
    for (i, (f, m)) in samples.iter().enumerate() {
        f.validate()
            .map_err(|e| Error::Features(format!("sample {i}: {e}")))?;
        if !m.is_finite() || *m <= 0.0 {
            return Err(Error::Features(format!(
                "sample {i}: measured latency {m} ms is not a positive number"
            )));
        }
    }
    let (train_idx, hold_idx) = split(samples.len(), opts.holdout, opts.seed)?;
    let train: Vec<_> = train_idx.iter().map(|&i| samples[i].clone()).collect();
    let hold: Vec<_> = hold_idx.iter().map(|&i| samples[i].clone()).collect();

    let (best, cv) = cross_validate(
        &train,
        &opts.feature_sets,
        &opts.lambdas,
        opts.folds,
        opts.seed,
    )?;
    let linear = LinearPredictor::fit(&train, best.features, best.lambda)?;
    for (i, (f, _)) in hold.iter().enumerate() {
        linear
            .check(f)
            .map_err(|e| Error::Features(format!("holdout sample {}: {e}", hold_idx[i])))?;
    }
    let linear_fit = LinearFit {
        features: best.features,
        lambda: best.lambda,
        cv,
        holdout: score(&linear, &hold)?,
    };

    let mut lut = None;
    if let Some(table) = block_table {
        for (i, (f, _)) in samples.iter().enumerate() {
            table
                .check(f)
                .map_err(|e| Error::Features(format!("sample {i}: {e}")))?;
        }
        let p = LutPredictor::fit(table.clone(), &train)?;
        let fit = LutFit {
            a: p.a,
            b: p.b,
            holdout: score(&p, &hold)?,
            holdout_uncorrected: score(&LutPredictor::uncorrected(table), &hold)?,
        };
        lut = Some((p, fit));
    }

    let (model, chosen) = match lut {
        Some((ref p, ref fit)) if fit.holdout.rmspe_pct <= linear_fit.holdout.rmspe_pct => {
            (Model::Lut(p.clone()), Kind::Lut)
        }
        _ => (Model::Linear(linear.clone()), Kind::Linear),
    };
    let (lut_model, lut_fit) = match lut {
        Some((p, fit)) => (Some(p), Some(fit)),
        None => (None, None),
    };
    let report = FitReport {
        seed: opts.seed,
        holdout_fraction: opts.holdout,
        n_train: train.len(),
        n_holdout: hold.len(),
        lut: lut_fit,
        linear: linear_fit,
        chosen,
        proxies: proxy_taus(samples)?,
    };
    Ok(Calibration {
        file: PredictorFile::new(model, provenance, report.clone()),
        report,
        linear,
        lut: lut_model,
        train: train_idx,
        holdout: hold_idx,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_deterministic_disjoint_and_complete() {
        let (t, h) = split(50, 0.2, 7).unwrap();
        assert_eq!((t.len(), h.len()), (40, 10));
        assert_eq!(split(50, 0.2, 7).unwrap(), (t.clone(), h.clone()));
        assert_ne!(split(50, 0.2, 8).unwrap().1, h);
        let mut all: Vec<usize> = t.iter().chain(&h).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn split_rejects_bad_options() {
        assert!(
            split(50, 1.0, 0)
                .unwrap_err()
                .to_string()
                .contains("(0, 1)")
        );
        assert!(matches!(
            split(4, 0.2, 0),
            Err(Error::TooFew { got: 4, .. })
        ));
    }
}
