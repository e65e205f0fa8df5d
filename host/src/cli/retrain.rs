//! Arguments of `shiftnas retrain`.

use clap::Args;

/// Arguments of `shiftnas retrain`.
#[derive(Debug, Args)]
pub struct RetrainArgs {}
