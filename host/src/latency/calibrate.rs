//! Calibration: measure every block and random subnets on a board, fit both latency predictors
//! (block table and ridge), keep the better by held-out RMSPE, and say how far to trust each on
//! held-out subnets. [`calibrate`] does the whole run; `shiftnas calibrate` prints its summary.
//!
//! Random weights come from one [`PartBank`] (one random subnet per choice, built once): the
//! block-table parts are exported from it and every sampled arch is spliced from its blocks, so
//! exporting costs milliseconds per subnet instead of the seconds `Subnet::random` spends on BN
//! statistics. Everything is measured through the latency cache, keyed by model SHA-256.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result, ensure};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use shiftnas_calibration::fit::{Calibration, LinearFit, LutFit};
use shiftnas_calibration::linalg::ridge;
use shiftnas_calibration::predictor::{BlockTable, Kind};
use shiftnas_calibration::stats::Report;
use shiftnas_calibration::{
    ArchFeatures, FitOptions, Predictor, Provenance, Runtime, calibrate_all,
};
use shiftnas_models::onnx::{ExportOptions, Part, PartBank};
use shiftnas_models::{Arch, Space};

use shiftnas_protocol::BenchSetSpec;

use super::board::{open_pool, reference_arch};
use super::cache::{Cache, default_path};
use super::cached::{Protocol, measure_cached};
use super::predictor::features;
use crate::boards::config::parse_cores;
use crate::boards::{BoardsFile, Job, Pool};
use crate::output::Printer;
use crate::report::plot::{Labels, Point, scatter_svg};
use crate::run_dir::write_atomic;

/// What to calibrate, and where to read and write.
#[derive(Debug, Clone)]
pub struct CalibrateOptions {
    /// The board to calibrate for (`local` is built in).
    pub board: String,
    /// The search space's name.
    pub space: String,
    /// Random subnets to measure (at least 8).
    pub subnets: usize,
    /// Share of the subnets held out to judge the predictors.
    pub holdout: f64,
    /// Seed of the sampled archs, their weights and the split.
    pub seed: u64,
    /// The predictor file to write; calibration.svg and calibration.csv go next to it.
    pub out: PathBuf,
    /// The latency cache (default: [`default_path`]).
    pub cache: Option<PathBuf>,
    /// The boards file (see [`BoardsFile::load_flag`]).
    pub boards: Option<PathBuf>,
    /// The agent of the built-in `local` board.
    pub agent: Option<PathBuf>,
    /// Measure again even when the cache has a number.
    pub remeasure: bool,
    /// Fit only the ridge model (no block table).
    pub no_block_table: bool,
}

/// Wall-clock seconds per phase, to see where a run's time goes.
#[derive(Debug, Default, Serialize)]
pub struct Seconds {
    /// Building the random-weight bank (one `Subnet::random` per choice).
    pub weights: f64,
    /// Exporting block-table parts and subnets.
    pub export: f64,
    /// Cache look-ups and board measurements.
    pub measure: f64,
    /// Fitting and scoring both predictors.
    pub fit: f64,
}

/// The measured block table, in brief.
#[derive(Debug, Serialize)]
pub struct BlockTableSummary {
    /// Models measured for the table: every (block, choice), the stem and the head.
    pub models: usize,
    /// Stem + head latency, ms.
    pub stem_head_ms: f64,
    /// Smallest and largest table sum over the sampled subnets, ms.
    pub sum_range_ms: (f64, f64),
}

/// What a calibration wrote and how well each predictor did (the `--json` output).
#[derive(Debug, Serialize)]
pub struct Summary {
    /// The predictor file written.
    pub predictor: String,
    /// The kind kept: `lut` (block table) or `linear` (ridge).
    pub chosen: Kind,
    /// The fingerprint of the board measured.
    pub board_fingerprint: String,
    /// Subnets fitted on.
    pub n_train: usize,
    /// Subnets held out.
    pub n_holdout: usize,
    /// The kept predictor's held-out scores.
    pub holdout: Report,
    /// The ridge candidate's choice of features and λ, and its held-out scores.
    pub linear: LinearFit,
    /// The block-table candidate's correction and held-out scores (with and without it).
    pub lut: Option<LutFit>,
    /// A constant predictor (the training subnets' median latency) on the same holdout: the
    /// share within ±10 % a predictor must beat to say anything (τ-b and ρ are undefined).
    pub constant_baseline: Report,
    /// The block table, when measured.
    pub block_table: Option<BlockTableSummary>,
    /// A FLOPs-only predictor on the same holdout: latency = a·FLOPs + b, least squares on the
    /// training subnets (its τ-b is that of FLOPs itself).
    pub flops_only: Report,
    /// A params-only predictor likewise: latency = a·params + b.
    pub params_only: Report,
    /// Kendall τ-b of FLOPs against the measured latency.
    pub flops_tau_b: Option<f64>,
    /// Kendall τ-b of the parameter count against the measured latency.
    pub params_tau_b: Option<f64>,
    /// Where the time went.
    pub seconds: Seconds,
}

/// Measures the board (through the latency cache), fits and scores both predictors, and writes
/// the predictor file, `calibration.svg` and `calibration.csv`. Progress bars go to `printer`.
///
/// # Errors
/// Too few subnets, an unknown space or board, a read-only cache (found before measuring),
/// measurement or fitting errors, or files that cannot be written.
pub fn calibrate(args: &CalibrateOptions, printer: &Printer) -> Result<Summary> {
    ensure!(
        args.subnets >= 8,
        "--subnets {} is too few to fit and judge a predictor; use at least 8 (200 is the default)",
        args.subnets
    );
    let space = Space::by_name(&args.space)?;
    let file = BoardsFile::load_flag(args.boards.as_deref())?;
    // Before any board is touched: a measurement the cache cannot keep is lost.
    let mut cache = Cache::open(&args.cache.clone().unwrap_or_else(default_path))?;
    cache.check_writable()?;
    let mut pool = open_pool(
        &file,
        std::slice::from_ref(&args.board),
        args.agent.as_deref(),
        false,
    )?;
    super::board::ensure_onnx_board(pool.config(), "calibrate")?;
    let mut secs = Seconds::default();

    let t = Instant::now();
    let bank = PartBank::random(&space, args.seed)
        .with_context(|| format!("drawing random weights for space {}", space.name))?;
    secs.weights = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let reference = arch_jobs(&bank, &[reference_arch(&space)])?.remove(0);
    let parts = if args.no_block_table {
        Vec::new()
    } else {
        block_table_jobs(&bank)?
    };
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let archs: Vec<Arch> = (0..args.subnets)
        .map(|_| Arch::random(space.num_blocks(), space.choices.len(), &mut rng))
        .collect();
    let subnets = arch_jobs(&bank, &archs)?;
    secs.export = t.elapsed().as_secs_f64();
    // Block-table parts and whole subnets go into the same interleaved sets.
    let order = interleave(parts.len(), subnets.len());
    let mixed: Vec<Job> = order
        .iter()
        .map(|&(sub, i)| if sub { &subnets[i] } else { &parts[i] }.clone())
        .collect();
    let spec = crate::boards::pool::set_spec_for(pool.config());
    let mut m = Measurer {
        pool: &mut pool,
        cache: &mut cache,
        remeasure: args.remeasure,
        secs: &mut secs,
        reference,
        spec,
    };
    let measured = m.measure(&mixed, "measuring blocks and subnets", printer)?;
    let (mut part_ms, mut ms) = (vec![0.0; parts.len()], vec![0.0; subnets.len()]);
    for (&(sub, i), v) in order.iter().zip(measured) {
        if sub { ms[i] = v } else { part_ms[i] = v }
    }
    let table = if args.no_block_table {
        None
    } else {
        Some(block_table(&space, &part_ms)?)
    };
    let samples: Vec<(ArchFeatures, f64)> = archs
        .iter()
        .zip(&ms)
        .map(|(a, &m)| Ok((features(&space, a)?, m)))
        .collect::<Result<_>>()?;

    let t = Instant::now();
    let provenance = provenance(&pool, &space);
    let opts = FitOptions {
        holdout: args.holdout,
        seed: args.seed,
        ..FitOptions::default()
    };
    let c = calibrate_all(&samples, table.clone(), &opts, provenance)
        .with_context(|| format!("fitting predictors to {} subnets", samples.len()))?;
    secs.fit = t.elapsed().as_secs_f64();
    write_atomic(&args.out, c.file.to_json().as_bytes())
        .with_context(|| format!("writing {}", args.out.display()))?;
    let dir = args.out.parent().unwrap_or(Path::new("."));
    write_plot_and_csv(dir, &archs, &samples, &c)?;

    let constant_baseline = constant_baseline(&samples, &c)?;
    let sums: Vec<f64> = match &table {
        Some(t) => samples.iter().map(|(f, _)| t.sum(f)).collect(),
        None => vec![],
    };
    let summary = Summary {
        predictor: args.out.display().to_string(),
        chosen: c.report.chosen,
        board_fingerprint: pool.fingerprint().to_string(),
        n_train: c.report.n_train,
        n_holdout: c.report.n_holdout,
        holdout: match (&c.report.chosen, &c.report.lut) {
            (Kind::Lut, Some(l)) => l.holdout.clone(),
            _ => c.report.linear.holdout.clone(),
        },
        linear: c.report.linear.clone(),
        lut: c.report.lut.clone(),
        constant_baseline,
        block_table: table.as_ref().map(|t| BlockTableSummary {
            models: t.blocks.iter().map(Vec::len).sum::<usize>() + 2,
            stem_head_ms: t.stem_head_ms,
            sum_range_ms: (
                sums.iter().copied().fold(f64::INFINITY, f64::min),
                sums.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            ),
        }),
        flops_only: proxy_baseline(&samples, &c, |f| f.total_flops as f64)?,
        params_only: proxy_baseline(&samples, &c, |f| f.params as f64)?,
        flops_tau_b: c.report.proxies.flops,
        params_tau_b: c.report.proxies.params,
        seconds: secs,
    };
    Ok(summary)
}

/// Scores of predicting the training subnets' median latency for every held-out subnet.
fn constant_baseline(samples: &[(ArchFeatures, f64)], c: &Calibration) -> Result<Report> {
    let mut train: Vec<f64> = c.train.iter().map(|&i| samples[i].1).collect();
    train.sort_by(f64::total_cmp);
    let n = train.len();
    let median = if n % 2 == 1 {
        train[n / 2]
    } else {
        0.5 * (train[n / 2 - 1] + train[n / 2])
    };
    let meas: Vec<f64> = c.holdout.iter().map(|&i| samples[i].1).collect();
    Ok(Report::compute(&vec![median; meas.len()], &meas)?)
}

/// Scores of a one-proxy predictor (latency = a·proxy + b, fitted by least squares on the
/// training subnets) on the held-out subnets.
fn proxy_baseline(
    samples: &[(ArchFeatures, f64)],
    c: &Calibration,
    proxy: impl Fn(&ArchFeatures) -> f64,
) -> Result<Report> {
    let rows: Vec<Vec<f64>> = c
        .train
        .iter()
        .map(|&i| vec![proxy(&samples[i].0)])
        .collect();
    let y: Vec<f64> = c.train.iter().map(|&i| samples[i].1).collect();
    let (b, a) = ridge(&rows, &y, 0.0).context("fitting a one-proxy predictor")?;
    let predicted: Vec<f64> = c
        .holdout
        .iter()
        .map(|&i| a[0] * proxy(&samples[i].0) + b)
        .collect();
    let meas: Vec<f64> = c.holdout.iter().map(|&i| samples[i].1).collect();
    Ok(Report::compute(&predicted, &meas)?)
}

/// Models per interleaved set (one bench-set per board; the progress bar moves per set).
const SET: usize = 48;

/// Measures jobs through the cache, as interleaved sets against the space's reference, and adds
/// up where the time goes.
struct Measurer<'a> {
    pool: &'a mut Pool,
    cache: &'a mut Cache,
    remeasure: bool,
    secs: &'a mut Seconds,
    reference: Job,
    spec: BenchSetSpec,
}

impl Measurer<'_> {
    /// Estimates (ms) of `jobs`, in order, set by set under a progress bar.
    fn measure(&mut self, jobs: &[Job], what: &str, printer: &Printer) -> Result<Vec<f64>> {
        let bar = printer.bar(jobs.len() as u64, what);
        let mut out = Vec::with_capacity(jobs.len());
        for set in jobs.chunks(SET) {
            let t = Instant::now();
            let protocol = Protocol::Set {
                reference: &self.reference,
                spec: &self.spec,
            };
            let l = measure_cached(self.pool, self.cache, set, self.remeasure, protocol)?;
            self.secs.measure += t.elapsed().as_secs_f64();
            out.extend(l.into_iter().map(|l| l.p50_ms));
            bar.inc(set.len() as u64);
        }
        bar.finish_and_clear();
        Ok(out)
    }
}

/// Batch 1, default split: what the search's board source exports too.
fn export_options() -> ExportOptions {
    ExportOptions {
        batch: Some(1),
        ..ExportOptions::default()
    }
}

fn job(name: String, bytes: Vec<u8>, shape: [usize; 4]) -> Job {
    let mut j = Job::new(name, bytes);
    j.input_shape = Some(shape.map(|d| d.to_string()).join("x"));
    j
}

/// The block table's models: the stem, the head, then every (block, choice) in isolation.
fn block_table_jobs(bank: &PartBank) -> Result<Vec<Job>> {
    let space = bank.space();
    let mut parts: Vec<(Part, u8)> = vec![(Part::Stem, 0), (Part::Head, 0)];
    for i in 0..space.num_blocks() {
        parts.extend((0..space.choices.len() as u8).map(|d| (Part::Block(i), d)));
    }
    let opts = export_options();
    parts
        .into_iter()
        .map(|(part, d)| {
            let ((c, s), _) = part.io(space)?;
            let (name, bytes) = match part {
                Part::Block(i) => (
                    format!("{} {part} choice {d}", space.name),
                    bank.export_block(i, d, &opts),
                ),
                _ => (
                    format!("{} {part}", space.name),
                    bank.export_part(part, &opts),
                ),
            };
            let bytes = bytes.with_context(|| format!("exporting {name}"))?;
            Ok(job(name, bytes, [1, c, s, s]))
        })
        .collect()
}

/// The block table from the estimates of [`block_table_jobs`], in that order.
fn block_table(space: &Space, ms: &[f64]) -> Result<BlockTable> {
    let table = BlockTable {
        stem_head_ms: ms[0] + ms[1],
        blocks: ms[2..]
            .chunks(space.choices.len())
            .map(<[f64]>::to_vec)
            .collect(),
    };
    table
        .validate()
        .context("the measured block table is unusable")?;
    Ok(table)
}

/// Exports `archs`, spliced from the bank.
fn arch_jobs(bank: &PartBank, archs: &[Arch]) -> Result<Vec<Job>> {
    let space = bank.space();
    let shape = [1, space.input_channels, space.input_size, space.input_size];
    let opts = export_options();
    archs
        .iter()
        .map(|a| {
            let bytes = bank
                .export_arch(a, &opts)
                .with_context(|| format!("exporting arch {a}"))?;
            Ok(job(a.to_string(), bytes, shape))
        })
        .collect()
}

/// The order that spreads `a` models evenly among `b` models (each list keeps its own order):
/// `(false, i)` is the i-th of the first list, `(true, j)` the j-th of the second. Measured in
/// this order, every set holds both kinds, so parts and whole subnets see the same machine.
fn interleave(a: usize, b: usize) -> Vec<(bool, usize)> {
    let mut order: Vec<(f64, (bool, usize))> = (0..a)
        .map(|i| ((i as f64 + 0.5) / a as f64, (false, i)))
        .chain((0..b).map(|j| ((j as f64 + 0.5) / b as f64, (true, j))))
        .collect();
    order.sort_by(|x, y| x.0.total_cmp(&y.0));
    order.into_iter().map(|(_, k)| k).collect()
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

/// `calibration.svg` (both candidates' predictions vs measured on the holdout, y = x; the kept
/// one highlighted) and `calibration.csv` (every measured subnet with both candidates'
/// predictions; `predicted_ms`, the kept one's, only on held-out rows).
fn write_plot_and_csv(
    dir: &Path,
    archs: &[Arch],
    samples: &[(ArchFeatures, f64)],
    c: &Calibration,
) -> Result<()> {
    let chosen = c.report.chosen;
    let predict = |kind: Kind, f: &ArchFeatures| -> Option<f64> {
        match kind {
            Kind::Linear => Some(c.linear.predict(f)),
            Kind::Lut => c.lut.as_ref().map(|p| p.predict(f)),
        }
    };
    let mut points = Vec::new();
    for &i in &c.holdout {
        let (f, m) = &samples[i];
        for kind in [Kind::Lut, Kind::Linear] {
            if let Some(p) = predict(kind, f) {
                points.push(Point::new(*m, p, kind == chosen));
            }
        }
    }
    let other = match chosen {
        Kind::Lut => "ridge (linear), not kept",
        Kind::Linear if c.lut.is_some() => "block table (lut), not kept",
        Kind::Linear => "",
    };
    let kept = match chosen {
        Kind::Lut => "block table (lut), kept",
        Kind::Linear => "ridge (linear), kept",
    };
    let labels = Labels {
        title: "latency predictors on held-out subnets",
        x: "measured (ms)",
        y: "predicted (ms)",
        highlight: kept,
        rest: other,
    };
    let svg = scatter_svg(&points, &labels, true)?;
    let svg_path = dir.join("calibration.svg");
    write_atomic(&svg_path, svg.as_bytes())
        .with_context(|| format!("writing {}", svg_path.display()))?;

    let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    let mut csv = String::from(
        "arch,measured_ms,predicted_ms,split,flops,params,lut_ms,linear_ms,table_sum_ms\n",
    );
    for (i, (a, (f, m))) in archs.iter().zip(samples).enumerate() {
        let held = c.holdout.binary_search(&i).is_ok();
        let _ = writeln!(
            csv,
            "{a},{m},{},{},{},{},{},{},{}",
            opt(predict(chosen, f).filter(|_| held)),
            if held { "holdout" } else { "train" },
            f.total_flops,
            f.params,
            opt(predict(Kind::Lut, f)),
            opt(predict(Kind::Linear, f)),
            opt(c.lut.as_ref().map(|p| p.table.sum(f))),
        );
    }
    let csv_path = dir.join("calibration.csv");
    write_atomic(&csv_path, csv.as_bytes())
        .with_context(|| format!("writing {}", csv_path.display()))
}
