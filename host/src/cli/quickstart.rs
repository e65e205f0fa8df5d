//! Arguments of `shiftnas quickstart`.

use std::path::PathBuf;

use clap::Args;

use crate::cli::shared::{at_least_one, at_least_one_u64, at_least_two, positive};
use crate::latency::LatencySpec;

/// Arguments of `shiftnas quickstart`: every one has a default, so it runs with none.
#[derive(Debug, Clone, Args)]
pub struct QuickstartArgs {
    /// Where everything goes: `train/` (supernet run), `search/` (search run), `models/` (ONNX).
    /// Running again with the same folder resumes whatever did not finish (after a kill, or
    /// Ctrl-C, which exits 130 naming that command).
    #[arg(long, default_value_os_t = QuickstartArgs::default().out)]
    pub out: PathBuf,
    /// Supernet training steps (uniform single-path sampling, `tiny` space).
    #[arg(long, default_value_t = QuickstartArgs::default().steps, value_parser = at_least_one_u64)]
    pub steps: u64,
    /// Training batch size.
    #[arg(long, default_value_t = QuickstartArgs::default().batch, value_parser = at_least_one)]
    pub batch: usize,
    /// Initial learning rate of the supernet training (linear decay; the first quarter of the
    /// steps is the path warm-up, see `shiftnas train --help`). Higher than `train`'s default
    /// (0.03125 at batch 64) on purpose: measured on this data and space, it learns more in the
    /// quickstart's few steps.
    #[arg(long, default_value_t = QuickstartArgs::default().lr, value_parser = positive, allow_hyphen_values = true)]
    pub lr: f64,
    /// NSGA-II population.
    #[arg(long, default_value_t = QuickstartArgs::default().pop, value_parser = at_least_two)]
    pub pop: usize,
    /// NSGA-II generations (Supernet Shifting: one accumulated SGD step after each).
    #[arg(long, default_value_t = QuickstartArgs::default().gens, value_parser = at_least_one)]
    pub gens: usize,
    /// Latency objective: the `local` board measures every candidate with ONNX Runtime on this
    /// machine; `flops` needs no runtime.
    #[arg(long, default_value_t = QuickstartArgs::default().latency)]
    pub latency: LatencySpec,
    /// Seed of training and search.
    #[arg(long, default_value_t = QuickstartArgs::default().seed)]
    pub seed: u64,
}

impl Default for QuickstartArgs {
    fn default() -> Self {
        QuickstartArgs {
            out: PathBuf::from("runs/quickstart"),
            steps: 2000,
            batch: 64,
            lr: 0.05,
            pop: 12,
            gens: 4,
            latency: LatencySpec::Board(vec!["local".into()]),
            seed: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<super::QuickstartArgs, String> {
        let mut v = vec!["shiftnas", "quickstart"];
        v.extend_from_slice(args);
        match Cli::try_parse_from(v).map_err(|e| e.to_string())?.command {
            Command::Quickstart(a) => Ok(a),
            _ => Err("not quickstart".into()),
        }
    }

    #[test]
    fn defaults_are_the_default_impl() {
        let a = parse(&[]).unwrap();
        assert_eq!(
            format!("{a:?}"),
            format!("{:?}", super::QuickstartArgs::default())
        );
        assert_eq!(a.latency.to_string(), "board:local");
        assert_eq!((a.pop, a.gens, a.steps), (12, 4, 2000));
    }

    #[test]
    fn bad_values_name_their_flag() {
        for bad in [
            ["--lr=-1"].as_slice(),
            &["--lr", "nan"],
            &["--batch", "0"],
            &["--steps", "0"],
            &["--pop", "1"],
            &["--gens", "0"],
        ] {
            let flag = bad[0].split('=').next().unwrap();
            let e = parse(bad).unwrap_err();
            assert!(e.contains(&format!("'{flag} ")), "{bad:?}: {e}");
        }
    }
}
