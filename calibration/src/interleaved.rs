//! Interleaved, drift-corrected latency measurement: the statistics, without I/O.
//!
//! A board's speed drifts (other processes, frequency scaling, heat). Timing each model alone in
//! its own window turns that drift into a difference between models. The interleaved protocol
//! times a *set* of models in **rounds**: every round runs each model, and one **reference
//! model**, for a short slice of timed runs, in a shuffled order ([`round_order`]). Within a round
//! all of them see about the same machine, so a model's time divided by the reference's time in
//! the same round cancels the drift.
//!
//! For model i in round t, with m̃ the median of a slice of timed runs:
//!
//! - ratio r_it = m̃(model i, round t) / m̃(reference, round t);
//! - R_i = median over the rounds t of r_it; ref = median over t of m̃(reference, round t) (ms);
//! - estimate_i = R_i · ref (ms);
//! - interval_i = [r_i(k), r_i(n+1−k)] · ref, the distribution-free interval of the median of the
//!   n ratios ([`median_interval`]), scaled by the same ref.
//!
//! The scale `ref` is one number common to every model of the set: it moves all estimates
//! together and cannot change their order, so the interval used to rank models is that of the
//! ratio alone, and `ref`'s own uncertainty (reported as [`Estimates::reference_interval`], which
//! drift widens) does not widen it. Absolute milliseconds carry that extra uncertainty.
//!
//! [`StopRule`] says when to stop adding rounds (every interval narrower than ±precision, or the
//! round or time limit), and [`retest`] compares two passes over the same models.
//!
//! ```
//! use shiftnas_calibration::interleaved::{Round, StopRule, estimate};
//! use std::time::Duration;
//!
//! // Two models at 2× and 0.5× the reference, on a machine whose speed halves after round 4.
//! let rounds: Vec<Round> = (0..8)
//!     .map(|t| {
//!         let slow = if t < 4 { 1.0 } else { 2.0 };
//!         Round {
//!             reference_ms: vec![10.0 * slow; 3],
//!             models_ms: vec![vec![20.0 * slow; 3], vec![5.0 * slow; 3]],
//!         }
//!     })
//!     .collect();
//! let est = estimate(&rounds, 0.95)?;
//! assert_eq!((est.models[0].ratio, est.models[1].ratio), (2.0, 0.5));
//! let verdict = StopRule { min_rounds: 8, ..StopRule::default() }.check(&est, Duration::ZERO);
//! assert!(verdict.precise && verdict.stop.is_some());
//! # Ok::<(), shiftnas_calibration::Error>(())
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};
use statrs::distribution::{Binomial, DiscreteCDF};

use crate::error::{Error, Result};
use crate::rng::SplitMix64;
use crate::stats;

/// Confidence of the intervals unless the caller asks otherwise: 95 %.
pub const DEFAULT_CONFIDENCE: f64 = 0.95;

/// Relative half-width at which measuring stops unless the caller asks otherwise: ±1 %.
pub const DEFAULT_PRECISION: f64 = 0.01;

pub(crate) fn check_confidence(confidence: f64) -> Result<()> {
    if confidence.is_finite() && confidence > 0.0 && confidence < 1.0 {
        Ok(())
    } else {
        Err(Error::Setting {
            setting: "confidence",
            value: confidence,
            expected: "must be a fraction in (0, 1), e.g. 0.95 for a 95 % interval",
        })
    }
}

/// How far below the confidence a computed coverage may fall and still count as reaching it:
/// the binomial CDF is computed to ~1e-15, and an exact tie (n = 2 at 50 %: 1 − 2·¼) must count.
const ROUNDING: f64 = 1e-12;

/// Coverage of [x₍ₖ₎, x₍ₙ₊₁₋ₖ₎] for the median: P(k ≤ B ≤ n−k) = 1 − 2·P(B ≤ k−1) with
/// B ~ Binomial(n, 1/2), the number of values below the median. Needs 1 ≤ k ≤ (n+1)/2.
fn coverage(n: usize, k: usize) -> f64 {
    let b = Binomial::new(0.5, n as u64).expect("p = 1/2 is a valid binomial probability");
    (1.0 - 2.0 * b.cdf(k as u64 - 1)).max(0.0)
}

/// The ranks of a distribution-free confidence interval for a median.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MedianRanks {
    /// Number of values.
    pub n: usize,
    /// 1-based rank of the lower bound, k.
    pub low: usize,
    /// 1-based rank of the upper bound, n + 1 − k.
    pub high: usize,
    /// Exact coverage 1 − 2·P(B ≤ k−1), B ~ Binomial(n, 1/2): at least the confidence asked for
    /// (up to 1e-12 of rounding in the CDF).
    pub coverage: f64,
}

/// The smallest number of values for which a `confidence` interval of a median exists:
/// the smallest n with 1 − 2·(1/2)ⁿ ≥ `confidence` (the interval from the minimum to the
/// maximum). 6 for 95 %, 8 for 99 %.
pub fn min_values(confidence: f64) -> Result<usize> {
    check_confidence(confidence)?;
    // 1 − 2·2⁻ⁿ rounds to 1.0 by n = 55, and `confidence` < 1, so the search ends there.
    Ok((1..=64)
        .find(|&n| coverage(n, 1) >= confidence - ROUNDING)
        .expect("coverage reaches 1.0 in f64 by n = 55"))
}

/// The narrowest symmetric pair of order statistics (x₍ₖ₎, x₍ₙ₊₁₋ₖ₎) whose coverage of the
/// median is at least `confidence`, for any continuous distribution (Conover, *Practical
/// Nonparametric Statistics*, 3rd ed., 1999, §3.2; with ties it is conservative).
///
/// Errors below [`min_values`] (n < 6 at 95 %) and for a confidence outside (0, 1).
pub fn median_ranks(n: usize, confidence: f64) -> Result<MedianRanks> {
    let need = min_values(confidence)?;
    if n < need {
        return Err(Error::TooFewForInterval {
            what: "values",
            confidence,
            need,
            got: n,
        });
    }
    // Coverage falls as k grows: find the largest k in 1..=(n+1)/2 that still reaches it.
    let (mut lo, mut hi) = (1, n.div_ceil(2));
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if coverage(n, mid) >= confidence - ROUNDING {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Ok(MedianRanks {
        n,
        low: lo,
        high: n + 1 - lo,
        coverage: coverage(n, lo),
    })
}

/// A sample median with its distribution-free confidence interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MedianInterval {
    /// The sample median (the mean of the two middle values when n is even).
    pub median: f64,
    /// Lower bound, the value of rank `ranks.low`.
    pub low: f64,
    /// Upper bound, the value of rank `ranks.high`.
    pub high: f64,
    /// The ranks and their exact coverage.
    pub ranks: MedianRanks,
}

impl MedianInterval {
    /// As an [`Interval`] around the median.
    pub fn interval(&self) -> Interval {
        Interval {
            estimate: self.median,
            low: self.low,
            high: self.high,
        }
    }
}

fn median_of_sorted(v: &[f64]) -> f64 {
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

/// The median of `values` with its `confidence` interval from [`median_ranks`].
pub fn median_interval(values: &[f64], confidence: f64) -> Result<MedianInterval> {
    if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(Error::NonFinite {
            series: "values",
            index,
            value,
        });
    }
    let ranks = median_ranks(values.len(), confidence)?;
    let v = sorted(values);
    Ok(MedianInterval {
        median: median_of_sorted(&v),
        low: v[ranks.low - 1],
        high: v[ranks.high - 1],
        ranks,
    })
}

/// An estimate with the bounds of its confidence interval, in one unit.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// The point estimate.
    pub estimate: f64,
    /// Lower bound.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
}

impl Interval {
    /// Whether `x` lies in [low, high].
    pub fn contains(&self, x: f64) -> bool {
        self.low <= x && x <= self.high
    }

    /// (high − low) / (2 · estimate): the "±" of the interval as a fraction of the estimate.
    pub fn relative_half_width(&self) -> f64 {
        (self.high - self.low) / (2.0 * self.estimate)
    }
}

/// One round of an interleaved measurement: a slice of timed runs of the reference and of each
/// model of the set, all taken in the same stretch of time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Round {
    /// The reference model's timed runs in this round, ms.
    pub reference_ms: Vec<f64>,
    /// Each model's timed runs in this round, ms: the same models in the same order every round.
    pub models_ms: Vec<Vec<f64>>,
}

/// One model's drift-corrected estimate, see the module documentation for the formulas.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelEstimate {
    /// The estimate in ms: `ratio` × [`Estimates::reference_ms`].
    pub ms: f64,
    /// Median over rounds of this model's slice median over the reference's, same round.
    pub ratio: f64,
    /// The interval of that median ratio; `None` with fewer rounds than [`min_values`].
    pub ratio_interval: Option<MedianInterval>,
    /// The ratio interval × [`Estimates::reference_ms`], in ms.
    pub interval_ms: Option<Interval>,
    /// (high − low) / (2 · estimate) of either interval (the same fraction).
    pub relative_half_width: Option<f64>,
}

/// Drift-corrected estimates of a set of models from interleaved rounds ([`estimate`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Estimates {
    /// Rounds used.
    pub rounds: usize,
    /// Confidence of the intervals.
    pub confidence: f64,
    /// Median over rounds of the reference's slice median, ms: the scale of every estimate.
    pub reference_ms: f64,
    /// The interval of `reference_ms` over rounds (drift widens it; it does not enter the
    /// models' intervals); `None` with too few rounds.
    pub reference_interval: Option<MedianInterval>,
    /// One estimate per model, in the order of [`Round::models_ms`].
    pub models: Vec<ModelEstimate>,
}

/// Median of one slice of timed runs, after checking that it holds positive finite times.
fn slice_median(slice: &[f64], round: usize, who: &str) -> Result<f64> {
    let place = || format!("round {round}, {who}");
    if slice.is_empty() {
        return Err(Error::Sample {
            place: place(),
            problem: "no timed runs; every slice needs at least one".into(),
        });
    }
    if let Some((run, v)) = slice
        .iter()
        .enumerate()
        .find(|(_, v)| !(v.is_finite() && **v > 0.0))
    {
        return Err(Error::Sample {
            place: format!("{}, run {run}", place()),
            problem: format!("time {v} ms; a timed run must be a positive finite duration"),
        });
    }
    Ok(median_of_sorted(&sorted(slice)))
}

fn interval_if_enough(
    values: &[f64],
    confidence: f64,
    need: usize,
) -> Result<Option<MedianInterval>> {
    if values.len() < need {
        Ok(None)
    } else {
        median_interval(values, confidence).map(Some)
    }
}

/// Drift-corrected estimates with `confidence` intervals from interleaved `rounds`.
///
/// Errors when there are no rounds, when a round times another number of models than the
/// first, and on an empty slice or a time that is not a positive finite number (each error
/// names the round, the model by its 0-based index in the set, and the run).
pub fn estimate(rounds: &[Round], confidence: f64) -> Result<Estimates> {
    let need = min_values(confidence)?;
    let Some(first) = rounds.first() else {
        return Err(Error::TooFew {
            what: "an interleaved estimate (rounds)",
            need: 1,
            got: 0,
        });
    };
    let models = first.models_ms.len();
    let mut reference = Vec::with_capacity(rounds.len());
    let mut ratios = vec![Vec::with_capacity(rounds.len()); models];
    for (t, round) in rounds.iter().enumerate() {
        if round.models_ms.len() != models {
            return Err(Error::Sample {
                place: format!("round {t}"),
                problem: format!(
                    "times {} models but round 0 times {models}; every round must time the \
                     whole set",
                    round.models_ms.len()
                ),
            });
        }
        let r = slice_median(&round.reference_ms, t, "reference")?;
        reference.push(r);
        for (i, slice) in round.models_ms.iter().enumerate() {
            ratios[i].push(slice_median(slice, t, &format!("model {i}"))? / r);
        }
    }
    let reference_ms = median_of_sorted(&sorted(&reference));
    let reference_interval = interval_if_enough(&reference, confidence, need)?;
    let models = ratios
        .iter()
        .map(|r| {
            let ratio = median_of_sorted(&sorted(r));
            let ratio_interval = interval_if_enough(r, confidence, need)?;
            let interval_ms = ratio_interval.map(|ci| Interval {
                estimate: ratio * reference_ms,
                low: ci.low * reference_ms,
                high: ci.high * reference_ms,
            });
            Ok(ModelEstimate {
                ms: ratio * reference_ms,
                ratio,
                relative_half_width: ratio_interval.map(|ci| ci.interval().relative_half_width()),
                ratio_interval,
                interval_ms,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Estimates {
        rounds: rounds.len(),
        confidence,
        reference_ms,
        reference_interval,
        models,
    })
}

/// The order in which to time the reference (slot 0) and the models (slots 1..`slots`) in
/// `round`: a shuffle that depends only on `seed` and `round`, so a measurement can be replayed.
pub fn round_order(slots: usize, seed: u64, round: usize) -> Vec<usize> {
    let mut rng = SplitMix64::new(seed ^ (round as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
    let mut order: Vec<usize> = (0..slots).collect();
    rng.shuffle(&mut order);
    order
}

/// When to stop adding rounds.
#[derive(Clone, Debug, PartialEq)]
pub struct StopRule {
    /// Stop once every model's relative half-width is at most this (0.01 = ±1 %).
    pub precision: f64,
    /// Never stop for precision before this many rounds; at least [`min_values`] of the
    /// confidence (6 at 95 %).
    pub min_rounds: usize,
    /// Stop after this many rounds, precise or not.
    pub max_rounds: usize,
    /// Stop once this much time has gone by, precise or not (even before `min_rounds`).
    pub budget: Option<Duration>,
}

impl Default for StopRule {
    /// ±1 %, 10 to 200 rounds, no time budget.
    fn default() -> Self {
        StopRule {
            precision: DEFAULT_PRECISION,
            min_rounds: 10,
            max_rounds: 200,
            budget: None,
        }
    }
}

/// Why measuring stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// Every interval is narrower than the precision.
    Precise,
    /// The round limit was reached first.
    MaxRounds,
    /// The time budget ran out first.
    Budget,
}

/// The stop rule's answer after a round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Rounds so far.
    pub rounds: usize,
    /// Whether every model has an interval at most ±precision wide.
    pub precise: bool,
    /// The model (0-based index) with the widest interval and its relative half-width; `None`
    /// while there are too few rounds for intervals.
    pub widest: Option<(usize, f64)>,
    /// `Some` when measuring should stop.
    pub stop: Option<StopReason>,
}

impl StopRule {
    /// Checks the rule against the `confidence` the estimates will use.
    pub fn validate(&self, confidence: f64) -> Result<()> {
        if !(self.precision.is_finite() && self.precision > 0.0 && self.precision < 1.0) {
            return Err(Error::Setting {
                setting: "precision",
                value: self.precision,
                expected: "must be a fraction in (0, 1), e.g. 0.01 for ±1 %",
            });
        }
        let need = min_values(confidence)?;
        if self.min_rounds < need {
            return Err(Error::Setting {
                setting: "min_rounds",
                value: self.min_rounds as f64,
                expected: "must reach the rounds a median interval needs at this confidence \
                           (6 at 95 %, 8 at 99 %)",
            });
        }
        if self.max_rounds < self.min_rounds {
            return Err(Error::Setting {
                setting: "max_rounds",
                value: self.max_rounds as f64,
                expected: "must be at least min_rounds",
            });
        }
        Ok(())
    }

    /// Whether to stop, given the estimates after the latest round and the time spent so far.
    /// Precision wins over the limits when both apply in the same round.
    pub fn check(&self, estimates: &Estimates, elapsed: Duration) -> Verdict {
        let widths: Vec<Option<f64>> = estimates
            .models
            .iter()
            .map(|m| m.relative_half_width)
            .collect();
        let precise = widths
            .iter()
            .all(|w| w.is_some_and(|w| w <= self.precision));
        let widest = widths
            .iter()
            .enumerate()
            .filter_map(|(i, w)| w.map(|w| (i, w)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let rounds = estimates.rounds;
        let stop = if precise && rounds >= self.min_rounds {
            Some(StopReason::Precise)
        } else if rounds >= self.max_rounds {
            Some(StopReason::MaxRounds)
        } else if self.budget.is_some_and(|b| elapsed >= b) {
            Some(StopReason::Budget)
        } else {
            None
        };
        Verdict {
            rounds,
            precise,
            widest,
            stop,
        }
    }
}

/// Test–retest agreement of two measurements of the same models.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Retest {
    /// Number of models.
    pub n: usize,
    /// Kendall τ-b between the passes' estimates; `None` if either pass is constant.
    pub kendall_tau_b: Option<f64>,
    /// Spearman ρ between the passes' estimates; `None` if either pass is constant.
    pub spearman_rho: Option<f64>,
    /// Share in [0, 1] of models whose second estimate is within ±1 % of the first.
    pub within_1pct: f64,
    /// Same, ±2 %.
    pub within_2pct: f64,
    /// Same, ±5 %.
    pub within_5pct: f64,
    /// Share of models whose second estimate lies inside the first pass's interval.
    pub second_in_first: f64,
    /// Share of models whose first estimate lies inside the second pass's interval.
    pub first_in_second: f64,
}

fn check_intervals(pass: &'static str, v: &[Interval]) -> Result<()> {
    for (i, iv) in v.iter().enumerate() {
        let ok = [iv.low, iv.estimate, iv.high].iter().all(|x| x.is_finite())
            && iv.estimate > 0.0
            && iv.low <= iv.estimate
            && iv.estimate <= iv.high;
        if !ok {
            return Err(Error::Sample {
                place: format!("{pass} pass, model {i}"),
                problem: format!(
                    "interval {} ≤ {} ≤ {} ms is not a positive estimate inside finite bounds",
                    iv.low, iv.estimate, iv.high
                ),
            });
        }
    }
    Ok(())
}

/// Test–retest figures of two passes (`first`, `second`) over the same models in the same
/// order. Relative differences are taken against the first pass: |second − first| ≤ tol·first.
///
/// Errors when the lengths differ, with fewer than 2 models, and on an interval that is not a
/// positive estimate within finite bounds.
pub fn retest(first: &[Interval], second: &[Interval]) -> Result<Retest> {
    check_intervals("first", first)?;
    check_intervals("second", second)?;
    let a: Vec<f64> = first.iter().map(|i| i.estimate).collect();
    let b: Vec<f64> = second.iter().map(|i| i.estimate).collect();
    let corr = |r: Result<f64>| match r {
        Ok(v) => Ok(Some(v)),
        Err(Error::Constant { .. }) => Ok(None),
        Err(e) => Err(e),
    };
    let kendall_tau_b = corr(stats::kendall_tau_b(&a, &b))?;
    let spearman_rho = corr(stats::spearman_rho(&a, &b))?;
    let share = |hits: usize| hits as f64 / a.len() as f64;
    Ok(Retest {
        n: a.len(),
        kendall_tau_b,
        spearman_rho,
        within_1pct: stats::share_within(&b, &a, 0.01)?,
        within_2pct: stats::share_within(&b, &a, 0.02)?,
        within_5pct: stats::share_within(&b, &a, 0.05)?,
        second_in_first: share(
            first
                .iter()
                .zip(&b)
                .filter(|(i, x)| i.contains(**x))
                .count(),
        ),
        first_in_second: share(
            second
                .iter()
                .zip(&a)
                .filter(|(i, x)| i.contains(**x))
                .count(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ninety_five_percent_needs_six_values() {
        assert_eq!(min_values(0.95).unwrap(), 6);
        assert_eq!(min_values(0.99).unwrap(), 8);
        let e = median_ranks(5, 0.95).unwrap_err().to_string();
        assert!(e.contains("at least 6 values, got 5"), "{e}");
        let r = median_ranks(6, 0.95).unwrap();
        assert_eq!((r.low, r.high), (1, 6));
        assert!((r.coverage - (1.0 - 2.0 / 64.0)).abs() < 1e-14);
        assert!(min_values(1.0).is_err() && min_values(f64::NAN).is_err());
    }

    #[test]
    fn round_order_is_a_replayable_shuffle() {
        let a = round_order(7, 42, 3);
        assert_eq!(a, round_order(7, 42, 3));
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, (0..7).collect::<Vec<_>>());
        let differ = (0..10).filter(|&r| round_order(7, 42, r) != a).count();
        assert!(
            differ >= 8,
            "{differ} of 10 rounds differ from round 3's order"
        );
    }
}
