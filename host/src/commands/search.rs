//! `shiftnas search`: args → `SearchConfig` (or the resumed run's) → latency source → driver.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use serde_json::json;

use super::{Context, ExitStatus};
use crate::cli::search::SearchArgs;
use crate::data::ConformOptions;
use crate::data::split::default_proxy_size;
use crate::latency::{LatencySource, LatencySpec};
use crate::run_dir::RunDir;
use crate::search::arch_problem::Constraints;
use crate::search::driver::{SearchConfig, run_until};
use crate::search::shifting::ShiftConfig;
use crate::train::SgdConfig;

/// The latency source of `spec` (boards from `./boards.toml`, or the built-in `local` board).
///
/// # Errors
/// A predictor for another space, unknown boards, or no agent to run.
pub fn latency_source(spec: &LatencySpec, space: &str) -> Result<Box<dyn LatencySource>> {
    let space = crate::train::space_for(space, 1)?;
    crate::latency::open(spec, &space, &crate::latency::LatencyOptions::default())
        .with_context(|| format!("--latency {spec}"))
}

fn config_from_args(args: &SearchArgs) -> Result<SearchConfig> {
    let supernet = match (&args.supernet, &args.transfer_from) {
        (Some(s), _) => s.clone(),
        (None, Some(t)) => t.clone(),
        (None, None) => {
            bail!(
                "--supernet is required for a new search (or pass --resume RUN_DIR or --transfer-from CKPT)"
            )
        }
    };
    let cap = |v: Option<f64>, flag: &str| -> Result<Option<u64>> {
        match v {
            Some(x) if !(x.is_finite() && x > 0.0) => {
                bail!("{flag} {x}: must be a positive number")
            }
            Some(x) => Ok(Some(x as u64)),
            None => Ok(None),
        }
    };
    Ok(SearchConfig {
        supernet,
        data: args.data.clone(),
        space: args.space.clone(),
        algorithm: args.algorithm,
        latency: args.latency.clone(),
        pop: args.pop,
        gens: args.gens,
        seed: args.seed,
        shift: ShiftConfig {
            // Transfer fine-tunes while searching: immediate updates on each candidate's path.
            mode: if args.transfer_from.is_some() {
                crate::search::shifting::ShiftMode::Immediate
            } else {
                args.shift
            },
            update: args.shift_update,
            samples: args.shift_samples,
            steps: args.shift_steps,
            batch: args.shift_batch,
            sgd: SgdConfig {
                lr: args.shift_lr,
                momentum: args.shift_momentum,
                weight_decay: args.shift_weight_decay,
            },
            label_smoothing: 0.1,
        },
        bn: args.bn,
        bn_images: args.bn_images,
        proxy_size: args.proxy_size.unwrap_or(0),
        split_seed: args.split_seed,
        eval_batch: args.eval_batch,
        constraints: Constraints {
            max_flops: cap(args.max_flops, "--max-flops")?,
            max_params: cap(args.max_params, "--max-params")?,
            latency_budget: args.latency_budget,
        },
        conform: ConformOptions {
            convert_channels: args.convert_channels,
            resize: args.resize,
        },
        transfer_from: args.transfer_from.clone(),
        out: args.out.clone().unwrap_or_else(|| {
            PathBuf::from(format!("runs/search-{:?}-{}", args.algorithm, args.seed).to_lowercase())
        }),
    })
}

/// The effective config of a search: read back from `--resume DIR`, or built from the flags.
///
/// # Errors
/// Bad flag values, or a run dir without a readable `config.toml`.
pub fn effective_config(args: &SearchArgs, ctx: &Context) -> Result<SearchConfig> {
    if let Some(dir) = &args.resume {
        let mut c: SearchConfig = RunDir::open(dir)?.read_config()?;
        c.out = dir.clone();
        return Ok(c);
    }
    let mut c = config_from_args(args)?;
    if c.proxy_size == 0 {
        let probe = crate::train::space_for(&c.space, 1)?;
        let n = c.data.load(probe.input_size)?.train.len();
        c.proxy_size = default_proxy_size(n);
    }
    if c.pop < 2 || c.gens == 0 {
        bail!("--pop must be at least 2 and --gens at least 1");
    }
    ctx.printer.note(format!(
        "searching space {} with {:?} ({} × {} generations, shift {:?}) into {}",
        c.space,
        c.algorithm,
        c.pop,
        c.gens,
        c.shift.mode,
        c.out.display()
    ));
    Ok(c)
}

/// Runs `shiftnas search`.
pub fn run(args: SearchArgs, ctx: &Context) -> Result<ExitStatus> {
    let p = &ctx.printer;
    let device = ctx.compute.device()?;
    let config = effective_config(&args, ctx)?;
    let latency = latency_source(&config.latency, &config.space)?;
    let outcome = run_until(&config, p, latency, &device, None)?;
    if p.json {
        p.json(&json!({"type": "done", "run_dir": outcome.run_dir, "evaluations": outcome.evaluations, "front": outcome.front}))?;
    } else {
        let rows: Vec<Vec<String>> = outcome
            .front
            .iter()
            .map(|r| {
                vec![
                    r.arch.to_string(),
                    format!("{:.2}", r.error * 100.0),
                    format!("{:.3}", r.latency),
                    format!("{:.1}", r.flops as f64 / 1e6),
                    format!("{:.3}", r.params as f64 / 1e6),
                ]
            })
            .collect();
        p.table(&["arch", "error %", "latency", "MFLOPs", "M params"], &rows)?;
        p.note(format!(
            "done: {} evaluations; front in {}/pareto.csv (plot: pareto.svg)",
            outcome.evaluations,
            outcome.run_dir.display()
        ));
    }
    Ok(ExitStatus::Success)
}
