//! A set measured interleaved over the pool ([`Pool::measure_set`]): the set is split into one
//! part per live board (more when a part would exceed [`MAX_SET_MODELS`]), every part is one
//! `bench-set` that also times the reference, and the parts' estimates are rejoined in the set's
//! order on one common scale.
//!
//! Within a part each model's number is a *ratio* to the reference timed in the same rounds, so
//! drift cancels. Parts measured on different boards (or at different times) see the reference
//! at slightly different speeds; multiplying every ratio by the same scale keeps the order of
//! the whole set that of the ratios. The scale is the caller's (the board's scale stored by its
//! first set, so that sets measured at different times share it: [`crate::latency::cached`]) or
//! else the median of the parts' reference medians.

use std::sync::{Arc, Mutex};

use anyhow::{Result, bail};
use shiftnas_protocol::{
    BenchSetReport, BenchSetSpec, Bounds, MAX_SET_MODELS, SetEstimate, SystemSnapshot,
};

use super::{Job, Measured, Pool, PoolEvent, PoolOptions, Unit, measure_cool};
use crate::boards::board::{Board, spec_for};
use crate::boards::config::BoardConfig;

/// The set spec a board's configuration asks for: its threads, cores and warm-up from
/// boards.toml, the protocol's defaults for the rest.
pub fn set_spec_for(cfg: &BoardConfig) -> BenchSetSpec {
    let single = spec_for(cfg);
    BenchSetSpec {
        threads: single.threads,
        cores: single.cores,
        warmup: single.warmup,
        ..BenchSetSpec::default()
    }
}

/// One part of a set: the models at `indices` of the set, and the reference.
pub struct SetPart<'a> {
    jobs: Vec<&'a Job>,
    reference: &'a Job,
    spec: &'a BenchSetSpec,
}

impl Unit for SetPart<'_> {
    type Report = BenchSetReport;

    fn name(&self) -> String {
        match (self.jobs.first(), self.jobs.last()) {
            (Some(a), Some(b)) if self.jobs.len() > 1 => {
                format!(
                    "set part {}…{} ({} models)",
                    a.name,
                    b.name,
                    self.jobs.len()
                )
            }
            _ => format!(
                "set part {}",
                self.jobs.first().map_or("", |j| j.name.as_str())
            ),
        }
    }

    /// Loads the models, then the reference *last*: the agent keeps the newest loads, so the
    /// reference is held even when earlier sets filled its model store.
    fn run(
        &self,
        board: &mut dyn Board,
        opts: &PoolOptions,
        events: &Mutex<Vec<PoolEvent>>,
    ) -> Result<BenchSetReport> {
        for j in &self.jobs {
            board.load(&j.name, &j.model, &j.sha256)?;
        }
        let r = self.reference;
        board.load(&r.name, &r.model, &r.sha256)?;
        let own = set_spec_for(board.config());
        let spec = BenchSetSpec {
            threads: own.threads,
            cores: own.cores,
            warmup: own.warmup,
            ..self.spec.clone()
        };
        let shas: Vec<String> = self.jobs.iter().map(|j| j.sha256.clone()).collect();
        let name = self.name();
        measure_cool(board, opts, events, &name, |b| {
            let report = b.bench_set(&shas, &r.sha256, &spec)?;
            check_report(b.name(), &report, &shas, &r.sha256)?;
            let hot = set_too_hot(&report, b.config().thermal_limit_c);
            Ok((report, hot))
        })
    }
}

/// Refuses a report that does not answer the request (other models, order or reference).
fn check_report(board: &str, r: &BenchSetReport, shas: &[String], reference: &str) -> Result<()> {
    let got: Vec<&str> = r.models.iter().map(|m| m.sha256.as_str()).collect();
    if got != shas.iter().map(String::as_str).collect::<Vec<_>>() || r.reference.sha256 != reference
    {
        bail!(
            "board {board:?} answered a bench-set for other models or another reference than \
             asked; redeploy its agent (`shiftnas board check {board}`)"
        );
    }
    Ok(())
}

/// Why a set report must be discarded for heat, as [`crate::boards::board::too_hot`] does for
/// one model: a thermal zone at or above `limit_c` before or after, or the agent's throttled flag.
fn set_too_hot(r: &BenchSetReport, limit_c: f64) -> Option<String> {
    let zones = |s: &SystemSnapshot| s.thermal.clone();
    if let Some(z) = zones(&r.before)
        .into_iter()
        .chain(zones(&r.after))
        .find(|z| z.temp_c >= limit_c)
    {
        return Some(format!(
            "thermal zone {} ({}) at {:.1} °C ≥ {limit_c:.0} °C",
            z.zone, z.kind, z.temp_c
        ));
    }
    r.throttled
        .then(|| "the agent reported throttling (a zone hot or a clock dropped)".to_string())
}

/// One model's result of a set measurement.
#[derive(Debug, Clone)]
pub struct SetMeasured {
    /// The board that measured its part.
    pub board: String,
    /// That board's fingerprint.
    pub fingerprint: String,
    /// Its estimate, ms, on the set's common scale: `ratio` × `scale_ms`.
    pub estimate_ms: f64,
    /// Its interval, ms, on the same scale; `None` with too few rounds.
    pub interval_ms: Option<Bounds>,
    /// Its estimate as the part's board reported it (the part's own reference scale).
    pub estimate: SetEstimate,
    /// The common scale of the whole set, ms: the caller's, or the median of the parts'
    /// reference medians.
    pub scale_ms: f64,
    /// The reference's SHA-256.
    pub reference_sha256: String,
    /// The report of its part (shared by the part's models).
    pub report: Arc<BenchSetReport>,
    /// Attempts its part took.
    pub attempts: usize,
}

/// Splits `n` models into `parts` contiguous runs of nearly equal size (the first ones longer).
fn split(n: usize, parts: usize) -> Vec<std::ops::Range<usize>> {
    let parts = parts.clamp(1, n.max(1));
    let (base, extra) = (n / parts, n % parts);
    let mut start = 0;
    (0..parts)
        .map(|p| {
            let len = base + usize::from(p < extra);
            let r = start..start + len;
            start += len;
            r
        })
        .filter(|r| !r.is_empty())
        .collect()
}

/// The median; NaN for no values (every part failed: no estimate uses it then).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

impl Pool {
    /// Measures `jobs` as one interleaved set against `reference`: one part per live board (at
    /// most [`MAX_SET_MODELS`] models each), every part timing the reference too, the estimates
    /// rejoined in job order on one common scale: `scale_ms` when given, else the median of the
    /// parts' reference medians (see the module documentation). `spec` gives the rounds,
    /// precision, confidence, budget and seed; each board's threads, cores and warm-up come from
    /// its configuration ([`set_spec_for`]).
    ///
    /// A part whose board fails is measured again on another board, as [`Pool::measure`] does
    /// for one model; when a part fails for good, each of its models gets the error.
    pub fn measure_set(
        &mut self,
        jobs: &[Job],
        reference: &Job,
        spec: &BenchSetSpec,
        scale_ms: Option<f64>,
    ) -> Vec<Result<SetMeasured>> {
        if jobs.is_empty() {
            return Vec::new();
        }
        let parts = self
            .live_boards()
            .max(jobs.len().div_ceil(MAX_SET_MODELS))
            .max(1);
        let ranges = split(jobs.len(), parts);
        let units: Vec<SetPart<'_>> = ranges
            .iter()
            .map(|r| SetPart {
                jobs: jobs[r.clone()].iter().collect(),
                reference,
                spec,
            })
            .collect();
        let results = self.run_units(&units);
        let scale_ms = scale_ms.unwrap_or_else(|| {
            median(
                results
                    .iter()
                    .flatten()
                    .map(|m| m.report.reference.median_ms)
                    .collect(),
            )
        });
        let mut out = Vec::with_capacity(jobs.len());
        for (range, result) in ranges.iter().zip(results) {
            match result {
                Ok(Measured {
                    board,
                    fingerprint,
                    report,
                    attempts,
                }) => {
                    let report = Arc::new(report);
                    for e in &report.models {
                        out.push(Ok(SetMeasured {
                            board: board.clone(),
                            fingerprint: fingerprint.clone(),
                            estimate_ms: e.ratio * scale_ms,
                            interval_ms: e.ratio_interval.map(|b| Bounds {
                                low: b.low * scale_ms,
                                high: b.high * scale_ms,
                            }),
                            estimate: e.clone(),
                            scale_ms,
                            reference_sha256: reference.sha256.clone(),
                            report: Arc::clone(&report),
                            attempts,
                        }));
                    }
                }
                Err(e) => {
                    let msg = format!("{e:#}");
                    for j in &jobs[range.clone()] {
                        out.push(Err(anyhow::anyhow!("{}: {msg}", j.name)));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_contiguous_and_even() {
        assert_eq!(split(5, 2), vec![0..3, 3..5]);
        assert_eq!(split(2, 3), vec![0..1, 1..2]);
        assert_eq!(split(4, 1), vec![0..4]);
        let r = split(200, 4);
        assert_eq!(r.iter().map(|r| r.len()).collect::<Vec<_>>(), [50; 4]);
    }
}
