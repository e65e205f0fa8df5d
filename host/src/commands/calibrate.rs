//! `shiftnas calibrate`.

use anyhow::{Result, bail};

use super::{Context, ExitStatus};
use crate::cli::calibrate::CalibrateArgs;

/// Runs `shiftnas calibrate`.
pub fn run(_args: CalibrateArgs, _ctx: &Context) -> Result<ExitStatus> {
    bail!("`shiftnas calibrate` is not implemented in this build yet")
}
