//! What a latency measurement asks for ([`BenchSpec`]) and what it returns ([`BenchReport`]),
//! with the warnings that say why a number should not be trusted ([`Warning`]).

use serde::{Deserialize, Serialize};

use crate::stats::Summary;
use crate::system::SystemSnapshot;

/// Most intra-op threads a [`BenchSpec`] may ask for (a board has a handful of cores; thousands of
/// threads would stall the runtime's thread-pool start-up).
pub const MAX_THREADS: usize = 64;
/// Most timed runs a [`BenchSpec`] may ask for; also the most samples one measurement takes, even
/// when `min_seconds` has not elapsed yet (8 MB of samples, about 20 MB of JSON).
pub const MAX_RUNS: usize = 1_000_000;
/// Most untimed warm-up runs a [`BenchSpec`] may ask for.
pub const MAX_WARMUP: usize = 10_000;
/// Longest `min_seconds` a [`BenchSpec`] may ask for (10 minutes).
pub const MAX_MIN_SECONDS: f64 = 600.0;

/// How to measure one model (defaults: 10 warm-up runs, ≥ 50 timed runs and ≥ 1 s).
///
/// Missing JSON fields take the [`Default`] values; [`BenchSpec::check`] gives the bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BenchSpec {
    /// Intra-op thread count of the runtime (1, 2 or 4 on the RK3588's A76 cores).
    pub threads: usize,
    /// CPUs to pin the agent and the runtime's threads to (e.g. `[4, 5, 6, 7]`); empty = no pinning.
    pub cores: Vec<usize>,
    /// Untimed runs before measuring.
    pub warmup: usize,
    /// Minimum number of timed runs.
    pub runs: usize,
    /// Minimum total time of the timed runs, in seconds; runs continue until both minimums are met.
    pub min_seconds: f64,
    /// Let the runtime's idle threads spin (ORT `session.intra_op.allow_spinning`).
    pub spin: bool,
    /// Seed of the random input (uniform in [-1, 1)).
    pub seed: u64,
}

impl Default for BenchSpec {
    fn default() -> Self {
        BenchSpec {
            threads: 1,
            cores: Vec::new(),
            warmup: 10,
            runs: 50,
            min_seconds: 1.0,
            spin: true,
            seed: 0,
        }
    }
}

impl BenchSpec {
    /// Checks every field against its bound: `threads` 1..=[`MAX_THREADS`], `runs`
    /// 1..=[`MAX_RUNS`], `warmup` ≤ [`MAX_WARMUP`], `min_seconds` in 0..=[`MAX_MIN_SECONDS`].
    ///
    /// # Errors
    /// A message naming the field, the value and its bound.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=MAX_THREADS).contains(&self.threads) {
            return Err(format!(
                "threads must be between 1 and {MAX_THREADS}, got {}",
                self.threads
            ));
        }
        if !(1..=MAX_RUNS).contains(&self.runs) {
            return Err(format!(
                "runs must be between 1 and {MAX_RUNS}, got {}",
                self.runs
            ));
        }
        if self.warmup > MAX_WARMUP {
            return Err(format!(
                "warmup must be at most {MAX_WARMUP}, got {}",
                self.warmup
            ));
        }
        if !(self.min_seconds.is_finite() && (0.0..=MAX_MIN_SECONDS).contains(&self.min_seconds)) {
            return Err(format!(
                "min_seconds must be between 0 and {MAX_MIN_SECONDS}, got {}",
                self.min_seconds
            ));
        }
        Ok(())
    }
}

/// Which runtime produced a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendName {
    /// ONNX Runtime, loaded at run time from a `libonnxruntime.so`.
    Ort,
    /// tract, the pure-Rust fallback (agent feature `tract`); ~2.4× slower than ORT.
    Tract,
    /// Rockchip's `librknnrt.so` on the RK3588 NPU (agent `--runtime rknn`, `.rknn` models).
    Rknn,
    /// No runtime could be loaded (only in [`crate::BoardInfo`]).
    None,
}

impl std::fmt::Display for BackendName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackendName::Ort => "ort",
            BackendName::Tract => "tract",
            BackendName::Rknn => "rknn",
            BackendName::None => "none",
        })
    }
}

/// A runtime and its version, e.g. `ort 1.23.2`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Backend {
    /// The runtime.
    pub name: BackendName,
    /// Its version (ORT's `OrtGetApiBase()->GetVersionString()`, or tract's crate version).
    pub version: String,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.name, self.version)
    }
}

/// A dense float32 tensor in C order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorF32 {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values in C (row-major) order.
    pub data: Vec<f32>,
}

/// The result of one measurement: raw samples, their statistics, and the conditions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// Every timed run's wall time, in order, in milliseconds.
    pub samples_ms: Vec<f64>,
    /// Statistics of `samples_ms`; on the wire its fields (`p50_ms`, `p90_ms`, `p99_ms`,
    /// `mean_ms`, `std_ms`, `min_ms`, `max_ms`) sit beside the others.
    #[serde(flatten)]
    pub summary: Summary,
    /// Intra-op threads used.
    pub threads: usize,
    /// CPUs the agent was pinned to (empty = not pinned).
    pub cores: Vec<usize>,
    /// Untimed runs done before measuring.
    pub warmup: usize,
    /// Whether the runtime's threads were allowed to spin.
    pub spin: bool,
    /// Seed of the random input.
    pub seed: u64,
    /// Runtime that ran the model.
    pub backend: Backend,
    /// Lower-case hex SHA-256 of the model file.
    pub model_sha256: String,
    /// Name of the model's input.
    pub input_name: String,
    /// Static input shape the model was run with.
    pub input_shape: Vec<usize>,
    /// Governors, frequencies and temperatures just before the warm-up.
    pub before: SystemSnapshot,
    /// The same, just after the last timed run.
    pub after: SystemSnapshot,
    /// A thermal zone reached the limit or a used core's frequency dropped: re-measure.
    pub throttled: bool,
    /// Everything that makes the number less trustworthy, each with its fix.
    pub warnings: Vec<Warning>,
    /// Statistics of the accelerator's own time per timed run (the NPU's `RKNN_QUERY_PERF_RUN`),
    /// when the runtime reports one; absent for CPU runtimes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub npu_ms: Option<Summary>,
}

/// Why a measurement may be off; `Display` ends with what to do about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Warning {
    /// A thermal zone was at or above the limit (default 80 °C) before or after the runs.
    Throttled {
        /// Zone index (`thermal_zoneN`).
        zone: u32,
        /// The zone's `type`, e.g. `bigcore0-thermal`.
        kind: String,
        /// Its temperature.
        temp_c: f64,
        /// The limit it crossed.
        limit_c: f64,
    },
    /// A used core runs a governor that changes the clock (neither `userspace` nor `performance`).
    GovernorNotFixed {
        /// The core.
        cpu: usize,
        /// Its governor, e.g. `schedutil`.
        governor: String,
    },
    /// A used core's frequency was lower after the runs than before.
    FrequencyDropped {
        /// The core.
        cpu: usize,
        /// Frequency before the warm-up.
        before_khz: u64,
        /// Frequency after the timed runs.
        after_khz: u64,
    },
    /// No cpufreq information for the used cores (VMs, containers): clocks cannot be checked.
    NoCpufreq,
    /// No `--cores` given: the OS may move the runtime's threads between big and little cores.
    NotPinned,
    /// More intra-op threads than pinned cores: threads share cores.
    ThreadsExceedCores {
        /// Intra-op threads requested.
        threads: usize,
        /// Cores pinned.
        cores: usize,
    },
    /// A set measurement stopped (time budget or round limit) before every model's interval
    /// reached the precision asked for.
    Imprecise {
        /// Rounds done.
        rounds: usize,
        /// SHA-256 of the model with the widest interval (`None` before any interval exists).
        widest_sha256: Option<String>,
        /// Its relative half-width (0.03 = ±3 %).
        relative_half_width: Option<f64>,
        /// The precision asked for.
        precision: f64,
    },
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Warning::Throttled {
                zone,
                kind,
                temp_c,
                limit_c,
            } => write!(
                f,
                "thermal zone {zone} ({kind}) at {temp_c:.1} °C (limit {limit_c:.0} °C): the clocks may \
                 have been throttled; cool the board (fan, heatsink, pause) and re-measure"
            ),
            Warning::GovernorNotFixed { cpu, governor } => write!(
                f,
                "cpu{cpu} uses the {governor} governor, so its clock moves during the runs; set the \
                 userspace governor and a fixed scaling_setspeed (see docs/deploy-rk3588.md)"
            ),
            Warning::FrequencyDropped {
                cpu,
                before_khz,
                after_khz,
            } => write!(
                f,
                "cpu{cpu} ran at {before_khz} kHz before and {after_khz} kHz after the runs; fix the \
                 clock with the userspace governor and re-measure"
            ),
            Warning::NoCpufreq => write!(
                f,
                "no cpufreq data for the used cores (a VM or container?): clocks unchecked; measure on \
                 the board itself with /sys mounted"
            ),
            Warning::NotPinned => write!(
                f,
                "not pinned to any cores: threads may move between big and little cores; pass --cores \
                 (4-7 for the RK3588's A76 cores)"
            ),
            Warning::ThreadsExceedCores { threads, cores } => write!(
                f,
                "{threads} intra-op threads on {cores} pinned cores: threads share cores; use \
                 --threads {cores} or pin more cores"
            ),
            Warning::Imprecise {
                rounds,
                widest_sha256,
                relative_half_width,
                precision,
            } => {
                let asked = precision * 100.0;
                match (widest_sha256, relative_half_width) {
                    (Some(sha), Some(w)) => write!(
                        f,
                        "after {rounds} rounds model {} is known to ±{:.2} % only (asked ±{asked:.2} %)",
                        &sha[..sha.len().min(16)],
                        w * 100.0
                    )?,
                    _ => write!(
                        f,
                        "only {rounds} rounds: too few for any interval (asked ±{asked:.2} %)"
                    )?,
                }
                write!(
                    f,
                    "; raise the time budget (--budget-seconds) or the round limit, or quiet the \
                     board"
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_end_with_a_fix_and_serialise_tagged() {
        let w = Warning::GovernorNotFixed {
            cpu: 4,
            governor: "schedutil".into(),
        };
        assert!(w.to_string().contains("set the userspace governor"), "{w}");
        let v = serde_json::to_value(&w).unwrap();
        assert_eq!(v["type"], "governor-not-fixed");
        assert_eq!(v["cpu"], 4);
        let t = Warning::Throttled {
            zone: 1,
            kind: "bigcore0-thermal".into(),
            temp_c: 85.0,
            limit_c: 80.0,
        };
        assert!(t.to_string().contains("re-measure"), "{t}");
        let back: Warning = serde_json::from_value(serde_json::to_value(&t).unwrap()).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn spec_bounds_name_the_field() {
        assert_eq!(BenchSpec::default().check(), Ok(()));
        let bad = |f: fn(&mut BenchSpec)| {
            let mut s = BenchSpec::default();
            f(&mut s);
            s.check().unwrap_err()
        };
        assert!(bad(|s| s.threads = 0).starts_with("threads must be between 1 and 64"));
        assert!(bad(|s| s.threads = 100_000).contains("got 100000"));
        assert!(bad(|s| s.runs = usize::MAX).starts_with("runs must be between 1 and 1000000"));
        assert!(bad(|s| s.runs = 0).starts_with("runs"));
        assert!(bad(|s| s.warmup = MAX_WARMUP + 1).starts_with("warmup must be at most"));
        assert!(bad(|s| s.min_seconds = f64::NAN).starts_with("min_seconds"));
        assert!(bad(|s| s.min_seconds = -1.0).starts_with("min_seconds"));
        assert!(bad(|s| s.min_seconds = 601.0).starts_with("min_seconds"));
        let edge = BenchSpec {
            threads: MAX_THREADS,
            runs: MAX_RUNS,
            warmup: MAX_WARMUP,
            min_seconds: MAX_MIN_SECONDS,
            ..BenchSpec::default()
        };
        assert_eq!(edge.check(), Ok(()));
    }

    #[test]
    fn report_statistics_stay_flat_on_the_wire() {
        let summary = Summary::from_samples(&[1.0, 2.0, 4.0]).unwrap();
        let r = BenchReport {
            samples_ms: vec![1.0, 2.0, 4.0],
            summary,
            threads: 1,
            cores: vec![4],
            warmup: 0,
            spin: true,
            seed: 0,
            backend: Backend {
                name: BackendName::Ort,
                version: "1.23.2".into(),
            },
            model_sha256: "ab".into(),
            input_name: "input".into(),
            input_shape: vec![1, 3, 8, 8],
            before: SystemSnapshot::default(),
            after: SystemSnapshot::default(),
            throttled: false,
            warnings: vec![],
            npu_ms: None,
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["p50_ms"], 2.0);
        assert_eq!(v["max_ms"], 4.0);
        assert!(v.get("summary").is_none(), "{v}");
        // No NPU time: no key, so reports from agents without it parse the same.
        assert!(v.get("npu_ms").is_none(), "{v}");
        let back: BenchReport = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
        let npu = BenchReport {
            npu_ms: Summary::from_samples(&[0.5]),
            ..r.clone()
        };
        let v = serde_json::to_value(&npu).unwrap();
        assert_eq!(v["npu_ms"]["p50_ms"], 0.5);
        assert_eq!(serde_json::from_value::<BenchReport>(v).unwrap(), npu);
        let line = crate::encode_line(&crate::Response::Bench(r.clone())).unwrap();
        assert!(line.starts_with(r#"{"type":"bench","#), "{line}");
        assert_eq!(
            crate::decode_line::<crate::Response>(&line).unwrap(),
            crate::Response::Bench(r)
        );
    }

    #[test]
    fn backend_names_are_kebab_case() {
        let b = Backend {
            name: BackendName::Ort,
            version: "1.23.2".into(),
        };
        assert_eq!(
            serde_json::to_string(&b).unwrap(),
            r#"{"name":"ort","version":"1.23.2"}"#
        );
        assert_eq!(b.to_string(), "ort 1.23.2");
    }
}
