//! `shiftnas search`: args → `SearchConfig` (or the resumed run's) → latency source → driver.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use clap::ValueEnum as _;
use serde_json::json;

use super::{Context, ExitStatus};
use crate::cli::search::SearchArgs;
use crate::data::Normalize;
use crate::data::split::default_proxy_size;
use crate::interrupt::SearchInterrupted;
use crate::latency::{LatencyOptions, LatencySource, LatencySpec, NpuCalibration};
use crate::nas::arch_problem::Constraints;
use crate::nas::driver::{NpuScoring, SearchConfig, SearchOutcome, run_until};
use crate::nas::shifting::{ShiftConfig, ShiftMode};
use crate::nas::warmup::WarmupConfig;
use crate::npu::Images;
use crate::run_dir::RunDir;
use crate::train::{SgdConfig, space_and_data};

/// The options `config`'s latency source is opened with (boards from `./boards.toml`, the
/// default cache, `--remeasure`).
pub fn latency_options(config: &SearchConfig) -> LatencyOptions {
    let (space, data, conform) = (config.space.clone(), config.data.clone(), config.conform);
    let (proxy_size, split_seed) = (config.proxy_size, config.split_seed);
    LatencyOptions {
        remeasure: config.remeasure,
        // An NPU board's int8 conversions calibrate on the search's own training images.
        npu_calibration: Some(NpuCalibration(std::sync::Arc::new(move || {
            let (_, d) = space_and_data(&space, &data, conform, Some(proxy_size), split_seed)?;
            let normalize = Normalize::from_dataset(&d.pair.train, &d.splits.train);
            Images::spread(
                &d.pair.train,
                &d.splits.train,
                NPU_CALIBRATION_IMAGES,
                &normalize,
            )
        }))),
        ..LatencyOptions::default()
    }
}

/// Training images an NPU board's int8 conversions are calibrated on in a search.
const NPU_CALIBRATION_IMAGES: usize = 16;

/// The latency source of `config` (boards from `./boards.toml`, or the built-in `local` board).
///
/// # Errors
/// A predictor for another space, unknown boards, or no agent to run.
pub fn latency_source(config: &SearchConfig) -> Result<Box<dyn LatencySource>> {
    let spec = &config.latency;
    // Only the space's name matters to the sources (a predictor checks it).
    let space = shiftnas_models::Space::by_name(&config.space)?;
    crate::latency::open(spec, &space, &latency_options(config))
        .with_context(|| format!("--latency {spec}"))
}

/// `--shift`, defaulting to accumulate; transfer fine-tunes while searching, which only
/// `immediate` (SGD steps on each candidate's path) does.
fn shift_mode(args: &SearchArgs) -> Result<ShiftMode> {
    match (args.shift.shift, &args.transfer_from) {
        (None | Some(ShiftMode::Immediate), Some(_)) => Ok(ShiftMode::Immediate),
        (Some(other), Some(_)) => bail!(
            "--transfer-from fine-tunes the supernet with --shift immediate; drop --shift {}",
            other
                .to_possible_value()
                .map_or_else(String::new, |v| v.get_name().to_string())
        ),
        (mode, None) => Ok(mode.unwrap_or(ShiftMode::Accumulate)),
    }
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
    if args.same_classes && args.transfer_from.is_none() {
        bail!("--same-classes keeps a transferred classifier: use it with --transfer-from CKPT");
    }
    // Clap refused caps that are not finite and > 0 (`--max-flops`, `--max-params`).
    let cap = |v: Option<f64>| v.map(|x| x as u64);
    if args.data.proxy_size == Some(0) {
        bail!("--proxy-size 0: the search scores archs on the proxy split; give at least 1");
    }
    let space = match &args.space {
        Some(name) => name.clone(),
        None => {
            let file = crate::nas::driver::supernet_file(&supernet);
            shiftnas_models::Supernet::checkpoint_info(&file)
                .with_context(|| format!("reading the space of {}", file.display()))?
                .space
                .name
        }
    };
    let track = match &args.track {
        Some(file) => crate::rank::read_archs(file, &shiftnas_models::Space::by_name(&space)?)
            .with_context(|| format!("--track {}", file.display()))?,
        None => Vec::new(),
    };
    let s = &args.shift;
    Ok(SearchConfig {
        supernet,
        data: args.data.data.clone(),
        space,
        algorithm: args.algorithm,
        latency: args.latency.clone(),
        pop: args.pop,
        gens: args.gens,
        seed: args.seed,
        shift: ShiftConfig {
            mode: shift_mode(args)?,
            update: s.shift_update,
            samples: s.shift_samples,
            steps: s.shift_steps,
            batch: s.shift_batch,
            sgd: SgdConfig {
                lr: if args.transfer_from.is_some() {
                    args.transfer_shift_lr
                } else {
                    s.shift_lr
                },
                momentum: s.shift_momentum,
                weight_decay: s.shift_weight_decay,
            },
            label_smoothing: 0.1,
        },
        bn: args.bn,
        bn_images: args.bn_images,
        proxy_size: args.data.proxy_size.unwrap_or(0),
        split_seed: args.split_seed,
        eval_batch: args.eval_batch,
        constraints: Constraints {
            max_flops: cap(args.max_flops),
            max_params: cap(args.max_params),
            latency_budget: args.latency_budget,
        },
        conform: args.data.conform(),
        transfer_from: args.transfer_from.clone(),
        same_classes: args.same_classes,
        warmup: args.transfer_from.as_ref().map(|_| WarmupConfig {
            probe_steps: args.warmup_probe_steps,
            probe_lr: args.warmup_probe_lr,
            finetune_steps: args.warmup_steps,
            finetune_lr: args.warmup_lr,
            batch: args.warmup_batch,
            ..WarmupConfig::default()
        }),
        remeasure: args.remeasure,
        share_bn: !args.no_share_bn,
        prescreen: match &args.prescreen {
            None => None,
            Some(LatencySpec::Predictor(path)) => Some(path.clone()),
            Some(other) => bail!("--prescreen {other}: write --prescreen predictor:FILE"),
        },
        prescreen_margin: args.prescreen_margin,
        force_predictor: args.force_predictor,
        track,
        npu_accuracy: args.npu_accuracy.map(|dtype| NpuScoring {
            dtype,
            images: args.npu_images,
            calibration: args.npu_calibration,
        }),
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
        let mut c: SearchConfig = RunDir::open_read_only(dir)?.read_config()?;
        c.out = dir.clone();
        // `--remeasure` on a resume applies to this continuation (config.toml is not rewritten).
        c.remeasure |= args.remeasure;
        return Ok(c);
    }
    let mut c = config_from_args(args)?;
    if c.proxy_size == 0 {
        // The preset gives the input size to load at (the class count does not matter here).
        let input_size = shiftnas_models::Space::by_name(&c.space)?.input_size;
        let n = c.data.load(input_size)?.train.len();
        c.proxy_size = default_proxy_size(n);
    }
    if c.prescreen.is_some() && !matches!(c.latency, LatencySpec::Board(_)) {
        bail!(
            "--prescreen saves board measurements: use it with --latency board:NAME (not {})",
            c.latency
        );
    }
    // Clap checks these for the command line; quickstart builds its `SearchArgs` in code.
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

/// Runs (or, with `resume` (`--resume`), continues) the search of `config` with Ctrl-C routed to
/// it: `Ok(None)` means Ctrl-C stopped it with the last finished generation checkpointed, and the
/// note naming `resume_command` (the command that continues) is printed.
///
/// # Errors
/// As [`run_until`].
pub(super) fn search_interruptible(
    config: &SearchConfig,
    resume: bool,
    ctx: &Context,
    resume_command: &str,
) -> Result<Option<SearchOutcome>> {
    let p = &ctx.printer;
    let device = ctx.compute.device()?;
    let latency = latency_source(config)?;
    crate::interrupt::install();
    match run_until(config, resume, p, latency, &device, None) {
        Ok(outcome) => Ok(Some(outcome)),
        Err(e) => match e.downcast_ref::<SearchInterrupted>() {
            Some(i) => {
                let fields = json!({"generation": i.generation});
                super::report_interrupted(p, i, &config.out, resume_command, fields)?;
                Ok(None)
            }
            None => Err(e),
        },
    }
}

/// Runs `shiftnas search`.
pub fn run(args: SearchArgs, ctx: &Context) -> Result<ExitStatus> {
    let p = &ctx.printer;
    let config = effective_config(&args, ctx)?;
    let resume = format!("shiftnas search --resume {}", config.out.display());
    let Some(outcome) = search_interruptible(&config, args.resume.is_some(), ctx, &resume)? else {
        return Ok(ExitStatus::Interrupted);
    };
    if p.json {
        p.json(&json!({"type": "done", "run_dir": outcome.run_dir, "evaluations": outcome.evaluations, "board_measurements_saved": outcome.prescreened, "seconds": outcome.seconds, "transfer": outcome.transfer, "front": outcome.front}))?;
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
        if config.prescreen.is_some() {
            p.note(format!(
                "prescreen: {} of {} evaluations kept off the board (latency predicted; board measurements saved)",
                outcome.prescreened, outcome.evaluations
            ));
        }
        let t = outcome.seconds;
        p.note(format!(
            "done: {} evaluations; front in {}/pareto.csv (plot: pareto.svg); time: scoring {:.0} s, shifting {:.0} s, latency {:.0} s, final re-score {:.0} s",
            outcome.evaluations,
            outcome.run_dir.display(),
            t.scoring,
            t.shifting,
            t.latency,
            t.rescore
        ));
    }
    Ok(ExitStatus::Success)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};
    use crate::compute::Compute;
    use crate::output::Printer;

    /// `shiftnas search --space tiny FLAGS` (the tests' checkpoints do not exist, so the space
    /// cannot come from them).
    fn args(flags: &[&str]) -> SearchArgs {
        let mut v = vec!["shiftnas", "search", "--space", "tiny"];
        v.extend_from_slice(flags);
        parse(&v)
    }

    fn parse(v: &[&str]) -> SearchArgs {
        match Cli::try_parse_from(v).unwrap().command {
            Command::Search(a) => a,
            _ => unreachable!(),
        }
    }

    /// Without --space the search takes the checkpoint's; an unreadable one is named.
    #[test]
    fn the_space_comes_from_the_checkpoint_unless_given() {
        let d = tempfile::tempdir().unwrap();
        let ckpt = d.path().join("supernet.safetensors");
        let space = crate::train::space_for("mbv2-tiny", 10).unwrap();
        shiftnas_models::Supernet::new(&space, &candle_core::Device::Cpu, 1)
            .unwrap()
            .save(&ckpt, 3)
            .unwrap();
        let p = ckpt.to_str().unwrap();
        let c = config_from_args(&parse(&["shiftnas", "search", "--supernet", p])).unwrap();
        assert_eq!(c.space, "mbv2-tiny");
        let c = config_from_args(&parse(&["shiftnas", "search", "--transfer-from", p])).unwrap();
        assert_eq!(c.space, "mbv2-tiny");
        let given = parse(&["shiftnas", "search", "--supernet", p, "--space", "tiny"]);
        assert_eq!(config_from_args(&given).unwrap().space, "tiny");
        let missing = parse(&["shiftnas", "search", "--supernet", "none.safetensors"]);
        let e = format!("{:#}", config_from_args(&missing).unwrap_err());
        assert!(e.contains("reading the space of none.safetensors"), "{e}");
    }

    /// `--shift` defaults to accumulate; `--transfer-from` implies immediate and refuses another
    /// explicit mode instead of replacing it silently.
    #[test]
    fn transfer_shifts_immediately_and_refuses_other_modes() {
        let mode = |f: &[&str]| shift_mode(&args(f));
        assert_eq!(mode(&["--supernet", "s"]).unwrap(), ShiftMode::Accumulate);
        assert_eq!(
            mode(&["--supernet", "s", "--shift", "off"]).unwrap(),
            ShiftMode::Off
        );
        assert_eq!(
            mode(&["--transfer-from", "t"]).unwrap(),
            ShiftMode::Immediate
        );
        let err = mode(&["--transfer-from", "t", "--shift", "off"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--shift immediate") && err.contains("drop --shift off"),
            "{err}"
        );
    }

    /// A transfer search gets a warm-up from the `--warmup-*` flags, shifts at
    /// `--transfer-shift-lr` (not `--shift-lr`), and keeps the source head only with
    /// `--same-classes`; a plain search has no warm-up.
    #[test]
    fn transfer_flags_reach_the_config() {
        let t = config_from_args(&args(&[
            "--transfer-from",
            "t",
            "--warmup-probe-steps",
            "7",
            "--warmup-steps",
            "3",
            "--warmup-batch",
            "16",
            "--shift-lr",
            "0.5",
        ]))
        .unwrap();
        let w = t.warmup.unwrap();
        assert_eq!((w.probe_steps, w.finetune_steps, w.batch), (7, 3, 16));
        assert_eq!(w.images(), 160);
        assert_eq!(t.shift.sgd.lr, 1e-2);
        assert!(!t.same_classes);
        let same = config_from_args(&args(&["--transfer-from", "t", "--same-classes"])).unwrap();
        assert!(same.same_classes);
        let plain = config_from_args(&args(&["--supernet", "s", "--shift-lr", "0.5"])).unwrap();
        assert!(plain.warmup.is_none());
        assert_eq!(plain.shift.sgd.lr, 0.5);
        let bad = config_from_args(&args(&["--supernet", "s", "--same-classes"]));
        assert!(format!("{:#}", bad.unwrap_err()).contains("--transfer-from"));
    }

    /// `--prescreen predictor:FILE` reaches the config with its margin; it needs a board source
    /// and a predictor spec; sharing BN is on unless `--no-share-bn`.
    #[test]
    fn prescreen_and_share_bn_flags() {
        let ctx = Context {
            printer: Printer::silent(),
            compute: Compute::Cpu,
        };
        let base = ["--supernet", "s.safetensors", "--proxy-size", "10"];
        let cfg = |extra: &[&str]| {
            let mut f = base.to_vec();
            f.extend_from_slice(extra);
            effective_config(&args(&f), &ctx)
        };
        let c = cfg(&[
            "--latency",
            "board:rk1",
            "--prescreen",
            "predictor:p.json",
            "--prescreen-margin",
            "7.5",
        ])
        .unwrap();
        assert_eq!(c.prescreen, Some(PathBuf::from("p.json")));
        assert_eq!(c.prescreen_margin, Some(7.5));
        assert!(c.share_bn && !c.force_predictor);
        assert!(!cfg(&["--no-share-bn"]).unwrap().share_bn);
        let e = |extra: &[&str]| format!("{:#}", cfg(extra).unwrap_err());
        assert!(e(&["--prescreen", "predictor:p.json"]).contains("--latency board:NAME"));
        assert!(
            e(&["--latency", "board:rk1", "--prescreen", "board:rk2"])
                .contains("--prescreen predictor:FILE")
        );
        // A negative margin is refused by clap, naming the flag.
        let mut f = base.to_vec();
        f.extend_from_slice(&[
            "--latency",
            "board:rk1",
            "--prescreen",
            "predictor:p.json",
            "--prescreen-margin=-1",
        ]);
        let parsed = Cli::try_parse_from(["shiftnas", "search"].iter().chain(&f));
        assert!(
            parsed
                .unwrap_err()
                .to_string()
                .contains("--prescreen-margin")
        );
        let zero = config_from_args(&args(&["--supernet", "s", "--proxy-size", "0"]));
        assert!(format!("{:#}", zero.unwrap_err()).contains("--proxy-size 0"));
    }

    /// `--remeasure` reaches the board source's options, is kept in config.toml, and a run dir
    /// written before the flag existed still resumes (without it, unless passed again).
    #[test]
    fn remeasure_reaches_the_latency_source_and_old_run_dirs_resume() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("run");
        let out_s = out.to_str().unwrap();
        let ctx = Context {
            printer: Printer::silent(),
            compute: Compute::Cpu,
        };
        let new = |extra: &[&str]| {
            let mut f = vec![
                "--supernet",
                "s.safetensors",
                "--latency",
                "board:rk1",
                "--proxy-size",
                "10",
                "--out",
                out_s,
            ];
            f.extend_from_slice(extra);
            effective_config(&args(&f), &ctx).unwrap()
        };
        let plain = new(&[]);
        assert!(!latency_options(&plain).remeasure);
        let c = new(&["--remeasure"]);
        assert!(c.remeasure && latency_options(&c).remeasure);

        let run = RunDir::create(&out).unwrap();
        run.write_config(&c).unwrap();
        let path = out.join("config.toml");
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("remeasure = true"), "{text}");
        let resumed = effective_config(&args(&["--resume", out_s]), &ctx).unwrap();
        assert_eq!(resumed, c);

        // A config.toml from before `--remeasure`.
        let old: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with("remeasure"))
            .collect();
        fs::write(&path, old.join("\n")).unwrap();
        let resumed = effective_config(&args(&["--resume", out_s]), &ctx).unwrap();
        assert_eq!(resumed, plain);
        assert!(!latency_options(&resumed).remeasure);
        let resumed = effective_config(&args(&["--resume", out_s, "--remeasure"]), &ctx).unwrap();
        assert!(latency_options(&resumed).remeasure);
    }
}
