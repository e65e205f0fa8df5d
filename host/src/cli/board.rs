//! Arguments of `shiftnas board`.

use std::path::PathBuf;

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
    /// Measure ONNX models and subnets on one board (or several, pooled), all of them as one
    /// interleaved set against the space's reference subnet.
    Measure(MeasureArgs),
    /// Measure random subnets of a space twice, `--gap-minutes` apart, each pass as interleaved
    /// sets, and show how well the second pass repeats the first (rank agreement, shares within
    /// ±1/2/5 %, estimates inside the other pass's interval): run it before trusting a board's
    /// numbers in a search.
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
    /// `.onnx` models to measure (always measured; results go to the cache, except a file's in
    /// a set: its input shape, part of the cache key, is not known beforehand).
    #[arg(required_unless_present = "arch")]
    pub models: Vec<PathBuf>,
    /// The search space of `--arch`, whose reference subnet (every block at its middle choice)
    /// is timed in every round of the set.
    #[arg(long, default_value = "spos-cifar")]
    pub space: String,
    /// Also measure this subnet of `--space`, exported with random weights (latency does not
    /// depend on them); repeatable.
    #[arg(long)]
    pub arch: Vec<String>,
    /// Measure each model alone (the single-model protocol: a P50, no interval, drift between
    /// models included) instead of as one interleaved set.
    #[arg(long)]
    pub single: bool,
    /// Time budget of each set's rounds, seconds (default: 1 s per model and 1 s for the
    /// reference).
    #[arg(long, value_name = "SECONDS", conflicts_with = "single")]
    pub budget_seconds: Option<f64>,
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
    /// Minutes to wait between the two passes (0 for none; fractions allowed).
    #[arg(long, default_value_t = 10.0, value_name = "MINUTES", value_parser = parse_minutes)]
    pub gap_minutes: f64,
    /// Time budget of each set's rounds, seconds (default: 1 s per model and 1 s for the
    /// reference).
    #[arg(long, value_name = "SECONDS")]
    pub budget_seconds: Option<f64>,
    /// Seed of the subnets and of their random weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Pool boards of different fingerprints (their numbers then form no single objective).
    #[arg(long)]
    pub mix_boards: bool,
}

/// A number of minutes: finite and not negative.
fn parse_minutes(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(m) if m.is_finite() && m >= 0.0 => Ok(m),
        _ => Err(format!(
            "{s:?} is not a number of minutes; write e.g. 10, 0.5 or 0"
        )),
    }
}
