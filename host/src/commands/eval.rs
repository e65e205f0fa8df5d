//! `shiftnas eval`.

use anyhow::{Result, bail};

use super::{Context, ExitStatus};
use crate::cli::eval::EvalArgs;

/// Runs `shiftnas eval`.
pub fn run(_args: EvalArgs, _ctx: &Context) -> Result<ExitStatus> {
    bail!("`shiftnas eval` is not implemented in this build yet")
}
