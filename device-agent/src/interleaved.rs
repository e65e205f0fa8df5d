//! The interleaved measurement of a set of models against a reference (`bench-set`): pin, open
//! every model once, warm each up, then time rounds until the stop rule says enough.
//!
//! Each round times the reference and every model of the set for a slice of
//! `runs_per_slice` runs, in the shuffled order of
//! [`round_order`]; after each round the estimates and the stop rule of
//! [`shiftnas_calibration::interleaved`] decide whether to go on. Every runtime behind
//! [`Backend`] works the same way. The clock is a parameter ([`Clock`]) so the loop is tested
//! on a virtual machine whose speed changes at known times.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use shiftnas_calibration::interleaved::{
    Estimates, Round, StopReason, StopRule, Verdict, estimate, round_order,
};
use shiftnas_protocol::{
    BenchSetReport, BenchSetSpec, BenchSpec, Bounds, SetEstimate, SetReference, SetRound,
    SetStopReason, Summary, SystemSnapshot, Warning,
};

use crate::bench::{self, BenchEnv, random_input};
use crate::runtime::{Backend, Model, SessionOptions};
use crate::system;

/// A model to measure: its SHA-256 (as the report names it) and its `.onnx` bytes.
#[derive(Debug, Clone, Copy)]
pub struct SetModel<'a> {
    /// Lower-case hex SHA-256.
    pub sha256: &'a str,
    /// The model file's bytes.
    pub bytes: &'a [u8],
}

/// Where the loop reads the time: the wall clock in the agent, a virtual one in tests.
pub trait Clock {
    /// Time since some fixed start.
    fn now(&self) -> Duration;
}

/// The monotonic wall clock.
#[derive(Debug, Clone, Copy)]
pub struct WallClock(Instant);

impl WallClock {
    /// A clock starting now.
    pub fn start() -> WallClock {
        WallClock(Instant::now())
    }
}

impl Clock for WallClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// The stop rule of `spec` for a set of `models` models.
///
/// # Errors
/// A precision, confidence or round count the statistics refuse (e.g. fewer than 6 minimum
/// rounds at 95 %), naming the setting.
pub fn stop_rule(spec: &BenchSetSpec, models: usize) -> Result<StopRule> {
    let rule = StopRule {
        precision: spec.precision,
        min_rounds: spec.min_rounds,
        max_rounds: spec.max_rounds,
        budget: Some(Duration::from_secs_f64(spec.budget_for(models))),
    };
    rule.validate(spec.confidence)
        .context("bench-set spec (precision, confidence, min_rounds, max_rounds)")?;
    Ok(rule)
}

/// Checks a request before anything is opened: the spec's bounds, the stop rule, and a set
/// without duplicates that does not contain its reference.
///
/// # Errors
/// The first problem, naming the field or the model.
pub fn check_request(sha256s: &[String], reference: &str, spec: &BenchSetSpec) -> Result<()> {
    spec.check(sha256s.len())
        .map_err(anyhow::Error::msg)
        .context("bench-set spec")?;
    stop_rule(spec, sha256s.len())?;
    let mut seen = HashSet::new();
    for sha in sha256s {
        if sha == reference {
            bail!(
                "model {sha} is the set's reference too; the reference is timed in every round \
                 anyway, so leave it out of the set"
            );
        }
        if !seen.insert(sha.as_str()) {
            bail!("model {sha} is in the set twice; list each model once");
        }
    }
    Ok(())
}

/// The rounds of one measurement and why they stopped.
#[derive(Debug, Clone)]
pub struct Rounds {
    /// Each round's slices.
    pub rounds: Vec<Round>,
    /// Each round's order (slot 0 the reference, slot i ≥ 1 model i − 1).
    pub orders: Vec<Vec<usize>>,
    /// The estimates after the last round.
    pub estimates: Estimates,
    /// The stop rule's last verdict (its `stop` is set).
    pub verdict: Verdict,
    /// Time the rounds took (warm-up excluded).
    pub elapsed: Duration,
    /// Each slot's device-side time of every timed run ([`Model::device_time_ms`]; empty when the
    /// runtime reports none).
    pub device_ms: Vec<Vec<f64>>,
}

/// Warms up every slot (`slots[0]` the reference, then the set's models), then times rounds
/// on `clock` until `rule` stops them.
///
/// # Errors
/// A runtime error (naming the slot), or a timed run that `clock` saw take no time.
pub fn run_rounds(
    slots: &mut [Box<dyn Model>],
    spec: &BenchSetSpec,
    rule: &StopRule,
    clock: &dyn Clock,
) -> Result<Rounds> {
    let name = |slot: usize| match slot {
        0 => "the reference".to_string(),
        i => format!("model {} of the set", i - 1),
    };
    for (slot, m) in slots.iter_mut().enumerate() {
        for _ in 0..spec.warmup {
            m.run()
                .with_context(|| format!("warming up {}", name(slot)))?;
        }
    }
    let start = clock.now();
    let (mut rounds, mut orders) = (Vec::new(), Vec::new());
    let mut device_ms = vec![Vec::new(); slots.len()];
    loop {
        let order = round_order(slots.len(), spec.seed, rounds.len());
        let mut slices = vec![Vec::with_capacity(spec.runs_per_slice); slots.len()];
        for &slot in &order {
            for _ in 0..spec.runs_per_slice {
                let t = clock.now();
                slots[slot]
                    .run()
                    .with_context(|| format!("round {}, {}", rounds.len(), name(slot)))?;
                slices[slot].push((clock.now() - t).as_secs_f64() * 1e3);
                device_ms[slot].extend(slots[slot].device_time_ms());
            }
        }
        let mut slices = slices.into_iter();
        rounds.push(Round {
            reference_ms: slices.next().unwrap_or_default(),
            models_ms: slices.collect(),
        });
        orders.push(order);
        let estimates = estimate(&rounds, spec.confidence).context(
            "a timed run took no measurable time; give the models more work or use \
             more runs per slice",
        )?;
        let elapsed = clock.now() - start;
        let verdict = rule.check(&estimates, elapsed);
        if verdict.stop.is_some() {
            return Ok(Rounds {
                rounds,
                orders,
                estimates,
                verdict,
                elapsed,
                device_ms,
            });
        }
    }
}

/// Measures `models` interleaved with `reference` under `spec` (pinned to `spec.cores` before
/// any session is created, as [`bench::measure`] does).
///
/// # Errors
/// A request outside [`check_request`], pinning refused, a model the runtime cannot open
/// (naming its SHA-256), or a runtime error.
pub fn measure_set(
    backend: &dyn Backend,
    reference: SetModel,
    models: &[SetModel],
    spec: &BenchSetSpec,
    env: &BenchEnv,
) -> Result<BenchSetReport> {
    let shas: Vec<String> = models.iter().map(|m| m.sha256.to_string()).collect();
    check_request(&shas, reference.sha256, spec)?;
    let rule = stop_rule(spec, models.len())?;
    bench::pinned(&spec.cores, || {
        let opts = SessionOptions {
            threads: spec.threads,
            spin: spec.spin,
        };
        let mut slots = Vec::with_capacity(models.len() + 1);
        for m in std::iter::once(&reference).chain(models) {
            let mut s = backend
                .open(m.bytes, opts)
                .with_context(|| format!("opening model {}", m.sha256))?;
            let n: usize = s.input_shape().iter().product();
            s.set_input(random_input(n, spec.seed))?;
            slots.push(s);
        }
        let used = bench::used_cores(&spec.cores, &env.root);
        let before = system::snapshot(&env.root, &used);
        let done = run_rounds(&mut slots, spec, &rule, &WallClock::start())?;
        let after = system::snapshot(&env.root, &used);
        let single = BenchSpec {
            threads: spec.threads,
            cores: spec.cores.clone(),
            ..BenchSpec::default()
        };
        let mut warnings = bench::warnings(&single, &before, &after, env.thermal_limit_c);
        warnings.extend(imprecise(&done, &shas, spec.precision));
        Ok(report(
            done,
            reference.sha256,
            &shas,
            spec,
            backend,
            (before, after),
            warnings,
        ))
    })
}

/// The [`Warning::Imprecise`] of rounds that stopped before every interval was precise.
fn imprecise(done: &Rounds, shas: &[String], precision: f64) -> Option<Warning> {
    (!done.verdict.precise).then(|| Warning::Imprecise {
        rounds: done.rounds.len(),
        widest_sha256: done.verdict.widest.map(|(i, _)| shas[i].clone()),
        relative_half_width: done.verdict.widest.map(|(_, w)| w),
        precision,
    })
}

fn bounds(low: f64, high: f64) -> Bounds {
    Bounds { low, high }
}

/// The wire report of finished rounds, with the system snapshots (before, after).
fn report(
    done: Rounds,
    reference: &str,
    shas: &[String],
    spec: &BenchSetSpec,
    backend: &dyn Backend,
    (before, after): (SystemSnapshot, SystemSnapshot),
    warnings: Vec<Warning>,
) -> BenchSetReport {
    let est = &done.estimates;
    let npu = |slot: usize| Summary::from_samples(&done.device_ms[slot]);
    BenchSetReport {
        models: est
            .models
            .iter()
            .zip(shas)
            .enumerate()
            .map(|(i, (m, sha))| SetEstimate {
                sha256: sha.clone(),
                estimate_ms: m.ms,
                ratio: m.ratio,
                ratio_interval: m.ratio_interval.map(|c| bounds(c.low, c.high)),
                interval_ms: m.interval_ms.map(|c| bounds(c.low, c.high)),
                relative_half_width: m.relative_half_width,
                npu_ms: npu(i + 1),
            })
            .collect(),
        reference: SetReference {
            sha256: reference.to_string(),
            median_ms: est.reference_ms,
            interval_ms: est.reference_interval.map(|c| bounds(c.low, c.high)),
            npu_ms: npu(0),
        },
        rounds_done: done.rounds.len(),
        stop: match done.verdict.stop {
            Some(StopReason::Precise) => SetStopReason::Precise,
            Some(StopReason::Budget) => SetStopReason::Budget,
            Some(StopReason::MaxRounds) | None => SetStopReason::MaxRounds,
        },
        elapsed_seconds: done.elapsed.as_secs_f64(),
        spec: BenchSetSpec {
            budget_seconds: Some(spec.budget_for(shas.len())),
            ..spec.clone()
        },
        rounds: done
            .rounds
            .into_iter()
            .zip(done.orders)
            .map(|(r, order)| SetRound {
                order,
                reference_ms: r.reference_ms,
                models_ms: r.models_ms,
            })
            .collect(),
        backend: backend.id(),
        before,
        after,
        throttled: bench::throttled(&warnings),
        warnings,
    }
}

#[cfg(test)]
mod tests;
