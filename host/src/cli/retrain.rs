//! Arguments of `shiftnas retrain`.

use std::path::PathBuf;

use clap::Args;

use crate::cli::shared::{DataArgs, TrainingArgs, space_name};

/// Arguments of `shiftnas retrain`: one arch trained from scratch as a standalone network.
#[derive(Debug, Clone, Args)]
pub struct RetrainArgs {
    /// The arch: one digit per block, the choice index (`shiftnas space show` lists them: ShuffleNetV2
    /// 0/1/2/3 = k3/k5/k7/Xception, MobileNetV2 0–5 = k3e3 … k7e6).
    #[arg(long, required_unless_present = "resume")]
    pub arch: Option<String>,
    /// Supernet run dir the arch was found with: its space, data, proxy split and conform options
    /// are used (--space, --data, --convert-channels and --resize must then be left out).
    #[arg(
        long,
        value_name = "RUN_DIR",
        conflicts_with_all = ["space", "data", "convert_channels", "resize", "resume"]
    )]
    pub supernet_run: Option<PathBuf>,
    /// Search-space preset (`shiftnas space show`).
    #[arg(long, default_value = "tiny", value_parser = space_name)]
    pub space: String,
    /// Seed of init, augmentation and batch order (and of the proxy split without --supernet-run).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
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
    /// Images, their fit to the space, the proxy split.
    #[command(flatten)]
    pub data: DataArgs,
    /// Optimiser and loop.
    #[command(flatten)]
    pub training: TrainingArgs,
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
        assert_eq!(
            (a.training.steps, a.training.batch, a.bn_images),
            (5, 64, 2000)
        );
        assert!(a.dynamic_batch && a.training.lr.is_none());
        assert!(parse(&["--resume", "runs/r"]).unwrap().arch.is_none());
        let e = parse(&[]).unwrap_err();
        assert!(e.contains("--arch"), "{e}");
        let e = parse(&["--arch", "0", "--supernet-run", "a", "--space", "tiny"]).unwrap_err();
        assert!(e.contains("cannot be used with"), "{e}");
        assert!(parse(&["--arch", "0", "--out", "a", "--resume", "b"]).is_err());
        assert!(parse(&["--arch", "0", "--dynamic-batch"]).is_err());
        // The supernet run fixes the conform options too.
        let e = parse(&["--arch", "0", "--supernet-run", "a", "--resize"]).unwrap_err();
        assert!(e.contains("cannot be used with"), "{e}");
        // Defaults of the shared groups: the same as `train`'s.
        let d = parse(&["--arch", "0"]).unwrap();
        assert_eq!(
            format!("{:?}", d.training),
            format!("{:?}", crate::cli::shared::TrainingArgs::default())
        );
        assert_eq!(
            format!("{:?}", d.data),
            format!("{:?}", crate::cli::shared::DataArgs::default())
        );
        assert_eq!(d.space, "tiny");
        for bad in [["--lr=-1"].as_slice(), &["--batch", "0"], &["--lr", "nan"]] {
            let mut v = vec!["--arch", "0"];
            v.extend_from_slice(bad);
            let e = parse(&v).unwrap_err();
            assert!(
                e.contains(bad[0].split('=').next().unwrap()),
                "{bad:?}: {e}"
            );
        }
    }
}
