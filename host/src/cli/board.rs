//! Arguments of `shiftnas board`.

use clap::Args;

/// Arguments of `shiftnas board`.
#[derive(Debug, Args)]
pub struct BoardArgs {}
