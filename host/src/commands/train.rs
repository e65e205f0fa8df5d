//! `shiftnas train`.

use anyhow::{Result, bail};

use super::{Context, ExitStatus};
use crate::cli::train::TrainArgs;

/// Runs `shiftnas train`.
pub fn run(_args: TrainArgs, _ctx: &Context) -> Result<ExitStatus> {
    bail!("`shiftnas train` is not implemented in this build yet")
}
