//! Arguments of `shiftnas quickstart`.

use clap::Args;

/// Arguments of `shiftnas quickstart`.
#[derive(Debug, Args)]
pub struct QuickstartArgs {}
