//! Arguments of `shiftnas eval`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::train::BnMode;

/// Which split to score on (`--split`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvalSplit {
    /// The class-balanced held-out part of the training data (what search uses).
    Proxy,
    /// The test set (final reports).
    Test,
}

/// Arguments of `shiftnas eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Supernet checkpoint: a `shiftnas train` run dir, or its checkpoint/supernet.safetensors.
    #[arg(long, value_name = "CKPT")]
    pub supernet: PathBuf,
    /// The arch to score, one digit per block (e.g. 0123...).
    #[arg(long)]
    pub arch: String,
    /// Split to score on.
    #[arg(long, value_enum, default_value = "proxy")]
    pub split: EvalSplit,
    /// How BN statistics are recomputed before scoring.
    #[arg(long, value_enum, default_value = "exact")]
    pub bn: BnMode,
    /// Training images used for BN calibration.
    #[arg(long, default_value_t = 2000)]
    pub bn_images: usize,
    /// Images per forward pass.
    #[arg(long, default_value_t = 256, value_parser = crate::cli::shared::at_least_one)]
    pub batch: usize,
}

#[cfg(test)]
mod tests {
    use crate::cli::{Cli, Command};
    use clap::Parser;

    #[test]
    fn eval_flags_parse() {
        let cli = Cli::try_parse_from([
            "shiftnas",
            "eval",
            "--supernet",
            "runs/a",
            "--arch",
            "0123",
            "--bn",
            "reset-ema",
            "--split",
            "test",
            "--json",
        ])
        .unwrap();
        let Command::Eval(a) = cli.command else {
            panic!("not eval")
        };
        assert_eq!(a.bn, crate::train::BnMode::ResetEma);
        assert_eq!(a.split, super::EvalSplit::Test);
        assert!(cli.global.json);
        assert!(
            Cli::try_parse_from([
                "shiftnas",
                "eval",
                "--supernet",
                "x",
                "--arch",
                "0",
                "--bn",
                "ema"
            ])
            .is_err()
        );
        let e = Cli::try_parse_from([
            "shiftnas",
            "eval",
            "--supernet",
            "x",
            "--arch",
            "0",
            "--batch",
            "0",
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("'--batch "), "{e}");
    }
}
