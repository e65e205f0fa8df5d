//! The architecture search run: config, run dir, resume, the generation loop and the final front.
//!
//! A run dir holds `config.toml` (every effective setting; `--resume` reads it back),
//! `archive.jsonl` (every evaluation), `log.jsonl` (one [`GenerationSummary`] per generation),
//! `checkpoint/` (after every generation; see [`super::checkpoint`]), and at the end
//! `pareto.json`, `pareto.csv`, `pareto.svg` and `hypervolume.csv` ([`crate::report::pareto`]).
//! On resume the archive is truncated to the checkpointed length, so a run killed at any point
//! and resumed ends with the same archive as an uninterrupted one. Ctrl-C
//! ([`crate::interrupt`]) stops after the candidate in flight with
//! [`crate::interrupt::SearchInterrupted`]; the unfinished generation is dropped (its shifted
//! weights were never saved) and runs again on resume.
//!
//! [`run_until`] reads as the steps of a run: load the data, open or create the run dir, start
//! from the checkpoint or from `--supernet`, assemble the [`ArchProblem`] (shifting, scores with
//! their cache, prescreen), then `SearchLoop` runs generations (ask, evaluate, tell, archive,
//! progress, checkpoint, log) until the generation budget, and re-scores the final front.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::Device;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use shiftnas_models::{Arch, Space, Supernet};

use super::algorithm::{Algorithm, ArchSearch, ArchSearchState};
use super::arch_problem::{ArchProblem, Constraints, PhaseSeconds, timed};
use super::checkpoint::{self, SearchState};
use super::evaluator::Evaluator;
use super::prescreen::{self, Prescreen};
use super::progress::{Progress, hv_reference};
use super::shifting::{ShiftConfig, Shifter};
use super::warmup::{self, WarmupConfig, WarmupRecord};
use crate::archive::{self, ArchiveRecord};
use crate::data::{Augment, Batcher, BatcherPosition, ConformOptions, DataSpec, Normalize};
use crate::interrupt::SearchInterrupted;
use crate::latency::{LatencySource, LatencySpec};
use crate::output::Printer;
use crate::run_dir::RunDir;
use crate::search::observer::{GenerationSummary, Observer};
use crate::search::problem::Problem;
use crate::search::termination::{MaxGenerations, Termination};
use crate::train::{BnMode, PreparedData, space_and_data};

/// Every effective setting of a search; written to `config.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchConfig {
    /// Supernet checkpoint (`supernet.safetensors` or a train run dir).
    pub supernet: PathBuf,
    /// Images.
    pub data: DataSpec,
    /// Search-space preset.
    pub space: String,
    /// Algorithm.
    pub algorithm: Algorithm,
    /// Latency source.
    pub latency: LatencySpec,
    /// Population size (evolution: candidates per generation).
    pub pop: usize,
    /// Generations.
    pub gens: usize,
    /// Seed of the search and shifting batches.
    pub seed: u64,
    /// Shifting.
    pub shift: ShiftConfig,
    /// BN calibration before each score.
    pub bn: BnMode,
    /// BN calibration images.
    pub bn_images: usize,
    /// Proxy images scored (held out from training, class-balanced, seeded by `split_seed`).
    pub proxy_size: usize,
    /// Seed of the proxy split (the supernet's training seed, so it never saw these images).
    pub split_seed: u64,
    /// Images per scoring forward batch.
    pub eval_batch: usize,
    /// Caps.
    pub constraints: Constraints,
    /// Channel conversion / resizing.
    pub conform: ConformOptions,
    /// Where the run lives.
    pub out: PathBuf,
    /// Transfer: start from this supernet of another data set instead of `supernet`
    /// (feature extractor kept, new classifier/stem; see [`super::transfer`]).
    #[serde(default)]
    pub transfer_from: Option<PathBuf>,
    /// Transfer: keep the source's classifier (`--same-classes`: the target's classes are the
    /// source's, in the same order). Without it the classifier is always new.
    #[serde(default)]
    pub same_classes: bool,
    /// Transfer: the head warm-up before the search ([`super::warmup`]). Transfer run dirs from
    /// before the warm-up read back as `None` and resume without one.
    #[serde(default)]
    pub warmup: Option<WarmupConfig>,
    /// Board latencies: measure again even when the latency cache has the key (`--remeasure`).
    #[serde(default)]
    pub remeasure: bool,
    /// With `accumulate` shifting and `exact` BN: each candidate's BN statistics come from its
    /// shifting forward over its shift samples instead of a separate calibration forward over
    /// `bn_images` (which then only calibrate the final front's re-score). Run dirs from before
    /// this setting read back as `false`, the behaviour they were started with.
    #[serde(default)]
    pub share_bn: bool,
    /// `--prescreen predictor:FILE`: keep candidates whose predicted latency is clearly outside
    /// the measured front off the boards (see [`super::prescreen`]).
    #[serde(default)]
    pub prescreen: Option<PathBuf>,
    /// Prescreen margin in % (default: twice the predictor's held-out RMSPE).
    #[serde(default)]
    pub prescreen_margin: Option<f64>,
    /// Use a prescreen predictor calibrated on another board fingerprint.
    #[serde(default)]
    pub force_predictor: bool,
    /// `--npu-accuracy`: also score the final front on rknn-toolkit2's simulator of the NPU.
    #[serde(default)]
    pub npu_accuracy: Option<NpuScoring>,
    /// `--track`: archs scored under the current weights before the first generation and after
    /// every one, into `track/gen-NNN.csv` (see [`track_file`]).
    #[serde(default)]
    pub track: Vec<Arch>,
}

/// The scores of the tracked archs (`--track`) after `generation` (0: before the first), in
/// `run`: a CSV `arch,error,supernet_step` that `shiftnas rank --archs` reads.
pub fn track_file(run: &Path, generation: usize) -> PathBuf {
    run.join("track").join(format!("gen-{generation:03}.csv"))
}

/// Scoring the final front through the NPU simulator ([`crate::npu::simulated_accuracy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NpuScoring {
    /// The NPU format.
    pub dtype: crate::npu::Dtype,
    /// Proxy images scored (evenly spread over the proxy split).
    pub images: usize,
    /// Int8 calibration images (evenly spread over the training split).
    pub calibration: usize,
}

/// What a finished search produced.
#[derive(Debug, Clone, Serialize)]
pub struct SearchOutcome {
    /// The run dir.
    pub run_dir: PathBuf,
    /// The final front, re-scored under the final weights, sorted by latency.
    pub front: Vec<ArchiveRecord>,
    /// Hypervolume after each generation.
    pub hypervolume: Vec<f64>,
    /// Evaluations in the archive.
    pub evaluations: usize,
    /// Evaluations whose latency the prescreen predicted instead of sending them to the board
    /// (board measurements saved); 0 without `--prescreen`.
    pub prescreened: usize,
    /// Where this invocation's time went.
    pub seconds: PhaseSeconds,
    /// Transfer: what was copied, what was fresh, and the warm-up (`None` without transfer).
    pub transfer: Option<WarmupRecord>,
    /// `--npu-accuracy`: each front member's fp32 and simulated NPU top-1, in the front's order
    /// (empty without it).
    pub npu_accuracy: Vec<crate::npu::QuantAccuracy>,
}

/// The supernet file of `path`: the file itself, or a train run dir's checkpoint.
pub fn supernet_file(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join("checkpoint").join("supernet.safetensors")
    } else {
        path.to_path_buf()
    }
}

/// Runs a whole search on the CPU: a new one in the new run dir `config.out`, or with `resume`
/// the one in `config.out`, continued from its checkpoint.
///
/// # Errors
/// Data, checkpoint, latency or tensor failures, naming the file, arch or flag.
pub fn run(
    config: &SearchConfig,
    resume: bool,
    printer: &Printer,
    latency: Box<dyn LatencySource>,
) -> Result<SearchOutcome> {
    run_until(config, resume, printer, latency, &Device::Cpu, None)
}

/// As [`run`], on `device`, stopping after generation `stop_after` if given (as a kill would,
/// after that generation's checkpoint; returns the partial outcome without reports).
///
/// # Errors
/// As [`run`]; [`SearchInterrupted`] after Ctrl-C (when [`crate::interrupt::install`] routed
/// it), with the last finished generation checkpointed.
pub fn run_until(
    config: &SearchConfig,
    resume: bool,
    printer: &Printer,
    latency: Box<dyn LatencySource>,
    device: &Device,
    stop_after: Option<usize>,
) -> Result<SearchOutcome> {
    let (space, data) = load_data(config)?;
    let normalize = Normalize::from_dataset(&data.pair.train, &data.splits.train);
    if !resume && config.transfer_from.is_none() {
        // Before the run dir exists: a wrong --space must not leave one behind to block a rerun.
        let file = supernet_file(&config.supernet);
        let info = Supernet::checkpoint_info(&file)
            .with_context(|| format!("--supernet {}", file.display()))?;
        if info.space.name != space.name {
            anyhow::bail!(
                "--supernet {}: the checkpoint holds space {:?}, not --space {}; pass --space {}",
                file.display(),
                info.space.name,
                config.space,
                info.space.name
            );
        }
    }
    let run = open_run_dir(config, resume)?;
    let archive_path = run.join("archive.jsonl");
    let target = warmup::Target {
        data: &data,
        normalize: &normalize,
        bn_images: config.bn_images,
        split_seed: config.split_seed,
        eval_batch: config.eval_batch,
    };
    let (net, start) = match run.resumable_checkpoint() {
        Some(dir) if warmup::is_checkpoint(&dir) => {
            resume_warmup(&dir, config, &run, target, &space, device, printer)?
        }
        Some(dir) => resume_from(&dir, &run, &archive_path, &space, device, printer)?,
        None => start_new(config, &run, target, &space, device, printer)?,
    };
    let past = if archive_path.is_file() {
        archive::read(&archive_path)?
    } else {
        Vec::new()
    };
    let prescreen = open_prescreen(config, &space, latency.as_ref(), &past, printer)?;
    let (shifter, batcher) = restore_shifting(config, &data, &normalize, &start, device)?;
    let problem = ArchProblem {
        net: &net,
        space: space.clone(),
        evaluator: evaluator(config, &data, &normalize, past),
        shifter,
        batcher,
        rng: start.shift_rng,
        latency,
        constraints: config.constraints,
        n_obj: if config.algorithm == Algorithm::Evolution {
            1
        } else {
            2
        },
        base_step: start.base_step,
        generation: start.generation,
        records: Vec::new(),
        share_bn: config.share_bn,
        prescreen,
        seconds: PhaseSeconds::default(),
    };
    if problem.shares_bn() {
        printer.note(format!(
            "BN statistics of each candidate come from its {} shifting images (shared forward); --bn-images {} calibrates the final re-score",
            problem.shifter.images_per_candidate(),
            config.bn_images
        ));
    }
    let algorithm = build_algorithm(config, &space, start.algorithm)?;
    let progress = Progress::new(
        printer,
        config.gens,
        start.generation,
        hv_reference(&space, &config.constraints),
        start.hypervolume,
    );
    let npu = match config.npu_accuracy {
        Some(scoring) => Some((
            scoring,
            crate::npu::Converter::from_env().context("--npu-accuracy needs rknn-toolkit2")?,
        )),
        None => None,
    };
    let search = SearchLoop {
        run,
        archive_path,
        problem,
        algorithm,
        rng: start.rng,
        seed: config.seed,
        npu,
        track: config.track.clone(),
    };
    search.run(&MaxGenerations(config.gens), progress, stop_after)
}

/// The `--algorithm` of `config`, continuing from `state` when given. Its precheck prices archs
/// in `space` (the data set's class count), as the scored constraints do.
fn build_algorithm(
    config: &SearchConfig,
    space: &Space,
    state: Option<ArchSearchState>,
) -> Result<ArchSearch> {
    ArchSearch::new(
        config.algorithm,
        config.pop,
        space,
        config.constraints,
        state,
    )
}

/// The space with the data set's class count, and the data set with its train/proxy split
/// (`--data`, `--proxy-size`, `--split-seed`).
fn load_data(config: &SearchConfig) -> Result<(Space, PreparedData)> {
    space_and_data(
        &config.space,
        &config.data,
        config.conform,
        Some(config.proxy_size),
        config.split_seed,
    )
    .with_context(|| format!("--data {}", config.data))
}

/// The run dir: created (with `config.toml`) for a new search, opened for `--resume`.
fn open_run_dir(config: &SearchConfig, resume: bool) -> Result<RunDir> {
    if resume {
        return RunDir::open(&config.out);
    }
    let run = RunDir::create(&config.out)?;
    run.write_config(config)?;
    Ok(run)
}

/// Where the generation loop starts: after a checkpoint's generation, or at the beginning.
struct Start {
    /// Finished generations.
    generation: usize,
    /// The algorithm's RNG.
    rng: ChaCha8Rng,
    /// The shifting batches' RNG.
    shift_rng: ChaCha8Rng,
    /// Training step of the supernet the search started from.
    base_step: u64,
    /// Hypervolume after each finished generation.
    hypervolume: Vec<f64>,
    /// The algorithm's state (`None`: a new search).
    algorithm: Option<ArchSearchState>,
    /// Shifting state to restore (`None`: a new search).
    shifting: Option<SavedShifting>,
}

/// The shifting state of a checkpoint.
struct SavedShifting {
    /// The optimizer's buffers.
    optimizer: PathBuf,
    /// SGD steps taken.
    steps: u64,
    /// Where the shifting batches continue.
    batcher: BatcherPosition,
}

/// Resumes from the checkpoint folder `dir`: its supernet and state, with the archive cut back
/// to the checkpoint (a kill mid-generation leaves some of the next generation's records).
fn resume_from(
    dir: &Path,
    run: &RunDir,
    archive_path: &Path,
    space: &Space,
    device: &Device,
    printer: &Printer,
) -> Result<(Supernet, Start)> {
    let (state, net): (SearchState, Supernet) = checkpoint::load(dir, space, device)?;
    archive::truncate_to(archive_path, state.archive_len)?;
    printer.note(format!(
        "resuming {} after generation {}",
        run.path().display(),
        state.generation
    ));
    let start = Start {
        generation: state.generation,
        rng: state.rng,
        shift_rng: state.shift_rng,
        base_step: state.base_step,
        hypervolume: state.hypervolume,
        algorithm: Some(state.algorithm),
        shifting: Some(SavedShifting {
            optimizer: checkpoint::optimizer_file(dir),
            steps: state.shift_steps,
            batcher: state.batcher,
        }),
    };
    Ok((net, start))
}

/// Starts a new search (or one killed before its first checkpoint): the supernet of
/// `--supernet`, or one transferred from `--transfer-from` and warmed up, and an empty archive.
fn start_new(
    config: &SearchConfig,
    run: &RunDir,
    target: warmup::Target<'_>,
    space: &Space,
    device: &Device,
    printer: &Printer,
) -> Result<(Supernet, Start)> {
    let _ = fs::remove_file(run.join("archive.jsonl"));
    let Some(src) = &config.transfer_from else {
        let file = supernet_file(&config.supernet);
        let (net, step) = Supernet::load_for(&file, space, device)
            .with_context(|| format!("--supernet {}", file.display()))?;
        return Ok((net, first_generation(config, step)));
    };
    let (net, rep) = super::transfer::transfer(
        &supernet_file(src),
        space,
        device,
        config.seed,
        config.same_classes,
    )?;
    printer.note(format!(
        "transfer from {}: {} weights copied ({}), fresh: {}",
        src.display(),
        rep.copied.len(),
        summarize(&rep.copied),
        if rep.fresh.is_empty() {
            "none".to_string()
        } else {
            rep.fresh.join(", ")
        }
    ));
    if let Some(w) = &config.warmup {
        printer.note(format!(
            "warm-up: {} head-only steps at lr {} then {} path fine-tune steps at lr {}, {} images each ({} images)",
            w.probe_steps,
            w.probe_lr,
            w.finetune_steps,
            w.finetune_lr,
            w.batch,
            w.images()
        ));
        let record = warmup::start(run, &net, &rep, w, target, config.seed, None)?
            .context("the warm-up stopped early")?;
        report_warmup(&record, printer)?;
    }
    Ok((net, first_generation(config, 0)))
}

/// Continues a warm-up killed before its end (its checkpoint folder `dir`), then starts the
/// search as [`start_new`] would.
fn resume_warmup(
    dir: &Path,
    config: &SearchConfig,
    run: &RunDir,
    target: warmup::Target<'_>,
    space: &Space,
    device: &Device,
    printer: &Printer,
) -> Result<(Supernet, Start)> {
    let w = config.warmup.with_context(|| {
        format!(
            "{} holds a warm-up checkpoint but config.toml has no [warmup]; start the search again in a new --out",
            dir.display()
        )
    })?;
    printer.note(format!("resuming the warm-up of {}", run.path().display()));
    let (net, record) = warmup::resume(dir, run, space, device, &w, target, config.seed, None)?;
    let record = record.context("the warm-up stopped early")?;
    report_warmup(&record, printer)?;
    Ok((net, first_generation(config, 0)))
}

/// Prints the warm-up's record (a `{"type": "transfer", …}` line with `--json`).
fn report_warmup(record: &WarmupRecord, printer: &Printer) -> Result<()> {
    if printer.json {
        let mut v = serde_json::to_value(record)?;
        v["type"] = "transfer".into();
        printer.json(&v)?;
    }
    printer.note(format!(
        "warm-up done ({} images): mean proxy accuracy of {} archs {:.1} % -> {:.1} %",
        record.images,
        record.archs.len(),
        100.0 * record.accuracy_before,
        100.0 * record.accuracy_after
    ));
    Ok(())
}

/// The copied weights by their top-level part (`stem`, `blocks`, `last`, …) with counts.
fn summarize(names: &[String]) -> String {
    let mut parts: Vec<(String, usize)> = Vec::new();
    for n in names {
        let top = n.split('.').next().unwrap_or(n).to_string();
        match parts.iter_mut().find(|(p, _)| *p == top) {
            Some((_, c)) => *c += 1,
            None => parts.push((top, 1)),
        }
    }
    parts
        .iter()
        .map(|(p, c)| format!("{p} {c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The start of generation 1 from a supernet at training step `base_step`.
fn first_generation(config: &SearchConfig, base_step: u64) -> Start {
    let mut shift_rng = ChaCha8Rng::seed_from_u64(config.seed);
    shift_rng.set_stream(1);
    Start {
        generation: 0,
        rng: ChaCha8Rng::seed_from_u64(config.seed),
        shift_rng,
        base_step,
        hypervolume: Vec::new(),
        algorithm: None,
        shifting: None,
    }
}

/// The prescreen of `--prescreen` (`None` without), knowing the measured points of `past`.
fn open_prescreen(
    config: &SearchConfig,
    space: &Space,
    latency: &dyn LatencySource,
    past: &[ArchiveRecord],
    printer: &Printer,
) -> Result<Option<Prescreen>> {
    let Some(predictor) = &config.prescreen else {
        return Ok(None);
    };
    let mut p = prescreen::open(
        predictor,
        config.prescreen_margin,
        config.force_predictor,
        space,
        latency,
    )?;
    p.observe(past);
    printer.note(format!(
        "prescreen: candidates predicted more than {:.1} % above the measured front (or the budget) are not sent to the board",
        100.0 * p.margin()
    ));
    Ok(Some(p))
}

/// The shifting optimizer and its training batches, restored to `start`'s checkpoint if any.
fn restore_shifting<'a>(
    config: &SearchConfig,
    data: &'a PreparedData,
    normalize: &Normalize,
    start: &Start,
    device: &Device,
) -> Result<(Shifter, Batcher<'a>)> {
    let mut shifter = Shifter::new(config.shift);
    let mut batcher = Batcher::new(
        &data.pair.train,
        data.splits.train.clone(),
        config.shift.batch.min(data.splits.train.len()),
        Augment::NONE,
        normalize.clone(),
        config.seed,
    )?;
    if let Some(saved) = &start.shifting {
        shifter.sgd.load_buffers(&saved.optimizer, device)?;
        shifter.steps_taken = saved.steps;
        batcher.set_position(saved.batcher);
    }
    Ok((shifter, batcher))
}

/// The proxy scorer, remembering the scores of `past` evaluations (its cache).
fn evaluator<'a>(
    config: &SearchConfig,
    data: &'a PreparedData,
    normalize: &'a Normalize,
    past: Vec<ArchiveRecord>,
) -> Evaluator<'a> {
    let mut evaluator = Evaluator::new(
        &data.pair.train,
        &data.splits.proxy,
        &data.splits.train,
        normalize,
        config.bn,
        config.bn_images,
        config.split_seed,
        config.eval_batch,
    );
    for r in past {
        evaluator.remember(r.arch, r.error * 100.0, r.supernet_step);
    }
    evaluator
}

/// A search under way: its run dir, the problem (supernet, shifting, scores, latency), the
/// algorithm and the algorithm's RNG.
struct SearchLoop<'a> {
    run: RunDir,
    archive_path: PathBuf,
    problem: ArchProblem<'a>,
    algorithm: ArchSearch,
    rng: ChaCha8Rng,
    /// The search seed (dropout masks of each generation derive from it).
    seed: u64,
    /// `--npu-accuracy`, with the toolkit (checked before the search starts).
    npu: Option<(NpuScoring, crate::npu::Converter)>,
    /// `--track`: archs scored after every generation.
    track: Vec<Arch>,
}

impl SearchLoop<'_> {
    /// Runs generations until `budget`, each observed by `progress` then checkpointed and
    /// logged; then re-scores the final front and writes the reports. Stops early, with the
    /// partial outcome, after generation `stop_after`.
    fn run(
        mut self,
        budget: &dyn Termination,
        mut progress: Progress<'_>,
        stop_after: Option<usize>,
    ) -> Result<SearchOutcome> {
        if self.algorithm.search().generation() == 0 {
            self.score_tracked(0)?;
        }
        while budget.progress(
            self.algorithm.search().generation(),
            self.algorithm.search().n_evals(),
        ) < 1.0
        {
            // Ctrl-C (crate::interrupt): the last generation's checkpoint is on disk; stop here,
            // or inside `evaluate` after the candidate in flight, and leave the generation to
            // resume.
            if crate::interrupt::requested() {
                let generation = self.algorithm.search().generation();
                return Err(SearchInterrupted::after(generation).into());
            }
            let summary = self.next_generation()?;
            self.score_tracked(summary.generation)?;
            progress.on_generation(&summary, self.algorithm.search().population());
            checkpoint::save(
                &self.run,
                &self.problem,
                &self.rng,
                &self.algorithm,
                progress.hypervolume(),
                summary.generation,
            )?;
            self.run.log(&summary)?;
            if stop_after == Some(summary.generation) {
                let records = archive::read(&self.archive_path)?;
                return Ok(self.outcome(Vec::new(), progress.finish(), &records));
            }
        }
        let hypervolume = progress.finish();
        self.finish(hypervolume)
    }

    /// One generation: ask, score (with shifting), tell, and append its records to the archive.
    fn next_generation(&mut self) -> Result<GenerationSummary> {
        let archs = self.algorithm.search().ask(&mut self.rng);
        let generation = self.algorithm.search().generation() + 1;
        self.problem.generation = generation;
        self.problem
            .net
            .set_dropout_seed(self.seed ^ (generation as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let evals = self.problem.evaluate(&archs)?;
        let summary = self.algorithm.search().tell(evals, &mut self.rng)?;
        for r in &self.problem.records {
            archive::append(&self.archive_path, r)?;
        }
        Ok(summary)
    }

    /// Scores the `--track` archs under the current weights (BN calibrated as for the final
    /// re-score; the time counts as re-scoring) into [`track_file`]. A kill before the
    /// generation's checkpoint leaves a file that the resumed run writes again.
    fn score_tracked(&mut self, generation: usize) -> Result<()> {
        if self.track.is_empty() {
            return Ok(());
        }
        let step = self.problem.step();
        let mut csv = String::from("arch,error,supernet_step\n");
        for arch in &self.track {
            let error = self.problem.score_outside(arch)? / 100.0;
            csv += &format!("{arch},{error},{step}\n");
        }
        crate::run_dir::write_atomic(&track_file(self.run.path(), generation), csv.as_bytes())
    }

    /// Re-scores the final front under the final weights, keeps what is still non-dominated,
    /// and writes the reports.
    fn finish(mut self, hypervolume: Vec<f64>) -> Result<SearchOutcome> {
        let mut front = self.rescore_front()?;
        front.sort_by(|a, b| {
            a.latency
                .total_cmp(&b.latency)
                .then(a.error.total_cmp(&b.error))
        });
        front.dedup_by(|a, b| a.arch == b.arch);
        keep_non_dominated(&mut front);
        let npu_accuracy = match &self.npu {
            Some((scoring, converter)) => {
                super::npu_scoring::score_front(&self.problem, converter, *scoring, &front)?
            }
            None => Vec::new(),
        };
        let records = archive::read(&self.archive_path)?;
        crate::report::pareto::write_search_reports(
            self.run.path(),
            &front,
            &npu_accuracy,
            &hypervolume,
            &records,
            self.problem.latency.unit(),
        )?;
        let mut outcome = self.outcome(front, hypervolume, &records);
        outcome.npu_accuracy = npu_accuracy;
        Ok(outcome)
    }

    /// The population's first front, each member scored again at the current weights, with its
    /// latency.
    fn rescore_front(&mut self) -> Result<Vec<ArchiveRecord>> {
        let source = self.problem.latency.describe();
        let step = self.problem.step();
        let generation = self.algorithm.search().generation();
        let pop = self.algorithm.search().population().to_vec();
        let problem = &mut self.problem;
        let mut front = Vec::new();
        for ind in pop.iter().filter(|i| i.rank == 0) {
            if crate::interrupt::requested() {
                return Err(SearchInterrupted::in_rescore(generation).into());
            }
            let error = problem.rescore(&ind.genome)?;
            let c = shiftnas_models::cost::arch_cost(&problem.space, &ind.genome);
            let lat = timed(&mut problem.seconds.latency, || {
                problem
                    .latency
                    .estimates(&problem.space, std::slice::from_ref(&ind.genome))
            })?[0];
            front.push(ArchiveRecord {
                generation,
                arch: ind.genome.clone(),
                error: error / 100.0,
                latency: lat.value,
                latency_source: source.clone(),
                latency_interval: lat.interval,
                flops: c.flops,
                params: c.params,
                supernet_step: step,
            });
        }
        Ok(front)
    }

    /// What the run produced, with the archive's `records`.
    fn outcome(
        &self,
        front: Vec<ArchiveRecord>,
        hypervolume: Vec<f64>,
        records: &[ArchiveRecord],
    ) -> SearchOutcome {
        SearchOutcome {
            run_dir: self.run.path().to_path_buf(),
            front,
            hypervolume,
            evaluations: records.len(),
            prescreened: prescreen::count(self.problem.prescreen.as_ref(), records),
            seconds: self.problem.seconds,
            transfer: warmup::read_record(self.run.path()).ok().flatten(),
            npu_accuracy: Vec::new(),
        }
    }
}

/// Drops the records another record dominates in (error, latency): re-scoring can reorder the
/// old front.
fn keep_non_dominated(front: &mut Vec<ArchiveRecord>) {
    let scored = front.clone();
    front.retain(|r| {
        !scored.iter().any(|o| {
            o.error <= r.error
                && o.latency <= r.latency
                && (o.error < r.error || o.latency < r.latency)
        })
    });
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::latency::flops::FlopsSource;
    use crate::nas::shifting::ShiftMode;
    use crate::train::space_for;

    /// A small `tiny`-space search on the embedded data (flops latency, shifting on); other
    /// tests override fields with struct-update syntax.
    pub(crate) fn config(dir: &Path, supernet: &Path) -> SearchConfig {
        let mut shift = ShiftConfig {
            samples: 16,
            batch: 16,
            ..ShiftConfig::default()
        };
        shift.sgd.lr = 0.01;
        SearchConfig {
            supernet: supernet.to_path_buf(),
            data: DataSpec::BuiltinFashionMnist,
            space: "tiny".into(),
            algorithm: Algorithm::Nsga2,
            latency: LatencySpec::Flops,
            pop: 4,
            gens: 3,
            seed: 9,
            shift,
            bn: BnMode::Exact,
            bn_images: 32,
            proxy_size: 60,
            split_seed: 3,
            eval_batch: 60,
            constraints: Constraints::default(),
            conform: ConformOptions::default(),
            out: dir.to_path_buf(),
            transfer_from: None,
            same_classes: false,
            warmup: None,
            remeasure: false,
            share_bn: true,
            prescreen: None,
            prescreen_margin: None,
            force_predictor: false,
            npu_accuracy: None,
            track: Vec::new(),
        }
    }

    /// Without `resume` a search never continues (or overwrites) a run dir that holds files,
    /// even a complete one with `config.toml`; it names `--resume`.
    #[test]
    fn a_new_search_refuses_an_existing_run_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let space = space_for("tiny", 10).unwrap();
        let ckpt = tmp.path().join("supernet.safetensors");
        Supernet::new(&space, &Device::Cpu, 1)
            .unwrap()
            .save(&ckpt, 7)
            .unwrap();
        let c = config(&tmp.path().join("run"), &ckpt);
        RunDir::create(&c.out).unwrap().write_config(&c).unwrap();
        let err = run(&c, false, &Printer::silent(), Box::new(FlopsSource)).unwrap_err();
        assert!(format!("{err:#}").contains("--resume"), "{err:#}");
        assert!(!c.out.join("archive.jsonl").exists());
    }

    /// A checkpoint of another space is refused before the run dir exists, naming both spaces,
    /// so the corrected command can reuse `--out`.
    #[test]
    fn a_checkpoint_of_another_space_leaves_no_run_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let ckpt = tmp.path().join("supernet.safetensors");
        Supernet::new(&space_for("mbv2-tiny", 10).unwrap(), &Device::Cpu, 1)
            .unwrap()
            .save(&ckpt, 7)
            .unwrap();
        let c = config(&tmp.path().join("run"), &ckpt);
        let err = format!(
            "{:#}",
            run(&c, false, &Printer::silent(), Box::new(FlopsSource)).unwrap_err()
        );
        assert!(
            err.contains("\"mbv2-tiny\"") && err.contains("--space mbv2-tiny"),
            "{err}"
        );
        assert!(!c.out.exists());
    }

    /// A transfer search reports a fresh head and its warm-up; one killed during the warm-up
    /// and resumed ends with the archive and front of an uninterrupted one.
    #[test]
    fn transfer_search_killed_during_warmup_resumes_to_the_same_result() {
        let tmp = tempfile::tempdir().unwrap();
        let space = space_for("tiny", 10).unwrap();
        let src = tmp.path().join("src.safetensors");
        Supernet::new(&space, &Device::Cpu, 1)
            .unwrap()
            .save(&src, 7)
            .unwrap();
        let p = Printer::silent();
        let mut a = config(&tmp.path().join("a"), &src);
        a.transfer_from = Some(src.clone());
        a.shift.mode = ShiftMode::Immediate;
        a.shift.steps = 1;
        a.gens = 2;
        a.warmup = Some(WarmupConfig {
            probe_steps: 4,
            finetune_steps: 4,
            batch: 16,
            checkpoint_every: 3,
            ..WarmupConfig::default()
        });
        let full = run(&a, false, &p, Box::new(FlopsSource)).unwrap();
        let rec = full.transfer.clone().unwrap();
        assert_eq!(rec.fresh, vec!["classifier.weight".to_string()]);
        assert_eq!(rec.images, 8 * 16);

        // The same search killed after warm-up step 5 (its checkpoint is from step 3).
        let b = SearchConfig {
            out: tmp.path().join("b"),
            ..a.clone()
        };
        {
            let (_, data) = load_data(&b).unwrap();
            let normalize = Normalize::from_dataset(&data.pair.train, &data.splits.train);
            let target = warmup::Target {
                data: &data,
                normalize: &normalize,
                bn_images: b.bn_images,
                split_seed: b.split_seed,
                eval_batch: b.eval_batch,
            };
            let run_dir = open_run_dir(&b, false).unwrap();
            let (net, rep) =
                super::super::transfer::transfer(&src, &space, &Device::Cpu, b.seed, false)
                    .unwrap();
            let w = b.warmup.unwrap();
            let stopped = warmup::start(&run_dir, &net, &rep, &w, target, b.seed, Some(5));
            assert!(stopped.unwrap().is_none());
        }
        let resumed = run(&b, true, &p, Box::new(FlopsSource)).unwrap();
        let ta = fs::read_to_string(a.out.join("archive.jsonl")).unwrap();
        let tb = fs::read_to_string(b.out.join("archive.jsonl")).unwrap();
        assert_eq!(ta, tb);
        assert_eq!(resumed.transfer, full.transfer);
        let errors = |o: &SearchOutcome| o.front.iter().map(|r| r.error).collect::<Vec<_>>();
        assert_eq!(errors(&resumed), errors(&full));
    }

    /// A run stopped after generation 1 (and left with a half-written generation in the
    /// archive, as a kill would) and resumed ends with the archive of an uninterrupted run.
    #[test]
    fn killed_and_resumed_search_has_the_same_archive() {
        // BN shared with the shifting forward (the default), and calibrated separately.
        for share_bn in [true, false] {
            killed_and_resumed(share_bn);
        }
    }

    fn killed_and_resumed(share_bn: bool) {
        let tmp = tempfile::tempdir().unwrap();
        let space = space_for("tiny", 10).unwrap();
        let ckpt = tmp.path().join("supernet.safetensors");
        Supernet::new(&space, &Device::Cpu, 1)
            .unwrap()
            .save(&ckpt, 7)
            .unwrap();
        let p = Printer::silent();
        let plain = SearchConfig {
            share_bn,
            ..config(&tmp.path().join("plain"), &ckpt)
        };
        // With shared BN, an untracked run first, then the same run tracking every arch it
        // scored: tracking happens at the step the next generation's candidates are scored at,
        // so its scores must stay out of the candidates' cache for the archives to agree.
        let (track, plain_archive) = if share_bn {
            run(&plain, false, &p, Box::new(FlopsSource)).unwrap();
            let path = plain.out.join("archive.jsonl");
            let mut track: Vec<Arch> = (archive::read(&path).unwrap().into_iter())
                .map(|r| r.arch)
                .collect();
            track.sort_by_key(|a| a.to_string());
            track.dedup();
            (track, Some(fs::read_to_string(path).unwrap()))
        } else {
            let two = ["0", "3"].map(|d| d.repeat(20).parse().unwrap());
            (two.to_vec(), None)
        };
        let a = SearchConfig {
            out: tmp.path().join("a"),
            track,
            ..plain.clone()
        };
        assert_eq!(a.shift.mode, ShiftMode::Accumulate);
        let full = run(&a, false, &p, Box::new(FlopsSource)).unwrap();
        let b = SearchConfig {
            out: tmp.path().join("b"),
            ..a.clone()
        };
        run_until(&b, false, &p, Box::new(FlopsSource), &Device::Cpu, Some(1)).unwrap();
        let arch_path = b.out.join("archive.jsonl");
        let first = archive::read(&arch_path).unwrap();
        archive::append(&arch_path, &first[0]).unwrap();
        // A kill after generation 2's tracked scores but before its checkpoint.
        fs::write(track_file(&b.out, 2), "torn").unwrap();
        let resumed = run(&b, true, &p, Box::new(FlopsSource)).unwrap();
        let ta = fs::read_to_string(a.out.join("archive.jsonl")).unwrap();
        let tb = fs::read_to_string(arch_path).unwrap();
        assert_eq!(ta, tb);
        if let Some(plain) = plain_archive {
            assert_eq!(ta, plain);
        }
        assert_eq!(full.evaluations, 12);
        assert_eq!(full.hypervolume, resumed.hypervolume);
        let recs = archive::read(&a.out.join("archive.jsonl")).unwrap();
        // One shifting step per generation on top of the checkpoint's step 7.
        let steps: Vec<u64> = recs.iter().map(|r| r.supernet_step).collect();
        assert_eq!(steps.first(), Some(&7));
        assert_eq!(steps.last(), Some(&9));
        assert!(full.front.iter().all(|r| r.supernet_step == 10));
        // The tracked archs: scored before generation 1 and after each, the same after the kill.
        for generation in 0..=3 {
            let ta = fs::read_to_string(track_file(&a.out, generation)).unwrap();
            let tb = fs::read_to_string(track_file(&b.out, generation)).unwrap();
            assert_eq!(ta, tb, "generation {generation}");
            let step = (7 + generation).to_string();
            let lines: Vec<&str> = ta.lines().collect();
            assert_eq!(lines.len(), a.track.len() + 1, "{ta}");
            assert!(
                lines[1..].iter().all(|l| l.ends_with(&format!(",{step}"))),
                "{ta}"
            );
        }
        // The time split: shifting, scores and the re-score under the moved weights all ran.
        let t = full.seconds;
        assert!(
            t.shifting > 0.0 && t.scoring > 0.0 && t.rescore > 0.0,
            "{t:?}"
        );
        for f in [
            "pareto.json",
            "pareto.csv",
            "pareto.svg",
            "hypervolume.csv",
            "config.toml",
        ] {
            assert!(a.out.join(f).is_file(), "{f}");
        }
        let back: SearchConfig = RunDir::open(&a.out).unwrap().read_config().unwrap();
        assert_eq!(back, a);
    }
}
