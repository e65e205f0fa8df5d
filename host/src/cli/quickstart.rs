//! Arguments of `shiftnas quickstart`.

use std::path::PathBuf;

use clap::Args;

use crate::latency::LatencySpec;

/// Arguments of `shiftnas quickstart`: every one has a default, so it runs with none.
#[derive(Debug, Args)]
pub struct QuickstartArgs {
    /// Where everything goes: `train/` (supernet run), `search/` (search run), `models/` (ONNX).
    /// Running again with the same folder resumes whatever did not finish (after a kill, or
    /// Ctrl-C, which exits 130 naming that command).
    #[arg(long, default_value = "runs/quickstart")]
    pub out: PathBuf,
    /// Supernet training steps (uniform single-path sampling, `tiny` space).
    #[arg(long, default_value_t = 2000)]
    pub steps: u64,
    /// Training batch size.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Initial learning rate of the supernet training (linear decay; the first quarter of the
    /// steps is the path warm-up, see `shiftnas train --help`).
    #[arg(long, default_value_t = 0.05)]
    pub lr: f64,
    /// NSGA-II population.
    #[arg(long, default_value_t = 12)]
    pub pop: usize,
    /// NSGA-II generations (Supernet Shifting: one accumulated SGD step after each).
    #[arg(long, default_value_t = 4)]
    pub gens: usize,
    /// Latency objective: the `local` board measures every candidate with ONNX Runtime on this
    /// machine; `flops` needs no runtime.
    #[arg(long, default_value = "board:local")]
    pub latency: LatencySpec,
    /// Seed of training and search.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}
