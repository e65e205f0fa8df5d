//! `shiftnas board check | measure | noise`.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use indicatif::ProgressBar;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use shiftnas_models::{Arch, Space};

use super::{Context, ExitStatus};
use crate::boards::config::{BoardKind, BoardsFile, LOCAL_BOARD};
use crate::boards::{Job, Pool, PoolOptions, open_board};
use crate::cli::board::{BoardArgs, BoardCommand, CheckArgs, MeasureArgs, NoiseArgs};
use crate::latency::Estimate;
use crate::latency::board::{open_pool, random_exporter};
use crate::latency::cache::{Cache, default_path};
use crate::latency::cached::measure_cached;
use crate::latency::retest::{FIT_KENDALL_TAU_B, FIT_WITHIN_2PCT, TestRetest, test_retest};

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
    p50_ms: f64,
    /// Host wall time of this model's measurement (load + bench + transfer), ms.
    wall_ms: f64,
    /// The agent's own timed runs (warm-up excluded), ms.
    timed_ms: f64,
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
    let cfgs = file.select(&names, agent.map(Into::into))?;
    // Before any board is touched: a measurement the cache cannot keep is lost.
    let mut cache = Cache::open(&args.cache.unwrap_or_else(default_path))?;
    cache.check_writable()?;
    let boards = cfgs
        .iter()
        .map(|c| open_board(c, agent))
        .collect::<Result<Vec<_>>>()?;
    let opts = PoolOptions {
        mix_boards: args.mix_boards,
        ..PoolOptions::default()
    };
    let mut pool = Pool::new(boards, opts)?;
    let mut jobs = Vec::new();
    for m in &args.models {
        let bytes = std::fs::read(m).with_context(|| format!("reading model {}", m.display()))?;
        jobs.push(Job::new(m.display().to_string(), bytes));
    }
    if let Some(space) = &args.space {
        let space = shiftnas_models::Space::by_name(space)?;
        let shape = format!("1x{}x{s}x{s}", space.input_channels, s = space.input_size);
        let export = crate::latency::board::random_exporter(args.seed);
        for a in &args.arch {
            let arch = space
                .parse_arch(a)
                .with_context(|| format!("--arch {a} for space {}", space.name))?;
            let bytes = export(&space, &arch).with_context(|| format!("exporting arch {a}"))?;
            let mut job = Job::new(arch.to_string(), bytes);
            job.input_shape = Some(shape.clone());
            jobs.push(job);
        }
    }
    // One model at a time, so each row's wall time is that model's own (the pool still retries
    // and re-measures); the session stays open across models.
    let mut rows = Vec::new();
    for job in &jobs {
        let t0 = Instant::now();
        let l = measure_cached(&mut pool, &mut cache, std::slice::from_ref(job), true)?;
        let wall_ms = t0.elapsed().as_secs_f64() * 1e3;
        let l = l.into_iter().next().context("one latency per model")?;
        let report: serde_json::Value = serde_json::from_str(&l.report_json)?;
        let timed_ms = report["samples_ms"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_f64()).sum())
            .unwrap_or(0.0);
        rows.push(MeasureRow {
            model: l.name,
            model_sha256: l.model_sha256,
            board: l.board,
            board_fingerprint: l.board_fingerprint,
            p50_ms: l.p50_ms,
            wall_ms,
            timed_ms,
            report,
        });
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
                    format!("{:.3}", r.report["p90_ms"].as_f64().unwrap_or(f64::NAN)),
                    r.report["samples_ms"]
                        .as_array()
                        .map_or(0, Vec::len)
                        .to_string(),
                ]
            })
            .collect();
        ctx.printer
            .table(&["model", "board", "p50_ms", "p90_ms", "runs"], &table)?;
    }
    Ok(ExitStatus::Success)
}

/// What `board noise` reports.
#[derive(Debug, Serialize)]
struct NoiseReport {
    #[serde(rename = "type")]
    kind: &'static str,
    board_fingerprint: String,
    space: String,
    /// How each pass measured: `single-model` (each model alone, no interval).
    protocol: &'static str,
    gap_s: f64,
    archs: Vec<String>,
    first: Vec<Estimate>,
    second: Vec<Estimate>,
    retest: TestRetest,
    fit_for_search: bool,
}

/// How many models go to the pool at once: enough to keep a few boards busy, few enough for the
/// progress bar to move.
const NOISE_CHUNK: usize = 8;

/// One measuring pass over `jobs`, in order. Today each model is measured alone through the pool
/// (the single-model protocol, no interval); the interleaved set measurement replaces this call.
fn measure_pass(
    pool: &mut crate::boards::Pool,
    jobs: &[Job],
    bar: &ProgressBar,
) -> Result<Vec<Estimate>> {
    let mut out = Vec::with_capacity(jobs.len());
    for chunk in jobs.chunks(NOISE_CHUNK) {
        for (job, r) in chunk.iter().zip(pool.measure(chunk)) {
            let m = r.with_context(|| format!("measuring subnet {}", job.name))?;
            out.push(Estimate::point(m.report.summary.p50_ms));
        }
        bar.inc(chunk.len() as u64);
    }
    Ok(out)
}

/// `N` random subnets of `space` drawn with `seed`, exported as batch-1 jobs with random weights.
fn noise_jobs(space: &Space, n: usize, seed: u64) -> Result<Vec<Job>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let export = random_exporter(seed);
    let shape = format!("1x{}x{s}x{s}", space.input_channels, s = space.input_size);
    (0..n)
        .map(|_| {
            let arch = Arch::random(space.num_blocks(), space.choices.len(), &mut rng);
            let bytes = export(space, &arch).with_context(|| format!("exporting arch {arch}"))?;
            let mut job = Job::new(arch.to_string(), bytes);
            job.input_shape = Some(shape.clone());
            Ok(job)
        })
        .collect()
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
    let jobs = noise_jobs(&space, args.subnets, args.seed)?;
    let p = &ctx.printer;
    let n = jobs.len() as u64;
    let bar = p.bar(n, "first pass  {bar:30} {pos}/{len} ETA {eta}");
    let first = measure_pass(&mut pool, &jobs, &bar)?;
    bar.finish_and_clear();
    wait_between_passes(args.gap, p);
    let bar = p.bar(n, "second pass {bar:30} {pos}/{len} ETA {eta}");
    let second = measure_pass(&mut pool, &jobs, &bar)?;
    bar.finish_and_clear();
    for e in pool.events() {
        p.warn(e.to_string());
    }
    let retest = test_retest(&first, &second)?;
    let report = NoiseReport {
        kind: "board_noise",
        board_fingerprint: pool.fingerprint().to_string(),
        space: space.name.clone(),
        protocol: "single-model",
        gap_s: args.gap.as_secs_f64(),
        archs: jobs.iter().map(|j| j.name.clone()).collect(),
        first,
        second,
        fit_for_search: retest.fit_for_search(),
        retest,
    };
    if p.json {
        p.json(&report)?;
    } else {
        p.note(format!(
            "fingerprint: {}; {} subnets of {} measured twice, {} s apart",
            report.board_fingerprint, report.retest.n, report.space, report.gap_s
        ));
        p.table(&["figure", "value"], &noise_table(&report.retest))?;
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
fn noise_table(r: &TestRetest) -> Vec<Vec<String>> {
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
            "inside the other pass's interval".into(),
            r.inside_other_interval
                .map_or("no intervals (single-model protocol)".into(), pct),
        ],
    ]
}

/// Whether the board is fit for a search, and against which figures.
fn verdict(r: &TestRetest) -> String {
    let bar = format!(
        "τ-b ≥ {FIT_KENDALL_TAU_B} and ≥ {:.0} % within ±2 %",
        FIT_WITHIN_2PCT * 100.0
    );
    if r.fit_for_search() {
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
    use super::*;

    fn retest(tau: Option<f64>, within_2pct: f64) -> TestRetest {
        TestRetest {
            n: 10,
            kendall_tau_b: tau,
            spearman_rho: tau,
            within_1pct: 0.5,
            within_2pct,
            within_5pct: 1.0,
            inside_other_interval: None,
        }
    }

    #[test]
    fn the_table_and_verdict_say_what_was_measured() {
        let r = retest(Some(0.85), 0.96);
        let rows = noise_table(&r);
        assert_eq!(rows[0], vec!["Kendall τ-b".to_string(), "0.850".into()]);
        assert_eq!(rows[3], vec!["within ±2 %".to_string(), "96.0 %".into()]);
        assert_eq!(rows[5][1], "no intervals (single-model protocol)");
        assert!(
            verdict(&r).starts_with("fit for a search: yes"),
            "{}",
            verdict(&r)
        );
        let v = verdict(&retest(Some(0.85), 0.9));
        assert!(
            v.starts_with("fit for a search: NO") && v.contains("95 %"),
            "{v}"
        );
        assert!(verdict(&retest(None, 1.0)).contains("NO"));
        assert_eq!(
            noise_table(&retest(None, 1.0))[1][1],
            "undefined (a constant pass)"
        );
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
    }
}
