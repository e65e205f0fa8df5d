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
        /// The arch: one digit per block, the choice index (`shiftnas space show` lists them:
        /// ShuffleNetV2 0/1/2/3 = k3/k5/k7/Xception, MobileNetV2 0–5 = k3e3 … k7e6).
        #[arg(long)]
        arch: String,
    },
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::SpaceCommand;
    use crate::cli::{Cli, Command};

    #[test]
    fn flops_takes_space_and_arch() {
        let cli = Cli::try_parse_from([
            "shiftnas",
            "space",
            "flops",
            "--space",
            "tiny",
            "--arch",
            "01230123012301230123",
            "--json",
        ])
        .unwrap();
        assert!(cli.global.json);
        let Command::Space(a) = cli.command else {
            panic!("not a space command")
        };
        match a.command {
            SpaceCommand::Flops { space, arch } => {
                assert_eq!(space, "tiny");
                assert_eq!(arch, "01230123012301230123");
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn flops_needs_an_arch() {
        let err = Cli::try_parse_from(["shiftnas", "space", "flops", "--space", "tiny"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--arch"), "{err}");
    }
}
