//! What a latency measurement asks for ([`BenchSpec`]) and what it returns ([`BenchReport`]),
//! with the warnings that say why a number should not be trusted ([`Warning`]).

use serde::{Deserialize, Serialize};

use crate::system::SystemSnapshot;

/// How to measure one model (DESIGN §7 defaults: 10 warm-up runs, ≥ 50 timed runs and ≥ 1 s).
///
/// Missing JSON fields take the [`Default`] values.
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

/// Which runtime produced a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendName {
    /// ONNX Runtime, loaded at run time from a `libonnxruntime.so`.
    Ort,
    /// tract, the pure-Rust fallback (agent feature `tract`); ~2.4× slower than ORT.
    Tract,
    /// No runtime could be loaded (only in [`crate::BoardInfo`]).
    None,
}

impl std::fmt::Display for BackendName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackendName::Ort => "ort",
            BackendName::Tract => "tract",
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
    /// Median of `samples_ms` (the search objective).
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Mean.
    pub mean_ms: f64,
    /// Sample standard deviation.
    pub std_ms: f64,
    /// Fastest run.
    pub min_ms: f64,
    /// Slowest run.
    pub max_ms: f64,
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
