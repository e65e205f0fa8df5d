//! `shiftnas board check | measure | noise`.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use shiftnas_models::{Arch, Space};

use super::{Context, ExitStatus};
use crate::boards::config::{BoardKind, BoardsFile, LOCAL_BOARD};
use crate::boards::{Job, Pool, open_board};
use crate::cli::board::{BoardArgs, BoardCommand, CheckArgs, MeasureArgs, NoiseArgs};
use shiftnas_calibration::interleaved::{Interval, Retest, retest};
use shiftnas_protocol::BenchSetSpec;

use crate::boards::pool::set_spec_for;
use crate::latency::board::{
    board_exporter, ensure_onnx_board, input_shape, open_pool, random_exporter, reference_job,
};
use crate::latency::cache::{Cache, default_path};
use crate::latency::cached::{Protocol, measure_cached};

/// Runs `shiftnas board`.
pub fn run(args: BoardArgs, ctx: &Context) -> Result<ExitStatus> {
    let file = BoardsFile::load_flag(args.boards.as_deref())?;
    match args.command {
        BoardCommand::Check(a) => check(&file, args.agent.as_deref(), a, ctx),
        BoardCommand::Measure(a) => measure(&file, args.agent.as_deref(), a, ctx),
        BoardCommand::Noise(a) => noise(&file, args.agent.as_deref(), a, ctx),
    }
}

/// One row of `board check`.
#[derive(Debug, Serialize)]
struct CheckRow {
    board: String,
    kind: String,
    up: bool,
    fingerprint: Option<String>,
    arch: Option<String>,
    governors: Vec<String>,
    error: Option<String>,
}

fn check(
    file: &BoardsFile,
    agent: Option<&std::path::Path>,
    args: CheckArgs,
    ctx: &Context,
) -> Result<ExitStatus> {
    let names = if !args.names.is_empty() {
        args.names
    } else if file.boards.is_empty() {
        vec![LOCAL_BOARD.to_string()]
    } else {
        file.boards.iter().map(|b| b.name.clone()).collect()
    };
    let cfgs = file.select(&names, agent.map(Into::into))?;
    let mut rows = Vec::new();
    for cfg in &cfgs {
        let kind = match cfg.kind {
            BoardKind::Ssh => format!("ssh {}", cfg.address()),
            BoardKind::Local => "local".to_string(),
        };
        let outcome = open_board(cfg, agent).and_then(|mut b| b.info());
        rows.push(match outcome {
            Ok(info) => CheckRow {
                board: cfg.name.clone(),
                kind,
                up: true,
                fingerprint: Some(info.fingerprint()),
                arch: Some(info.arch.clone()),
                governors: info.governors.clone(),
                error: None,
            },
            Err(e) => {
                ctx.printer.warn(format!("{e:#}"));
                CheckRow {
                    board: cfg.name.clone(),
                    kind,
                    up: false,
                    fingerprint: None,
                    arch: None,
                    governors: Vec::new(),
                    error: Some(format!("{e:#}")),
                }
            }
        });
    }
    let all_up = rows.iter().all(|r| r.up);
    if ctx.printer.json {
        ctx.printer.json(&rows)?;
    } else {
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    r.board.clone(),
                    r.kind.clone(),
                    if r.up { "up".into() } else { "DOWN".into() },
                    r.arch.clone().unwrap_or_default(),
                    r.fingerprint.clone().unwrap_or_default(),
                    r.governors.join(","),
                ]
            })
            .collect();
        ctx.printer.table(
            &["board", "via", "status", "arch", "fingerprint", "governors"],
            &table,
        )?;
        if all_up {
            ctx.printer.note(
                "before trusting a board's numbers in a search, see whether they repeat: \
                 `shiftnas board noise NAME --space SPACE` (docs/boards.md)",
            );
        }
    }
    Ok(if all_up {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}

/// One row of `board measure`.
#[derive(Debug, Serialize)]
struct MeasureRow {
    model: String,
    model_sha256: String,
    board: Option<String>,
    board_fingerprint: String,
    /// The latency, ms: the set's drift-corrected estimate, or the P50 with `--single`.
    p50_ms: f64,
    /// Its confidence interval, ms (`None` with `--single` or too few rounds).
    interval: Option<crate::latency::Interval>,
    /// Host wall time of this model's measurement (load + bench + transfer), ms; for a set, the
    /// set's wall time divided by its models.
    wall_ms: f64,
    report: serde_json::Value,
}

fn measure(
    file: &BoardsFile,
    agent: Option<&std::path::Path>,
    args: MeasureArgs,
    ctx: &Context,
) -> Result<ExitStatus> {
    let names: Vec<String> = args
        .board
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    // Before any board is touched: a measurement the cache cannot keep is lost.
    let mut cache = Cache::open(&args.cache.unwrap_or_else(default_path))?;
    cache.check_writable()?;
    let mut pool = open_pool(file, &names, agent, args.mix_boards)?;
    let mut jobs = Vec::new();
    for m in &args.models {
        let bytes = std::fs::read(m).with_context(|| format!("reading model {}", m.display()))?;
        jobs.push(Job::new(m.display().to_string(), bytes));
    }
    let space = Space::by_name(&args.space)?;
    let export = board_exporter(pool.config(), args.seed, None)?;
    for a in &args.arch {
        let arch = space
            .parse_arch(a)
            .with_context(|| format!("--arch {a} for space {}", space.name))?;
        let bytes = export(&space, &arch).with_context(|| format!("exporting arch {a}"))?;
        let mut job = Job::new(arch.to_string(), bytes);
        job.input_shape = Some(input_shape(&space));
        jobs.push(job);
    }
    let mut rows = Vec::new();
    if args.single {
        // One model at a time, so each row's wall time is that model's own (the pool still
        // retries and re-measures); the session stays open across models.
        for job in &jobs {
            let t0 = Instant::now();
            let l = measure_cached(
                &mut pool,
                &mut cache,
                std::slice::from_ref(job),
                true,
                Protocol::Single,
            )?;
            let wall_ms = t0.elapsed().as_secs_f64() * 1e3;
            rows.extend(measure_rows(l, wall_ms)?);
        }
    } else {
        let reference = reference_job(&space, &export)?;
        let spec = BenchSetSpec {
            budget_seconds: args.budget_seconds,
            ..set_spec_for(pool.config())
        };
        let t0 = Instant::now();
        let protocol = Protocol::Set {
            reference: &reference,
            spec: &spec,
        };
        let l = measure_cached(&mut pool, &mut cache, &jobs, true, protocol)?;
        let wall_ms = t0.elapsed().as_secs_f64() * 1e3 / jobs.len().max(1) as f64;
        rows = measure_rows(l, wall_ms)?;
        if !ctx.printer.json {
            ctx.printer.note(format!(
                "measured as one interleaved set against the reference {} of {}",
                reference.name, space.name
            ));
        }
    }
    for e in pool.events() {
        ctx.printer.warn(e.to_string());
    }
    if ctx.printer.json {
        ctx.printer.json(&rows)?;
    } else {
        ctx.printer
            .note(format!("fingerprint: {}", pool.fingerprint()));
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    r.model.clone(),
                    r.board.clone().unwrap_or_default(),
                    format!("{:.3}", r.p50_ms),
                    r.interval
                        .map_or(String::new(), |i| format!("{:.3} – {:.3}", i.low, i.high)),
                ]
            })
            .collect();
        ctx.printer
            .table(&["model", "board", "ms", "95 % interval"], &table)?;
    }
    Ok(ExitStatus::Success)
}

/// The rows of measured latencies, each with `wall_ms`.
fn measure_rows(
    latencies: Vec<crate::latency::cached::Latency>,
    wall_ms: f64,
) -> Result<Vec<MeasureRow>> {
    latencies
        .into_iter()
        .map(|l| {
            Ok(MeasureRow {
                report: serde_json::from_str(&l.report_json)?,
                model: l.name,
                model_sha256: l.model_sha256,
                board: l.board,
                board_fingerprint: l.board_fingerprint,
                p50_ms: l.p50_ms,
                interval: l.interval,
                wall_ms,
            })
        })
        .collect()
}

/// Kendall τ-b between the two passes a board must reach to be fit for a search.
pub const FIT_KENDALL_TAU_B: f64 = 0.8;
/// Share of models whose two estimates agree within ±2 % that a board must reach.
pub const FIT_WITHIN_2PCT: f64 = 0.95;

/// Whether the board repeats itself well enough to rank a search's candidates: τ-b of at least
/// [`FIT_KENDALL_TAU_B`] and at least [`FIT_WITHIN_2PCT`] of the models within ±2 %.
fn fit_for_search(r: &Retest) -> bool {
    r.kendall_tau_b.is_some_and(|t| t >= FIT_KENDALL_TAU_B) && r.within_2pct >= FIT_WITHIN_2PCT
}

/// One pass of `board noise`: every subnet's ratio to the reference with its interval.
#[derive(Debug, Serialize)]
struct Pass {
    /// Per subnet, in order: the ratio to the reference and its interval (`low`, `high`).
    ratios: Vec<Interval>,
    /// The twin of the reference (the same model in another file): its ratio, ideally 1.
    twin: Interval,
    /// The reference's median over the pass's sets, ms (the pass's scale).
    reference_ms: f64,
    /// Wall time of the pass, seconds.
    seconds: f64,
}

/// What `board noise` reports.
#[derive(Debug, Serialize)]
struct NoiseReport {
    #[serde(rename = "type")]
    kind: &'static str,
    board_fingerprint: String,
    space: String,
    /// How each pass measured: `interleaved-set` (ratios to the reference, with intervals).
    protocol: &'static str,
    reference: String,
    gap_s: f64,
    archs: Vec<String>,
    first: Pass,
    second: Pass,
    /// Test–retest of the ratios (scale-free: the same figures as of the estimates in ms on
    /// one common scale).
    retest: Retest,
    /// The noise floor: the reference's twin against the reference, |ratio − 1| per pass.
    noise_floor: [f64; 2],
    /// Wall time per subnet and pass, seconds (sets, warm-up and transfers included).
    seconds_per_model: f64,
    fit_for_search: bool,
}

/// Measures `jobs` and `twin` as one interleaved set against `reference`: each subnet's ratio
/// interval, in order, then the twin's.
fn measure_pass(
    pool: &mut Pool,
    jobs: &[Job],
    twin: &Job,
    reference: &Job,
    spec: &BenchSetSpec,
) -> Result<Pass> {
    let t0 = Instant::now();
    let mut set = jobs.to_vec();
    set.push(twin.clone());
    let mut ratios = Vec::with_capacity(set.len());
    let mut scale = f64::NAN;
    for (job, r) in set
        .iter()
        .zip(pool.measure_set(&set, reference, spec, None))
    {
        let m = r.with_context(|| format!("measuring subnet {}", job.name))?;
        let e = &m.estimate;
        let b = e.ratio_interval.with_context(|| {
            format!(
                "subnet {}: {} rounds are too few for an interval; raise --budget-seconds",
                job.name, m.report.rounds_done
            )
        })?;
        scale = m.scale_ms;
        ratios.push(Interval {
            estimate: e.ratio,
            low: b.low,
            high: b.high,
        });
    }
    let twin = ratios.pop().context("the twin was in the set")?;
    Ok(Pass {
        ratios,
        twin,
        reference_ms: scale,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// `N` random subnets of `space` drawn with `seed`, exported as batch-1 jobs with random weights.
fn noise_jobs(space: &Space, n: usize, seed: u64) -> Result<Vec<Job>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let export = random_exporter(seed);
    (0..n)
        .map(|_| {
            let arch = Arch::random(space.num_blocks(), space.choices.len(), &mut rng);
            let bytes = export(space, &arch).with_context(|| format!("exporting arch {arch}"))?;
            let mut job = Job::new(arch.to_string(), bytes);
            job.input_shape = Some(input_shape(space));
            Ok(job)
        })
        .collect()
}

/// The reference of `space` (weights of `seed`) and its twin: the same ONNX model with one
/// unknown protobuf field (number 1000, varint 1) appended to its `ModelProto` — the same graph
/// and weights, which every ONNX parser reads as before, in another file with another SHA-256,
/// so the agent times it as a model of the set. Its ratio to the reference is 1 but for noise.
fn reference_and_twin(space: &Space, seed: u64) -> Result<(Job, Job)> {
    let reference = reference_job(space, &random_exporter(seed))?;
    let mut bytes = reference.model.as_ref().clone();
    // Tag (1000 << 3 | 0) = 8000 as a varint, then the varint 1.
    bytes.extend_from_slice(&[0xC0, 0x3E, 0x01]);
    let mut twin = Job::new(format!("twin of the {}", reference.name), bytes);
    twin.input_shape = reference.input_shape.clone();
    Ok((reference, twin))
}

/// Both passes, `gap` apart, and their figures.
fn noise_passes(
    pool: &mut Pool,
    space: &Space,
    jobs: &[Job],
    seed: u64,
    spec: &BenchSetSpec,
    gap: Duration,
    p: &crate::output::Printer,
) -> Result<NoiseReport> {
    let (reference, twin) = reference_and_twin(space, seed)?;
    let first = measure_pass(pool, jobs, &twin, &reference, spec)?;
    wait_between_passes(gap, p);
    let second = measure_pass(pool, jobs, &twin, &reference, spec)?;
    let retest = retest(&first.ratios, &second.ratios)?;
    Ok(NoiseReport {
        kind: "board_noise",
        board_fingerprint: pool.fingerprint().to_string(),
        space: space.name.clone(),
        protocol: "interleaved-set",
        reference: reference.name.clone(),
        gap_s: gap.as_secs_f64(),
        archs: jobs.iter().map(|j| j.name.clone()).collect(),
        noise_floor: [
            (first.twin.estimate - 1.0).abs(),
            (second.twin.estimate - 1.0).abs(),
        ],
        seconds_per_model: (first.seconds + second.seconds) / (2 * (jobs.len() + 1)) as f64,
        first,
        second,
        fit_for_search: fit_for_search(&retest),
        retest,
    })
}

fn noise(
    file: &BoardsFile,
    agent: Option<&std::path::Path>,
    args: NoiseArgs,
    ctx: &Context,
) -> Result<ExitStatus> {
    ensure!(
        args.subnets >= 2,
        "--subnets {} is too few: test–retest compares the order of at least 2 subnets",
        args.subnets
    );
    let space = Space::by_name(&args.space)?;
    let names: Vec<String> = args
        .board
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    let mut pool = open_pool(file, &names, agent, args.mix_boards)?;
    ensure_onnx_board(pool.config(), "board noise")?;
    let jobs = noise_jobs(&space, args.subnets, args.seed)?;
    let p = &ctx.printer;
    let spec = BenchSetSpec {
        budget_seconds: args.budget_seconds,
        seed: args.seed,
        ..set_spec_for(pool.config())
    };
    spec.check(jobs.len().min(shiftnas_protocol::MAX_SET_MODELS))
        .map_err(|e| anyhow::anyhow!("board noise: {e}; change --budget-seconds"))?;
    if !p.json {
        p.note(format!(
            "measuring {} subnets of {} twice as interleaved sets, {} min apart",
            jobs.len(),
            space.name,
            args.gap_minutes
        ));
    }
    let gap = Duration::from_secs_f64(args.gap_minutes * 60.0);
    let report = noise_passes(&mut pool, &space, &jobs, args.seed, &spec, gap, p)?;
    for e in pool.events() {
        p.warn(e.to_string());
    }
    if p.json {
        p.json(&report)?;
    } else {
        p.note(format!(
            "fingerprint: {}; {} subnets of {} measured twice, {} s apart, against {}",
            report.board_fingerprint, report.retest.n, report.space, report.gap_s, report.reference
        ));
        p.table(&["figure", "value"], &noise_table(&report))?;
        println!("{}", verdict(&report.retest));
    }
    Ok(ExitStatus::Success)
}

/// Waits `gap` between the passes under a countdown bar.
fn wait_between_passes(gap: Duration, p: &crate::output::Printer) {
    if gap.is_zero() {
        return;
    }
    let secs = gap.as_secs().max(1);
    let bar = p.bar(
        secs,
        "waiting before the second pass {bar:30} {pos}/{len} s",
    );
    let start = Instant::now();
    while start.elapsed() < gap {
        std::thread::sleep((gap - start.elapsed()).min(Duration::from_secs(1)));
        bar.set_position(start.elapsed().as_secs().min(secs));
    }
    bar.finish_and_clear();
}

/// The figures of `board noise` as table rows.
fn noise_table(n: &NoiseReport) -> Vec<Vec<String>> {
    let r = &n.retest;
    let corr =
        |v: Option<f64>| v.map_or("undefined (a constant pass)".into(), |v| format!("{v:.3}"));
    let pct = |v: f64| format!("{:.1} %", v * 100.0);
    vec![
        vec!["Kendall τ-b".into(), corr(r.kendall_tau_b)],
        vec!["Spearman ρ".into(), corr(r.spearman_rho)],
        vec!["within ±1 %".into(), pct(r.within_1pct)],
        vec!["within ±2 %".into(), pct(r.within_2pct)],
        vec!["within ±5 %".into(), pct(r.within_5pct)],
        vec![
            "second pass inside the first's interval".into(),
            pct(r.second_in_first),
        ],
        vec![
            "first pass inside the second's interval".into(),
            pct(r.first_in_second),
        ],
        vec![
            "noise floor (reference's twin, |ratio − 1|)".into(),
            format!("{} / {}", pct(n.noise_floor[0]), pct(n.noise_floor[1])),
        ],
        vec![
            "seconds per subnet and pass".into(),
            format!("{:.2}", n.seconds_per_model),
        ],
    ]
}

/// Whether the board is fit for a search, and against which figures.
fn verdict(r: &Retest) -> String {
    let bar = format!(
        "τ-b ≥ {FIT_KENDALL_TAU_B} and ≥ {:.0} % within ±2 %",
        FIT_WITHIN_2PCT * 100.0
    );
    if fit_for_search(r) {
        format!("fit for a search: yes ({bar})")
    } else {
        format!(
            "fit for a search: NO (needs {bar}); its numbers would order a front partly by when \
             each candidate was measured (see docs/boards.md)"
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::boards::scripted::{ScriptedBoard, Step};

    fn retest_of(tau: Option<f64>, within_2pct: f64) -> Retest {
        Retest {
            n: 10,
            kendall_tau_b: tau,
            spearman_rho: tau,
            within_1pct: 0.5,
            within_2pct,
            within_5pct: 1.0,
            second_in_first: 0.9,
            first_in_second: 0.8,
        }
    }

    #[test]
    fn the_verdict_says_what_was_measured() {
        assert!(verdict(&retest_of(Some(0.85), 0.96)).starts_with("fit for a search: yes"));
        let v = verdict(&retest_of(Some(0.85), 0.9));
        assert!(
            v.starts_with("fit for a search: NO") && v.contains("95 %"),
            "{v}"
        );
        assert!(verdict(&retest_of(None, 1.0)).contains("NO"));
    }

    #[test]
    fn noise_subnets_are_seeded_and_fit_the_space() {
        let space = Space::by_name("tiny").unwrap();
        let a = noise_jobs(&space, 3, 7).unwrap();
        let b = noise_jobs(&space, 3, 7).unwrap();
        let names = |j: &[Job]| j.iter().map(|j| j.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&a), names(&b));
        assert_eq!(a[0].sha256, b[0].sha256, "same seed, same model");
        for j in &a {
            assert!(space.parse_arch(&j.name).is_ok(), "{}", j.name);
            let (c, hw) = (space.input_channels, space.input_size);
            assert_eq!(j.input_shape, Some(format!("1x{c}x{hw}x{hw}")));
        }
        assert_ne!(names(&a), names(&noise_jobs(&space, 3, 8).unwrap()));
        let (r, t) = reference_and_twin(&space, 7).unwrap();
        assert_ne!(r.sha256, t.sha256, "the twin is another model file");
    }

    /// A scripted board that times the subnets at known ratios to the reference (the second
    /// pass 3 % slower, the twin at 1.0): every figure is known exactly.
    #[test]
    fn noise_on_a_scripted_board_gives_the_known_figures() {
        let space = Space::by_name("tiny").unwrap();
        let jobs = noise_jobs(&space, 6, 1).unwrap();
        let ratios = [1.5, 0.7, 2.0, 1.1, 0.9, 3.0];
        let mut script: Vec<Step> = ratios.iter().map(|&r| Step::Ok(r)).collect();
        script.push(Step::Ok(1.0));
        script.extend(ratios.iter().map(|&r| Step::Ok(r * 1.03)));
        script.push(Step::Ok(1.0));
        let log = Arc::new(Mutex::new(Vec::new()));
        let board = ScriptedBoard::new("s", "A76", script, Step::Fail).with_log(Arc::clone(&log));
        let mut pool =
            Pool::new(vec![Box::new(board)], crate::boards::PoolOptions::default()).unwrap();
        let p = crate::output::Printer::new(true, true, true);
        let spec = BenchSetSpec::default();
        let r = noise_passes(&mut pool, &space, &jobs, 1, &spec, Duration::ZERO, &p).unwrap();
        let t = &r.retest;
        assert_eq!(
            (t.n, t.kendall_tau_b, t.spearman_rho),
            (6, Some(1.0), Some(1.0))
        );
        assert_eq!(
            (t.within_1pct, t.within_2pct, t.within_5pct),
            (0.0, 0.0, 1.0)
        );
        // The scripted intervals are ±0.5 %: 3 % apart, neither pass holds the other's estimate.
        assert_eq!((t.second_in_first, t.first_in_second), (0.0, 0.0));
        assert_eq!(r.noise_floor, [0.0, 0.0]);
        assert_eq!(r.first.ratios[2].estimate, 2.0);
        assert!(!r.fit_for_search);
        assert_eq!(
            log.lock().unwrap().len(),
            14,
            "6 subnets and the twin, twice"
        );
    }
}
