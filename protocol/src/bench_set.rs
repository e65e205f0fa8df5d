//! The interleaved measurement of a *set* of models against a reference model: what it asks for
//! ([`BenchSetSpec`]) and what it returns ([`BenchSetReport`]).
//!
//! Each round times every model of the set and the reference for a short slice of runs, in a
//! shuffled order; a model's estimate is the median over rounds of its slice median divided by
//! the reference's slice median in the same round, times the reference's median. The statistics
//! live in `shiftnas_calibration::interleaved`; this module only carries them over the wire.

use serde::{Deserialize, Serialize};

use crate::bench::{Backend, MAX_RUNS, MAX_THREADS, MAX_WARMUP, Warning};
use crate::stats::Summary;
use crate::system::SystemSnapshot;

/// Most models in one set, the reference excluded: the set and its reference must all be loaded
/// at once, and an agent session holds at most [`crate::MAX_LOADED_MODELS`].
pub const MAX_SET_MODELS: usize = crate::MAX_LOADED_MODELS - 1;
/// Most timed runs of one model in one round.
pub const MAX_RUNS_PER_SLICE: usize = 10_000;
/// Longest time budget of one set measurement (1 hour).
pub const MAX_BUDGET_SECONDS: f64 = 3600.0;
/// Seconds of the default budget per timed model, the reference included: the `min_seconds` of a
/// single-model [`crate::BenchSpec`], so a set costs no more time per model than measuring its
/// models one by one.
pub const BUDGET_SECONDS_PER_MODEL: f64 = 1.0;

/// How to measure a set of models interleaved with a reference (defaults: 10 warm-up runs per
/// model, 5 runs per slice, ±1 % at 95 %, 10 to 200 rounds, a budget of 1 s per model of the
/// set plus 1 s for the reference).
///
/// Missing JSON fields take the [`Default`] values; [`BenchSetSpec::check`] gives the bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BenchSetSpec {
    /// Intra-op thread count of the runtime.
    pub threads: usize,
    /// CPUs to pin the agent and the runtime's threads to; empty = no pinning.
    pub cores: Vec<usize>,
    /// Untimed runs of each model (and of the reference) before the first round.
    pub warmup: usize,
    /// Timed runs of each model in each round (its slice); the slice's median enters the ratio.
    pub runs_per_slice: usize,
    /// Stop once every model's interval is at most ±this fraction of its estimate (0.01 = ±1 %;
    /// `shiftnas_calibration::interleaved::DEFAULT_PRECISION`).
    pub precision: f64,
    /// Confidence of the intervals, in (0, 1).
    pub confidence: f64,
    /// Never stop for precision before this many rounds (at least 6 at 95 %, the fewest rounds
    /// a median interval needs).
    pub min_rounds: usize,
    /// Stop after this many rounds, precise or not.
    pub max_rounds: usize,
    /// Stop once the rounds have taken this long, precise or not (the round in progress
    /// finishes). `None`: [`BenchSetSpec::default_budget_seconds`] of the set's size.
    pub budget_seconds: Option<f64>,
    /// Let the runtime's idle threads spin.
    pub spin: bool,
    /// Seed of the random input and of the order of the models in each round.
    pub seed: u64,
}

impl Default for BenchSetSpec {
    fn default() -> Self {
        BenchSetSpec {
            threads: 1,
            cores: Vec::new(),
            warmup: 10,
            runs_per_slice: 5,
            precision: 0.01,
            confidence: 0.95,
            min_rounds: 10,
            max_rounds: 200,
            budget_seconds: None,
            spin: true,
            seed: 0,
        }
    }
}

impl BenchSetSpec {
    /// The default budget for a set of `models` (the reference excluded):
    /// [`BUDGET_SECONDS_PER_MODEL`] × (`models` + 1), capped at [`MAX_BUDGET_SECONDS`].
    pub fn default_budget_seconds(models: usize) -> f64 {
        (BUDGET_SECONDS_PER_MODEL * (models as f64 + 1.0)).min(MAX_BUDGET_SECONDS)
    }

    /// The budget this spec gives a set of `models`: `budget_seconds`, or the default.
    pub fn budget_for(&self, models: usize) -> f64 {
        self.budget_seconds
            .unwrap_or_else(|| Self::default_budget_seconds(models))
    }

    /// Checks every field against its bound for a set of `models` (the reference excluded):
    /// 1..=[`MAX_SET_MODELS`] models, `threads` 1..=[`MAX_THREADS`], `warmup` ≤ [`MAX_WARMUP`],
    /// `runs_per_slice` 1..=[`MAX_RUNS_PER_SLICE`], `precision` and `confidence` in (0, 1),
    /// 1 ≤ `min_rounds` ≤ `max_rounds`, `budget_seconds` in (0, [`MAX_BUDGET_SECONDS`]], and at
    /// most [`MAX_RUNS`] timed runs in all (`max_rounds` × (`models` + 1) × `runs_per_slice`),
    /// which bounds the report's size like a single bench's.
    ///
    /// # Errors
    /// A message naming the field, the value and its bound.
    pub fn check(&self, models: usize) -> Result<(), String> {
        if !(1..=MAX_SET_MODELS).contains(&models) {
            return Err(format!(
                "a set must have between 1 and {MAX_SET_MODELS} models besides the reference, \
                 got {models}; split a larger set into several measurements"
            ));
        }
        if !(1..=MAX_THREADS).contains(&self.threads) {
            return Err(format!(
                "threads must be between 1 and {MAX_THREADS}, got {}",
                self.threads
            ));
        }
        if self.warmup > MAX_WARMUP {
            return Err(format!(
                "warmup must be at most {MAX_WARMUP}, got {}",
                self.warmup
            ));
        }
        if !(1..=MAX_RUNS_PER_SLICE).contains(&self.runs_per_slice) {
            return Err(format!(
                "runs_per_slice must be between 1 and {MAX_RUNS_PER_SLICE}, got {}",
                self.runs_per_slice
            ));
        }
        for (name, v, eg) in [
            ("precision", self.precision, "0.01 for ±1 %"),
            ("confidence", self.confidence, "0.95"),
        ] {
            if !(v.is_finite() && v > 0.0 && v < 1.0) {
                return Err(format!(
                    "{name} must be a fraction strictly between 0 and 1 (e.g. {eg}), got {v}"
                ));
            }
        }
        if self.min_rounds == 0 || self.max_rounds < self.min_rounds {
            return Err(format!(
                "rounds must satisfy 1 ≤ min_rounds ≤ max_rounds, got min_rounds {} and \
                 max_rounds {}",
                self.min_rounds, self.max_rounds
            ));
        }
        let runs = (self.max_rounds as u128) * (models as u128 + 1) * self.runs_per_slice as u128;
        if runs > MAX_RUNS as u128 {
            return Err(format!(
                "max_rounds {} × {} models (reference included) × runs_per_slice {} = {runs} \
                 timed runs, more than the {MAX_RUNS} one measurement may take; lower max_rounds \
                 or runs_per_slice",
                self.max_rounds,
                models + 1,
                self.runs_per_slice
            ));
        }
        if let Some(b) = self.budget_seconds
            && !(b.is_finite() && b > 0.0 && b <= MAX_BUDGET_SECONDS)
        {
            return Err(format!(
                "budget_seconds must be in (0, {MAX_BUDGET_SECONDS}], got {b}"
            ));
        }
        Ok(())
    }
}

/// Why a set measurement stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SetStopReason {
    /// Every model's interval reached ±precision (after `min_rounds`).
    Precise,
    /// The time budget ran out first.
    Budget,
    /// `max_rounds` were done first.
    MaxRounds,
}

impl std::fmt::Display for SetStopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SetStopReason::Precise => "precise",
            SetStopReason::Budget => "budget",
            SetStopReason::MaxRounds => "max-rounds",
        })
    }
}

/// The bounds of a confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bounds {
    /// Lower bound.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
}

/// One model's drift-corrected estimate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetEstimate {
    /// The model's SHA-256, as in the request.
    pub sha256: String,
    /// The estimate in ms: `ratio` × the reference's median.
    pub estimate_ms: f64,
    /// Median over rounds of (this model's slice median / the reference's, same round).
    pub ratio: f64,
    /// The distribution-free interval of the median of the per-round ratios at the spec's
    /// confidence; `None` with too few rounds (fewer than 6 at 95 %).
    pub ratio_interval: Option<Bounds>,
    /// `ratio_interval` × the reference's median, ms.
    pub interval_ms: Option<Bounds>,
    /// (high − low) / (2 · estimate) of either interval: the "±" as a fraction.
    pub relative_half_width: Option<f64>,
    /// The NPU's own time per run over all its timed runs (`--runtime rknn`; left out when the
    /// runtime reports none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub npu_ms: Option<Summary>,
}

/// The reference model of a set measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetReference {
    /// Its SHA-256.
    pub sha256: String,
    /// Median over rounds of its slice medians, ms: the scale of every estimate.
    pub median_ms: f64,
    /// The interval of that median over rounds (machine drift widens it; it does not enter the
    /// models' intervals); `None` with too few rounds.
    pub interval_ms: Option<Bounds>,
    /// The NPU's own time per run, as [`SetEstimate::npu_ms`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub npu_ms: Option<Summary>,
}

/// The raw timed runs of one round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetRound {
    /// The order the slices ran in: 0 is the reference, i ≥ 1 the set's model i − 1.
    pub order: Vec<usize>,
    /// The reference's slice, ms.
    pub reference_ms: Vec<f64>,
    /// Each model's slice, ms, in the order of the request's `sha256s`.
    pub models_ms: Vec<Vec<f64>>,
}

/// The result of an interleaved set measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchSetReport {
    /// One estimate per model, in the order of the request's `sha256s`.
    pub models: Vec<SetEstimate>,
    /// The reference.
    pub reference: SetReference,
    /// Rounds done.
    pub rounds_done: usize,
    /// Why measuring stopped.
    pub stop: SetStopReason,
    /// Seconds the rounds took (warm-up excluded).
    pub elapsed_seconds: f64,
    /// The spec as measured, `budget_seconds` filled in.
    pub spec: BenchSetSpec,
    /// Every round's raw slices, in order.
    pub rounds: Vec<SetRound>,
    /// Runtime that ran the models.
    pub backend: Backend,
    /// Governors, frequencies and temperatures just before the warm-up.
    pub before: SystemSnapshot,
    /// The same, just after the last round.
    pub after: SystemSnapshot,
    /// A thermal zone reached the limit or a used core's frequency dropped: re-measure.
    pub throttled: bool,
    /// Everything that makes the numbers less trustworthy, each with its fix.
    pub warnings: Vec<Warning>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Request, Response, decode_line, encode_line};

    #[test]
    fn default_budget_is_a_second_per_timed_model() {
        assert_eq!(BenchSetSpec::default_budget_seconds(3), 4.0);
        assert_eq!(BenchSetSpec::default().budget_for(1), 2.0);
        let s = BenchSetSpec {
            budget_seconds: Some(7.5),
            ..BenchSetSpec::default()
        };
        assert_eq!(s.budget_for(40), 7.5);
        assert_eq!(
            BenchSetSpec::default_budget_seconds(MAX_SET_MODELS),
            64.0,
            "the largest set stays far below the cap"
        );
    }

    #[test]
    fn set_spec_bounds_name_the_field() {
        assert_eq!(BenchSetSpec::default().check(3), Ok(()));
        let bad = |models: usize, f: fn(&mut BenchSetSpec)| {
            let mut s = BenchSetSpec::default();
            f(&mut s);
            s.check(models).unwrap_err()
        };
        assert!(bad(0, |_| ()).starts_with("a set must have between 1 and 63 models"));
        assert!(bad(64, |_| ()).contains("got 64"));
        assert!(bad(2, |s| s.threads = 0).starts_with("threads must be between 1 and 64"));
        assert!(bad(2, |s| s.warmup = MAX_WARMUP + 1).starts_with("warmup must be at most"));
        assert!(bad(2, |s| s.runs_per_slice = 0).starts_with("runs_per_slice must be between"));
        assert!(bad(2, |s| s.runs_per_slice = 10_001).contains("got 10001"));
        assert!(bad(2, |s| s.precision = 0.0).starts_with("precision must be a fraction"));
        assert!(bad(2, |s| s.precision = f64::NAN).starts_with("precision"));
        assert!(bad(2, |s| s.confidence = 1.0).starts_with("confidence must be a fraction"));
        assert!(bad(2, |s| s.min_rounds = 0).contains("min_rounds 0"));
        assert!(bad(2, |s| s.max_rounds = 9).contains("max_rounds 9"));
        assert!(bad(2, |s| s.budget_seconds = Some(0.0)).starts_with("budget_seconds"));
        assert!(bad(2, |s| s.budget_seconds = Some(3601.0)).contains("got 3601"));
        assert!(bad(2, |s| s.budget_seconds = Some(f64::INFINITY)).starts_with("budget_seconds"));
        // 1000 rounds × 3 timed models × 1000 runs = 3e6 > 1e6 runs.
        let e = bad(2, |s| {
            s.max_rounds = 1000;
            s.runs_per_slice = 1000;
        });
        assert!(e.contains("3000000 timed runs"), "{e}");
        let edge = BenchSetSpec {
            threads: MAX_THREADS,
            warmup: MAX_WARMUP,
            runs_per_slice: MAX_RUNS_PER_SLICE,
            min_rounds: 1,
            max_rounds: 1,
            budget_seconds: Some(MAX_BUDGET_SECONDS),
            ..BenchSetSpec::default()
        };
        assert_eq!(edge.check(MAX_SET_MODELS), Ok(()));
    }

    #[test]
    fn imprecise_warning_names_the_widest_model_and_the_fix() {
        let w = Warning::Imprecise {
            rounds: 12,
            widest_sha256: Some("0123456789abcdef0123".into()),
            relative_half_width: Some(0.034),
            precision: 0.01,
        };
        let s = w.to_string();
        assert!(
            s.starts_with(
                "after 12 rounds model 0123456789abcdef is known to ±3.40 % only (asked ±1.00 %)"
            ) && s.contains("--budget-seconds"),
            "{s}"
        );
        let v = serde_json::to_value(&w).unwrap();
        assert_eq!(v["type"], "imprecise");
        let none = Warning::Imprecise {
            rounds: 3,
            widest_sha256: None,
            relative_half_width: None,
            precision: 0.02,
        };
        assert!(
            none.to_string()
                .starts_with("only 3 rounds: too few for any interval (asked ±2.00 %)")
        );
    }

    #[test]
    fn bench_set_messages_round_trip_in_kebab_case() {
        let req: Request = decode_line(
            r#"{"type":"bench-set","sha256s":["aa","bb"],"reference":"cc","spec":{"precision":0.02}}"#,
        )
        .unwrap();
        let Request::BenchSet {
            sha256s,
            reference,
            spec,
        } = &req
        else {
            panic!("not bench-set: {req:?}")
        };
        assert_eq!((sha256s.len(), reference.as_str()), (2, "cc"));
        assert_eq!(spec.precision, 0.02);
        assert_eq!(spec.runs_per_slice, 5, "missing fields take defaults");
        assert_eq!(
            decode_line::<Request>(&encode_line(&req).unwrap()).unwrap(),
            req
        );

        let b = Bounds {
            low: 1.0,
            high: 1.5,
        };
        let report = BenchSetReport {
            models: vec![SetEstimate {
                sha256: "aa".into(),
                estimate_ms: 2.5,
                ratio: 1.25,
                ratio_interval: Some(b),
                interval_ms: Some(Bounds {
                    low: 2.0,
                    high: 3.0,
                }),
                relative_half_width: Some(0.2),
                npu_ms: None,
            }],
            reference: SetReference {
                sha256: "cc".into(),
                median_ms: 2.0,
                interval_ms: None,
                npu_ms: None,
            },
            rounds_done: 1,
            stop: SetStopReason::MaxRounds,
            elapsed_seconds: 0.5,
            spec: BenchSetSpec::default(),
            rounds: vec![SetRound {
                order: vec![1, 0],
                reference_ms: vec![2.0],
                models_ms: vec![vec![2.5]],
            }],
            backend: Backend {
                name: crate::BackendName::Ort,
                version: "1.23.2".into(),
            },
            before: SystemSnapshot::default(),
            after: SystemSnapshot::default(),
            throttled: false,
            warnings: vec![Warning::NotPinned],
        };
        let line = encode_line(&Response::BenchSet(report.clone())).unwrap();
        assert!(
            line.starts_with(r#"{"type":"bench-set","models":"#),
            "{line}"
        );
        assert!(line.contains(r#""stop":"max-rounds""#), "{line}");
        assert_eq!(
            decode_line::<Response>(&line).unwrap(),
            Response::BenchSet(report)
        );
    }
}
