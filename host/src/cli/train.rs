//! Arguments of `shiftnas train`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::data::DataSpec;
use crate::train::Sampling;

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
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Search-space preset (`shiftnas space list`).
    #[arg(long, default_value = "tiny")]
    pub space: String,
    /// Images: builtin:fashion-mnist | idx:DIR | cifar10:DIR | cifar100:DIR | folder:DIR.
    #[arg(long, default_value = "builtin:fashion-mnist")]
    pub data: DataSpec,
    /// Optimizer steps.
    #[arg(long, default_value_t = 2000)]
    pub steps: u64,
    /// Images per batch.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Initial learning rate [default: SPOS's 0.5 at batch 1024, scaled linearly to --batch].
    #[arg(long)]
    pub lr: Option<f64>,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// Weight decay on conv/linear weights.
    #[arg(long, default_value_t = 4e-5)]
    pub weight_decay: f64,
    /// Label smoothing of the cross-entropy.
    #[arg(long, default_value_t = 0.1)]
    pub label_smoothing: f64,
    /// Seed of init, sampling, augmentation, proxy split and batch order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Steps between checkpoints (the last step always checkpoints).
    #[arg(long, default_value_t = 500)]
    pub checkpoint_every: u64,
    /// Steps between log lines (log.jsonl, progress).
    #[arg(long, default_value_t = 10)]
    pub log_every: u64,
    /// Path sampling: uniform single path (SPOS), SPOS's FLOPs-binned sampling, or FairNAS
    /// strict fairness.
    #[arg(long, value_enum, default_value = "uniform")]
    pub sampling: Sampling,
    /// Path warm-up (uniform and FLOPs-binned sampling): training starts on the k3 path with
    /// Xception blocks mixed in at a growing rate; at this step k5/k7 inherit k3's kernels and
    /// sampling turns to --sampling [default: --steps / 4, 0 with fair; 0 = plain SPOS].
    #[arg(long)]
    pub warmup_steps: Option<u64>,
    /// FLOPs bins of `--sampling flops-binned` (equal widths over the space's FLOPs range).
    #[arg(long, default_value_t = 10)]
    pub flops_bins: usize,
    /// Training images held out for proxy scoring [default: 1000, or 10 % if smaller].
    #[arg(long)]
    pub proxy_size: Option<usize>,
    /// Convert grayscale <-> RGB when the data and the space disagree.
    #[arg(long)]
    pub convert_channels: bool,
    /// Resize images to the space's input size when they differ.
    #[arg(long)]
    pub resize: bool,
    /// Training augmentation.
    #[arg(long, value_enum, default_value = "auto")]
    pub augment: AugmentChoice,
    /// Run dir to create [default: runs/train-SPACE-SEED].
    #[arg(long, conflicts_with = "resume")]
    pub out: Option<PathBuf>,
    /// Continue the run in this dir from its last checkpoint (its config.toml wins over other flags).
    #[arg(long, value_name = "RUN_DIR")]
    pub resume: Option<PathBuf>,
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
        assert_eq!(a.steps, 5);
        assert_eq!(a.data.to_string(), "cifar10:/d");
        assert_eq!(a.sampling, crate::train::Sampling::Fair);
        let d = parse(&[]).unwrap();
        assert_eq!((d.batch, d.lr, d.checkpoint_every), (64, None, 500));
        let err = parse(&["--data", "mnist"]).unwrap_err();
        assert!(err.contains("builtin:fashion-mnist"), "{err}");
        assert!(parse(&["--out", "a", "--resume", "b"]).is_err());
        assert!(parse(&["--sampling", "random"]).is_err());
    }
}
