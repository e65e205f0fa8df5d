//! Arguments of `shiftnas search`.

use std::path::PathBuf;

use clap::Args;

use crate::data::DataSpec;
use crate::latency::LatencySpec;
use crate::nas::Algorithm;
use crate::nas::shifting::{ShiftMode, ShiftUpdate};
use crate::train::BnMode;

/// Arguments of `shiftnas search`.
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Trained supernet: a `supernet.safetensors` or a `shiftnas train` run dir.
    #[arg(long, required_unless_present_any = ["resume", "transfer_from"])]
    pub supernet: Option<PathBuf>,
    /// Transfer: a supernet trained on another data set (features kept; a new classifier when the
    /// class count differs, a new stem when input channels differ unless --convert-channels);
    /// implies --shift immediate (another --shift is an error).
    #[arg(long, value_name = "CKPT", conflicts_with = "supernet")]
    pub transfer_from: Option<PathBuf>,
    /// Images: builtin:fashion-mnist | idx:DIR | cifar10:DIR | cifar100:DIR | folder:DIR.
    #[arg(long, default_value = "builtin:fashion-mnist")]
    pub data: DataSpec,
    /// Search-space preset (must match the supernet).
    #[arg(long, default_value = "tiny")]
    pub space: String,
    /// Search algorithm.
    #[arg(long, value_enum, default_value = "nsga2")]
    pub algorithm: Algorithm,
    /// Latency objective: flops | predictor:FILE | board:NAME[,NAME…].
    #[arg(long, default_value = "flops")]
    pub latency: LatencySpec,
    /// Population size (evolution: candidates per generation).
    #[arg(long, default_value_t = 50)]
    pub pop: usize,
    /// Generations.
    #[arg(long, default_value_t = 20)]
    pub gens: usize,
    /// Seed of the search and of shifting batches.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Supernet Shifting: accumulate (paper; the default), immediate (authors' code; the only mode
    /// with --transfer-from) or off.
    #[arg(long, value_enum)]
    pub shift: Option<ShiftMode>,
    /// Shifting updates only the evaluated paths (masked) or every parameter (full).
    #[arg(long, value_enum, default_value = "masked")]
    pub shift_update: ShiftUpdate,
    /// accumulate: training images per candidate.
    #[arg(long, default_value_t = 640)]
    pub shift_samples: usize,
    /// immediate: SGD steps per candidate.
    #[arg(long, default_value_t = 20)]
    pub shift_steps: usize,
    /// Images per shifting batch.
    #[arg(long, default_value_t = 150)]
    pub shift_batch: usize,
    /// Shifting learning rate (accumulate: of the step on the sum of the generation's
    /// candidate gradients, as in the paper).
    #[arg(long, default_value_t = 1e-4)]
    pub shift_lr: f64,
    /// Shifting momentum.
    #[arg(long, default_value_t = 0.9)]
    pub shift_momentum: f64,
    /// Shifting weight decay.
    #[arg(long, default_value_t = 4e-5)]
    pub shift_weight_decay: f64,
    /// BN calibration before each score.
    #[arg(long, value_enum, default_value = "exact")]
    pub bn: BnMode,
    /// BN calibration images (with `--shift accumulate --bn exact` and sharing: only for the
    /// final front's re-score).
    #[arg(long, default_value_t = 2000)]
    pub bn_images: usize,
    /// With `--shift accumulate --bn exact`, calibrate BN with a separate forward over
    /// `--bn-images` instead of taking each candidate's statistics from its shifting forward.
    #[arg(long)]
    pub no_share_bn: bool,
    /// Proxy images scored [default: 1000, or 10 % if smaller].
    #[arg(long)]
    pub proxy_size: Option<usize>,
    /// Seed of the proxy split: the supernet's training seed, so it never trained on them.
    #[arg(long, default_value_t = 0)]
    pub split_seed: u64,
    /// Images per scoring batch.
    #[arg(long, default_value_t = 250)]
    pub eval_batch: usize,
    /// FLOPs cap (multiply-adds, e.g. 300e6).
    #[arg(long)]
    pub max_flops: Option<f64>,
    /// Parameter cap.
    #[arg(long)]
    pub max_params: Option<f64>,
    /// Latency cap in the source's unit (ms; MFLOPs for `flops`).
    #[arg(long)]
    pub latency_budget: Option<f64>,
    /// Convert grayscale <-> RGB when the data and the space disagree.
    #[arg(long)]
    pub convert_channels: bool,
    /// Resize images to the space's input size when they differ.
    #[arg(long)]
    pub resize: bool,
    /// Run dir to create [default: runs/search-ALGORITHM-SEED].
    #[arg(long, conflicts_with = "resume")]
    pub out: Option<PathBuf>,
    /// Continue the search in this dir from its last checkpoint (its config.toml wins): after a
    /// kill, or Ctrl-C (which finishes the candidate in flight and exits 130), it ends with the
    /// archive of an uninterrupted run.
    #[arg(long, value_name = "RUN_DIR")]
    pub resume: Option<PathBuf>,
    /// With `--latency board:…`: predict each candidate's latency with this calibrated
    /// predictor first and skip the board for those clearly outside the measured front.
    #[arg(long, value_name = "predictor:FILE")]
    pub prescreen: Option<LatencySpec>,
    /// Prescreen margin in % [default: twice the predictor's held-out RMSPE].
    #[arg(long, value_name = "PCT", requires = "prescreen")]
    pub prescreen_margin: Option<f64>,
    /// Use a prescreen predictor calibrated on a board with another fingerprint.
    #[arg(long, requires = "prescreen")]
    pub force_predictor: bool,
    /// `board:` latency: measure every candidate again even when the latency cache has its key
    /// (the new numbers replace the cached ones).
    #[arg(long)]
    pub remeasure: bool,
}

#[cfg(test)]
mod tests {
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<super::SearchArgs, String> {
        let mut v = vec!["shiftnas", "search"];
        v.extend_from_slice(args);
        match Cli::try_parse_from(v).map_err(|e| e.to_string())?.command {
            Command::Search(a) => Ok(a),
            _ => Err("not search".into()),
        }
    }

    #[test]
    fn search_flags_parse() {
        let a = parse(&[
            "--supernet",
            "s.safetensors",
            "--algorithm",
            "evolution",
            "--latency",
            "board:rk1,rk2",
            "--shift",
            "immediate",
            "--shift-update",
            "full",
            "--bn",
            "reset-ema",
            "--max-flops",
            "300e6",
            "--pop",
            "8",
        ])
        .unwrap();
        assert_eq!(a.algorithm, crate::nas::Algorithm::Evolution);
        assert_eq!(a.latency.to_string(), "board:rk1,rk2");
        assert_eq!(a.shift, Some(crate::nas::shifting::ShiftMode::Immediate));
        assert_eq!(a.max_flops, Some(300e6));
        assert_eq!(a.pop, 8);
        assert!(!a.remeasure);
        assert!(
            parse(&["--supernet", "x", "--remeasure"])
                .unwrap()
                .remeasure
        );
        assert!(parse(&["--resume", "r", "--remeasure"]).unwrap().remeasure);
        let d = parse(&["--supernet", "x"]).unwrap();
        assert_eq!(
            (d.shift_samples, d.shift_steps, d.shift_batch),
            (640, 20, 150)
        );
        assert_eq!(d.shift_lr, 1e-4);
        assert!(parse(&[]).unwrap_err().contains("--supernet"));
        assert!(parse(&["--resume", "r"]).is_ok());
        assert!(parse(&["--transfer-from", "c.safetensors"]).is_ok());
        assert!(
            parse(&["--supernet", "x", "--latency", "gpu"])
                .unwrap_err()
                .contains("predictor:FILE")
        );
        assert!(parse(&["--supernet", "x", "--shift", "sometimes"]).is_err());
        assert!(parse(&["--supernet", "x", "--out", "a", "--resume", "b"]).is_err());
    }
}
