//! Arguments of `shiftnas cache`.

use clap::Args;

/// Arguments of `shiftnas cache`.
#[derive(Debug, Args)]
pub struct CacheArgs {}
