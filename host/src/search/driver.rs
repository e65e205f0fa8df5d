//! The architecture search run: config, run dir, checkpoints, resume, final front and reports.
//!
//! A run dir holds `config.toml` (every effective setting; `--resume` reads it back),
//! `archive.jsonl` (every evaluation), `log.jsonl` (one [`GenerationSummary`] per generation),
//! `checkpoint/` (written after every generation: shifted supernet, optimizer buffers,
//! `state.json` with the RNGs, algorithm state, shifting data cursor and archive length), and at
//! the end `pareto.json`, `pareto.csv`, `pareto.svg` and `hypervolume.csv`. On resume the archive
//! is truncated to the checkpointed length, so a run killed at any point and resumed ends with the
//! same archive as an uninterrupted one. Ctrl-C ([`crate::interrupt`]) stops after the candidate in
//! flight with [`crate::interrupt::SearchInterrupted`]; the unfinished generation is dropped (its
//! shifted weights were never saved) and runs again on resume.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use candle_core::Device;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shiftnas_models::{Arch, Supernet};

use super::arch_problem::{ArchProblem, Constraints, PhaseSeconds, timed};
use super::evaluator::Evaluator;
use super::evolution::{Evolution, EvolutionConfig, EvolutionState, Precheck};
use super::hypervolume::hypervolume;
use super::nsga2::{Nsga2, Nsga2Config, Nsga2State};
use super::observer::GenerationSummary;
use super::operators::{ArchSampling, GeneMutation, UniformCrossover};
use super::random::{RandomConfig, RandomSearch, RandomState};
use super::shifting::{ShiftConfig, Shifter};
use super::{Algorithm, Search};
use crate::archive::{self, ArchiveRecord};
use crate::data::Batcher;
use crate::data::{Augment, BatcherPosition, ConformOptions, DataSpec, Normalize};
use crate::latency::{LatencySource, LatencySpec};
use crate::output::Printer;
use crate::run_dir::{RunDir, STATE_FILE, write_atomic};
use crate::train::{BnMode, prepare_data, space_for};

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
}

/// `state.json` of a search checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SearchState {
    generation: usize,
    rng: ChaCha8Rng,
    shift_rng: ChaCha8Rng,
    batcher: BatcherPosition,
    shift_steps: u64,
    base_step: u64,
    archive_len: usize,
    hypervolume: Vec<f64>,
    algorithm: AlgState,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
enum AlgState {
    Nsga2(Nsga2State<Arch>),
    Evolution(EvolutionState<Arch>),
    Random(RandomState<Arch>),
}

type N2 = Nsga2<Arch, ArchSampling, UniformCrossover, GeneMutation>;
type Ev = Evolution<Arch, ArchSampling, UniformCrossover, GeneMutation>;
type Rs = RandomSearch<Arch, ArchSampling>;

enum Alg {
    Nsga2(N2),
    Evolution(Ev),
    Random(Rs),
}

impl Alg {
    fn search(&mut self) -> &mut dyn Search<Arch> {
        match self {
            Alg::Nsga2(a) => a,
            Alg::Evolution(a) => a,
            Alg::Random(a) => a,
        }
    }

    fn state(&self) -> AlgState {
        match self {
            Alg::Nsga2(a) => AlgState::Nsga2(a.state().clone()),
            Alg::Evolution(a) => AlgState::Evolution(a.state().clone()),
            Alg::Random(a) => AlgState::Random(a.state().clone()),
        }
    }
}

fn build_alg(
    config: &SearchConfig,
    blocks: usize,
    choices: usize,
    state: Option<AlgState>,
) -> Result<Alg> {
    let sampling = ArchSampling { blocks, choices };
    let mutation = GeneMutation { p: 0.1, choices };
    let space = space_for(&config.space, 1)?;
    let max_flops = config.constraints.max_flops;
    let max_params = config.constraints.max_params;
    let precheck = move || -> Precheck<Arch> {
        let space = space.clone();
        Box::new(move |a: &Arch| {
            let c = shiftnas_models::cost::arch_cost(&space, a);
            Constraints {
                max_flops,
                max_params,
                latency_budget: None,
            }
            .values(c.flops, c.params, 0.0)
            .iter()
            .map(|g| g.max(0.0))
            .sum()
        })
    };
    Ok(match (config.algorithm, state) {
        (Algorithm::Nsga2, s) => {
            let s = match s {
                Some(AlgState::Nsga2(s)) => s,
                None => Nsga2State::default(),
                Some(_) => bail!("checkpoint holds another algorithm's state"),
            };
            Alg::Nsga2(Nsga2::resume(
                Nsga2Config::new(config.pop),
                sampling,
                UniformCrossover,
                mutation,
                s,
            ))
        }
        (Algorithm::Evolution, s) => {
            let half = config.pop / 2;
            let ec = EvolutionConfig {
                population: config.pop,
                top_k: (config.pop / 5).max(2),
                n_mutation: half,
                n_crossover: config.pop - half,
                max_tries: 100,
            };
            Alg::Evolution(match s {
                Some(AlgState::Evolution(s)) => {
                    Evolution::resume(ec, sampling, UniformCrossover, mutation, precheck(), s)
                }
                None => Evolution::new(ec, sampling, UniformCrossover, mutation, precheck()),
                Some(_) => bail!("checkpoint holds another algorithm's state"),
            })
        }
        (Algorithm::Random, s) => {
            let rc = RandomConfig {
                batch: config.pop,
                keep: config.pop,
                max_tries: 100,
            };
            Alg::Random(match s {
                Some(AlgState::Random(s)) => RandomSearch::resume(rc, sampling, precheck(), s),
                None => RandomSearch::new(rc, sampling, precheck()),
                Some(_) => bail!("checkpoint holds another algorithm's state"),
            })
        }
    })
}

/// The supernet file of `path`: the file itself, or a train run dir's checkpoint.
pub fn supernet_file(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join("checkpoint").join("supernet.safetensors")
    } else {
        path.to_path_buf()
    }
}

/// Runs (or resumes, when `config.out` holds a checkpoint) a whole search.
///
/// # Errors
/// Data, checkpoint, latency or tensor failures, naming the file, arch or flag.
pub fn run(
    config: &SearchConfig,
    printer: &Printer,
    latency: Box<dyn LatencySource>,
) -> Result<SearchOutcome> {
    run_until(config, printer, latency, &Device::Cpu, None)
}

/// As [`run`], on `device`, stopping after generation `stop_after` if given (as a kill would,
/// after that generation's checkpoint; returns the partial outcome without reports).
///
/// # Errors
/// As [`run`]; [`crate::interrupt::SearchInterrupted`] after Ctrl-C (when
/// [`crate::interrupt::install`] routed it), with the last finished generation checkpointed.
pub fn run_until(
    config: &SearchConfig,
    printer: &Printer,
    latency: Box<dyn LatencySource>,
    device: &Device,
    stop_after: Option<usize>,
) -> Result<SearchOutcome> {
    let probe = space_for(&config.space, 1)?;
    let data = prepare_data(
        &config.data,
        &probe,
        config.conform,
        Some(config.proxy_size),
        config.split_seed,
    )
    .with_context(|| format!("--data {}", config.data))?;
    let train_set = &data.pair.train;
    let space = space_for(&config.space, train_set.num_classes())?;
    let normalize = Normalize::from_dataset(train_set, &data.splits.train);
    let run = if config.out.join("config.toml").is_file() {
        RunDir::open(&config.out)?
    } else {
        let r = RunDir::create(&config.out)?;
        r.write_config(config)?;
        r
    };
    let archive_path = run.join("archive.jsonl");
    let resumable = run.resumable_checkpoint();
    let (net, state) = if let Some(ckpt) = resumable {
        let state_path = ckpt.join(STATE_FILE);
        let st: SearchState = serde_json::from_slice(&fs::read(&state_path)?)
            .with_context(|| format!("parsing {}", state_path.display()))?;
        let (net, _) = Supernet::load_for(ckpt.join("supernet.safetensors"), &space, device)
            .with_context(|| format!("loading {}", ckpt.display()))?;
        // Drop evaluations after the checkpoint (a kill mid-generation leaves some).
        let mut recs = if archive_path.is_file() {
            archive::read(&archive_path)?
        } else {
            Vec::new()
        };
        if recs.len() < st.archive_len {
            bail!(
                "{} has {} records but the checkpoint expects {}; the run dir is damaged",
                archive_path.display(),
                recs.len(),
                st.archive_len
            );
        }
        recs.truncate(st.archive_len);
        let mut text = String::new();
        for r in &recs {
            text.push_str(&serde_json::to_string(r)?);
            text.push('\n');
        }
        write_atomic(&archive_path, text.as_bytes())?;
        printer.note(format!(
            "resuming {} after generation {}",
            run.path().display(),
            st.generation
        ));
        (net, Some(st))
    } else {
        let net = match &config.transfer_from {
            Some(src) => {
                let (net, rep) =
                    super::transfer::transfer(&supernet_file(src), &space, device, config.seed)?;
                printer.note(format!(
                    "transfer from {}: {} weights copied, fresh: {}",
                    src.display(),
                    rep.copied.len(),
                    rep.fresh.join(", ")
                ));
                net
            }
            None => {
                let file = supernet_file(&config.supernet);
                Supernet::load_for(&file, &space, device)
                    .with_context(|| format!("--supernet {}", file.display()))?
                    .0
            }
        };
        let _ = fs::remove_file(&archive_path);
        (net, None)
    };
    let base_step = match &state {
        Some(s) => s.base_step,
        None if config.transfer_from.is_some() => 0,
        None => shiftnas_models::Supernet::checkpoint_info(supernet_file(&config.supernet))?.step,
    };
    let mut shifter = Shifter::new(config.shift);
    let mut batcher = Batcher::new(
        train_set,
        data.splits.train.clone(),
        config.shift.batch.min(data.splits.train.len()),
        Augment::NONE,
        normalize.clone(),
        config.seed,
    )?;
    let (mut rng, shift_rng, mut hv_log, start_gen, alg_state) = match state {
        Some(s) => {
            shifter.sgd.load_buffers(
                &run.resumable_checkpoint()
                    .unwrap_or_default()
                    .join("optimizer.safetensors"),
                device,
            )?;
            shifter.steps_taken = s.shift_steps;
            batcher.set_position(s.batcher);
            (
                s.rng,
                s.shift_rng,
                s.hypervolume,
                s.generation,
                Some(s.algorithm),
            )
        }
        None => {
            let mut r2 = ChaCha8Rng::seed_from_u64(config.seed);
            r2.set_stream(1);
            (
                ChaCha8Rng::seed_from_u64(config.seed),
                r2,
                Vec::new(),
                0,
                None,
            )
        }
    };
    let mut alg = build_alg(config, space.num_blocks(), space.choices.len(), alg_state)?;
    let n_obj = if config.algorithm == Algorithm::Evolution {
        1
    } else {
        2
    };
    let mut evaluator = Evaluator::new(
        train_set,
        &data.splits.proxy,
        &data.splits.train,
        &normalize,
        config.bn,
        config.bn_images,
        config.split_seed,
        config.eval_batch,
    );
    if archive_path.is_file() {
        for r in archive::read(&archive_path)? {
            evaluator.remember(r.arch, r.error * 100.0, r.supernet_step);
        }
    }
    let mut prescreen = super::prescreen::open(config, &space, latency.as_ref())?;
    if let Some(p) = &mut prescreen {
        if archive_path.is_file() {
            p.observe(&archive::read(&archive_path)?);
        }
        printer.note(format!(
            "prescreen: candidates predicted more than {:.1} % above the measured front (or the budget) are not sent to the board",
            100.0 * p.margin()
        ));
    }
    let mut problem = ArchProblem {
        net: &net,
        space: space.clone(),
        evaluator,
        shifter,
        batcher,
        rng: shift_rng,
        latency,
        constraints: config.constraints,
        n_obj,
        base_step,
        generation: start_gen,
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
    let bar = printer.bar(
        config.gens as u64,
        "{bar:30} gen {pos}/{len} {msg} ETA {eta}",
    );
    bar.set_position(start_gen as u64);
    let hv_ref = hv_reference(&space, config);
    while alg.search().generation() < config.gens {
        // Ctrl-C (crate::interrupt): the last generation's checkpoint is on disk; stop here, or
        // inside `evaluate` after the candidate in flight, and leave the generation to resume.
        if crate::interrupt::requested() {
            bar.finish_and_clear();
            let generation = alg.search().generation();
            return Err(crate::interrupt::SearchInterrupted::after(generation).into());
        }
        let archs = alg.search().ask(&mut rng);
        problem.generation = alg.search().generation() + 1;
        problem.net.set_dropout_seed(
            config.seed ^ (problem.generation as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let evals = super::problem::Problem::evaluate(&mut problem, &archs)
            .inspect_err(|_| bar.finish_and_clear())?;
        let summary = alg.search().tell(evals, &mut rng)?;
        for r in &problem.records {
            archive::append(&archive_path, r)?;
        }
        let hv = front_hv(alg.search().population(), hv_ref);
        hv_log.push(hv);
        save_checkpoint(&run, &problem, &rng, &alg, &hv_log, summary.generation)?;
        run.log(&summary)?;
        report_progress(printer, &bar, &summary, hv);
        if stop_after == Some(summary.generation) {
            bar.finish_and_clear();
            let records = archive::read(&archive_path)?;
            return Ok(SearchOutcome {
                run_dir: run.path().to_path_buf(),
                front: Vec::new(),
                hypervolume: hv_log,
                evaluations: records.len(),
                prescreened: super::prescreen::count(problem.prescreen.as_ref(), &records),
                seconds: problem.seconds,
            });
        }
    }
    bar.finish_and_clear();
    finish(&run, &mut problem, &mut alg, hv_log, &archive_path)
}

/// HV reference point: (100 % error, 1.1 × the largest FLOPs-proxy latency seen or cap).
fn hv_reference(space: &shiftnas_models::Space, config: &SearchConfig) -> [f64; 2] {
    let widest = Arch::uniform(space.num_blocks(), (space.choices.len() - 1) as u8);
    let big = shiftnas_models::cost::arch_flops(space, &widest) as f64 / 1e6;
    let lat = config
        .constraints
        .latency_budget
        .unwrap_or(big.max(1.0) * 1.1);
    [100.0, lat]
}

fn front_hv(pop: &[super::Individual<Arch>], reference: [f64; 2]) -> f64 {
    let pts: Vec<Vec<f64>> = pop
        .iter()
        .filter(|i| i.rank == 0 && i.eval.is_feasible())
        .map(|i| i.eval.objectives.clone())
        .collect();
    if pts.is_empty() {
        return 0.0;
    }
    let r = &reference[..pts[0].len()];
    hypervolume(&pts, r)
}

fn report_progress(p: &Printer, bar: &indicatif::ProgressBar, s: &GenerationSummary, hv: f64) {
    let best = s.best.first().copied().unwrap_or(f64::NAN);
    bar.set_position(s.generation as u64);
    bar.set_message(format!(
        "best error {best:.2} %  front {}  HV {hv:.2}",
        s.front_size
    ));
    if p.json {
        let _ = p.json(&json!({"type": "progress", "generation": s.generation, "evaluations": s.n_evals, "best_error": best, "front_size": s.front_size, "hypervolume": hv}));
    } else if !p.progress && !p.quiet {
        eprintln!(
            "generation {}  best error {best:.2} %  front {}  HV {hv:.3}",
            s.generation, s.front_size
        );
    }
}

fn save_checkpoint(
    run: &RunDir,
    problem: &ArchProblem<'_>,
    rng: &ChaCha8Rng,
    alg: &Alg,
    hv: &[f64],
    generation: usize,
) -> Result<()> {
    let archive_len = match archive::read(&run.join("archive.jsonl")) {
        Ok(r) => r.len(),
        Err(_) => 0,
    };
    let st = SearchState {
        generation,
        rng: rng.clone(),
        shift_rng: problem.rng.clone(),
        batcher: problem.batcher.position(),
        shift_steps: problem.shifter.steps_taken,
        base_step: problem.base_step,
        archive_len,
        hypervolume: hv.to_vec(),
        algorithm: alg.state(),
    };
    run.swap_checkpoint(|tmp| {
        problem
            .net
            .save(tmp.join("supernet.safetensors"), problem.step())?;
        problem
            .shifter
            .sgd
            .save_buffers(&tmp.join("optimizer.safetensors"))?;
        write_atomic(&tmp.join(STATE_FILE), &serde_json::to_vec_pretty(&st)?)
    })
}

fn finish(
    run: &RunDir,
    problem: &mut ArchProblem<'_>,
    alg: &mut Alg,
    hv: Vec<f64>,
    archive_path: &Path,
) -> Result<SearchOutcome> {
    let source = problem.latency.describe();
    let step = problem.step();
    let pop: Vec<super::Individual<Arch>> = alg.search().population().to_vec();
    let mut front = Vec::new();
    for ind in pop.iter().filter(|i| i.rank == 0) {
        if crate::interrupt::requested() {
            let generations = alg.search().generation();
            return Err(crate::interrupt::SearchInterrupted::in_rescore(generations).into());
        }
        let error = problem.rescore(&ind.genome)?;
        let c = shiftnas_models::cost::arch_cost(&problem.space, &ind.genome);
        let lat = timed(&mut problem.seconds.latency, || {
            problem
                .latency
                .latencies(&problem.space, std::slice::from_ref(&ind.genome))
        })?[0];
        front.push(ArchiveRecord {
            generation: alg.search().generation(),
            arch: ind.genome.clone(),
            error: error / 100.0,
            latency: lat,
            latency_source: source.clone(),
            flops: c.flops,
            params: c.params,
            supernet_step: step,
        });
    }
    front.sort_by(|a, b| {
        a.latency
            .total_cmp(&b.latency)
            .then(a.error.total_cmp(&b.error))
    });
    front.dedup_by(|a, b| a.arch == b.arch);
    // Re-scoring can reorder the old front: keep what is non-dominated under the final weights.
    let scored = front.clone();
    front.retain(|r| {
        !scored.iter().any(|o| {
            o.error <= r.error
                && o.latency <= r.latency
                && (o.error < r.error || o.latency < r.latency)
        })
    });
    write_atomic(
        &run.join("pareto.json"),
        &serde_json::to_vec_pretty(&front)?,
    )?;
    let mut csv = String::from("arch,error,latency,latency_source,flops,params,supernet_step\n");
    for r in &front {
        csv.push_str(&format!(
            "{},{},{},{},{},{},{}\n",
            r.arch, r.error, r.latency, r.latency_source, r.flops, r.params, r.supernet_step
        ));
    }
    write_atomic(&run.join("pareto.csv"), csv.as_bytes())?;
    let mut hcsv = String::from("generation,hypervolume\n");
    for (i, h) in hv.iter().enumerate() {
        hcsv.push_str(&format!("{},{h}\n", i + 1));
    }
    write_atomic(&run.join("hypervolume.csv"), hcsv.as_bytes())?;
    let records = archive::read(archive_path)?;
    let svg = crate::report::pareto::pareto_svg(&records, &front, problem.latency.unit())?;
    write_atomic(&run.join("pareto.svg"), svg.as_bytes())?;
    Ok(SearchOutcome {
        run_dir: run.path().to_path_buf(),
        front,
        hypervolume: hv,
        evaluations: records.len(),
        prescreened: super::prescreen::count(problem.prescreen.as_ref(), &records),
        seconds: problem.seconds,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::latency::flops::FlopsSource;
    use crate::search::shifting::ShiftMode;

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
            remeasure: false,
            share_bn: true,
            prescreen: None,
            prescreen_margin: None,
            force_predictor: false,
        }
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
        let a = SearchConfig {
            share_bn,
            ..config(&tmp.path().join("a"), &ckpt)
        };
        assert_eq!(a.shift.mode, ShiftMode::Accumulate);
        let full = run(&a, &p, Box::new(FlopsSource)).unwrap();
        let b = SearchConfig {
            out: tmp.path().join("b"),
            ..a.clone()
        };
        run_until(&b, &p, Box::new(FlopsSource), &Device::Cpu, Some(1)).unwrap();
        let arch_path = b.out.join("archive.jsonl");
        let first = archive::read(&arch_path).unwrap();
        archive::append(&arch_path, &first[0]).unwrap();
        let resumed = run(&b, &p, Box::new(FlopsSource)).unwrap();
        let ta = fs::read_to_string(a.out.join("archive.jsonl")).unwrap();
        let tb = fs::read_to_string(arch_path).unwrap();
        assert_eq!(ta, tb);
        assert_eq!(full.evaluations, 12);
        assert_eq!(full.hypervolume, resumed.hypervolume);
        let recs = archive::read(&a.out.join("archive.jsonl")).unwrap();
        // One shifting step per generation on top of the checkpoint's step 7.
        let steps: Vec<u64> = recs.iter().map(|r| r.supernet_step).collect();
        assert_eq!(steps.first(), Some(&7));
        assert_eq!(steps.last(), Some(&9));
        assert!(full.front.iter().all(|r| r.supernet_step == 10));
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
