//! The interleaved loop on a stand-in machine: stand-in models whose run times are known
//! multiples of a "machine speed" that changes at known (virtual) times, read on a virtual
//! clock, so every expected ratio is exact and nothing depends on this machine's load.

use std::cell::Cell;
use std::rc::Rc;

use shiftnas_calibration::interleaved::{DEFAULT_CONFIDENCE, DEFAULT_PRECISION, StopRule};
use shiftnas_protocol::{Backend as BackendId, BackendName, TensorF32};

use super::*;

/// The stand-in machine: a virtual clock, a speed profile (a run of `base` ms takes
/// `base × speed(now)`), and seeded log-uniform noise of ±`noise` (a factor in
/// [e^−noise, e^noise)).
struct StandInMachine {
    now: Cell<Duration>,
    speed: fn(f64) -> f64,
    noise: f64,
    draws: Cell<u64>,
}

impl StandInMachine {
    fn new(speed: fn(f64) -> f64, noise: f64) -> Rc<StandInMachine> {
        Rc::new(StandInMachine {
            now: Cell::new(Duration::ZERO),
            speed,
            noise,
            draws: Cell::new(0),
        })
    }

    /// Runs `base_ms` of work: advances the clock by its time at the current speed.
    fn work(&self, base_ms: f64) {
        let k = self.draws.get();
        self.draws.set(k + 1);
        let u = f64::from(random_input(1, 0x5EED ^ k.wrapping_mul(0x9E37_79B9))[0]);
        let ms = base_ms * (self.speed)(self.now.get().as_secs_f64()) * (self.noise * u).exp();
        self.now
            .set(self.now.get() + Duration::from_secs_f64(ms / 1e3));
    }
}

impl Clock for Rc<StandInMachine> {
    fn now(&self) -> Duration {
        self.now.get()
    }
}

/// A stand-in model: `base_ms` of work per run on the stand-in machine; counts its runs.
struct StandInModel {
    machine: Rc<StandInMachine>,
    base_ms: f64,
    runs: Rc<Cell<usize>>,
}

impl Model for StandInModel {
    fn input_name(&self) -> &str {
        "input"
    }
    fn input_shape(&self) -> &[usize] {
        &[1, 4]
    }
    fn set_input(&mut self, data: Vec<f32>) -> Result<()> {
        anyhow::ensure!(data.len() == 4, "stand-in input of {} values", data.len());
        Ok(())
    }
    fn run(&mut self) -> Result<()> {
        self.runs.set(self.runs.get() + 1);
        self.machine.work(self.base_ms);
        Ok(())
    }
    fn run_output(&mut self) -> Result<TensorF32> {
        bail!("the stand-in model has no outputs")
    }
}

/// Each slot's run counter.
type Counters = Vec<Rc<Cell<usize>>>;

/// Slots on `machine`: the reference at `reference_ms`, then one model per `models_ms`.
fn slots(
    machine: &Rc<StandInMachine>,
    reference_ms: f64,
    models_ms: &[f64],
) -> (Vec<Box<dyn Model>>, Counters) {
    std::iter::once(reference_ms)
        .chain(models_ms.iter().copied())
        .map(|base_ms| {
            let runs = Rc::new(Cell::new(0));
            let m: Box<dyn Model> = Box::new(StandInModel {
                machine: Rc::clone(machine),
                base_ms,
                runs: Rc::clone(&runs),
            });
            (m, runs)
        })
        .unzip()
}

fn rule(spec: &BenchSetSpec, models: usize) -> StopRule {
    stop_rule(spec, models).unwrap()
}

const REFERENCE_MS: f64 = 2.0;
const MODELS_MS: [f64; 3] = [1.0, 3.4, 6.4];

/// Speed 1 for 2 s, then 1.8× slower (another process, a lower clock) for 2 s, then recovering
/// linearly to 1.2 by 5 s.
fn drifting(t: f64) -> f64 {
    if t < 2.0 {
        1.0
    } else if t < 4.0 {
        1.8
    } else {
        (1.8 - 0.6 * (t - 4.0)).max(1.2)
    }
}

#[test]
fn spec_defaults_are_the_statistics_defaults() {
    let spec = BenchSetSpec::default();
    let rule = StopRule::default();
    assert_eq!(spec.precision, DEFAULT_PRECISION);
    assert_eq!(spec.confidence, DEFAULT_CONFIDENCE);
    assert_eq!(
        (spec.min_rounds, spec.max_rounds),
        (rule.min_rounds, rule.max_rounds)
    );
}

#[test]
fn without_drift_or_noise_the_estimates_are_exact_and_stop_at_min_rounds() {
    let machine = StandInMachine::new(|_| 1.0, 0.0);
    let (mut s, runs) = slots(&machine, REFERENCE_MS, &MODELS_MS);
    let spec = BenchSetSpec {
        warmup: 3,
        ..BenchSetSpec::default()
    };
    let done = run_rounds(&mut s, &spec, &rule(&spec, 3), &machine).unwrap();
    assert_eq!(done.verdict.stop, Some(StopReason::Precise));
    assert_eq!(done.rounds.len(), spec.min_rounds);
    for (m, base) in done.estimates.models.iter().zip(MODELS_MS) {
        assert!((m.ratio - base / REFERENCE_MS).abs() < 1e-6, "{m:?}");
        assert!((m.ms - base).abs() < 1e-5, "{m:?}");
    }
    // Each slot: the warm-up, then one slice per round; the orders are round_order's.
    for r in &runs {
        assert_eq!(r.get(), 3 + spec.min_rounds * spec.runs_per_slice);
    }
    for (t, (order, round)) in done.orders.iter().zip(&done.rounds).enumerate() {
        assert_eq!(*order, round_order(4, spec.seed, t));
        assert!(
            round
                .models_ms
                .iter()
                .all(|s| s.len() == spec.runs_per_slice)
        );
    }
    // The virtual seconds of the rounds: 10 rounds × 5 runs × 12.8 ms.
    assert!(
        (done.elapsed.as_secs_f64() - 0.64).abs() < 1e-6,
        "{:?}",
        done.elapsed
    );
}

#[test]
fn drift_cancels_in_the_ratios_and_the_intervals_hold_the_true_ratios() {
    let machine = StandInMachine::new(drifting, 0.05);
    let (mut s, _) = slots(&machine, REFERENCE_MS, &MODELS_MS);
    let spec = BenchSetSpec {
        budget_seconds: Some(60.0),
        max_rounds: 1000,
        ..BenchSetSpec::default()
    };
    let done = run_rounds(&mut s, &spec, &rule(&spec, 3), &machine).unwrap();
    assert_eq!(
        done.verdict.stop,
        Some(StopReason::Precise),
        "{:?}",
        done.verdict
    );
    // The drift happened during the rounds: the reference's slice medians span the 1.8× step.
    let medians: Vec<f64> = done
        .rounds
        .iter()
        .map(|r| {
            let mut v = r.reference_ms.clone();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        })
        .collect();
    let (lo, hi) = medians
        .iter()
        .fold((f64::MAX, 0.0_f64), |(l, h), &m| (l.min(m), h.max(m)));
    assert!(hi / lo > 1.6, "no drift inside the rounds: {lo} to {hi} ms");
    for (i, (m, base)) in done.estimates.models.iter().zip(MODELS_MS).enumerate() {
        let truth = base / REFERENCE_MS;
        let ci = m.ratio_interval.expect("enough rounds for an interval");
        assert!(
            ci.low <= truth && truth <= ci.high,
            "model {i}: true ratio {truth} outside [{}, {}]",
            ci.low,
            ci.high
        );
        let w = m.relative_half_width.unwrap();
        assert!(w <= spec.precision, "model {i}: ±{w}");
        assert!(
            (m.ratio / truth - 1.0).abs() <= 2.0 * spec.precision,
            "model {i}: ratio {} vs true {truth}",
            m.ratio
        );
    }

    // The same machine timed one model at a time (today's `bench`: each alone for its share of
    // the time) ranks the models by when they ran: the drift becomes a 30 %+ error.
    let machine = StandInMachine::new(drifting, 0.05);
    let (mut s, _) = slots(&machine, REFERENCE_MS, &MODELS_MS);
    let share = done.elapsed / 4;
    let alone: Vec<f64> = s
        .iter_mut()
        .map(|m| {
            let (start, mut v) = (machine.now(), Vec::new());
            while machine.now() - start < share {
                let t = machine.now();
                m.run().unwrap();
                v.push((machine.now() - t).as_secs_f64() * 1e3);
            }
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        })
        .collect();
    let worst = MODELS_MS
        .iter()
        .zip(&alone[1..])
        .map(|(base, ms)| (ms / alone[0] / (base / REFERENCE_MS) - 1.0).abs())
        .fold(0.0, f64::max);
    assert!(
        worst > 0.3,
        "one at a time, the worst ratio error is only {worst}"
    );
}

#[test]
fn limits_stop_an_imprecise_measurement_and_say_so() {
    // The budget ends it after the first round (12.8 ms × 5 runs > 10 ms): no interval yet.
    let machine = StandInMachine::new(|_| 1.0, 0.05);
    let (mut s, _) = slots(&machine, REFERENCE_MS, &MODELS_MS);
    let spec = BenchSetSpec {
        budget_seconds: Some(0.01),
        ..BenchSetSpec::default()
    };
    let done = run_rounds(&mut s, &spec, &rule(&spec, 3), &machine).unwrap();
    assert_eq!(
        (done.verdict.stop, done.rounds.len()),
        (Some(StopReason::Budget), 1)
    );
    let shas: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
    assert_eq!(
        imprecise(&done, &shas, 0.01),
        Some(Warning::Imprecise {
            rounds: 1,
            widest_sha256: None,
            relative_half_width: None,
            precision: 0.01
        })
    );
    // A precision no noisy machine reaches: the round limit ends it, naming the widest model.
    let spec = BenchSetSpec {
        precision: 1e-9,
        min_rounds: 8,
        max_rounds: 12,
        ..BenchSetSpec::default()
    };
    let done = run_rounds(&mut s, &spec, &rule(&spec, 3), &machine).unwrap();
    assert_eq!(
        (done.verdict.stop, done.rounds.len()),
        (Some(StopReason::MaxRounds), 12)
    );
    let Some(Warning::Imprecise {
        widest_sha256: Some(sha),
        relative_half_width: Some(w),
        ..
    }) = imprecise(&done, &shas, spec.precision)
    else {
        panic!("no imprecise warning")
    };
    let (i, widest) = done.verdict.widest.unwrap();
    assert_eq!((sha, w), (shas[i].clone(), widest));
}

#[test]
fn requests_are_checked_before_anything_runs() {
    let spec = BenchSetSpec::default();
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(check_request(&set(&["a", "b"]), "r", &spec).is_ok());
    let e = |s: &[&str], r: &str, spec: &BenchSetSpec| {
        format!("{:#}", check_request(&set(s), r, spec).unwrap_err())
    };
    assert!(e(&["a", "r"], "r", &spec).contains("model r is the set's reference too"));
    assert!(e(&["a", "b", "a"], "r", &spec).contains("model a is in the set twice"));
    assert!(e(&[], "r", &spec).contains("a set must have between 1 and 63 models"));
    let few = BenchSetSpec {
        min_rounds: 5,
        ..spec.clone()
    };
    let msg = e(&["a"], "r", &few);
    assert!(
        msg.contains("min_rounds") && msg.contains("6 at 95 %"),
        "{msg}"
    );
}

/// A stand-in runtime whose models sleep for real (`measure_set` reads the wall clock): the
/// report's shape is checked, not its timing (this machine is shared).
struct SleepingBackend {
    opened: Cell<usize>,
}

struct SleepingModel(Duration);

impl Model for SleepingModel {
    fn input_name(&self) -> &str {
        "input"
    }
    fn input_shape(&self) -> &[usize] {
        &[2]
    }
    fn set_input(&mut self, _: Vec<f32>) -> Result<()> {
        Ok(())
    }
    fn run(&mut self) -> Result<()> {
        std::thread::sleep(self.0);
        Ok(())
    }
    fn run_output(&mut self) -> Result<TensorF32> {
        bail!("the stand-in model has no outputs")
    }
}

impl Backend for SleepingBackend {
    fn id(&self) -> BackendId {
        BackendId {
            name: BackendName::Tract,
            version: "stand-in".into(),
        }
    }
    fn open(&self, model: &[u8], _: SessionOptions) -> Result<Box<dyn Model>> {
        self.opened.set(self.opened.get() + 1);
        anyhow::ensure!(!model.is_empty(), "empty model");
        Ok(Box::new(SleepingModel(Duration::from_micros(
            100 * model.len() as u64,
        ))))
    }
}

#[test]
fn measure_set_opens_each_model_once_and_reports_in_request_order() {
    let backend = SleepingBackend {
        opened: Cell::new(0),
    };
    let (r, a, b) = (vec![0u8; 2], vec![0u8; 1], vec![0u8; 3]);
    let m = |sha256, bytes| SetModel { sha256, bytes };
    let spec = BenchSetSpec {
        warmup: 1,
        runs_per_slice: 2,
        min_rounds: 6,
        max_rounds: 6,
        ..BenchSetSpec::default()
    };
    let root = tempfile::tempdir().unwrap();
    let env = BenchEnv {
        root: system::SysRoot {
            cpuinfo: root.path().join("cpuinfo"),
            sys: root.path().join("sys"),
        },
        ..BenchEnv::default()
    };
    let rep = measure_set(
        &backend,
        m("rr", &r),
        &[m("aa", &a), m("bb", &b)],
        &spec,
        &env,
    )
    .unwrap();
    assert_eq!(backend.opened.get(), 3);
    let shas: Vec<&str> = rep.models.iter().map(|e| e.sha256.as_str()).collect();
    assert_eq!(
        (shas, rep.reference.sha256.as_str()),
        (vec!["aa", "bb"], "rr")
    );
    assert_eq!((rep.rounds_done, rep.rounds.len()), (6, 6));
    assert!(
        rep.rounds
            .iter()
            .all(|r| r.reference_ms.len() == 2 && r.models_ms.iter().all(|s| s.len() == 2))
    );
    assert_eq!(rep.spec.budget_seconds, Some(3.0), "1 s per timed model");
    assert!(rep.models.iter().all(|e| e.ratio_interval.is_some()));
    assert!(rep.warnings.contains(&Warning::NotPinned));
    assert_eq!(rep.backend.version, "stand-in");
}
