//! `shiftnas cache`.

use anyhow::{Result, bail};

use super::{Context, ExitStatus};
use crate::cli::cache::CacheArgs;

/// Runs `shiftnas cache`.
pub fn run(_args: CacheArgs, _ctx: &Context) -> Result<ExitStatus> {
    bail!("`shiftnas cache` is not implemented in this build yet")
}
