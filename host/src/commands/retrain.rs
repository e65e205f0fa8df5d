//! `shiftnas retrain`.

use anyhow::{Result, bail};

use super::{Context, ExitStatus};
use crate::cli::retrain::RetrainArgs;

/// Runs `shiftnas retrain`.
pub fn run(_args: RetrainArgs, _ctx: &Context) -> Result<ExitStatus> {
    bail!("`shiftnas retrain` is not implemented in this build yet")
}
