//! `shiftnas board`.

use anyhow::{Result, bail};

use super::{Context, ExitStatus};
use crate::cli::board::BoardArgs;

/// Runs `shiftnas board`.
pub fn run(_args: BoardArgs, _ctx: &Context) -> Result<ExitStatus> {
    bail!("`shiftnas board` is not implemented in this build yet")
}
