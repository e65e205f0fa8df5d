//! Arguments of `shiftnas calibrate`.

use std::path::PathBuf;

use clap::Args;

/// Arguments of `shiftnas calibrate`.
#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// The board to calibrate for (`local` is built in).
    #[arg(long)]
    pub board: String,
    /// The search space (`spos-imagenet`, `spos-cifar`, `tiny`).
    #[arg(long)]
    pub space: String,
    /// Random subnets to measure.
    #[arg(long, default_value_t = 200)]
    pub subnets: usize,
    /// Share of the subnets held out to judge the predictor.
    #[arg(long, default_value_t = 0.25)]
    pub holdout: f64,
    /// Seed of the sampled archs, their weights and the split.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where to write the predictor (calibration.svg and calibration.csv go next to it).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// The latency cache (default: ~/.cache/shiftnas/latency.sqlite).
    #[arg(long, value_name = "PATH")]
    pub cache: Option<PathBuf>,
    /// The boards file (default: boards.toml when it exists, else only the built-in `local`
    /// board). A file named here must exist.
    #[arg(long, value_name = "FILE")]
    pub boards: Option<PathBuf>,
    /// The agent binary for the built-in `local` board (default: next to `shiftnas`).
    #[arg(long, value_name = "PATH")]
    pub agent: Option<PathBuf>,
    /// Measure again even when the cache has a number.
    #[arg(long)]
    pub remeasure: bool,
    /// Fit only the ridge model: skip measuring every (block, choice) and the stem and head.
    #[arg(long)]
    pub no_block_table: bool,
}
