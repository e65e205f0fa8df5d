//! Arguments of `shiftnas search`.

use std::path::PathBuf;

use clap::Args;

use crate::cli::shared::{
    DataArgs, at_least_one, at_least_two, fraction, non_negative, positive, space_name,
};
use crate::latency::LatencySpec;
use crate::nas::Algorithm;
use crate::nas::shifting::{ShiftMode, ShiftUpdate};
use crate::nas::warmup::WarmupConfig;
use crate::train::BnMode;

/// Arguments of `shiftnas search`.
#[derive(Debug, Clone, Args)]
pub struct SearchArgs {
    /// Trained supernet: a `supernet.safetensors` or a `shiftnas train` run dir.
    #[arg(long, required_unless_present_any = ["resume", "transfer_from"])]
    pub supernet: Option<PathBuf>,
    /// Transfer: a supernet trained on another data set. Its features are kept, the classifier is
    /// new (unless --same-classes), the stem is new when the input channels differ; a head
    /// warm-up (--warmup-*) runs before the search. Implies --shift immediate (another --shift
    /// is an error) at --transfer-shift-lr.
    #[arg(
        long,
        value_name = "CKPT",
        conflicts_with = "supernet",
        help_heading = "Transfer"
    )]
    pub transfer_from: Option<PathBuf>,
    /// Transfer: the target's classes are the source's, in the same order; keep its classifier.
    #[arg(long, help_heading = "Transfer")]
    pub same_classes: bool,
    /// Transfer warm-up, phase 1: SGD steps training only the new head (classifier and any
    /// fresh stem) on the frozen copied features, one sampled path per step. Costs
    /// steps × --warmup-batch training images.
    #[arg(long, default_value_t = SearchArgs::default().warmup_probe_steps, help_heading = "Transfer")]
    pub warmup_probe_steps: u64,
    /// Learning rate of the warm-up's head-only phase.
    #[arg(long, default_value_t = SearchArgs::default().warmup_probe_lr, value_parser = positive, allow_hyphen_values = true, help_heading = "Transfer")]
    pub warmup_probe_lr: f64,
    /// Transfer warm-up, phase 2: SGD steps fine-tuning every weight of one sampled path per step
    /// (SPOS style). Costs steps × --warmup-batch training images.
    #[arg(long, default_value_t = SearchArgs::default().warmup_steps, help_heading = "Transfer")]
    pub warmup_steps: u64,
    /// Learning rate of the warm-up's fine-tune phase.
    #[arg(long, default_value_t = SearchArgs::default().warmup_lr, value_parser = positive, allow_hyphen_values = true, help_heading = "Transfer")]
    pub warmup_lr: f64,
    /// Training images per warm-up step (the warm-up processes
    /// (--warmup-probe-steps + --warmup-steps) × this many: 6,144 by default).
    #[arg(long, default_value_t = SearchArgs::default().warmup_batch, value_parser = at_least_one, help_heading = "Transfer")]
    pub warmup_batch: usize,
    /// Shifting learning rate of a transfer search (replaces --shift-lr there: adapting a
    /// supernet to new data needs a larger step than shifting it on its own data).
    #[arg(long, default_value_t = SearchArgs::default().transfer_shift_lr, value_parser = positive, allow_hyphen_values = true, help_heading = "Transfer")]
    pub transfer_shift_lr: f64,
    /// Search-space preset [default: the one the supernet checkpoint was trained in; a
    /// different one is an error].
    #[arg(long, value_parser = space_name)]
    pub space: Option<String>,
    /// Search algorithm.
    #[arg(long, value_enum, default_value_t = SearchArgs::default().algorithm)]
    pub algorithm: Algorithm,
    /// Latency objective: flops | predictor:FILE | board:NAME[,NAME…].
    #[arg(long, default_value_t = SearchArgs::default().latency)]
    pub latency: LatencySpec,
    /// Population size (evolution: candidates per generation), at least 2.
    #[arg(long, default_value_t = SearchArgs::default().pop, value_parser = at_least_two)]
    pub pop: usize,
    /// Generations.
    #[arg(long, default_value_t = SearchArgs::default().gens, value_parser = at_least_one)]
    pub gens: usize,
    /// Seed of the search and of shifting batches.
    #[arg(long, default_value_t = SearchArgs::default().seed)]
    pub seed: u64,
    /// Seed of the proxy split: the supernet's training seed (`shiftnas train --seed`), so it
    /// never trained on them.
    #[arg(long, default_value_t = SearchArgs::default().split_seed)]
    pub split_seed: u64,
    /// Run dir to create [default: runs/search-ALGORITHM-SEED].
    #[arg(long, conflicts_with = "resume")]
    pub out: Option<PathBuf>,
    /// Continue the search in this dir from its last checkpoint (its config.toml wins): after a
    /// kill, or Ctrl-C (which finishes the candidate in flight and exits 130), it ends with the
    /// archive of an uninterrupted run.
    #[arg(long, value_name = "RUN_DIR")]
    pub resume: Option<PathBuf>,
    /// Images, their fit to the space, the proxy split.
    #[command(flatten)]
    pub data: DataArgs,
    /// Supernet Shifting.
    #[command(flatten)]
    pub shift: ShiftArgs,
    /// BN calibration before each score.
    #[arg(long, value_enum, default_value_t = SearchArgs::default().bn, help_heading = "Scoring")]
    pub bn: BnMode,
    /// BN calibration images (with `--shift accumulate --bn exact` and sharing: only for the
    /// final front's re-score).
    #[arg(long, default_value_t = SearchArgs::default().bn_images, help_heading = "Scoring")]
    pub bn_images: usize,
    /// With `--shift accumulate --bn exact`, calibrate BN with a separate forward over
    /// `--bn-images` instead of taking each candidate's statistics from its shifting forward.
    #[arg(long, help_heading = "Scoring")]
    pub no_share_bn: bool,
    /// Images per scoring batch.
    #[arg(long, default_value_t = SearchArgs::default().eval_batch, value_parser = at_least_one, help_heading = "Scoring")]
    pub eval_batch: usize,
    /// FLOPs cap (multiply-adds, e.g. 300e6).
    #[arg(long, value_parser = positive, allow_hyphen_values = true, help_heading = "Constraints")]
    pub max_flops: Option<f64>,
    /// Parameter cap.
    #[arg(long, value_parser = positive, allow_hyphen_values = true, help_heading = "Constraints")]
    pub max_params: Option<f64>,
    /// Latency cap in the source's unit (ms; MFLOPs for `flops`).
    #[arg(long, value_parser = positive, allow_hyphen_values = true, help_heading = "Constraints")]
    pub latency_budget: Option<f64>,
    /// With `--latency board:…`: predict each candidate's latency with this calibrated
    /// predictor first and skip the board for those clearly outside the measured front.
    #[arg(long, value_name = "predictor:FILE", help_heading = "Boards")]
    pub prescreen: Option<LatencySpec>,
    /// Prescreen margin in % [default: twice the predictor's held-out RMSPE].
    #[arg(long, value_name = "PCT", requires = "prescreen", value_parser = non_negative, allow_hyphen_values = true, help_heading = "Boards")]
    pub prescreen_margin: Option<f64>,
    /// Use a prescreen predictor calibrated on a board with another fingerprint.
    #[arg(long, requires = "prescreen", help_heading = "Boards")]
    pub force_predictor: bool,
    /// `board:` latency: measure every candidate again even when the latency cache has its key
    /// (the new numbers replace the cached ones).
    #[arg(long, help_heading = "Boards")]
    pub remeasure: bool,
    /// Also score each member of the final front through rknn-toolkit2's simulator of the RK3588
    /// NPU in this format (`source scripts/rknn-env`): pareto.json/.csv/.svg then show its fp32
    /// and NPU top-1 on the same proxy images, i.e. what quantisation costs each arch.
    #[arg(long, value_name = "DTYPE", help_heading = "NPU")]
    pub npu_accuracy: Option<crate::npu::Dtype>,
    /// Archs to follow through the search (one per line, or a CSV with an `arch` column such as
    /// a retrained-accuracy file): scored under the current weights before the first generation
    /// and after every one, into DIR/track/gen-NNN.csv for `shiftnas rank --archs`; shows how
    /// shifting moves their order. Costs one BN calibration (--bn-images) and one proxy score
    /// per arch per generation.
    #[arg(long, value_name = "FILE")]
    pub track: Option<PathBuf>,
    /// Proxy images --npu-accuracy scores (evenly spread over the proxy split; the simulator runs
    /// one image at a time).
    #[arg(long, value_name = "N", default_value_t = SearchArgs::default().npu_images, value_parser = at_least_one, requires = "npu_accuracy", help_heading = "NPU")]
    pub npu_images: usize,
    /// Int8 calibration images of --npu-accuracy int8 (evenly spread over the training split).
    #[arg(long, value_name = "N", default_value_t = SearchArgs::default().npu_calibration, value_parser = at_least_one, requires = "npu_accuracy", help_heading = "NPU")]
    pub npu_calibration: usize,
}

impl Default for SearchArgs {
    fn default() -> Self {
        SearchArgs {
            supernet: None,
            transfer_from: None,
            same_classes: false,
            warmup_probe_steps: WarmupConfig::default().probe_steps,
            warmup_probe_lr: WarmupConfig::default().probe_lr,
            warmup_steps: WarmupConfig::default().finetune_steps,
            warmup_lr: WarmupConfig::default().finetune_lr,
            warmup_batch: WarmupConfig::default().batch,
            transfer_shift_lr: 1e-2,
            space: None,
            algorithm: Algorithm::Nsga2,
            latency: LatencySpec::Flops,
            pop: 50,
            gens: 20,
            seed: 0,
            split_seed: 0,
            out: None,
            resume: None,
            data: DataArgs::default(),
            shift: ShiftArgs::default(),
            bn: BnMode::Exact,
            bn_images: 2000,
            no_share_bn: false,
            eval_batch: 250,
            max_flops: None,
            max_params: None,
            latency_budget: None,
            prescreen: None,
            prescreen_margin: None,
            force_predictor: false,
            remeasure: false,
            npu_accuracy: None,
            track: None,
            npu_images: 1000,
            npu_calibration: 100,
        }
    }
}

/// Supernet Shifting: fine-tuning the supernet on the candidates the search evaluates. Its SGD
/// defaults differ from `train`'s on purpose: a small learning rate on a trained supernet, and
/// larger batches than training's.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Supernet Shifting")]
pub struct ShiftArgs {
    /// Supernet Shifting: accumulate (paper; the default), immediate (authors' code; the only mode
    /// with --transfer-from) or off.
    #[arg(long, value_enum)]
    pub shift: Option<ShiftMode>,
    /// Shifting updates only the evaluated paths (masked) or every parameter (full).
    #[arg(long, value_enum, default_value_t = ShiftArgs::default().shift_update)]
    pub shift_update: ShiftUpdate,
    /// accumulate: training images per candidate.
    #[arg(long, default_value_t = ShiftArgs::default().shift_samples, value_parser = at_least_one)]
    pub shift_samples: usize,
    /// immediate: SGD steps per candidate.
    #[arg(long, default_value_t = ShiftArgs::default().shift_steps, value_parser = at_least_one)]
    pub shift_steps: usize,
    /// Images per shifting batch.
    #[arg(long, default_value_t = ShiftArgs::default().shift_batch, value_parser = at_least_one)]
    pub shift_batch: usize,
    /// Shifting learning rate (accumulate: of the step on the sum of the generation's
    /// candidate gradients, as in the paper).
    #[arg(long, default_value_t = ShiftArgs::default().shift_lr, value_parser = positive, allow_hyphen_values = true)]
    pub shift_lr: f64,
    /// Shifting momentum, in [0, 1).
    #[arg(long, default_value_t = ShiftArgs::default().shift_momentum, value_parser = fraction, allow_hyphen_values = true)]
    pub shift_momentum: f64,
    /// Shifting weight decay.
    #[arg(long, default_value_t = ShiftArgs::default().shift_weight_decay, value_parser = non_negative, allow_hyphen_values = true)]
    pub shift_weight_decay: f64,
}

impl Default for ShiftArgs {
    fn default() -> Self {
        ShiftArgs {
            shift: None,
            shift_update: ShiftUpdate::Masked,
            shift_samples: 640,
            shift_steps: 20,
            shift_batch: 150,
            shift_lr: 1e-4,
            shift_momentum: 0.9,
            shift_weight_decay: 4e-5,
        }
    }
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
        assert_eq!(
            a.shift.shift,
            Some(crate::nas::shifting::ShiftMode::Immediate)
        );
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
            (
                d.shift.shift_samples,
                d.shift.shift_steps,
                d.shift.shift_batch
            ),
            (640, 20, 150)
        );
        assert_eq!(d.shift.shift_lr, 1e-4);
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

    #[test]
    fn defaults_are_the_default_impl() {
        let d = super::SearchArgs {
            supernet: Some("x".into()),
            ..super::SearchArgs::default()
        };
        assert_eq!(
            format!("{:?}", parse(&["--supernet", "x"]).unwrap()),
            format!("{d:?}")
        );
    }

    /// Bad values are refused by clap, naming the flag (not another one), before a run dir
    /// exists.
    #[test]
    fn bad_values_name_their_flag() {
        for bad in [
            ["--shift-batch", "0"].as_slice(),
            &["--shift-lr=-1"],
            &["--shift-lr", "nan"],
            &["--shift-momentum", "1"],
            &["--shift-weight-decay=-1"],
            &["--shift-samples", "0"],
            &["--shift-steps", "0"],
            &["--pop", "1"],
            &["--gens", "0"],
            &["--eval-batch", "0"],
            &["--max-flops=-5"],
            &["--max-params", "0"],
            &["--latency-budget", "inf"],
            &["--space", "nope"],
        ] {
            let mut v = vec!["--supernet", "x"];
            v.extend_from_slice(bad);
            let flag = bad[0].split('=').next().unwrap();
            let e = parse(&v).unwrap_err();
            assert!(e.contains(&format!("'{flag} ")), "{bad:?}: {e}");
        }
    }
}
