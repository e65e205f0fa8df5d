//! `ScriptedBoard`: a board that answers from a script (latencies, failures, hot reports), so the
//! pool's retry, quarantine and thermal logic is tested without SSH or ONNX Runtime — the role
//! hyperfine's mock executor plays for its benchmarks.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use anyhow::{Result, anyhow, bail};
use shiftnas_protocol::{
    Backend, BackendName, BenchReport, BenchSpec, BoardInfo, Summary, SystemSnapshot, ThermalZone,
};

use super::board::{AgentError, Board};
use super::config::BoardConfig;

/// What the next `bench` does.
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
        let step = self
            .script
            .pop_front()
            .unwrap_or_else(|| self.default.clone());
        match step {
            Step::Ok(p50) => {
                if let Ok(mut l) = self.log.lock() {
                    l.push((self.cfg.name.clone(), sha256.into()));
                }
                Ok(fake_report(sha256, spec, p50, 40.0))
            }
            Step::Hot(p50, t) => Ok(fake_report(sha256, spec, p50, t)),
            Step::Fail => {
                self.connected = false;
                Err(anyhow!(
                    "board {:?}: connection lost (scripted)",
                    self.cfg.name
                ))
            }
            Step::Refuse => Err(AgentError {
                board: self.cfg.name.clone(),
                message: "model refused (scripted)".into(),
            }
            .into()),
        }
    }
}
