//! Arguments of `shiftnas cache`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// Arguments of `shiftnas cache`.
#[derive(Debug, Args)]
pub struct CacheArgs {
    /// The latency cache (default: ~/.cache/shiftnas/latency.sqlite).
    #[arg(long, global = true, value_name = "PATH")]
    pub cache: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: CacheCommand,
}

/// `shiftnas cache` subcommands.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Entries in total and per board fingerprint.
    Stats,
    /// Print every entry (CSV with --csv, else JSON lines of the whole reports).
    Export {
        /// CSV without the reports.
        #[arg(long)]
        csv: bool,
    },
    /// Delete entries (all of them without filters).
    Prune {
        /// Only entries older than this, e.g. 30d, 12h.
        #[arg(long, value_name = "AGE", value_parser = crate::latency::cache::parse_age)]
        older_than: Option<std::time::Duration>,
        /// Only entries of this board fingerprint (as `cache stats` prints it).
        #[arg(long, value_name = "FINGERPRINT")]
        board: Option<String>,
    },
}
