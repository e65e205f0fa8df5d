//! Arguments of `shiftnas search`.

use clap::Args;

/// Arguments of `shiftnas search`.
#[derive(Debug, Args)]
pub struct SearchArgs {}
