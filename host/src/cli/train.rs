//! Arguments of `shiftnas train`.

use clap::Args;

/// Arguments of `shiftnas train`.
#[derive(Debug, Args)]
pub struct TrainArgs {}
