//! `shiftnas export`: one arch → BN-folded subnet → ONNX file.

use anyhow::{Context as _, Result, bail};
use serde::Serialize;
use sha2::{Digest, Sha256};
use shiftnas_models::Space;
use shiftnas_models::cost;
use shiftnas_models::onnx::{self, ExportOptions};
use shiftnas_models::subnet::Subnet;

use super::{Context, ExitStatus};
use crate::cli::export::ExportArgs;
use crate::run_dir::write_atomic;

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
}

/// Runs `shiftnas export`.
pub fn run(args: ExportArgs, ctx: &Context) -> Result<ExitStatus> {
    let (subnet, weights) = if args.random_weights {
        let name = args
            .space
            .as_deref()
            .context("--random-weights needs --space")?;
        let space = Space::by_name(name).with_context(|| format!("--space {name}"))?;
        let arch = space
            .parse_arch(&args.arch)
            .with_context(|| format!("--arch for space {}", space.name))?;
        let subnet = Subnet::random(&space, &arch, args.seed)?;
        (subnet, format!("random (seed {})", args.seed))
    } else {
        let path = args
            .supernet
            .as_deref()
            .context("pass --supernet CKPT or --random-weights")?;
        bail!(
            "--supernet {}: exporting trained weights needs the supernet loader, which this build \
             does not have yet; use --random-weights --space NAME for latency measurements",
            path.display()
        );
    };
    let options = ExportOptions {
        batch: if args.dynamic_batch { None } else { Some(1) },
        ..Default::default()
    };
    let bytes = onnx::export(&subnet, &options)
        .with_context(|| format!("exporting arch {}", subnet.arch()))?;
    write_atomic(&args.out, &bytes).with_context(|| format!("--out {}", args.out.display()))?;
    let space = subnet.space();
    let c = cost::arch_cost(space, subnet.arch());
    let n = space.input_size;
    let report = ExportReport {
        path: args.out.display().to_string(),
        bytes: bytes.len(),
        sha256: hex::encode(Sha256::digest(&bytes)),
        space: space.name.clone(),
        arch: subnet.arch().to_string(),
        flops: c.flops,
        params: c.params,
        input_shape: [options.batch, Some(space.input_channels), Some(n), Some(n)],
        weights,
    };
    if ctx.printer.json {
        ctx.printer.json(&report)?;
    } else {
        println!("{}", describe(&report));
    }
    Ok(ExitStatus::Success)
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
