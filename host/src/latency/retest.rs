//! Test–retest agreement of two measuring passes over the same models (`shiftnas board noise`):
//! do the numbers order the models the same way, how far apart are they, and do the intervals of
//! one pass hold the other's estimates? A board whose passes disagree orders a Pareto front by
//! when each candidate was measured, not by how fast it is.

use anyhow::{Result, ensure};
use serde::Serialize;
use shiftnas_calibration::stats::{kendall_tau_b, share_within, spearman_rho};

use super::Estimate;

/// Kendall τ-b between the two passes a board must reach to be fit for a search.
pub const FIT_KENDALL_TAU_B: f64 = 0.8;
/// Share of models whose two estimates agree within ±2 % that a board must reach.
pub const FIT_WITHIN_2PCT: f64 = 0.95;

/// How well a second pass repeats the first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestRetest {
    /// Models measured in both passes.
    pub n: usize,
    /// Kendall τ-b between the passes (`None` when a pass gave every model the same number).
    pub kendall_tau_b: Option<f64>,
    /// Spearman ρ between the passes (`None` likewise).
    pub spearman_rho: Option<f64>,
    /// Share of models whose second estimate is within ±1 % of the first.
    pub within_1pct: f64,
    /// … within ±2 %.
    pub within_2pct: f64,
    /// … within ±5 %.
    pub within_5pct: f64,
    /// Share of estimates that fall inside the other pass's interval, counting both directions
    /// over the models that have an interval in both passes; `None` when none has.
    pub inside_other_interval: Option<f64>,
}

impl TestRetest {
    /// Whether the board repeats itself well enough to rank a search's candidates: τ-b of at
    /// least [`FIT_KENDALL_TAU_B`] and at least [`FIT_WITHIN_2PCT`] of the models within ±2 %.
    pub fn fit_for_search(&self) -> bool {
        self.kendall_tau_b.is_some_and(|t| t >= FIT_KENDALL_TAU_B)
            && self.within_2pct >= FIT_WITHIN_2PCT
    }
}

/// Compares two passes over the same models, in the same order. Relative differences are taken
/// against the first pass.
///
/// # Errors
/// Passes of different lengths, fewer than 2 models, a non-finite or zero number.
pub fn test_retest(first: &[Estimate], second: &[Estimate]) -> Result<TestRetest> {
    ensure!(
        first.len() == second.len(),
        "test–retest needs the same models in both passes, got {} and {}",
        first.len(),
        second.len()
    );
    let a: Vec<f64> = first.iter().map(|e| e.value).collect();
    let b: Vec<f64> = second.iter().map(|e| e.value).collect();
    let corr = |r: shiftnas_calibration::Result<f64>| match r {
        Ok(v) => Ok(Some(v)),
        Err(shiftnas_calibration::Error::Constant { .. }) => Ok(None),
        Err(e) => Err(e),
    };
    let (mut checks, mut inside) = (0usize, 0usize);
    for (x, y) in first.iter().zip(second) {
        if let (Some(ix), Some(iy)) = (x.interval, y.interval) {
            checks += 2;
            inside += usize::from(iy.contains(x.value)) + usize::from(ix.contains(y.value));
        }
    }
    Ok(TestRetest {
        n: a.len(),
        kendall_tau_b: corr(kendall_tau_b(&a, &b))?,
        spearman_rho: corr(spearman_rho(&a, &b))?,
        within_1pct: share_within(&b, &a, 0.01)?,
        within_2pct: share_within(&b, &a, 0.02)?,
        within_5pct: share_within(&b, &a, 0.05)?,
        inside_other_interval: (checks > 0).then(|| inside as f64 / checks as f64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::Interval;

    fn with(value: f64, low: f64, high: f64) -> Estimate {
        Estimate {
            value,
            interval: Some(Interval { low, high }),
        }
    }

    /// Worked by hand: one swapped pair of four gives τ-b = (5 − 1)/6 and ρ = 1 − 6·2/(4·15);
    /// relative differences 0.5 %, 55 %, 0.67 %, 1.5 %; of the six interval checks over the
    /// three models with intervals in both passes, three hold.
    #[test]
    fn hand_worked_passes() {
        let first = [
            with(10.0, 9.9, 10.1),
            with(20.0, 19.5, 20.5),
            Estimate::point(30.0),
            with(40.0, 39.0, 41.0),
        ];
        let second = [
            with(10.05, 10.0, 10.1),
            with(31.0, 30.5, 31.5),
            with(30.2, 30.0, 30.4),
            with(40.6, 40.5, 40.7),
        ];
        let r = test_retest(&first, &second).unwrap();
        assert_eq!(r.n, 4);
        assert!(
            (r.kendall_tau_b.unwrap() - 4.0 / 6.0).abs() < 1e-12,
            "{r:?}"
        );
        assert!((r.spearman_rho.unwrap() - 0.8).abs() < 1e-12, "{r:?}");
        assert_eq!(
            (r.within_1pct, r.within_2pct, r.within_5pct),
            (0.5, 0.75, 0.75)
        );
        assert_eq!(r.inside_other_interval, Some(0.5));
        assert!(!r.fit_for_search());
    }

    #[test]
    fn a_steady_board_is_fit_and_intervals_may_be_absent() {
        let first: Vec<Estimate> = (1..=20).map(|i| Estimate::point(f64::from(i))).collect();
        let second: Vec<Estimate> = first
            .iter()
            .map(|e| Estimate::point(e.value * 1.015))
            .collect();
        let r = test_retest(&first, &second).unwrap();
        assert_eq!(r.kendall_tau_b, Some(1.0));
        assert_eq!((r.within_1pct, r.within_2pct), (0.0, 1.0));
        assert_eq!(r.inside_other_interval, None);
        assert!(r.fit_for_search());
        // A pass that gave every model the same number has no rank correlation.
        let flat = vec![Estimate::point(1.0); 20];
        let r = test_retest(&first, &flat).unwrap();
        assert_eq!((r.kendall_tau_b, r.spearman_rho), (None, None));
        assert!(!r.fit_for_search());
    }

    #[test]
    fn mismatched_or_short_passes_are_refused() {
        let one = [Estimate::point(1.0)];
        let two = [Estimate::point(1.0), Estimate::point(2.0)];
        let e = format!("{:#}", test_retest(&one, &two).unwrap_err());
        assert!(e.contains("got 1 and 2"), "{e}");
        assert!(test_retest(&one, &one).is_err());
        let zero = [Estimate::point(0.0), Estimate::point(2.0)];
        assert!(test_retest(&zero, &two).is_err());
    }
}
