//! Rank and error statistics between predicted and measured latencies.
//!
//! Conventions: correlations take `(x, y)`; error metrics take `(predicted, measured)` and
//! divide by the measurement where they are relative. Every input must be finite; relative
//! metrics reject a zero measurement instead of returning infinity.
//!
//! The reporting set follows nn-Meter (Zhang et al., MobiSys 2021, §6): RMSE, RMSPE and the
//! share of predictions within ±5 % / ±10 % / ±15 % of the measurement, plus the rank
//! correlations that matter to a search (which subnet is faster), Kendall τ-b and Spearman ρ.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

fn check_pair(
    x: &[f64],
    y: &[f64],
    xn: &'static str,
    yn: &'static str,
    what: &'static str,
) -> Result<()> {
    if x.len() != y.len() {
        return Err(Error::LengthMismatch {
            left: xn,
            left_len: x.len(),
            right: yn,
            right_len: y.len(),
        });
    }
    if x.len() < 2 {
        return Err(Error::TooFew {
            what,
            need: 2,
            got: x.len(),
        });
    }
    for (series, v) in [(xn, x), (yn, y)] {
        if let Some((index, &value)) = v.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(Error::NonFinite {
                series,
                index,
                value,
            });
        }
    }
    Ok(())
}

fn check_errors(predicted: &[f64], measured: &[f64], what: &'static str) -> Result<()> {
    check_pair(predicted, measured, "predicted", "measured", what)
}

fn check_nonzero(measured: &[f64], what: &'static str) -> Result<()> {
    match measured.iter().position(|&m| m == 0.0) {
        Some(index) => Err(Error::ZeroMeasurement { what, index }),
        None => Ok(()),
    }
}

/// The arithmetic mean of `v` (NaN when empty).
pub fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Kendall's τ-b between `x` and `y`, with ties in either variable.
///
/// τ_b = (n_c − n_d) / √((n₀ − n₁)(n₀ − n₂)), where n₀ = n(n−1)/2, n_c and n_d count concordant
/// and discordant pairs, and n₁, n₂ count pairs tied in x and in y (Kendall, *Rank Correlation
/// Methods*, 1948, §3.6; Agresti, *Analysis of Ordinal Categorical Data*, 2010, §7.1.3). This is
/// `scipy.stats.kendalltau(variant="b")`.
///
/// Counts all n(n−1)/2 pairs exactly in integers: O(n²), about 0.13 s for n = 5000 on a 2-core
/// CI machine (dev profile), and n = 5000 is
/// beyond what a board measures in a calibration run. Errors when either series is constant.
pub fn kendall_tau_b(x: &[f64], y: &[f64]) -> Result<f64> {
    check_pair(x, y, "x", "y", "Kendall tau-b")?;
    let n = x.len();
    let (mut s, mut tx, mut ty) = (0i64, 0i64, 0i64);
    for i in 0..n {
        for j in (i + 1)..n {
            let dx = x[i].total_cmp(&x[j]) as i64;
            let dy = y[i].total_cmp(&y[j]) as i64;
            s += dx * dy;
            tx += (dx == 0) as i64;
            ty += (dy == 0) as i64;
        }
    }
    let n0 = (n * (n - 1) / 2) as i64;
    if tx == n0 {
        return Err(Error::Constant {
            what: "Kendall tau-b",
            series: "x",
        });
    }
    if ty == n0 {
        return Err(Error::Constant {
            what: "Kendall tau-b",
            series: "y",
        });
    }
    Ok(s as f64 / (((n0 - tx) as f64) * ((n0 - ty) as f64)).sqrt())
}

/// Ranks 1..=n of `v`, tied values sharing the average of their ranks ("fractional ranking",
/// `scipy.stats.rankdata(method="average")`).
pub fn average_ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut ranks = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i + 1;
        while j < idx.len() && v[idx[j]] == v[idx[i]] {
            j += 1;
        }
        // Positions i..j (0-based) hold ranks i+1..=j; their average is (i + 1 + j) / 2.
        let r = (i + 1 + j) as f64 / 2.0;
        for &k in &idx[i..j] {
            ranks[k] = r;
        }
        i = j;
    }
    ranks
}

/// Spearman's ρ: Pearson's r between the average ranks of `x` and `y` (Spearman, 1904; with
/// ties, the tie-corrected form of Kendall & Gibbons, *Rank Correlation Methods*, 1990, §3.8;
/// `scipy.stats.spearmanr`). Errors when either series is constant.
pub fn spearman_rho(x: &[f64], y: &[f64]) -> Result<f64> {
    check_pair(x, y, "x", "y", "Spearman rho")?;
    pearson_inner(&average_ranks(x), &average_ranks(y), "Spearman rho")
}

/// Pearson's product-moment r = Σ(x−x̄)(y−ȳ) / √(Σ(x−x̄)² Σ(y−ȳ)²) (Pearson, 1895;
/// `scipy.stats.pearsonr`). Errors when either series is constant.
pub fn pearson_r(x: &[f64], y: &[f64]) -> Result<f64> {
    check_pair(x, y, "x", "y", "Pearson r")?;
    pearson_inner(x, y, "Pearson r")
}

fn pearson_inner(x: &[f64], y: &[f64], what: &'static str) -> Result<f64> {
    let (mx, my) = (mean(x), mean(y));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 {
        return Err(Error::Constant { what, series: "x" });
    }
    if syy == 0.0 {
        return Err(Error::Constant { what, series: "y" });
    }
    Ok((sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0))
}

/// Root-mean-square error √(Σ(pᵢ−mᵢ)²/n), in the unit of the inputs (Hyndman & Koehler,
/// "Another look at measures of forecast accuracy", IJF 2006, §3.1).
pub fn rmse(predicted: &[f64], measured: &[f64]) -> Result<f64> {
    check_errors(predicted, measured, "RMSE")?;
    let sse: f64 = predicted
        .iter()
        .zip(measured)
        .map(|(p, m)| (p - m) * (p - m))
        .sum();
    Ok((sse / predicted.len() as f64).sqrt())
}

/// Root-mean-square percentage error 100·√(Σ((pᵢ−mᵢ)/mᵢ)²/n), in % (Hyndman & Koehler 2006,
/// §3.2; nn-Meter's RMSPE). Errors on a zero measurement.
pub fn rmspe(predicted: &[f64], measured: &[f64]) -> Result<f64> {
    check_errors(predicted, measured, "RMSPE")?;
    check_nonzero(measured, "RMSPE")?;
    let s: f64 = predicted
        .iter()
        .zip(measured)
        .map(|(p, m)| ((p - m) / m).powi(2))
        .sum();
    Ok(100.0 * (s / predicted.len() as f64).sqrt())
}

/// RMSE divided by the mean measurement (the "normalised RMSE", CV(RMSE)), as a fraction.
/// Errors when the mean measurement is 0.
pub fn rmse_over_mean(predicted: &[f64], measured: &[f64]) -> Result<f64> {
    let e = rmse(predicted, measured)?;
    let m = mean(measured);
    if m == 0.0 {
        return Err(Error::ZeroMeasurement {
            what: "RMSE/mean (mean of the measurements)",
            index: 0,
        });
    }
    Ok(e / m)
}

/// Mean absolute error Σ|pᵢ−mᵢ|/n (Hyndman & Koehler 2006, §3.1).
pub fn mae(predicted: &[f64], measured: &[f64]) -> Result<f64> {
    check_errors(predicted, measured, "MAE")?;
    let s: f64 = predicted
        .iter()
        .zip(measured)
        .map(|(p, m)| (p - m).abs())
        .sum();
    Ok(s / predicted.len() as f64)
}

/// Share in [0, 1] of predictions with |pᵢ−mᵢ| ≤ `tolerance`·|mᵢ|: nn-Meter's "±δ accuracy"
/// (Zhang et al. 2021, §6.1), with `tolerance` = 0.10 for ±10 %. Errors on a zero measurement.
pub fn share_within(predicted: &[f64], measured: &[f64], tolerance: f64) -> Result<f64> {
    check_errors(predicted, measured, "share within tolerance")?;
    check_nonzero(measured, "share within tolerance")?;
    let hits = predicted
        .iter()
        .zip(measured)
        .filter(|(p, m)| (*p - *m).abs() <= tolerance * m.abs())
        .count();
    Ok(hits as f64 / predicted.len() as f64)
}

/// The mean of paired differences `other − base` with its Student-t confidence interval: what
/// one setting changes over another when both ran with the same seeds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairedDifference {
    /// Pairs.
    pub n: usize,
    /// Mean difference.
    pub mean: f64,
    /// Sample standard deviation of the differences (n − 1).
    pub sd: f64,
    /// Lower end of the interval.
    pub low: f64,
    /// Upper end of the interval.
    pub high: f64,
}

/// Mean of `other[i] − base[i]` and its two-sided `confidence` interval from Student's t with
/// n − 1 degrees of freedom (the paired t-test's interval, `scipy.stats.ttest_rel(other,
/// base).confidence_interval(confidence)`). Needs two pairs; equal differences give a point.
pub fn paired_difference(base: &[f64], other: &[f64], confidence: f64) -> Result<PairedDifference> {
    use statrs::distribution::{ContinuousCDF, StudentsT};
    check_pair(base, other, "base", "other", "paired difference")?;
    crate::interleaved::check_confidence(confidence)?;
    let d: Vec<f64> = other.iter().zip(base).map(|(o, b)| o - b).collect();
    let n = d.len();
    let m = mean(&d);
    let sd = (d.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
    let t = StudentsT::new(0.0, 1.0, (n - 1) as f64)
        .expect("n − 1 ≥ 1 degrees of freedom")
        .inverse_cdf(0.5 + confidence / 2.0);
    let half = t * sd / (n as f64).sqrt();
    Ok(PairedDifference {
        n,
        mean: m,
        sd,
        low: m - half,
        high: m + half,
    })
}

/// All statistics of predicted against measured latencies, as written to reports and predictor
/// files. Correlations are `None` when undefined (a constant series).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Number of (predicted, measured) pairs.
    pub n: usize,
    /// Kendall τ-b, see [`kendall_tau_b`].
    pub kendall_tau_b: Option<f64>,
    /// Spearman ρ, see [`spearman_rho`].
    pub spearman_rho: Option<f64>,
    /// Pearson r, see [`pearson_r`].
    pub pearson_r: Option<f64>,
    /// RMSE in the unit of the inputs (ms), see [`rmse`].
    pub rmse: f64,
    /// RMSPE in %, see [`rmspe`].
    pub rmspe_pct: f64,
    /// RMSE over the mean measurement, see [`rmse_over_mean`].
    pub rmse_over_mean: f64,
    /// Mean absolute error (ms), see [`mae`].
    pub mae: f64,
    /// Share within ±5 %, see [`share_within`].
    pub within_5pct: f64,
    /// Share within ±10 %.
    pub within_10pct: f64,
    /// Share within ±15 %.
    pub within_15pct: f64,
}

impl Report {
    /// Computes every statistic; errors as the individual functions do, except that a constant
    /// series leaves the correlations `None`.
    pub fn compute(predicted: &[f64], measured: &[f64]) -> Result<Report> {
        check_errors(predicted, measured, "report")?;
        check_nonzero(measured, "RMSPE")?;
        let corr = |r: Result<f64>| match r {
            Ok(v) => Ok(Some(v)),
            Err(Error::Constant { .. }) => Ok(None),
            Err(e) => Err(e),
        };
        Ok(Report {
            n: predicted.len(),
            kendall_tau_b: corr(kendall_tau_b(predicted, measured))?,
            spearman_rho: corr(spearman_rho(predicted, measured))?,
            pearson_r: corr(pearson_r(predicted, measured))?,
            rmse: rmse(predicted, measured)?,
            rmspe_pct: rmspe(predicted, measured)?,
            rmse_over_mean: rmse_over_mean(predicted, measured)?,
            mae: mae(predicted, measured)?,
            within_5pct: share_within(predicted, measured, 0.05)?,
            within_10pct: share_within(predicted, measured, 0.10)?,
            within_15pct: share_within(predicted, measured, 0.15)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paired_difference_matches_scipy_ttest_rel() {
        // scipy 1.16.3: r = stats.ttest_rel(other, base); r.confidence_interval(c)
        let base = [0.10, -0.20, 0.05, 0.30, 0.00];
        let other = [0.25, 0.05, 0.10, 0.35, 0.20];
        let d = paired_difference(&base, &other, 0.95).unwrap();
        assert_eq!(d.n, 5);
        assert!((d.mean - 0.14).abs() < 1e-12);
        assert!((d.sd - 0.08944271909999159).abs() < 1e-12);
        assert!((d.low - 0.028942195792088038).abs() < 1e-9, "{d:?}");
        assert!((d.high - 0.2510578042079119).abs() < 1e-9, "{d:?}");
        let d = paired_difference(&base, &other, 0.9).unwrap();
        assert!((d.low - 0.05472612854693398).abs() < 1e-9, "{d:?}");
        assert!((d.high - 0.22527387145306593).abs() < 1e-9, "{d:?}");
        // Three seeds: t with 2 degrees of freedom (4.303).
        let d = paired_difference(&[88.1, 87.9, 88.4], &[88.6, 88.0, 89.3], 0.95).unwrap();
        assert!((d.low - -0.49365508468781943).abs() < 1e-9, "{d:?}");
        assert!((d.high - 1.49365508468781).abs() < 1e-9, "{d:?}");
        // Equal differences: a point; one pair or a bad confidence: an error.
        let d = paired_difference(&[1.0, 2.0], &[1.5, 2.5], 0.95).unwrap();
        assert_eq!((d.low, d.high), (0.5, 0.5));
        assert!(matches!(
            paired_difference(&[1.0], &[2.0], 0.95),
            Err(Error::TooFew { .. })
        ));
        assert!(matches!(
            paired_difference(&[1.0, 2.0], &[2.0, 3.0], 95.0),
            Err(Error::Setting { .. })
        ));
    }

    #[test]
    fn average_ranks_share_ties() {
        assert_eq!(
            average_ranks(&[3.0, 1.0, 3.0, 2.0]),
            vec![3.5, 1.0, 3.5, 2.0]
        );
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(matches!(
            kendall_tau_b(&[1.0, 2.0], &[1.0]),
            Err(Error::LengthMismatch { .. })
        ));
        assert!(matches!(
            rmse(&[1.0], &[1.0]),
            Err(Error::TooFew {
                need: 2,
                got: 1,
                ..
            })
        ));
        let e = rmspe(&[1.0, 2.0], &[1.0, 0.0]).unwrap_err();
        assert!(matches!(e, Error::ZeroMeasurement { index: 1, .. }), "{e}");
        let e = pearson_r(&[1.0, f64::NAN], &[1.0, 2.0]).unwrap_err();
        assert_eq!(e.to_string(), "x[1] is NaN, expected a finite number");
        assert!(matches!(
            spearman_rho(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]),
            Err(Error::Constant { series: "x", .. })
        ));
    }

    #[test]
    fn report_with_constant_prediction_has_no_correlation() {
        let r = Report::compute(&[2.0, 2.0, 2.0], &[1.0, 2.0, 3.0]).unwrap();
        assert_eq!(r.kendall_tau_b, None);
        assert!((r.within_5pct - 1.0 / 3.0).abs() < 1e-15);
    }
}
