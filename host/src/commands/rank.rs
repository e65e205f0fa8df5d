//! `shiftnas rank`.

use anyhow::{Result, bail};

use super::{Context, ExitStatus};
use crate::cli::rank::RankArgs;

/// Runs `shiftnas rank`.
pub fn run(_args: RankArgs, _ctx: &Context) -> Result<ExitStatus> {
    bail!("`shiftnas rank` is not implemented in this build yet")
}
