//! `shiftnas export`.

use anyhow::{Result, bail};

use super::{Context, ExitStatus};
use crate::cli::export::ExportArgs;

/// Runs `shiftnas export`.
pub fn run(_args: ExportArgs, _ctx: &Context) -> Result<ExitStatus> {
    bail!("`shiftnas export` is not implemented in this build yet")
}
