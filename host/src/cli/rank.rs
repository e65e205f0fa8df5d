//! Arguments of `shiftnas rank`.

use std::path::PathBuf;

use clap::Args;

/// Arguments of `shiftnas rank`.
#[derive(Debug, Args)]
pub struct RankArgs {
    /// A `shiftnas search` run dir: the supernet's scores are the errors in its archive.jsonl
    /// (an arch scored several times keeps its latest score).
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present_any = ["archs", "paired"],
        conflicts_with = "archs"
    )]
    pub run: Option<PathBuf>,
    /// Supernet scores instead of a run: CSV with columns `arch` and `error` (lower is better,
    /// e.g. a pareto.csv) or `accuracy` (higher is better), or `ARCH,ERROR` per line.
    #[arg(long, value_name = "FILE")]
    pub archs: Option<PathBuf>,
    /// Retrained accuracies: CSV with columns `arch` and `accuracy` (in % or as fractions).
    #[arg(long, value_name = "FILE.csv", required_unless_present = "paired")]
    pub truth: Option<PathBuf>,
    /// Size of the top sets compared [default: N/5, kept within 2..=10].
    #[arg(long, value_name = "K", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub top_k: Option<usize>,
    /// Search-space preset the archs must be valid in [default: the run's; without one, archs are
    /// only checked to be digits of one length].
    #[arg(long, value_name = "NAME")]
    pub space: Option<String>,
    /// Compare settings instead: a CSV of one figure per unit, header `UNIT,BASE,OTHER…` (e.g.
    /// `seed,off,accumulate` with each search seed's local τ-b). Prints each other setting's mean
    /// difference from the base with its paired Student-t interval.
    #[arg(
        long,
        value_name = "FILE.csv",
        conflicts_with_all = ["run", "archs", "truth", "top_k", "space"]
    )]
    pub paired: Option<PathBuf>,
    /// Confidence of the --paired intervals, a fraction in (0, 1) [default: 0.95].
    #[arg(long, conflicts_with_all = ["run", "archs", "truth", "top_k", "space"])]
    pub confidence: Option<f64>,
}

#[cfg(test)]
mod tests {
    use crate::cli::{Cli, Command};
    use clap::Parser;

    #[test]
    fn rank_flags_parse() {
        let cli = Cli::try_parse_from([
            "shiftnas", "rank", "--run", "runs/s", "--truth", "t.csv", "--top-k", "5", "--json",
        ])
        .unwrap();
        let Command::Rank(a) = cli.command else {
            panic!("not rank")
        };
        assert_eq!(a.top_k, Some(5));
        assert_eq!(a.run.unwrap().to_str(), Some("runs/s"));
        assert!(cli.global.json);
        let cli = Cli::try_parse_from(["shiftnas", "rank", "--paired", "p.csv"]).unwrap();
        let Command::Rank(a) = cli.command else {
            panic!("not rank")
        };
        assert_eq!(
            (a.paired.unwrap().to_str(), a.confidence),
            (Some("p.csv"), None)
        );
        for bad in [
            vec!["shiftnas", "rank", "--truth", "t.csv"],
            vec![
                "shiftnas", "rank", "--run", "r", "--archs", "a.csv", "--truth", "t",
            ],
            vec!["shiftnas", "rank", "--run", "r"],
            vec![
                "shiftnas", "rank", "--run", "r", "--truth", "t", "--top-k", "0",
            ],
            vec!["shiftnas", "rank", "--paired", "p.csv", "--truth", "t"],
            vec![
                "shiftnas",
                "rank",
                "--run",
                "r",
                "--truth",
                "t",
                "--confidence",
                "0.9",
            ],
        ] {
            assert!(Cli::try_parse_from(&bad).is_err(), "{bad:?}");
        }
    }
}
