//! Arguments of `shiftnas board`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

/// Arguments of `shiftnas board`.
#[derive(Debug, Args)]
pub struct BoardArgs {
    /// The boards file (default: boards.toml when it exists, else only the built-in `local`
    /// board). A file named here must exist.
    #[arg(long, global = true, value_name = "FILE")]
    pub boards: Option<PathBuf>,
    /// The agent binary for the built-in `local` board (default: next to `shiftnas`).
    #[arg(long, global = true, value_name = "PATH")]
    pub agent: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: BoardCommand,
}

/// `shiftnas board` subcommands.
#[derive(Debug, Subcommand)]
pub enum BoardCommand {
    /// Connect, verify host keys, deploy the agent if needed and show each board's info.
    /// Exits 1 when a board is down.
    Check(CheckArgs),
    /// Measure ONNX models on one board (or several, pooled).
    Measure(MeasureArgs),
    /// Measure random subnets of a space twice, `--gap` apart, and show how well the second
    /// pass repeats the first (rank agreement, shares within ±1/2/5 %): run it before trusting a
    /// board's numbers in a search.
    Noise(NoiseArgs),
}

/// Arguments of `shiftnas board check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Boards to check (default: every board in the file, or `local` when there is none).
    pub names: Vec<String>,
}

/// Arguments of `shiftnas board measure`.
#[derive(Debug, Args)]
pub struct MeasureArgs {
    /// Board name(s), comma-separated (e.g. `rk1,rk2`); `local` is built in.
    pub board: String,
    /// `.onnx` models to measure (always measured; results go to the cache).
    #[arg(required_unless_present = "arch")]
    pub models: Vec<PathBuf>,
    /// The search space of `--arch`.
    #[arg(long, requires = "arch")]
    pub space: Option<String>,
    /// Also measure this subnet of `--space`, exported with random weights (latency does not
    /// depend on them); repeatable.
    #[arg(long, requires = "space")]
    pub arch: Vec<String>,
    /// Seed of the random weights of `--arch` subnets.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Pool boards of different fingerprints (their numbers then form no single objective).
    #[arg(long)]
    pub mix_boards: bool,
    /// The latency cache (default: ~/.cache/shiftnas/latency.sqlite).
    #[arg(long, value_name = "PATH")]
    pub cache: Option<PathBuf>,
}

/// Arguments of `shiftnas board noise`.
#[derive(Debug, Args)]
pub struct NoiseArgs {
    /// Board name(s), comma-separated (e.g. `rk1,rk2`); `local` is built in.
    pub board: String,
    /// The search space whose random subnets are measured.
    #[arg(long, default_value = "spos-cifar")]
    pub space: String,
    /// How many random subnets (at least 2).
    #[arg(short = 'n', long, default_value_t = 50, value_name = "N")]
    pub subnets: usize,
    /// Wait between the two passes, e.g. `10m`, `90s` (`0s` for none).
    #[arg(long, default_value = "10m", value_name = "AGE",
          value_parser = crate::latency::cache::parse_age)]
    pub gap: Duration,
    /// Seed of the subnets and of their random weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Pool boards of different fingerprints (their numbers then form no single objective).
    #[arg(long)]
    pub mix_boards: bool,
}
