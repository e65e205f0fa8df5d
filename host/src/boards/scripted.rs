//! `ScriptedBoard`: a board that answers from a script (latencies, failures, hot reports), so the
//! pool's retry, quarantine and thermal logic is tested without SSH or ONNX Runtime — the role
//! hyperfine's mock executor plays for its benchmarks — and `ScriptedTransport`, an agent that
//! answers [`AgentSession`](super::board::AgentSession) lines from a script.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use shiftnas_protocol::{
    Backend, BackendName, BenchReport, BenchSetReport, BenchSetSpec, BenchSpec, BoardInfo, Bounds,
    SetEstimate, SetReference, SetRound, SetStopReason, Summary, SystemSnapshot, ThermalZone,
};

use super::board::{AgentError, Board, LineTransport};
use super::config::BoardConfig;

/// What the next `bench` does (a `bench_set` takes one step per model of its set).
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Report this P50 (ms).
    Ok(f64),
    /// Report this P50 with a thermal zone at `temp_c`.
    Hot(f64, f64),
    /// The board fails (connection lost); it stays down until `reconnect` succeeds.
    Fail,
    /// The agent refuses the request (the board stays healthy).
    Refuse,
}

/// A scripted board; when the script runs out it repeats `default`.
pub struct ScriptedBoard {
    cfg: BoardConfig,
    cpu_model: String,
    script: VecDeque<Step>,
    default: Step,
    connected: bool,
    /// Reconnects fail while this many remain (then succeed).
    pub reconnect_failures: usize,
    /// How long each `bench` takes.
    pub delay: std::time::Duration,
    /// Every (board, model sha256) measured successfully, shared across boards for assertions.
    pub log: Arc<Mutex<Vec<(String, String)>>>,
    /// The board's slowdown in each `bench_set`, in turn (the last one repeats; none: 1): the
    /// reference and every model of that set take this many times their scripted time, as on a
    /// board whose speed drifts between sets.
    pub slowdowns: VecDeque<f64>,
}

impl ScriptedBoard {
    /// A board named `name` with CPU model `cpu_model` (its fingerprint) and a script.
    pub fn new(name: &str, cpu_model: &str, script: Vec<Step>, default: Step) -> ScriptedBoard {
        let mut cfg = BoardConfig::local(None);
        cfg.name = name.into();
        cfg.cool_down_s = 0.0;
        ScriptedBoard {
            cfg,
            cpu_model: cpu_model.into(),
            script: script.into(),
            default,
            connected: false,
            reconnect_failures: 0,
            delay: std::time::Duration::from_millis(2),
            log: Arc::new(Mutex::new(Vec::new())),
            slowdowns: VecDeque::new(),
        }
    }

    /// Shares one measurement log between boards.
    pub fn with_log(mut self, log: Arc<Mutex<Vec<(String, String)>>>) -> ScriptedBoard {
        self.log = log;
        self
    }
}

/// A report with the given P50 and hottest thermal zone.
pub fn fake_report(sha256: &str, spec: &BenchSpec, p50_ms: f64, temp_c: f64) -> BenchReport {
    let snap = SystemSnapshot {
        cores: Vec::new(),
        thermal: vec![ThermalZone {
            zone: 0,
            kind: "soc-thermal".into(),
            temp_c,
        }],
        devfreq: Vec::new(),
    };
    BenchReport {
        samples_ms: vec![p50_ms; 3],
        summary: Summary {
            p50_ms,
            p90_ms: p50_ms,
            p99_ms: p50_ms,
            mean_ms: p50_ms,
            std_ms: 0.0,
            min_ms: p50_ms,
            max_ms: p50_ms,
        },
        threads: spec.threads,
        cores: spec.cores.clone(),
        warmup: spec.warmup,
        spin: spec.spin,
        seed: spec.seed,
        backend: Backend {
            name: BackendName::Ort,
            version: "scripted".into(),
        },
        model_sha256: sha256.into(),
        input_name: "input".into(),
        input_shape: vec![1, 3, 8, 8],
        before: snap.clone(),
        after: snap,
        throttled: false,
        warnings: Vec::new(),
        npu_ms: None,
    }
}

/// The reference's median in a scripted set report, ms: a model's ratio is its P50 over this.
pub const SCRIPTED_REFERENCE_MS: f64 = 1.0;

/// A set report whose models have the given estimates (ms, in the set's order), each with a
/// ±0.5 % interval, from `spec.min_rounds` rounds of constant slices; the reference at
/// [`SCRIPTED_REFERENCE_MS`], the hottest zone at `temp_c`.
pub fn fake_set_report(
    sha256s: &[String],
    reference: &str,
    spec: &BenchSetSpec,
    estimates_ms: &[f64],
    temp_c: f64,
) -> BenchSetReport {
    drifted_set_report(sha256s, reference, spec, estimates_ms, temp_c, 1.0)
}

/// [`fake_set_report`] on a board `slowdown` times slower: the reference and every estimate take
/// that many times longer, the ratios stay.
fn drifted_set_report(
    sha256s: &[String],
    reference: &str,
    spec: &BenchSetSpec,
    estimates_ms: &[f64],
    temp_c: f64,
    slowdown: f64,
) -> BenchSetReport {
    let reference_ms = SCRIPTED_REFERENCE_MS * slowdown;
    let estimates_ms: Vec<f64> = estimates_ms.iter().map(|ms| ms * slowdown).collect();
    let snap = fake_report("", &BenchSpec::default(), 1.0, temp_c).before;
    let bounds = |x: f64| Bounds {
        low: x * 0.995,
        high: x * 1.005,
    };
    let rounds = spec.min_rounds;
    BenchSetReport {
        models: sha256s
            .iter()
            .zip(&estimates_ms)
            .map(|(sha, &ms)| SetEstimate {
                sha256: sha.clone(),
                estimate_ms: ms,
                ratio: ms / reference_ms,
                ratio_interval: Some(bounds(ms / reference_ms)),
                interval_ms: Some(bounds(ms)),
                relative_half_width: Some(0.005),
                npu_ms: None,
            })
            .collect(),
        reference: SetReference {
            sha256: reference.into(),
            median_ms: reference_ms,
            interval_ms: Some(bounds(reference_ms)),
            npu_ms: None,
        },
        rounds_done: rounds,
        stop: SetStopReason::Precise,
        elapsed_seconds: 0.0,
        spec: BenchSetSpec {
            budget_seconds: Some(spec.budget_for(sha256s.len())),
            ..spec.clone()
        },
        rounds: (0..rounds)
            .map(|_| SetRound {
                order: (0..=sha256s.len()).collect(),
                reference_ms: vec![reference_ms; spec.runs_per_slice],
                models_ms: estimates_ms
                    .iter()
                    .map(|&ms| vec![ms; spec.runs_per_slice])
                    .collect(),
            })
            .collect(),
        backend: Backend {
            name: BackendName::Ort,
            version: "scripted".into(),
        },
        before: snap.clone(),
        after: snap,
        throttled: false,
        warnings: Vec::new(),
    }
}

impl ScriptedBoard {
    /// The next step of the script.
    fn step(&mut self) -> Step {
        self.script
            .pop_front()
            .unwrap_or_else(|| self.default.clone())
    }

    /// The error of a failing or refusing step.
    fn failure(&mut self, step: &Step) -> anyhow::Error {
        if *step == Step::Fail {
            self.connected = false;
            anyhow!("board {:?}: connection lost (scripted)", self.cfg.name)
        } else {
            AgentError {
                board: self.cfg.name.clone(),
                message: "model refused (scripted)".into(),
            }
            .into()
        }
    }
}

impl Board for ScriptedBoard {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn config(&self) -> &BoardConfig {
        &self.cfg
    }

    fn reconnect(&mut self) -> Result<()> {
        if self.reconnect_failures > 0 {
            self.reconnect_failures -= 1;
            bail!("board {:?}: connection refused (scripted)", self.cfg.name);
        }
        self.connected = true;
        Ok(())
    }

    fn info(&mut self) -> Result<BoardInfo> {
        if !self.connected {
            self.reconnect()?;
        }
        Ok(BoardInfo {
            cpu_model: self.cpu_model.clone(),
            arch: "aarch64".into(),
            cores: Vec::new(),
            kernel: "scripted".into(),
            governors: Vec::new(),
            backend: Backend {
                name: BackendName::Ort,
                version: "scripted".into(),
            },
            backend_error: None,
            agent_version: "0".into(),
            protocol_version: shiftnas_protocol::PROTOCOL_VERSION,
        })
    }

    fn load(&mut self, _name: &str, _model: &[u8], _sha256: &str) -> Result<()> {
        if !self.connected {
            self.reconnect()?;
        }
        Ok(())
    }

    fn bench(&mut self, sha256: &str, spec: &BenchSpec) -> Result<BenchReport> {
        if !self.connected {
            self.reconnect()?;
        }
        std::thread::sleep(self.delay);
        match self.step() {
            Step::Ok(p50) => {
                if let Ok(mut l) = self.log.lock() {
                    l.push((self.cfg.name.clone(), sha256.into()));
                }
                Ok(fake_report(sha256, spec, p50, 40.0))
            }
            Step::Hot(p50, t) => Ok(fake_report(sha256, spec, p50, t)),
            step => Err(self.failure(&step)),
        }
    }

    /// One step per model of the set: all `Ok` or `Hot` give [`fake_set_report`] (at the hottest
    /// step's temperature, 40 °C when none is hot); the first `Fail` or `Refuse` fails the set.
    fn bench_set(
        &mut self,
        sha256s: &[String],
        reference: &str,
        spec: &BenchSetSpec,
    ) -> Result<BenchSetReport> {
        if !self.connected {
            self.reconnect()?;
        }
        std::thread::sleep(self.delay);
        let (mut estimates, mut temp_c) = (Vec::new(), 40.0_f64);
        for _ in sha256s {
            match self.step() {
                Step::Ok(ms) => estimates.push(ms),
                Step::Hot(ms, t) => {
                    estimates.push(ms);
                    temp_c = temp_c.max(t);
                }
                step => return Err(self.failure(&step)),
            }
        }
        if let Ok(mut l) = self.log.lock() {
            l.extend(sha256s.iter().map(|s| (self.cfg.name.clone(), s.clone())));
        }
        let slowdown = if self.slowdowns.len() > 1 {
            self.slowdowns.pop_front()
        } else {
            self.slowdowns.front().copied()
        };
        Ok(drifted_set_report(
            sha256s,
            reference,
            spec,
            &estimates,
            temp_c,
            slowdown.unwrap_or(1.0),
        ))
    }
}

/// An agent on the other end of a line transport that answers from a script: each `recv` returns
/// the next scripted line, or fails like a dead connection when the script is spent. Every
/// line sent is kept in `sent`.
#[derive(Default)]
pub struct ScriptedTransport {
    /// The agent's answers, in order.
    pub replies: VecDeque<String>,
    /// The host's lines, shared for assertions.
    pub sent: Arc<Mutex<Vec<String>>>,
}

impl ScriptedTransport {
    /// A transport answering `replies` in order.
    pub fn new(replies: &[&str]) -> ScriptedTransport {
        ScriptedTransport {
            replies: replies.iter().map(|r| r.to_string()).collect(),
            sent: Arc::default(),
        }
    }
}

impl LineTransport for ScriptedTransport {
    fn send(&mut self, line: &str) -> Result<()> {
        if let Ok(mut s) = self.sent.lock() {
            s.push(line.to_string());
        }
        Ok(())
    }

    fn recv(&mut self, timeout: Duration) -> Result<String> {
        self.replies.pop_front().ok_or_else(|| {
            anyhow!("the scripted agent has no more answers (waited {timeout:?}; script spent)")
        })
    }

    fn stderr_tail(&self) -> String {
        String::new()
    }
}
