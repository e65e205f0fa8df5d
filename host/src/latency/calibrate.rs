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
use shiftnas_calibration::predictor::{BlockTable, Kind};
use shiftnas_calibration::stats::Report;
use shiftnas_calibration::{
    ArchFeatures, FitOptions, Predictor, Provenance, Runtime, calibrate_all,
};
use shiftnas_models::onnx::{ExportOptions, Part, PartBank};
use shiftnas_models::{Arch, Space};

use super::board::open_pool;
use super::cache::{Cache, default_path};
use super::cached::{Protocol, measure_cached};
use super::predictor::features;
use crate::boards::config::parse_cores;
use crate::boards::{BoardsFile, Job, Pool};
use crate::output::Printer;
use crate::report::plot::{Labels, Point, scatter_svg};
use crate::run_dir::write_atomic;

/// Models sent to the pool at once (the progress bar moves per chunk).
const CHUNK: usize = 8;

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
    let mut secs = Seconds::default();

    let t = Instant::now();
    let bank = PartBank::random(&space, args.seed)
        .with_context(|| format!("drawing random weights for space {}", space.name))?;
    secs.weights = t.elapsed().as_secs_f64();

    let mut m = Measurer {
        pool: &mut pool,
        cache: &mut cache,
        remeasure: args.remeasure,
        secs: &mut secs,
    };
    let table = if args.no_block_table {
        None
    } else {
        Some(measure_block_table(&mut m, &bank, printer)?)
    };

    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let archs: Vec<Arch> = (0..args.subnets)
        .map(|_| Arch::random(space.num_blocks(), space.choices.len(), &mut rng))
        .collect();
    let ms = measure_archs(&mut m, &bank, &archs, printer)?;
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

/// Measures jobs through the cache and adds up where the time goes.
struct Measurer<'a> {
    pool: &'a mut Pool,
    cache: &'a mut Cache,
    remeasure: bool,
    secs: &'a mut Seconds,
}

impl Measurer<'_> {
    /// p50 latencies (ms) of the models `make` exports for `items`, chunk by chunk under a
    /// progress bar. `make` returns the job's name, its bytes and its input shape.
    fn measure<T>(
        &mut self,
        items: &[T],
        what: &str,
        printer: &Printer,
        make: impl Fn(&T) -> Result<(String, Vec<u8>, [usize; 4])>,
    ) -> Result<Vec<f64>> {
        let bar = printer.bar(items.len() as u64, what);
        let mut out = Vec::with_capacity(items.len());
        for chunk in items.chunks(CHUNK) {
            let t = Instant::now();
            let mut jobs = Vec::with_capacity(chunk.len());
            for item in chunk {
                let (name, bytes, shape) = make(item)?;
                let mut j = Job::new(name, bytes);
                j.input_shape = Some(shape.map(|d| d.to_string()).join("x"));
                jobs.push(j);
            }
            self.secs.export += t.elapsed().as_secs_f64();
            let t = Instant::now();
            let l = measure_cached(
                self.pool,
                self.cache,
                &jobs,
                self.remeasure,
                Protocol::Single,
            )?;
            self.secs.measure += t.elapsed().as_secs_f64();
            out.extend(l.into_iter().map(|l| l.p50_ms));
            bar.inc(chunk.len() as u64);
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

/// Measures every (block, choice) in isolation, plus the stem and the head, into a table.
fn measure_block_table(m: &mut Measurer, bank: &PartBank, printer: &Printer) -> Result<BlockTable> {
    let space = bank.space();
    let n_choices = space.choices.len();
    let mut parts: Vec<(Part, u8)> = vec![(Part::Stem, 0), (Part::Head, 0)];
    for i in 0..space.num_blocks() {
        parts.extend((0..n_choices as u8).map(|d| (Part::Block(i), d)));
    }
    let opts = export_options();
    let ms = m.measure(&parts, "measuring blocks", printer, |&(part, d)| {
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
        Ok((name, bytes, [1, c, s, s]))
    })?;
    let table = BlockTable {
        stem_head_ms: ms[0] + ms[1],
        blocks: ms[2..].chunks(n_choices).map(<[f64]>::to_vec).collect(),
    };
    table
        .validate()
        .context("the measured block table is unusable")?;
    Ok(table)
}

/// Exports (spliced from the bank) and measures `archs`.
fn measure_archs(
    m: &mut Measurer,
    bank: &PartBank,
    archs: &[Arch],
    printer: &Printer,
) -> Result<Vec<f64>> {
    let space = bank.space();
    let shape = [1, space.input_channels, space.input_size, space.input_size];
    let opts = export_options();
    m.measure(archs, "measuring subnets", printer, |a| {
        let bytes = bank
            .export_arch(a, &opts)
            .with_context(|| format!("exporting arch {a}"))?;
        Ok((a.to_string(), bytes, shape))
    })
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
