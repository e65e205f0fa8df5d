//! `shiftnas eval`: score one arch with supernet weights after BN calibration.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde_json::json;
use shiftnas_models::Supernet;

use super::{Context, ExitStatus};
use crate::cli::eval::{EvalArgs, EvalSplit};
use crate::run_dir::RunDir;
use crate::train::{BnSource, TrainConfig, evaluate, space_and_data};

/// The run dir and weights file of `--supernet` (a run dir or its checkpoint file).
fn locate(path: &Path) -> Result<(RunDir, PathBuf)> {
    if path.is_dir() {
        let run = RunDir::open_read_only(path)?;
        let ckpt = run.checkpoint_dir().join("supernet.safetensors");
        return Ok((run, ckpt));
    }
    if !path.is_file() {
        bail!("--supernet {}: no such file or run dir", path.display());
    }
    let run_dir = path
        .parent()
        .and_then(Path::parent)
        .with_context(|| format!("--supernet {}: cannot find its run dir", path.display()))?;
    let run = RunDir::open_read_only(run_dir).with_context(|| {
        format!(
            "--supernet {}: the checkpoint must sit in RUN_DIR/checkpoint/ so its data settings can be read",
            path.display()
        )
    })?;
    Ok((run, path.to_path_buf()))
}

/// Runs `shiftnas eval`.
pub fn run(args: EvalArgs, ctx: &Context) -> Result<ExitStatus> {
    let device = ctx.compute.device()?;
    let (run, ckpt) = locate(&args.supernet)?;
    let config: TrainConfig = run.read_config()?;
    let (space, data) = space_and_data(
        &config.space,
        &config.data,
        config.conform,
        Some(config.proxy_size),
        config.seed,
    )?;
    let arch = space
        .parse_arch(&args.arch)
        .with_context(|| format!("--arch {}", args.arch))?;
    let (net, step) = Supernet::load_for(&ckpt, &space, &device)
        .with_context(|| format!("loading {}", ckpt.display()))?;
    let (set, indices) = match args.split {
        EvalSplit::Proxy => (&data.pair.train, &data.splits.proxy),
        EvalSplit::Test => (&data.pair.test, &data.splits.test),
    };
    let bn = BnSource {
        data: &data.pair.train,
        indices: &data.splits.train,
        mode: args.bn,
        images: args.bn_images,
        seed: config.seed,
    };
    let acc = evaluate(&net, &arch, set, indices, &config.normalize, bn, args.batch)?;
    if ctx.printer.json {
        ctx.printer.json(&json!({
            "arch": arch.to_string(), "split": args.split, "bn": args.bn, "bn_images": args.bn_images,
            "supernet_step": step, "top1": acc.top1, "top5": acc.top5, "loss": acc.loss, "images": acc.images,
        }))?;
    } else {
        ctx.printer.table(
            &[
                "arch", "split", "top1 %", "top5 %", "loss", "images", "step",
            ],
            &[vec![
                arch.to_string(),
                format!("{:?}", args.split).to_lowercase(),
                format!("{:.2}", acc.top1 * 100.0),
                format!("{:.2}", acc.top5 * 100.0),
                format!("{:.4}", acc.loss),
                acc.images.to_string(),
                step.to_string(),
            ]],
        )?;
    }
    Ok(ExitStatus::Success)
}
