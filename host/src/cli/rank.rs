//! Arguments of `shiftnas rank`.

use clap::Args;

/// Arguments of `shiftnas rank`.
#[derive(Debug, Args)]
pub struct RankArgs {}
