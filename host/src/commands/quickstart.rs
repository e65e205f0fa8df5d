//! `shiftnas quickstart`.

use anyhow::{Result, bail};

use super::{Context, ExitStatus};
use crate::cli::quickstart::QuickstartArgs;

/// Runs `shiftnas quickstart`.
pub fn run(_args: QuickstartArgs, _ctx: &Context) -> Result<ExitStatus> {
    bail!("`shiftnas quickstart` is not implemented in this build yet")
}
