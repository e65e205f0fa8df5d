//! Prescreening board measurements with a latency predictor (`--prescreen predictor:FILE`).
//!
//! With `--latency board:…`, every candidate normally goes to the board. A calibrated predictor
//! (from `shiftnas calibrate`) can tell beforehand that some candidates cannot join the front.
//! A candidate with error `e` and predicted latency `p` is **clearly outside** when, with `m` the
//! predictor's relative error margin,
//!
//! - some board-measured evaluation so far has error `≤ e` and latency `t` with `p > t · (1 + m)`
//!   (it would be dominated by that point even if the predictor overestimates by `m`), or
//! - `p > budget · (1 + m)` with `--latency-budget` (infeasible even so).
//!
//! Such candidates are not sent to the board: their latency is the prediction and their archive
//! record's `latency_source` is the predictor's (`predictor:<fingerprint>`), so they are told
//! apart from measurements. The margin defaults to twice the predictor's held-out RMSPE
//! (about 95 % of held-out errors for normally distributed relative errors), or
//! `--prescreen-margin PCT`. When every prediction is within the margin, a screened candidate is
//! really dominated (or infeasible), so a search whose proposals do not depend on the objectives
//! (`random`) ends with exactly the front of the unscreened search; NSGA-II and evolution may take
//! other paths since screened candidates carry predicted latencies.
//!
//! The measured points come from this run's archive (records whose source is the board), so a
//! resumed run screens exactly as an uninterrupted one.

use std::path::Path;

use anyhow::{Context as _, Result, bail};
use shiftnas_calibration::predictor::Kind;
use shiftnas_models::{Arch, Space};

use crate::archive::ArchiveRecord;
use crate::latency::LatencySource;
use crate::latency::predictor::PredictorSource;

/// A predictor, its margin and the board-measured (error, latency) points seen so far.
pub struct Prescreen {
    predictor: PredictorSource,
    margin: f64,
    label: String,
    measured_label: String,
    front: MeasuredPoints,
}

/// Board-measured (error in [0, 1], latency) points, sorted by error, and the screening rule.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MeasuredPoints {
    points: Vec<(f64, f64)>,
}

impl MeasuredPoints {
    /// Adds one measured point.
    pub fn add(&mut self, error: f64, latency: f64) {
        let at = self.points.partition_point(|p| p.0 <= error);
        self.points.insert(at, (error, latency));
    }

    /// The lowest measured latency among points with error `≤ error` (the front's latency at
    /// that error level), if any.
    pub fn front_latency(&self, error: f64) -> Option<f64> {
        let n = self.points.partition_point(|p| p.0 <= error);
        self.points[..n].iter().map(|p| p.1).reduce(f64::min)
    }

    /// Whether a candidate with `error` and `predicted` latency is clearly outside the front or
    /// the `budget`, with relative `margin` (see the module doc).
    pub fn is_clearly_out(
        &self,
        error: f64,
        predicted: f64,
        budget: Option<f64>,
        margin: f64,
    ) -> bool {
        let over = |limit: f64| predicted > limit * (1.0 + margin);
        budget.is_some_and(over) || self.front_latency(error).is_some_and(over)
    }
}

/// The relative error margin of a predictor: twice the held-out RMSPE of the model it kept.
///
/// # Errors
/// A file whose report lacks the kept model's held-out scores, or a non-finite RMSPE.
pub fn default_margin(predictor: &PredictorSource) -> Result<f64> {
    let h = &predictor.file().holdout;
    let report = match h.chosen {
        Kind::Lut => h.lut.as_ref().map(|l| &l.holdout),
        Kind::Linear => Some(&h.linear.holdout),
    };
    let Some(r) = report else {
        bail!(
            "the predictor file keeps the block table but has no held-out scores for it; pass --prescreen-margin PCT"
        );
    };
    if !(r.rmspe_pct.is_finite() && r.rmspe_pct >= 0.0) {
        bail!(
            "the predictor's held-out RMSPE is {}; pass --prescreen-margin PCT",
            r.rmspe_pct
        );
    }
    Ok(2.0 * r.rmspe_pct / 100.0)
}

impl Prescreen {
    /// A prescreen with relative `margin` (0.1 = 10 %) in front of the source described as
    /// `measured_label` (e.g. `board:<fingerprint>`).
    ///
    /// # Errors
    /// A negative or non-finite margin.
    pub fn new(
        predictor: PredictorSource,
        margin: f64,
        measured_label: String,
    ) -> Result<Prescreen> {
        if !(margin.is_finite() && margin >= 0.0) {
            bail!("--prescreen-margin must be a non-negative percentage, got {margin}");
        }
        let label = predictor.describe();
        Ok(Prescreen {
            predictor,
            margin,
            label,
            measured_label,
            front: MeasuredPoints::default(),
        })
    }

    /// The relative margin.
    pub fn margin(&self) -> f64 {
        self.margin
    }

    /// The `latency_source` of screened candidates' records.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Adds the board-measured records among `records` to the reference points.
    pub fn observe<'r>(&mut self, records: impl IntoIterator<Item = &'r ArchiveRecord>) {
        for r in records {
            if r.latency_source == self.measured_label {
                self.front.add(r.error, r.latency);
            }
        }
    }

    /// Whether a candidate with `error` (in [0, 1]) and `predicted` latency is clearly outside.
    pub fn is_clearly_out(&self, error: f64, predicted: f64, budget: Option<f64>) -> bool {
        self.front
            .is_clearly_out(error, predicted, budget, self.margin)
    }

    /// The predicted latency of `arch`.
    ///
    /// # Errors
    /// An arch the predictor cannot take.
    pub fn predict(&self, space: &Space, arch: &Arch) -> Result<f64> {
        self.predictor
            .predict(space, arch)
            .context("--prescreen predictor")
    }
}

/// How many of `records` had their latency predicted by `prescreen` (board measurements saved).
pub fn count(prescreen: Option<&Prescreen>, records: &[ArchiveRecord]) -> usize {
    prescreen.map_or(0, |p| {
        records
            .iter()
            .filter(|r| r.latency_source == p.label())
            .count()
    })
}

/// The prescreen of `--prescreen predictor:PATH` with `--prescreen-margin margin_pct` (default:
/// [`default_margin`]), checked against the board source `latency` (its fingerprint must match
/// the predictor's unless `force_predictor`, `--force-predictor`).
///
/// # Errors
/// A non-board latency source, an unreadable predictor, one for another space or board, or a
/// bad margin.
pub fn open(
    path: &Path,
    margin_pct: Option<f64>,
    force_predictor: bool,
    space: &Space,
    latency: &dyn LatencySource,
) -> Result<Prescreen> {
    let measured = latency.describe();
    let Some(fingerprint) = measured.strip_prefix("board:") else {
        bail!(
            "--prescreen predictor:{} saves board measurements, but --latency is {measured}; use it with --latency board:NAME",
            path.display()
        );
    };
    let predictor = PredictorSource::open(path, space).context("--prescreen")?;
    predictor
        .check_board(fingerprint, force_predictor)
        .context("--prescreen (pass --force-predictor to use it anyway)")?;
    let margin = match margin_pct {
        Some(pct) => pct / 100.0,
        None => {
            default_margin(&predictor).with_context(|| format!("--prescreen {}", path.display()))?
        }
    };
    Prescreen::new(predictor, margin, measured)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-worked: measured points (0.3, 10), (0.2, 20), (0.4, 5); margin 10 %.
    #[test]
    fn clearly_out_hand_worked() {
        let mut s = MeasuredPoints::default();
        for (e, l) in [(0.3, 10.0), (0.2, 20.0), (0.4, 5.0)] {
            s.add(e, l);
        }
        let out = |e, p, b| s.is_clearly_out(e, p, b, 0.1);
        assert_eq!(s.front_latency(0.1), None);
        assert_eq!(s.front_latency(0.2), Some(20.0));
        assert_eq!(s.front_latency(0.35), Some(10.0));
        assert_eq!(s.front_latency(0.5), Some(5.0));
        assert!(!out(0.1, 1000.0, None), "nothing measured is as good");
        assert!(!out(0.35, 11.0, None), "within the margin of 10");
        assert!(out(0.35, 11.01, None));
        assert!(!out(0.25, 21.0, None));
        assert!(out(0.2, 22.01, None), "equal error, clearly slower");
        assert!(out(0.5, 5.6, None));
        assert!(out(0.1, 12.0, Some(10.0)), "over budget by more than 10 %");
        assert!(!out(0.1, 10.5, Some(10.0)));
    }
}
