//! Command-line arguments of `shiftnas-agent` (clap derive; doc comments are the help).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::bench::DEFAULT_THERMAL_LIMIT_C;

/// Measures ONNX model latency on a board under a fixed protocol and reports JSON.
///
/// Exit codes: 0 success, 2 error (message on stderr).
#[derive(Debug, Parser)]
#[command(name = "shiftnas-agent", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// libonnxruntime.so to load (default: $ORT_DYLIB_PATH, next to this binary, Python's onnxruntime).
    #[arg(long, global = true, value_name = "PATH")]
    pub ort_lib: Option<PathBuf>,
}

/// The agent's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Measure one model's latency, or a set of models interleaved with a reference model
    /// (two or more models, or `--reference`), and print a report.
    Bench(BenchArgs),
    /// Describe the board: CPU, big/little cores, kernel, governors, runtime.
    Info(InfoArgs),
    /// Answer JSON-lines requests on stdin/stdout (what the host uses over SSH).
    Serve(ServeArgs),
    /// Run a model once on a float32 .npy input and write its first output as .npy.
    Run(RunArgs),
}

/// `on` / `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

/// Arguments of `bench`.
///
/// One model without `--reference` is timed alone: warm-up, then at least `--runs` runs and
/// `--min-seconds`. Two or more models, or any with `--reference`, are timed together in rounds
/// against the reference, which cancels the machine's drift (docs/agent.md, "Measuring a set").
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The .onnx model(s) (one float32 input of static shape each).
    #[arg(required = true, value_name = "MODEL")]
    pub models: Vec<PathBuf>,
    /// The reference model of a set, timed in every round; its time divides each model's time
    /// in the same round. Default with two or more MODELs: the first one.
    #[arg(long, value_name = "MODEL")]
    pub reference: Option<PathBuf>,
    /// Intra-op threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// CPUs to pin to, e.g. 4-7 (the RK3588's A76 cores) or 0,2,4-5; default: no pinning.
    #[arg(long, value_name = "LIST")]
    pub cores: Option<String>,
    /// Untimed warm-up runs (of each model of a set).
    #[arg(long, default_value_t = 10)]
    pub warmup: usize,
    /// One model: minimum number of timed runs [default: 50].
    #[arg(long, value_name = "N")]
    pub runs: Option<usize>,
    /// One model: minimum total time of the timed runs, in seconds [default: 1].
    #[arg(long, value_name = "SECONDS")]
    pub min_seconds: Option<f64>,
    /// A set: stop once every model's interval is within ± this fraction of its estimate
    /// [default: 0.01].
    #[arg(long, value_name = "FRACTION")]
    pub precision: Option<f64>,
    /// A set: confidence of the intervals [default: 0.95].
    #[arg(long, value_name = "FRACTION")]
    pub confidence: Option<f64>,
    /// A set: stop after this many seconds of rounds, precise or not [default: 1 per model,
    /// the reference included].
    #[arg(long, value_name = "SECONDS")]
    pub budget_seconds: Option<f64>,
    /// A set: timed runs of each model per round [default: 5].
    #[arg(long, value_name = "N")]
    pub slice_runs: Option<usize>,
    /// A set: rounds before the precision may stop it [default: 10; at least 6 at 95 %].
    #[arg(long, value_name = "N")]
    pub min_rounds: Option<usize>,
    /// A set: stop after this many rounds, precise or not [default: 200].
    #[arg(long, value_name = "N")]
    pub max_rounds: Option<usize>,
    /// Let idle intra-op threads spin (ORT session.intra_op.allow_spinning).
    #[arg(long, value_enum, default_value_t = Switch::On)]
    pub spin: Switch,
    /// Seed of the random input.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// A thermal zone at or above this temperature (°C) marks the result as throttled.
    #[arg(long, default_value_t = DEFAULT_THERMAL_LIMIT_C)]
    pub thermal_limit: f64,
    /// Print the report as one JSON document.
    #[arg(long)]
    pub json: bool,
}

impl BenchArgs {
    /// Whether these arguments ask for an interleaved set (two or more models, or a reference).
    pub fn is_set(&self) -> bool {
        self.models.len() >= 2 || self.reference.is_some()
    }

    /// The set-only flags given, by name.
    pub fn set_flags(&self) -> Vec<&'static str> {
        [
            ("--precision", self.precision.is_some()),
            ("--confidence", self.confidence.is_some()),
            ("--budget-seconds", self.budget_seconds.is_some()),
            ("--slice-runs", self.slice_runs.is_some()),
            ("--min-rounds", self.min_rounds.is_some()),
            ("--max-rounds", self.max_rounds.is_some()),
        ]
        .into_iter()
        .filter_map(|(f, on)| on.then_some(f))
        .collect()
    }

    /// The one-model-only flags given, by name.
    pub fn single_flags(&self) -> Vec<&'static str> {
        [
            ("--runs", self.runs.is_some()),
            ("--min-seconds", self.min_seconds.is_some()),
        ]
        .into_iter()
        .filter_map(|(f, on)| on.then_some(f))
        .collect()
    }
}

/// Arguments of `info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A thermal zone at or above this temperature (°C) marks results as throttled.
    #[arg(long, default_value_t = DEFAULT_THERMAL_LIMIT_C)]
    pub thermal_limit: f64,
}

/// Arguments of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The .onnx model.
    pub model: PathBuf,
    /// Input tensor (.npy, float32, C order, the model's input shape).
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the first output (.npy, float32).
    #[arg(long)]
    pub output: PathBuf,
    /// Intra-op threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_command_lines() {
        let cli = Cli::try_parse_from([
            "shiftnas-agent",
            "bench",
            "m.onnx",
            "--threads",
            "4",
            "--cores",
            "4-7",
            "--spin",
            "off",
            "--json",
            "--ort-lib",
            "/opt/libonnxruntime.so",
        ])
        .unwrap();
        let Command::Bench(b) = cli.command else {
            panic!()
        };
        assert_eq!(
            (b.threads, b.cores.as_deref(), b.spin, b.json),
            (4, Some("4-7"), Switch::Off, true)
        );
        assert_eq!((b.warmup, b.runs, b.min_seconds), (10, None, None));
        assert!(!b.is_set());
        assert_eq!(
            cli.ort_lib.as_deref(),
            Some(std::path::Path::new("/opt/libonnxruntime.so"))
        );
        assert!(
            Cli::try_parse_from(["shiftnas-agent", "bench", "m.onnx", "--spin", "maybe"]).is_err()
        );
        assert!(
            Cli::try_parse_from(["shiftnas-agent", "run", "m.onnx", "--input", "x.npy"]).is_err()
        );
        assert!(Cli::try_parse_from(["shiftnas-agent", "serve"]).is_ok());
        assert!(Cli::try_parse_from(["shiftnas-agent", "bench"]).is_err());
    }

    #[test]
    fn a_set_is_two_models_or_a_reference() {
        let bench = |args: &[&str]| {
            let cli = Cli::try_parse_from([&["shiftnas-agent", "bench"], args].concat()).unwrap();
            let Command::Bench(b) = cli.command else {
                panic!()
            };
            b
        };
        let b = bench(&["a.onnx", "b.onnx", "--precision", "0.02", "--runs", "9"]);
        assert!(b.is_set());
        assert_eq!(b.models.len(), 2);
        assert_eq!(
            (b.set_flags(), b.single_flags()),
            (vec!["--precision"], vec!["--runs"])
        );
        let b = bench(&["a.onnx", "--reference", "r.onnx", "--budget-seconds", "3"]);
        assert!(b.is_set());
        assert_eq!(b.budget_seconds, Some(3.0));
    }
}
