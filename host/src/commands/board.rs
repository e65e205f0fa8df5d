//! `shiftnas board check | measure`.

use std::time::Instant;

use anyhow::{Context as _, Result};
use serde::Serialize;

use super::{Context, ExitStatus};
use crate::boards::config::{BoardKind, BoardsFile, LOCAL_BOARD};
use crate::boards::{Job, Pool, PoolOptions, open_board};
use crate::cli::board::{BoardArgs, BoardCommand, CheckArgs, MeasureArgs};
use crate::latency::cache::{Cache, default_path};
use crate::latency::cached::measure_cached;

/// Runs `shiftnas board`.
pub fn run(args: BoardArgs, ctx: &Context) -> Result<ExitStatus> {
    let file = BoardsFile::load_flag(args.boards.as_deref())?;
    match args.command {
        BoardCommand::Check(a) => check(&file, args.agent.as_deref(), a, ctx),
        BoardCommand::Measure(a) => measure(&file, args.agent.as_deref(), a, ctx),
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
