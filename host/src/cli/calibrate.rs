//! Arguments of `shiftnas calibrate`.

use clap::Args;

/// Arguments of `shiftnas calibrate`.
#[derive(Debug, Args)]
pub struct CalibrateArgs {}
