//! The command line: `Cli`, global options, and one args file per command.
//!
//! Clap structs here only hold what the user typed (validated); `commands/` turns them into typed
//! configs and runs them.

pub mod board;
pub mod cache;
pub mod calibrate;
pub mod eval;
pub mod export;
pub mod quickstart;
pub mod rank;
pub mod retrain;
pub mod search;
pub mod shared;
pub mod space;
pub mod train;

use clap::{Args, Parser, Subcommand};

use crate::compute::Compute;

const EXIT_CODES: &str = "Exit codes: 0 success; 1 the command ran and the answer is no (e.g. a board is down); \
2 it could not do the job (bad input, I/O, no board reachable); 130 interrupted by Ctrl-C (train, retrain, quickstart training: the step in flight \
is finished and checkpointed; search, quickstart search: the candidate in flight is finished and the last generation's checkpoint \
kept), with a note naming the command that resumes; a second Ctrl-C quits at once.";

/// Find the most accurate CNN that runs under a latency budget on your board.
#[derive(Debug, Parser)]
#[command(name = "shiftnas", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Machine-readable output: stdout carries only JSON (one document, or JSON lines for progress).
    #[arg(long, global = true)]
    pub json: bool,
    /// Print fewer messages on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Never draw progress bars.
    #[arg(long, global = true, env = "SHIFTNAS_NO_PROGRESS", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_progress: bool,
    /// Where candle runs: `cpu` or `cuda:N` (CUDA needs a build with `--features cuda`).
    #[arg(long, global = true, default_value = "cpu", value_name = "cpu|cuda:N")]
    pub compute: Compute,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show search-space presets and the FLOPs/params of an arch.
    Space(space::SpaceArgs),
    /// Train a supernet by uniform single-path sampling.
    Train(train::TrainArgs),
    /// Evaluate one arch with supernet weights (after BN calibration).
    Eval(eval::EvalArgs),
    /// Search for the best archs under latency, with Supernet Shifting.
    Search(search::SearchArgs),
    /// Export a subnet to ONNX (BN folded).
    Export(export::ExportArgs),
    /// Check boards and measure models on them.
    Board(board::BoardArgs),
    /// Inspect, export or prune the latency cache.
    Cache(cache::CacheArgs),
    /// Fit a latency predictor to a board.
    Calibrate(calibrate::CalibrateArgs),
    /// Train, search and export on embedded data in minutes: the first thing to run.
    Quickstart(quickstart::QuickstartArgs),
    /// Train a standalone subnet from scratch.
    Retrain(retrain::RetrainArgs),
    /// Order-preserving figures: how well supernet scores rank archs against retrained accuracy.
    Rank(rank::RankArgs),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn compute_flag_is_global_and_checked() {
        let cli = Cli::try_parse_from(["shiftnas", "space", "show", "tiny", "--compute", "cuda:1"])
            .unwrap();
        assert_eq!(cli.global.compute, Compute::Cuda(1));
        let err = Cli::try_parse_from(["shiftnas", "--compute", "gpu", "space", "show", "tiny"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("cuda:N"), "{err}");
    }

    #[test]
    fn no_progress_env_takes_usual_spellings() {
        for (v, want) in [
            ("1", true),
            ("yes", true),
            ("true", true),
            ("0", false),
            ("false", false),
        ] {
            // SAFETY: tests in this module do not read the variable concurrently.
            unsafe { std::env::set_var("SHIFTNAS_NO_PROGRESS", v) };
            let cli = Cli::try_parse_from(["shiftnas", "space", "show", "tiny"]).unwrap();
            assert_eq!(cli.global.no_progress, want, "{v}");
        }
        unsafe { std::env::remove_var("SHIFTNAS_NO_PROGRESS") };
    }
}
