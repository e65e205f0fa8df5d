//! `shiftnas calibrate`: measure random subnets on a board, fit a latency predictor, and say how
//! far to trust it on held-out subnets.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context as _, Result, ensure};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use shiftnas_calibration::fit::split;
use shiftnas_calibration::stats::Report;
use shiftnas_calibration::{ArchFeatures, FitOptions, Provenance, Runtime, calibrate};
use shiftnas_models::{Arch, Space};

use super::{Context, ExitStatus};
use crate::boards::cached::measure_cached;
use crate::boards::config::parse_cores;
use crate::boards::{Job, Pool};
use crate::cache::{Cache, default_path};
use crate::cli::calibrate::CalibrateArgs;
use crate::latency::board::{export_random, open_pool};
use crate::latency::predictor::features;
use crate::report::plot::{Labels, Point, scatter_svg};
use crate::run_dir::write_atomic;

/// Subnets sent to the pool at once (the progress bar moves per chunk).
const CHUNK: usize = 8;

#[derive(Debug, Serialize)]
struct Summary {
    predictor: String,
    chosen: String,
    board_fingerprint: String,
    n_train: usize,
    n_holdout: usize,
    holdout: Report,
    flops_tau_b: Option<f64>,
    params_tau_b: Option<f64>,
}

/// Runs `shiftnas calibrate`.
pub fn run(args: CalibrateArgs, ctx: &Context) -> Result<ExitStatus> {
    ensure!(
        args.subnets >= 8,
        "--subnets {} is too few to fit and judge a predictor; use at least 8 (200 is the default)",
        args.subnets
    );
    let space = Space::by_name(&args.space)?;
    let mut pool = open_pool(
        &args.boards,
        &[args.board.clone()],
        args.agent.as_deref(),
        false,
    )?;
    let mut cache = Cache::open(&args.cache.clone().unwrap_or_else(default_path))?;

    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let archs: Vec<Arch> = (0..args.subnets)
        .map(|_| Arch::random(space.num_blocks(), space.choices.len(), &mut rng))
        .collect();
    let ms = measure_archs(&mut pool, &mut cache, &space, &archs, &args, ctx)?;
    let samples: Vec<(ArchFeatures, f64)> = archs
        .iter()
        .zip(&ms)
        .map(|(a, &m)| Ok((features(&space, a)?, m)))
        .collect::<Result<_>>()?;

    let provenance = provenance(&pool, &space);
    let opts = FitOptions {
        holdout: args.holdout,
        seed: args.seed,
        ..FitOptions::default()
    };
    let (file, report) = calibrate(&samples, None, &opts, provenance)
        .with_context(|| format!("fitting a predictor to {} subnets", samples.len()))?;
    write_atomic(&args.out, file.to_json().as_bytes())
        .with_context(|| format!("writing {}", args.out.display()))?;

    // Held-out pairs, recomputed with the split the fit used.
    let (_, hold) = split(samples.len(), args.holdout, args.seed)?;
    let mut pairs = Vec::with_capacity(hold.len());
    for &i in &hold {
        pairs.push((file.predict_checked(&samples[i].0)?, samples[i].1, i));
    }
    let pred: Vec<f64> = pairs.iter().map(|p| p.0).collect();
    let meas: Vec<f64> = pairs.iter().map(|p| p.1).collect();
    let holdout = Report::compute(&pred, &meas)?;
    let dir = args.out.parent().unwrap_or(Path::new("."));
    write_plot_and_csv(dir, &archs, &samples, &pairs, &hold)?;

    let summary = Summary {
        predictor: args.out.display().to_string(),
        chosen: format!("{:?}", report.chosen).to_lowercase(),
        board_fingerprint: pool.fingerprint().to_string(),
        n_train: report.n_train,
        n_holdout: report.n_holdout,
        holdout,
        flops_tau_b: report.proxies.flops,
        params_tau_b: report.proxies.params,
    };
    print_summary(&summary, ctx)?;
    Ok(ExitStatus::Success)
}

/// Exports and measures `archs` through the cache, chunk by chunk under a progress bar.
fn measure_archs(
    pool: &mut Pool,
    cache: &mut Cache,
    space: &Space,
    archs: &[Arch],
    args: &CalibrateArgs,
    ctx: &Context,
) -> Result<Vec<f64>> {
    let shape = format!("1x{}x{s}x{s}", space.input_channels, s = space.input_size);
    let bar = ctx.printer.bar(archs.len() as u64, "measuring subnets");
    let mut out = Vec::with_capacity(archs.len());
    for chunk in archs.chunks(CHUNK) {
        let mut jobs = Vec::with_capacity(chunk.len());
        for a in chunk {
            let bytes = export_random(space, a, args.seed)
                .with_context(|| format!("exporting arch {a}"))?;
            let mut j = Job::new(a.to_string(), bytes);
            j.input_shape = Some(shape.clone());
            jobs.push(j);
        }
        let l = measure_cached(pool, cache, &jobs, args.remeasure)?;
        out.extend(l.into_iter().map(|l| l.p50_ms));
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(out)
}

/// Who measured: the pool's fingerprint, runtime, threads and cores.
fn provenance(pool: &Pool, space: &Space) -> Provenance {
    let cfg = pool.config();
    let runtime = pool
        .boards()
        .into_iter()
        .find_map(|(_, info)| info)
        .map(|i| Runtime {
            name: format!("{:?}", i.backend.name).to_lowercase(),
            version: i.backend.version.clone(),
        })
        .unwrap_or(Runtime {
            name: "unknown".into(),
            version: String::new(),
        });
    Provenance {
        board_fingerprint: pool.fingerprint().to_string(),
        runtime,
        threads: cfg.threads,
        cores: cfg
            .cores
            .as_deref()
            .and_then(|c| parse_cores(c).ok())
            .unwrap_or_default(),
        space: space.name.clone(),
    }
}

/// `calibration.svg` (predicted vs measured on the holdout, y = x) and `calibration.csv`
/// (every measured subnet, with its prediction where held out).
fn write_plot_and_csv(
    dir: &Path,
    archs: &[Arch],
    samples: &[(ArchFeatures, f64)],
    pairs: &[(f64, f64, usize)],
    hold: &[usize],
) -> Result<()> {
    let points: Vec<Point> = pairs
        .iter()
        .map(|&(p, m, _)| Point {
            x: m,
            y: p,
            highlight: false,
        })
        .collect();
    let labels = Labels {
        title: "latency predictor on held-out subnets",
        x: "measured (ms)",
        y: "predicted (ms)",
        highlight: "",
        rest: "held-out subnet",
    };
    let svg = scatter_svg(&points, &labels, true)?;
    let svg_path = dir.join("calibration.svg");
    write_atomic(&svg_path, svg.as_bytes())
        .with_context(|| format!("writing {}", svg_path.display()))?;
    let mut csv = String::from("arch,measured_ms,predicted_ms,split,flops,params\n");
    for (i, (a, (f, m))) in archs.iter().zip(samples).enumerate() {
        let held = pairs.iter().find(|p| p.2 == i);
        let _ = writeln!(
            csv,
            "{a},{m},{},{},{},{}",
            held.map(|p| p.0.to_string()).unwrap_or_default(),
            if hold.contains(&i) {
                "holdout"
            } else {
                "train"
            },
            f.total_flops,
            f.params
        );
    }
    let csv_path = dir.join("calibration.csv");
    write_atomic(&csv_path, csv.as_bytes())
        .with_context(|| format!("writing {}", csv_path.display()))
}

fn print_summary(s: &Summary, ctx: &Context) -> Result<()> {
    if ctx.printer.json {
        return ctx.printer.json(s);
    }
    let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.3}"));
    let h = &s.holdout;
    let rows = vec![
        vec![
            "predictor".into(),
            format!("{} ({})", s.predictor, s.chosen),
        ],
        vec!["board".into(), s.board_fingerprint.clone()],
        vec![
            "subnets".into(),
            format!("{} train, {} held out", s.n_train, s.n_holdout),
        ],
        vec!["Kendall tau-b".into(), f(h.kendall_tau_b)],
        vec!["Spearman rho".into(), f(h.spearman_rho)],
        vec!["RMSE (ms)".into(), format!("{:.3}", h.rmse)],
        vec!["RMSPE (%)".into(), format!("{:.2}", h.rmspe_pct)],
        vec![
            "within 5 %".into(),
            format!("{:.1} %", 100.0 * h.within_5pct),
        ],
        vec![
            "within 10 %".into(),
            format!("{:.1} %", 100.0 * h.within_10pct),
        ],
        vec![
            "within 15 %".into(),
            format!("{:.1} %", 100.0 * h.within_15pct),
        ],
        vec!["tau-b of FLOPs".into(), f(s.flops_tau_b)],
        vec!["tau-b of params".into(), f(s.params_tau_b)],
    ];
    ctx.printer.table(&["held-out", "value"], &rows)
}
