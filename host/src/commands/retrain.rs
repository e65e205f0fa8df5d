//! `shiftnas retrain`: args (or the resumed run's config) → data → standalone training on the
//! shared step loop → precise BN → proxy/test accuracy → optional ONNX export.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::Serialize;
use serde_json::json;
use shiftnas_models::cost;
use shiftnas_models::onnx::{self, ExportOptions};

use super::export::{ExportReport, report};
use super::train::{augment, with_progress};
use super::{Context, ExitStatus};
use crate::cli::retrain::RetrainArgs;
use crate::data::Normalize;
use crate::run_dir::{RunDir, write_atomic};
use crate::train::retrain::{
    RetrainConfig, default_retrain_lr, precise_bn, retrain, score_standalone,
};
use crate::train::{Accuracy, PreparedData, StepReport, TrainConfig, space_and_data};

/// What `shiftnas retrain` ends with (`result.json` in the run dir, the `--json` `done` line).
#[derive(Debug, Serialize)]
pub struct RetrainResult {
    /// The run dir.
    pub run_dir: PathBuf,
    /// Space name.
    pub space: String,
    /// The arch's digits.
    pub arch: String,
    /// Steps trained.
    pub steps: u64,
    /// Multiply-adds for one image.
    pub flops: u64,
    /// Parameters (affine BN counted).
    pub params: u64,
    /// Images BN statistics were recomputed on before scoring (0: training EMA).
    pub bn_images: usize,
    /// Accuracy on the test set.
    pub test: Accuracy,
    /// Accuracy on the held-out proxy split (`null` when it is empty).
    pub proxy: Option<Accuracy>,
    /// The final weights (BN statistics as scored).
    pub model: PathBuf,
    /// The ONNX file written with `--export`.
    pub export: Option<ExportReport>,
}

/// Runs `shiftnas retrain`.
pub fn run(args: RetrainArgs, ctx: &Context) -> Result<ExitStatus> {
    let p = ctx.printer;
    let device = ctx.compute.device()?;
    let (run, config, data) = match &args.resume {
        Some(dir) => {
            let run = RunDir::open(dir)?;
            let config: RetrainConfig = run.read_config()?;
            let data = load_data(&config)?;
            p.note(format!(
                "resuming retraining {} (arch {}, {} steps in all)",
                dir.display(),
                config.arch,
                config.steps
            ));
            (run, config, data)
        }
        None => new_run(&args, ctx)?,
    };
    let go =
        |on_report: &mut dyn FnMut(&StepReport)| retrain(&config, &data, &run, &device, on_report);
    let resume = format!("shiftnas retrain --resume {}", run.path().display());
    let Some(net) = with_progress(&p, config.steps, &resume, &run, go)? else {
        return Ok(ExitStatus::Interrupted);
    };

    let norm = &config.normalize;
    let eval_batch = 256;
    if args.bn_images > 0 {
        p.note(format!(
            "recomputing BN statistics on {} training images",
            args.bn_images
        ));
    }
    let (train_set, test_set) = (&data.pair.train, &data.pair.test);
    precise_bn(
        &net,
        train_set,
        &data.splits.train,
        norm,
        args.bn_images,
        eval_batch,
    )?;
    let model = run.join("model.safetensors");
    net.save(&model, config.steps)
        .with_context(|| format!("writing {}", model.display()))?;
    let test = score_standalone(&net, test_set, &data.splits.test, norm, eval_batch)?;
    let proxy = if data.splits.proxy.is_empty() {
        None
    } else {
        Some(score_standalone(
            &net,
            train_set,
            &data.splits.proxy,
            norm,
            eval_batch,
        )?)
    };
    let export = match &args.export {
        Some(path) => Some(export_onnx(&net, &config, &data, path, args.dynamic_batch)?),
        None => None,
    };
    let c = cost::arch_cost(net.space(), net.arch());
    let result = RetrainResult {
        run_dir: run.path().to_path_buf(),
        space: config.space.clone(),
        arch: config.arch.clone(),
        steps: config.steps,
        flops: c.flops,
        params: c.params,
        bn_images: args.bn_images,
        test,
        proxy,
        model,
        export,
    };
    write_atomic(
        &run.join("result.json"),
        &serde_json::to_vec_pretty(&result)?,
    )?;
    if p.json {
        let mut v = serde_json::to_value(&result)?;
        v["type"] = json!("done");
        p.json(&v)?;
    } else {
        println!("{}", describe(&result));
    }
    Ok(ExitStatus::Success)
}

/// The config and data of a new run, and its freshly created run dir.
fn new_run(args: &RetrainArgs, ctx: &Context) -> Result<(RunDir, RetrainConfig, PreparedData)> {
    let arch = args
        .arch
        .clone()
        .context("--arch is required for a new run")?;
    // A supernet run fixes the space, data, proxy split and conform options.
    let from = match &args.supernet_run {
        Some(dir) => {
            let c: TrainConfig = RunDir::open_read_only(dir)
                .and_then(|r| r.read_config())
                .with_context(|| {
                    format!(
                        "--supernet-run {}: give the run dir of a `shiftnas train` run",
                        dir.display()
                    )
                })?;
            Some(c)
        }
        None => None,
    };
    let (d, t) = (&args.data, &args.training);
    let space_name = from
        .as_ref()
        .map_or_else(|| args.space.clone(), |c| c.space.clone());
    let data_spec = from
        .as_ref()
        .map_or_else(|| d.data.clone(), |c| c.data.clone());
    let conform = from.as_ref().map_or(d.conform(), |c| c.conform);
    let split_seed = from.as_ref().map_or(args.seed, |c| c.seed);
    let proxy_size = d.proxy_size.or(from.as_ref().map(|c| c.proxy_size));
    let (space, data) = space_and_data(&space_name, &data_spec, conform, proxy_size, split_seed)
        .with_context(|| format!("--data {data_spec}"))?;
    space
        .parse_arch(&arch)
        .with_context(|| format!("--arch {arch} for space {space_name}"))?;
    let config = RetrainConfig {
        space: space_name.clone(),
        arch: arch.clone(),
        augment: augment(t.augment, &data_spec, space.input_size),
        data: data_spec,
        steps: t.steps,
        batch: t.batch,
        lr: t.lr.unwrap_or(default_retrain_lr(t.batch)),
        momentum: t.momentum,
        weight_decay: t.weight_decay,
        label_smoothing: t.label_smoothing,
        seed: args.seed,
        split_seed,
        checkpoint_every: t.checkpoint_every,
        log_every: t.log_every,
        proxy_size: data.splits.proxy.len(),
        conform,
        normalize: Normalize::from_dataset(&data.pair.train, &data.splits.train),
        supernet_run: args.supernet_run.clone(),
    };
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from(format!("runs/retrain-{space_name}-{arch}-{}", args.seed))
    });
    let run = RunDir::create(&out)?;
    run.write_config(&config)?;
    ctx.printer.note(format!(
        "retraining arch {arch} of space {space_name} on {} ({} train / {} proxy images) for {} steps at lr {} into {}",
        config.data,
        data.splits.train.len(),
        data.splits.proxy.len(),
        config.steps,
        config.lr,
        out.display()
    ));
    Ok((run, config, data))
}

/// The data of a run, as its config describes it.
fn load_data(config: &RetrainConfig) -> Result<PreparedData> {
    let (_, data) = space_and_data(
        &config.space,
        &config.data,
        config.conform,
        Some(config.proxy_size),
        config.split_seed,
    )
    .with_context(|| format!("data {} of the run", config.data))?;
    Ok(data)
}

/// Folds BN and writes the trained network as ONNX with the training normalisation and class
/// names.
fn export_onnx(
    net: &shiftnas_models::Standalone,
    config: &RetrainConfig,
    data: &PreparedData,
    path: &Path,
    dynamic_batch: bool,
) -> Result<ExportReport> {
    let subnet = net
        .subnet()
        .with_context(|| format!("folding BN of arch {}", config.arch))?;
    let options = ExportOptions {
        batch: if dynamic_batch { None } else { Some(1) },
        mean: Some(config.normalize.mean.clone()),
        std: Some(config.normalize.std.clone()),
        class_names: Some(data.pair.train.class_names.clone()),
        ..Default::default()
    };
    let bytes = onnx::export(&subnet, &options)
        .with_context(|| format!("exporting arch {}", config.arch))?;
    write_atomic(path, &bytes).with_context(|| format!("--export {}", path.display()))?;
    Ok(report(
        path,
        &bytes,
        &subnet,
        &options,
        format!("retrained ({} steps)", config.steps),
    ))
}

/// The closing lines for people.
fn describe(r: &RetrainResult) -> String {
    let pct = |a: &Accuracy| {
        format!(
            "top-1 {:.2} %, top-5 {:.2} %",
            a.top1 * 100.0,
            a.top5 * 100.0
        )
    };
    let mut s = format!(
        "arch {} of space {} after {} steps: test {} ({} images)",
        r.arch,
        r.space,
        r.steps,
        pct(&r.test),
        r.test.images
    );
    if let Some(p) = &r.proxy {
        s += &format!("; proxy {} ({} images)", pct(p), p.images);
    }
    s += &format!(
        "\n{:.2} MFLOPs, {:.3} M params; weights {}",
        r.flops as f64 / 1e6,
        r.params as f64 / 1e6,
        r.model.display()
    );
    if let Some(e) = &r.export {
        s += &format!("; ONNX {} ({:.1} kB)", e.path, e.bytes as f64 / 1e3);
    }
    s
}
