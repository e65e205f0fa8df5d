//! `shiftnas train`: args → `TrainConfig` (or the resumed run's) → data → training loop.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use serde_json::json;

use super::{Context, ExitStatus};
use crate::cli::train::{AugmentChoice, TrainArgs};
use crate::data::{Augment, DataSpec, Normalize};
use crate::output::Printer;
use crate::run_dir::RunDir;
use crate::train::{Sampling, StepReport, TrainConfig, space_and_data, train};

/// Runs `shiftnas train`.
pub fn run(args: TrainArgs, ctx: &Context) -> Result<ExitStatus> {
    run_resumable(args, ctx, None)
}

/// Runs `shiftnas train`; after Ctrl-C the note names `resume` as the command that continues
/// (default: `shiftnas train --resume RUN_DIR`).
pub(super) fn run_resumable(
    args: TrainArgs,
    ctx: &Context,
    resume: Option<String>,
) -> Result<ExitStatus> {
    let p = ctx.printer;
    let device = ctx.compute.device()?;
    let (run, config, data) = match &args.resume {
        Some(dir) => {
            let run = RunDir::open(dir)?;
            let config: TrainConfig = run.read_config()?;
            let (_, data) = space_and_data(
                &config.space,
                &config.data,
                config.conform,
                Some(config.proxy_size),
                config.seed,
            )?;
            p.note(format!(
                "resuming {} ({} steps in all)",
                dir.display(),
                config.steps
            ));
            (run, config, data)
        }
        None => {
            let (d, t) = (&args.data, &args.training);
            let conform = d.conform();
            let (space, data) =
                space_and_data(&args.space, &d.data, conform, d.proxy_size, args.seed)
                    .with_context(|| format!("--data {}", d.data))?;
            let warmup_steps = match args.sampling {
                Sampling::Fair => args.warmup_steps.unwrap_or(0),
                _ => args.warmup_steps.unwrap_or(t.steps / 4),
            };
            let config = TrainConfig {
                space: args.space.clone(),
                data: d.data.clone(),
                steps: t.steps,
                batch: t.batch,
                lr: t.lr.unwrap_or(0.5 * t.batch as f64 / 1024.0),
                momentum: t.momentum,
                weight_decay: t.weight_decay,
                label_smoothing: t.label_smoothing,
                seed: args.seed,
                checkpoint_every: t.checkpoint_every,
                log_every: t.log_every,
                sampling: args.sampling,
                warmup_steps,
                flops_bins: args.flops_bins,
                multi_path: args.multi_path()?,
                proxy_size: data.splits.proxy.len(),
                conform,
                augment: augment(t.augment, &d.data, space.input_size),
                normalize: Normalize::from_dataset(&data.pair.train, &data.splits.train),
            };
            let out = args.out.clone().unwrap_or_else(|| {
                PathBuf::from(format!("runs/train-{}-{}", args.space, args.seed))
            });
            let run = RunDir::create(&out)?;
            run.write_config(&config)?;
            p.note(format!(
                "training space {} on {} ({} train / {} proxy images) for {} steps into {}",
                config.space,
                config.data,
                data.splits.train.len(),
                data.splits.proxy.len(),
                config.steps,
                out.display()
            ));
            (run, config, data)
        }
    };
    let go = |on_report: &mut dyn FnMut(&StepReport)| {
        train(&config, &data, &run, &device, on_report).map(drop)
    };
    let resume =
        resume.unwrap_or_else(|| format!("shiftnas train --resume {}", run.path().display()));
    let Some(()) = with_progress(&p, config.steps, &resume, &run, go)? else {
        return Ok(ExitStatus::Interrupted);
    };
    let ckpt = run.checkpoint_dir().join("supernet.safetensors");
    if p.json {
        p.json(&json!({"type": "done", "run_dir": run.path(), "steps": config.steps, "checkpoint": ckpt}))?;
    } else {
        p.note(format!(
            "done: {} steps; checkpoint {}; score an arch with `shiftnas eval --supernet {} --arch ...`",
            config.steps,
            ckpt.display(),
            run.path().display()
        ));
    }
    Ok(ExitStatus::Success)
}

/// The augmentation `--augment` names, for `data` fitted to `input_size` (shared by `train` and
/// `retrain`).
pub(super) fn augment(choice: AugmentChoice, data: &DataSpec, input_size: usize) -> Augment {
    match choice {
        AugmentChoice::Auto => Augment::default_for(data.is_natural(), input_size),
        AugmentChoice::None => Augment::NONE,
        AugmentChoice::CropFlip => Augment::default_for(true, input_size.min(127)),
        AugmentChoice::ResizedCrop => Augment::default_for(true, 128),
    }
}

/// Runs a training loop with what `train` and `retrain` share: the progress bar (or `--json`
/// progress lines, or plain lines without a bar) and Ctrl-C. `go` gets the report callback;
/// `Ok(None)` means Ctrl-C stopped it after a checkpoint (the note naming `resume`, the command
/// that continues, is printed).
pub(super) fn with_progress<T>(
    p: &Printer,
    steps: u64,
    resume: &str,
    run: &RunDir,
    go: impl FnOnce(&mut dyn FnMut(&StepReport)) -> Result<T>,
) -> Result<Option<T>> {
    let bar = p.bar(steps, "{bar:30} {pos}/{len} {msg} ETA {eta}");
    let mut on_report = |r: &StepReport| {
        bar.set_position(r.step);
        bar.set_message(format!("loss {:.3} {:.0} img/s", r.loss, r.images_per_s));
        if p.json {
            let mut v = serde_json::to_value(r).unwrap_or_default();
            v["type"] = json!("progress");
            let _ = p.json(&v);
        } else if !p.progress && !p.quiet {
            eprintln!(
                "step {}/{}  loss {:.4}  lr {:.5}  {:.0} img/s",
                r.step, r.steps, r.loss, r.lr, r.images_per_s
            );
        }
    };
    crate::interrupt::install();
    let result = go(&mut on_report);
    bar.finish_and_clear();
    match result {
        Err(e) => match e.downcast_ref::<crate::interrupt::Interrupted>() {
            Some(i) => {
                super::report_interrupted(p, i, run.path(), resume, json!({"step": i.step}))?;
                Ok(None)
            }
            None => Err(e),
        },
        Ok(t) => Ok(Some(t)),
    }
}
