//! Arguments of `shiftnas export`.

use std::path::PathBuf;

use clap::Args;

use crate::cli::shared::DataArgs;

/// Arguments of `shiftnas export`: one arch to an ONNX file, BN folded.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Supernet checkpoint to take the arch's weights from (its space is read from the file).
    #[arg(
        long,
        value_name = "CKPT",
        conflicts_with = "random_weights",
        required_unless_present = "random_weights"
    )]
    pub supernet: Option<PathBuf>,
    /// Export random weights instead (for latency measurements only); needs --space.
    #[arg(
        long,
        requires = "space",
        conflicts_with_all = ["data", "proxy_size", "convert_channels", "resize", "split_seed"]
    )]
    pub random_weights: bool,
    /// Preset name; with --supernet it must match the checkpoint's space (checked before anything
    /// is written).
    #[arg(long, value_parser = crate::cli::shared::space_name)]
    pub space: Option<String>,
    /// The arch: one digit per block, the choice index (`shiftnas space show` lists them: ShuffleNetV2
    /// 0/1/2/3 = k3/k5/k7/Xception, MobileNetV2 0–5 = k3e3 … k7e6).
    #[arg(long)]
    pub arch: String,
    /// Where to write the .onnx file (written atomically; parent folders are created).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Seed of --random-weights.
    #[arg(long, default_value_t = 0, requires = "random_weights")]
    pub seed: u64,
    /// Recalibrate BN on N training images before folding (--supernet only).
    #[arg(long, value_name = "N", conflicts_with = "random_weights")]
    pub bn_calibrate: Option<usize>,
    /// Seed of the proxy split the supernet was trained with (`shiftnas train --seed`).
    #[arg(long, default_value_t = 0)]
    pub split_seed: u64,
    /// Make the batch dimension symbolic (`batch`) instead of fixed to 1.
    #[arg(long)]
    pub dynamic_batch: bool,
    /// Also convert to `.rknn` for the RK3588 NPU with rknn-toolkit2 (`source scripts/rknn-env`),
    /// written beside --out with the extension `.rknn`, and its metadata and simulated accuracy
    /// as `.rknn.json`. The ONNX file is then exported for the NPU (batch 1, reshape-split).
    /// int8 is calibrated on training images and needs --supernet.
    #[arg(long, value_name = "DTYPE", conflicts_with = "dynamic_batch")]
    pub rknn: Option<crate::npu::Dtype>,
    /// Int8 calibration images for --rknn (spread evenly over the training split).
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = crate::cli::shared::at_least_one)]
    pub rknn_calibration: usize,
    /// Images of the proxy split on which --rknn compares the simulated NPU model's top-1 with
    /// the fp32 subnet's (--supernet only; 0 skips the comparison).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub rknn_images: usize,
    /// The supernet's training data, as given to `shiftnas train` (BN calibration images,
    /// normalisation, class names; --supernet only).
    #[command(flatten)]
    pub data: DataArgs,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> Result<super::ExportArgs, String> {
        let mut v = vec!["shiftnas", "export"];
        v.extend_from_slice(args);
        match Cli::try_parse_from(v) {
            Ok(Cli {
                command: Command::Export(a),
                ..
            }) => Ok(a),
            Ok(other) => Err(format!("parsed as {:?}", other.command)),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn random_weights_needs_space() {
        let a = parse(&[
            "--random-weights",
            "--space",
            "tiny",
            "--arch",
            "01230123012301230123",
            "--out",
            "m.onnx",
            "--seed",
            "3",
        ])
        .unwrap();
        assert!(a.random_weights && a.supernet.is_none());
        assert_eq!((a.space.as_deref(), a.seed), (Some("tiny"), 3));
        let e = parse(&["--random-weights", "--arch", "0", "--out", "m.onnx"]).unwrap_err();
        assert!(e.contains("--space"), "{e}");
    }

    #[test]
    fn supernet_or_random_weights_exactly_one() {
        let a = parse(&[
            "--supernet",
            "runs/a/checkpoint/supernet.safetensors",
            "--arch",
            "0",
            "--out",
            "m.onnx",
            "--bn-calibrate",
            "2000",
        ])
        .unwrap();
        assert_eq!(a.bn_calibrate, Some(2000));
        let e = parse(&["--arch", "0", "--out", "m.onnx"]).unwrap_err();
        assert!(e.contains("--supernet"), "{e}");
        let e = parse(&[
            "--supernet",
            "x",
            "--random-weights",
            "--space",
            "tiny",
            "--arch",
            "0",
            "--out",
            "m.onnx",
        ])
        .unwrap_err();
        assert!(e.contains("cannot be used with"), "{e}");
        // The supernet's data flags are those of `train`, and make no sense with random weights.
        let a = parse(&[
            "--supernet",
            "x",
            "--arch",
            "0",
            "--out",
            "m.onnx",
            "--data",
            "cifar10:/d",
            "--resize",
            "--proxy-size",
            "500",
        ])
        .unwrap();
        assert_eq!(
            (a.data.data.to_string(), a.data.resize),
            ("cifar10:/d".into(), true)
        );
        assert_eq!(a.data.proxy_size, Some(500));
        for flag in [
            ["--resize"].as_slice(),
            &["--data", "cifar10:/d"],
            &["--split-seed", "1"],
        ] {
            let mut v = vec![
                "--random-weights",
                "--space",
                "tiny",
                "--arch",
                "0",
                "--out",
                "m",
            ];
            v.extend_from_slice(flag);
            let e = parse(&v).unwrap_err();
            assert!(e.contains("cannot be used with"), "{flag:?}: {e}");
        }
    }
}
