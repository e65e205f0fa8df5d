//! `shiftnas export`: one arch → BN-folded subnet → ONNX file.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};
use shiftnas_models::cost;
use shiftnas_models::onnx::{self, ExportOptions};
use shiftnas_models::subnet::Subnet;
use shiftnas_models::{Arch, Space, Supernet};

use super::{Context, ExitStatus};
use crate::cli::export::ExportArgs;
use crate::cli::shared::DataArgs;
use crate::data::Normalize;
use crate::nas::driver::supernet_file;
use crate::npu;
use crate::run_dir::write_atomic;
use crate::train::{BnMode, BnSource, PreparedData, calibrate_bn, prepare_data};

/// What `shiftnas export --json` prints: the file and what is in it.
#[derive(Debug, Serialize)]
pub struct ExportReport {
    /// The file written.
    pub path: String,
    /// Its size in bytes.
    pub bytes: usize,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// Space name.
    pub space: String,
    /// The arch's digits.
    pub arch: String,
    /// Multiply-adds for one image.
    pub flops: u64,
    /// Parameters of the standalone subnet (affine BN counted).
    pub params: u64,
    /// Input shape, NCHW (`null` batch = symbolic).
    pub input_shape: [Option<usize>; 4],
    /// Where the weights came from: `random (seed N)` or the checkpoint path.
    pub weights: String,
    /// The `.rknn` conversion (`--rknn`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rknn: Option<RknnExport>,
}

/// Runs `shiftnas export`.
pub fn run(args: ExportArgs, ctx: &Context) -> Result<ExitStatus> {
    let (subnet, options, weights, trained) = if args.random_weights {
        let name = args
            .space
            .as_deref()
            .context("--random-weights needs --space")?;
        let space = Space::by_name(name).with_context(|| format!("--space {name}"))?;
        let arch = space
            .parse_arch(&args.arch)
            .with_context(|| format!("--arch for space {}", space.name))?;
        let subnet = Subnet::random(&space, &arch, args.seed)?;
        let options = ExportOptions {
            batch: if args.dynamic_batch { None } else { Some(1) },
            ..Default::default()
        };
        (
            subnet,
            options,
            format!("random (seed {})", args.seed),
            None,
        )
    } else {
        let path = args
            .supernet
            .as_deref()
            .context("pass --supernet CKPT or --random-weights")?;
        let trained = load_trained(
            path,
            args.space.as_deref(),
            &args.data,
            args.split_seed,
            ctx,
        )?;
        let arch = trained
            .supernet
            .space()
            .parse_arch(&args.arch)
            .with_context(|| format!("--arch for the space of {}", path.display()))?;
        let subnet = trained.subnet(&arch, args.bn_calibrate)?;
        let options = trained.export_options(args.dynamic_batch);
        (subnet, options, path.display().to_string(), Some(trained))
    };
    let options = match args.rknn {
        Some(_) => npu::npu_options(&options),
        None => options,
    };
    let bytes = onnx::export(&subnet, &options)
        .with_context(|| format!("exporting arch {}", subnet.arch()))?;
    write_atomic(&args.out, &bytes).with_context(|| format!("--out {}", args.out.display()))?;
    let mut report = report(&args.out, &bytes, &subnet, &options, weights);
    if let Some(dtype) = args.rknn {
        report.rknn = Some(export_rknn(
            &args,
            dtype,
            &subnet,
            &options,
            &bytes,
            trained.as_ref(),
        )?);
        let sidecar = sidecar_path(&args.out);
        write_atomic(&sidecar, &serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", sidecar.display()))?;
    }
    print(&report, ctx)
}

/// What `--rknn` wrote: the `.rknn` file, its conversion and its simulated accuracy.
#[derive(Debug, Serialize)]
pub struct RknnExport {
    /// The `.rknn` file written.
    pub path: String,
    /// Its size in bytes.
    pub bytes: usize,
    /// SHA-256 of the file, hex (two builds of one model differ: do not use it as a key).
    pub sha256: String,
    /// What the toolkit reported: version, dtype, seconds, ops on the NPU.
    pub conversion: npu::ConvertReport,
    /// Top-1 of the simulated NPU model against the fp32 subnet (`--supernet`, `--rknn-images` > 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<npu::QuantAccuracy>,
}

/// `m.onnx` → `m.rknn`.
fn rknn_path(out: &Path) -> PathBuf {
    out.with_extension("rknn")
}

/// `m.onnx` → `m.rknn.json`.
fn sidecar_path(out: &Path) -> PathBuf {
    out.with_extension("rknn.json")
}

/// Converts the exported `onnx` to `.rknn` beside `--out` and, with trained weights, compares its
/// simulated top-1 with the fp32 subnet's on `--rknn-images` proxy images.
fn export_rknn(
    args: &ExportArgs,
    dtype: npu::Dtype,
    subnet: &Subnet,
    options: &ExportOptions,
    onnx: &[u8],
    trained: Option<&Trained>,
) -> Result<RknnExport> {
    let converter = npu::Converter::from_env().context("--rknn needs rknn-toolkit2")?;
    let name = args.out.display().to_string();
    let calibration = match trained {
        Some(t) => Some(npu::Images::spread(
            &t.data.pair.train,
            &t.data.splits.train,
            args.rknn_calibration,
            &t.normalize,
        )?),
        None if dtype == npu::Dtype::Int8 => anyhow::bail!(
            "--rknn int8 is calibrated on training images: pass --supernet CKPT and its --data \
             instead of --random-weights, or use --rknn fp16"
        ),
        None => None,
    };
    let conversion = npu::quantized::with_config(dtype, calibration.as_ref(), |config| {
        converter.convert(&name, onnx, config)
    })?;
    let rknn = std::fs::read(&conversion.rknn)
        .with_context(|| format!("reading {}", conversion.rknn.display()))?;
    let path = rknn_path(&args.out);
    write_atomic(&path, &rknn).with_context(|| format!("writing {}", path.display()))?;
    let accuracy = match (trained, &calibration) {
        (Some(t), Some(calibration)) if args.rknn_images > 0 => {
            let eval = npu::Images::spread(
                &t.data.pair.train,
                &t.data.splits.proxy,
                args.rknn_images,
                &t.normalize,
            )?;
            Some(npu::simulated_accuracy(
                &converter,
                &name,
                subnet,
                options,
                dtype,
                calibration,
                &eval,
            )?)
        }
        _ => None,
    };
    Ok(RknnExport {
        path: path.display().to_string(),
        bytes: rknn.len(),
        sha256: hex::encode(Sha256::digest(&rknn)),
        conversion: conversion.report,
        accuracy,
    })
}

fn print(report: &ExportReport, ctx: &Context) -> Result<ExitStatus> {
    if ctx.printer.json {
        ctx.printer.json(report)?;
    } else {
        println!("{}", describe(report));
    }
    Ok(ExitStatus::Success)
}

/// What was exported: path, size, hash, arch, cost and input shape.
pub(crate) fn report(
    out: &Path,
    bytes: &[u8],
    subnet: &Subnet,
    options: &ExportOptions,
    weights: String,
) -> ExportReport {
    let space = subnet.space();
    let c = cost::arch_cost(space, subnet.arch());
    let n = space.input_size;
    ExportReport {
        path: out.display().to_string(),
        bytes: bytes.len(),
        sha256: hex::encode(Sha256::digest(bytes)),
        space: space.name.clone(),
        arch: subnet.arch().to_string(),
        flops: c.flops,
        params: c.params,
        input_shape: [options.batch, Some(space.input_channels), Some(n), Some(n)],
        weights,
        rknn: None,
    }
}

/// A trained supernet with the data it was trained on: what exporting or scoring trained
/// weights needs (BN must be recalibrated for each arch, inputs normalised as in training).
pub struct Trained {
    /// The supernet.
    pub supernet: Supernet,
    /// The data, conformed to the space, with the training run's splits.
    pub data: PreparedData,
    /// The normalisation used in training.
    pub normalize: Normalize,
}

/// Loads a supernet (a file or a run dir) and the data it was trained on (fitted and split as
/// `train` did, given the same flags); `space` (`--space`), when given, must be the checkpoint's.
///
/// # Errors
/// Unreadable checkpoint or data, naming the path or spec; a checkpoint of another space.
pub fn load_trained(
    path: &Path,
    space: Option<&str>,
    data: &DataArgs,
    split_seed: u64,
    ctx: &Context,
) -> Result<Trained> {
    let file = supernet_file(path);
    let (supernet, _) = Supernet::load(&file, &ctx.compute.device()?)
        .with_context(|| format!("--supernet {}", file.display()))?;
    check_space(space, &supernet.space().name, &file)?;
    let spec = &data.data;
    let data = prepare_data(
        spec,
        supernet.space(),
        data.conform(),
        data.proxy_size,
        split_seed,
    )
    .with_context(|| format!("--data {spec}"))?;
    let normalize = Normalize::from_dataset(&data.pair.train, &data.splits.train);
    Ok(Trained {
        supernet,
        data,
        normalize,
    })
}

/// `--space NAME` with `--supernet`: refused unless the checkpoint holds that space.
fn check_space(given: Option<&str>, found: &str, file: &Path) -> Result<()> {
    match given {
        Some(name) if name != found => anyhow::bail!(
            "--space {name}: the checkpoint {} holds space {found}; pass --space {found} or leave --space out",
            file.display()
        ),
        _ => Ok(()),
    }
}

impl Trained {
    /// The BN-folded subnet of `arch`, after exact BN calibration on `bn_images` training images
    /// (`None`: keep the supernet's running statistics).
    ///
    /// # Errors
    /// An arch that does not fit, or a failing forward pass.
    pub fn subnet(&self, arch: &Arch, bn_images: Option<usize>) -> Result<Subnet> {
        if let Some(images) = bn_images {
            let bn = BnSource {
                data: &self.data.pair.train,
                indices: &self.data.splits.train,
                mode: BnMode::Exact,
                images,
                seed: 0,
            };
            calibrate_bn(&self.supernet, arch, bn, &self.normalize, 256)?;
        }
        let tensors = self.supernet.arch_tensors(arch)?;
        Ok(Subnet::from_tensors(self.supernet.space(), arch, &tensors)?)
    }

    /// Export options carrying the training normalisation and class names.
    pub fn export_options(&self, dynamic_batch: bool) -> ExportOptions {
        ExportOptions {
            batch: if dynamic_batch { None } else { Some(1) },
            mean: Some(self.normalize.mean.clone()),
            std: Some(self.normalize.std.clone()),
            class_names: Some(self.data.pair.train.class_names.clone()),
            ..Default::default()
        }
    }
}

/// One line for people: what was written and what it holds.
fn describe(r: &ExportReport) -> String {
    let dims: Vec<String> = r
        .input_shape
        .iter()
        .map(|d| d.map_or("batch".to_string(), |n| n.to_string()))
        .collect();
    format!(
        "wrote {} ({:.1} kB, sha256 {}): arch {} of space {}, {:.2} MFLOPs, {:.3} M params, input `{}` [{}] NCHW f32, output `{}`, weights {}",
        r.path,
        r.bytes as f64 / 1e3,
        &r.sha256[..12],
        r.arch,
        r.space,
        r.flops as f64 / 1e6,
        r.params as f64 / 1e6,
        onnx::INPUT_NAME,
        dims.join(", "),
        onnx::OUTPUT_NAME,
        r.weights
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn space_must_be_the_checkpoints() {
        let f = Path::new("runs/a/checkpoint/supernet.safetensors");
        assert!(check_space(None, "tiny", f).is_ok());
        assert!(check_space(Some("tiny"), "tiny", f).is_ok());
        let e = check_space(Some("spos-cifar"), "tiny", f)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--space spos-cifar")
                && e.contains("holds space tiny")
                && e.contains(f.to_str().unwrap()),
            "{e}"
        );
    }
}
