//! Arguments of `shiftnas eval`.

use clap::Args;

/// Arguments of `shiftnas eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {}
