//! `shiftnas search`.

use anyhow::{Result, bail};

use super::{Context, ExitStatus};
use crate::cli::search::SearchArgs;

/// Runs `shiftnas search`.
pub fn run(_args: SearchArgs, _ctx: &Context) -> Result<ExitStatus> {
    bail!("`shiftnas search` is not implemented in this build yet")
}
