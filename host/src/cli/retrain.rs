//! Arguments of `shiftnas retrain`.

use std::path::PathBuf;

use clap::Args;

use crate::cli::train::AugmentChoice;
use crate::data::DataSpec;

/// Arguments of `shiftnas retrain`: one arch trained from scratch as a standalone network.
#[derive(Debug, Args)]
pub struct RetrainArgs {
    /// The arch: one digit per block (0/1/2 = ShuffleNet k3/k5/k7, 3 = Xception).
    #[arg(long, required_unless_present = "resume")]
    pub arch: Option<String>,
    /// Supernet run dir the arch was found with: its space, data, proxy split and conform options
    /// are used (--space/--data must then be left out).
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["space", "data", "resume"])]
    pub supernet_run: Option<PathBuf>,
    /// Search-space preset [default: tiny].
    #[arg(long)]
    pub space: Option<String>,
    /// Images: builtin:fashion-mnist | idx:DIR | cifar10:DIR | cifar100:DIR | folder:DIR
    /// [default: builtin:fashion-mnist].
    #[arg(long)]
    pub data: Option<DataSpec>,
    /// Optimizer steps.
    #[arg(long, default_value_t = 2000)]
    pub steps: u64,
    /// Images per batch.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Initial learning rate, decayed linearly to 0 [default: SPOS retraining's 0.5 at batch
    /// 1024, scaled linearly to --batch].
    #[arg(long)]
    pub lr: Option<f64>,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// Weight decay on conv/linear weights (never on BN γ/β).
    #[arg(long, default_value_t = 4e-5)]
    pub weight_decay: f64,
    /// Label smoothing of the cross-entropy.
    #[arg(long, default_value_t = 0.1)]
    pub label_smoothing: f64,
    /// Seed of init, augmentation and batch order (and of the proxy split without --supernet-run).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Steps between checkpoints (the last step always checkpoints).
    #[arg(long, default_value_t = 500)]
    pub checkpoint_every: u64,
    /// Steps between log lines (log.jsonl, progress).
    #[arg(long, default_value_t = 10)]
    pub log_every: u64,
    /// Training images held out as the proxy split [default: the supernet run's, else 1000 or
    /// 10 % if smaller].
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
    /// Run dir to create [default: runs/retrain-SPACE-ARCH-SEED].
    #[arg(long, conflicts_with = "resume")]
    pub out: Option<PathBuf>,
    /// Continue the retraining run in this dir from its last checkpoint (its config.toml wins
    /// over the training flags); a finished run is only rescored (and exported with --export).
    #[arg(long, value_name = "RUN_DIR")]
    pub resume: Option<PathBuf>,
    /// Recompute BN statistics on N training images with the final weights before scoring and
    /// exporting ("precise BN"; short runs need it); 0 keeps the training EMA.
    #[arg(long, value_name = "N", default_value_t = 2000)]
    pub bn_images: usize,
    /// Also write the trained network as ONNX (BN folded, input normalisation as in training).
    #[arg(long, value_name = "FILE.onnx")]
    pub export: Option<PathBuf>,
    /// With --export: make the batch dimension symbolic instead of 1.
    #[arg(long, requires = "export")]
    pub dynamic_batch: bool,
}

#[cfg(test)]
mod tests {
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<super::RetrainArgs, String> {
        let mut v = vec!["shiftnas", "retrain"];
        v.extend_from_slice(args);
        match Cli::try_parse_from(v).map_err(|e| e.to_string())?.command {
            Command::Retrain(a) => Ok(a),
            _ => Err("not retrain".into()),
        }
    }

    #[test]
    fn retrain_flags_parse() {
        let a = parse(&[
            "--arch",
            "0123",
            "--supernet-run",
            "runs/t",
            "--steps",
            "5",
            "--export",
            "m.onnx",
            "--dynamic-batch",
        ])
        .unwrap();
        assert_eq!(a.arch.as_deref(), Some("0123"));
        assert_eq!((a.steps, a.batch, a.bn_images), (5, 64, 2000));
        assert!(a.dynamic_batch && a.lr.is_none());
        assert!(parse(&["--resume", "runs/r"]).unwrap().arch.is_none());
        let e = parse(&[]).unwrap_err();
        assert!(e.contains("--arch"), "{e}");
        let e = parse(&["--arch", "0", "--supernet-run", "a", "--space", "tiny"]).unwrap_err();
        assert!(e.contains("cannot be used with"), "{e}");
        assert!(parse(&["--arch", "0", "--out", "a", "--resume", "b"]).is_err());
        assert!(parse(&["--arch", "0", "--dynamic-batch"]).is_err());
    }
}
