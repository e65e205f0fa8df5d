//! Arguments of `shiftnas export`.

use clap::Args;

/// Arguments of `shiftnas export`.
#[derive(Debug, Args)]
pub struct ExportArgs {}
