//! Arguments of `shiftnas train`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::cli::shared::{DataArgs, TrainingArgs, at_least_one, space_name};
use crate::train::attentive::AttentiveScore;
use crate::train::{MultiPath, Sampling};

/// Which training augmentation to use (`--augment`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AugmentChoice {
    /// Crop + flip for natural images (CIFAR, folders; random-resized crop from 128 px), none for IDX data.
    Auto,
    /// No augmentation.
    None,
    /// Padded random crop and horizontal flip.
    CropFlip,
    /// Random-resized crop and horizontal flip.
    ResizedCrop,
}

/// Arguments of `shiftnas train`.
#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// Search-space preset (`shiftnas space show`).
    #[arg(long, default_value_t = TrainArgs::default().space, value_parser = space_name)]
    pub space: String,
    /// Seed of init, sampling, augmentation, proxy split and batch order.
    #[arg(long, default_value_t = TrainArgs::default().seed)]
    pub seed: u64,
    /// Run dir to create [default: runs/train-SPACE-SEED].
    #[arg(long, conflicts_with = "resume")]
    pub out: Option<PathBuf>,
    /// Continue the run in this dir from its last checkpoint (its config.toml wins over other flags).
    #[arg(long, value_name = "RUN_DIR")]
    pub resume: Option<PathBuf>,
    /// Images, their fit to the space, the proxy split.
    #[command(flatten)]
    pub data: DataArgs,
    /// Optimiser and loop.
    #[command(flatten)]
    pub training: TrainingArgs,
    /// Path sampling: uniform single path (SPOS), SPOS's FLOPs-binned sampling, FairNAS strict
    /// fairness, GreedyNAS (multi-path with rejection and a candidate pool), or AttentiveNAS
    /// best-up / worst-up (docs/training.md says what each follows of its paper).
    #[arg(long, value_enum, default_value_t = TrainArgs::default().sampling, help_heading = "Path sampling")]
    pub sampling: Sampling,
    /// Path warm-up (every sampling but fair): training starts on the k3 path (k3e3 in
    /// MobileNetV2) with Xception (k3e6) blocks mixed in at a growing rate; at this step the larger
    /// kernels inherit theirs and sampling turns to --sampling [default: --steps / 4, 0 with
    /// fair; 0 = plain SPOS].
    #[arg(long, help_heading = "Path sampling")]
    pub warmup_steps: Option<u64>,
    /// FLOPs bins of `--sampling flops-binned` and of AttentiveNAS's candidates (equal widths over
    /// the space's FLOPs range).
    #[arg(long, default_value_t = TrainArgs::default().flops_bins, value_parser = at_least_one, help_heading = "Path sampling")]
    pub flops_bins: usize,
    /// GreedyNAS: candidate paths per step, scored on a held-out batch of the proxy split (the
    /// paper's m = 10).
    #[arg(long, default_value_t = MultiPath::default().greedy_paths, value_parser = at_least_one, help_heading = "Path sampling")]
    pub greedy_paths: usize,
    /// GreedyNAS: candidates with the lowest loss trained per step, at most --greedy-paths (the
    /// paper's k = 5).
    #[arg(long, default_value_t = MultiPath::default().greedy_keep, value_parser = at_least_one, help_heading = "Path sampling")]
    pub greedy_keep: usize,
    /// GreedyNAS: paths in the candidate pool (the paper's 1000).
    #[arg(long, default_value_t = MultiPath::default().greedy_pool, value_parser = at_least_one, help_heading = "Path sampling")]
    pub greedy_pool: usize,
    /// AttentiveNAS: candidate paths per step, drawn in one FLOPs bin (--flops-bins).
    #[arg(long, default_value_t = MultiPath::default().attentive_paths, value_parser = at_least_one, help_heading = "Path sampling")]
    pub attentive_paths: usize,
    /// AttentiveNAS: the accuracy predictor ranking the candidates: the supernet's loss on the
    /// step's batch, or FLOPs (more = better).
    #[arg(long, value_enum, default_value_t = MultiPath::default().attentive_score, help_heading = "Path sampling")]
    pub attentive_score: AttentiveScore,
}

impl TrainArgs {
    /// The GreedyNAS / AttentiveNAS settings of the flags.
    ///
    /// # Errors
    /// `--greedy-keep` above `--greedy-paths`.
    pub fn multi_path(&self) -> anyhow::Result<MultiPath> {
        let m = MultiPath {
            greedy_paths: self.greedy_paths,
            greedy_keep: self.greedy_keep,
            greedy_pool: self.greedy_pool,
            attentive_paths: self.attentive_paths,
            attentive_score: self.attentive_score,
        };
        m.check()?;
        Ok(m)
    }
}

impl Default for TrainArgs {
    fn default() -> Self {
        TrainArgs {
            space: "tiny".into(),
            seed: 0,
            out: None,
            resume: None,
            data: DataArgs::default(),
            training: TrainingArgs::default(),
            sampling: Sampling::Uniform,
            warmup_steps: None,
            flops_bins: 10,
            greedy_paths: MultiPath::default().greedy_paths,
            greedy_keep: MultiPath::default().greedy_keep,
            greedy_pool: MultiPath::default().greedy_pool,
            attentive_paths: MultiPath::default().attentive_paths,
            attentive_score: MultiPath::default().attentive_score,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<super::TrainArgs, String> {
        let mut v = vec!["shiftnas", "train"];
        v.extend_from_slice(args);
        match Cli::try_parse_from(v).map_err(|e| e.to_string())?.command {
            Command::Train(a) => Ok(a),
            _ => Err("not train".into()),
        }
    }

    #[test]
    fn train_flags_parse() {
        let a = parse(&[
            "--space",
            "tiny",
            "--data",
            "cifar10:/d",
            "--steps",
            "5",
            "--sampling",
            "fair",
            "--augment",
            "crop-flip",
        ])
        .unwrap();
        assert_eq!(a.training.steps, 5);
        assert_eq!(a.data.data.to_string(), "cifar10:/d");
        assert_eq!(a.sampling, crate::train::Sampling::Fair);
        let d = parse(&[]).unwrap();
        assert_eq!(
            (d.training.batch, d.training.lr, d.training.checkpoint_every),
            (64, None, 500)
        );
        let err = parse(&["--data", "mnist"]).unwrap_err();
        assert!(err.contains("builtin:fashion-mnist"), "{err}");
        assert!(parse(&["--out", "a", "--resume", "b"]).is_err());
        assert!(parse(&["--sampling", "random"]).is_err());
        let g = parse(&[
            "--sampling",
            "greedy",
            "--greedy-paths",
            "6",
            "--greedy-keep",
            "3",
            "--greedy-pool",
            "20",
        ])
        .unwrap();
        assert_eq!(g.sampling, crate::train::Sampling::Greedy);
        let m = g.multi_path().unwrap();
        assert_eq!((m.greedy_paths, m.greedy_keep, m.greedy_pool), (6, 3, 20));
        let a = parse(&[
            "--sampling",
            "attentive-worst",
            "--attentive-score",
            "flops",
        ])
        .unwrap();
        assert_eq!(a.sampling, crate::train::Sampling::AttentiveWorst);
        assert_eq!(
            a.multi_path().unwrap().attentive_score,
            crate::train::attentive::AttentiveScore::Flops
        );
        let e = parse(&["--greedy-paths", "2", "--greedy-keep", "3"])
            .unwrap()
            .multi_path()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--greedy-keep 3") && e.contains("--greedy-paths 2"),
            "{e}"
        );
    }

    #[test]
    fn defaults_are_the_default_impl() {
        assert_eq!(
            format!("{:?}", parse(&[]).unwrap()),
            format!("{:?}", super::TrainArgs::default())
        );
    }

    /// Bad values are refused by clap, naming the flag, before a run dir exists.
    #[test]
    fn bad_values_name_their_flag() {
        for bad in [
            ["--lr=-1"].as_slice(),
            &["--lr", "nan"],
            &["--batch", "0"],
            &["--flops-bins", "0"],
            &["--greedy-keep", "0"],
            &["--attentive-score", "accuracy"],
            &["--space", "nope"],
        ] {
            let flag = bad[0].split('=').next().unwrap();
            let e = parse(bad).unwrap_err();
            assert!(e.contains(flag), "{bad:?}: {e}");
        }
    }
}
