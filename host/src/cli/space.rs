//! Arguments of `shiftnas space`.

use clap::{Args, Subcommand};

/// Arguments of `shiftnas space`.
#[derive(Debug, Args)]
pub struct SpaceArgs {
    /// What to show.
    #[command(subcommand)]
    pub command: SpaceCommand,
}

/// `shiftnas space` subcommands.
#[derive(Debug, Subcommand)]
pub enum SpaceCommand {
    /// Print a preset: input, stem, stages, every block's shape (all presets when no name).
    Show {
        /// Preset name (spos-imagenet, spos-cifar, tiny).
        name: Option<String>,
    },
    /// FLOPs (multiply-adds) and parameters of an arch, in total and per block.
    Flops {
        /// Preset name.
        #[arg(long)]
        space: String,
        /// The arch: one digit per block (0/1/2 = ShuffleNet k3/k5/k7, 3 = Xception).
        #[arg(long)]
        arch: String,
    },
}
