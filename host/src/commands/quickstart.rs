//! `shiftnas quickstart`: train a `tiny` supernet on the embedded Fashion-MNIST subset, search it
//! with NSGA-II and Supernet Shifting on measured latency, export the front's knee and both ends.
//!
//! It drives the same library code as `train`, `search` and `export`, with their run dirs nested
//! in one folder, so every step can be re-run or inspected with the ordinary commands.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use serde::Serialize;
use serde_json::json;
use shiftnas_models::onnx;

use super::export::load_trained;
use super::{Context, ExitStatus};
use crate::archive::ArchiveRecord;
use crate::cli::quickstart::QuickstartArgs;
use crate::cli::search::{SearchArgs, ShiftArgs};
use crate::cli::shared::{DataArgs, TrainingArgs};
use crate::cli::train::TrainArgs;
use crate::compute::Compute;
use crate::data::DataSpec;
use crate::nas::Algorithm;
use crate::nas::shifting::ShiftMode;
use crate::run_dir::write_atomic;
use crate::train::{BnMode, BnSource, evaluate};

const DATA: DataSpec = DataSpec::BuiltinFashionMnist;
const SPACE: &str = "tiny";

/// The `shiftnas train` of the quickstart: a new run in `dir` from `args`, or the resumed one
/// (other settings are the command's defaults).
fn train_args(args: &QuickstartArgs, dir: PathBuf) -> TrainArgs {
    if dir.join("config.toml").is_file() {
        return TrainArgs {
            resume: Some(dir),
            ..TrainArgs::default()
        };
    }
    TrainArgs {
        out: Some(dir),
        space: SPACE.into(),
        seed: args.seed,
        data: DataArgs {
            data: DATA,
            ..DataArgs::default()
        },
        training: TrainingArgs {
            steps: args.steps,
            batch: args.batch,
            lr: Some(args.lr),
            ..TrainingArgs::default()
        },
        ..TrainArgs::default()
    }
}

/// The `shiftnas search` of the quickstart: NSGA-II with accumulated Supernet Shifting on the
/// supernet in `train_dir`, into `dir` (or resumed from it), with fewer BN and shifting images
/// than the command's defaults to stay fast.
fn search_args(args: &QuickstartArgs, train_dir: PathBuf, dir: PathBuf) -> SearchArgs {
    if dir.join("config.toml").is_file() {
        return SearchArgs {
            resume: Some(dir),
            ..SearchArgs::default()
        };
    }
    SearchArgs {
        supernet: Some(train_dir),
        data: DataArgs {
            data: DATA,
            ..DataArgs::default()
        },
        space: Some(SPACE.into()),
        algorithm: Algorithm::Nsga2,
        latency: args.latency.clone(),
        shift: ShiftArgs {
            shift: Some(ShiftMode::Accumulate),
            shift_samples: 256,
            ..ShiftArgs::default()
        },
        pop: args.pop,
        gens: args.gens,
        seed: args.seed,
        split_seed: args.seed,
        bn_images: 512,
        out: Some(dir),
        ..SearchArgs::default()
    }
}

/// One exported model of the quickstart's table.
#[derive(Debug, Serialize)]
pub struct Pick {
    /// `fastest`, `knee` or `most-accurate`.
    pub role: &'static str,
    /// The arch.
    pub arch: String,
    /// Top-1 on the test set with supernet weights (BN recalibrated for the arch), %.
    pub test_accuracy: f64,
    /// The search's latency objective (P50 ms on a board; MFLOPs for `flops`).
    pub latency: f64,
    /// Where that latency came from.
    pub latency_source: String,
    /// Multiply-adds.
    pub flops: u64,
    /// The ONNX file.
    pub model: PathBuf,
}

/// Indices of the front's fastest point, its knee and its most accurate point (sorted by latency;
/// the knee is the point farthest from the line joining the two ends, in normalised units).
pub fn knee_and_ends(front: &[(f64, f64)]) -> Vec<(&'static str, usize)> {
    let n = front.len();
    if n == 0 {
        return vec![];
    }
    let (a, b) = (front[0], front[n - 1]);
    let (sx, sy) = ((b.0 - a.0).abs().max(1e-12), (b.1 - a.1).abs().max(1e-12));
    let dist = |p: (f64, f64)| {
        let (x, y) = ((p.0 - a.0) / sx, (p.1 - a.1) / sy);
        let (dx, dy) = ((b.0 - a.0) / sx, (b.1 - a.1) / sy);
        (x * dy - y * dx).abs()
    };
    let mut picks = vec![("fastest", 0)];
    if n > 2 {
        let knee = (1..n - 1)
            .max_by(|&i, &j| dist(front[i]).total_cmp(&dist(front[j])))
            .unwrap_or(1);
        picks.push(("knee", knee));
    }
    if n > 1 {
        picks.push(("most-accurate", n - 1));
    }
    picks
}

/// Runs `shiftnas quickstart`.
pub fn run(args: QuickstartArgs, ctx: &Context) -> Result<ExitStatus> {
    let p = &ctx.printer;
    let started = std::time::Instant::now();
    let (train_dir, search_dir, models_dir) = (
        args.out.join("train"),
        args.out.join("search"),
        args.out.join("models"),
    );

    // 1. The supernet (resumed when a previous quickstart left a run).
    p.note(format!(
        "quickstart 1/3: training a tiny supernet on {DATA} ({} steps)",
        args.steps
    ));
    // Ctrl-C in any stage: running the quickstart again on the same folder resumes it.
    let resume = resume_command(&args, ctx);
    let train = train_args(&args, train_dir.clone());
    let status = super::train::run_resumable(train, ctx, Some(resume.clone()))?;
    if status != ExitStatus::Success {
        return Ok(status);
    }

    // 2. The search: NSGA-II over (error, latency) with accumulated Supernet Shifting.
    p.note(format!(
        "quickstart 2/3: NSGA-II, {} × {} generations, latency from {}, Supernet Shifting (accumulate)",
        args.pop, args.gens, args.latency
    ));
    let search_args = search_args(&args, train_dir.clone(), search_dir.clone());
    let config = super::search::effective_config(&search_args, ctx)?;
    let resuming = search_args.resume.is_some();
    let Some(outcome) = super::search::search_interruptible(&config, resuming, ctx, &resume)?
    else {
        return Ok(ExitStatus::Interrupted);
    };
    if crate::interrupt::requested() {
        // Ctrl-C while the front was re-scored: the search is complete; export on the next run.
        let why = "interrupted after the search (its results are complete)";
        super::report_interrupted(p, &why, &args.out, &resume, json!({"stage": "export"}))?;
        return Ok(ExitStatus::Interrupted);
    }

    // 3. Export the knee and both ends of the front with the shifted supernet's weights.
    p.note("quickstart 3/3: exporting the front's knee and ends, scoring them on the test set");
    // The search's data and split (its config.toml's on a resume, whatever `--seed` says now).
    let data = DataArgs {
        data: config.data.clone(),
        proxy_size: Some(config.proxy_size),
        convert_channels: config.conform.convert_channels,
        resize: config.conform.resize,
    };
    let trained = load_trained(&search_dir, None, &data, config.split_seed, ctx)?;
    let front: Vec<&ArchiveRecord> = outcome.front.iter().collect();
    let points: Vec<(f64, f64)> = front.iter().map(|r| (r.latency, r.error)).collect();
    let mut picks = Vec::new();
    for (role, i) in knee_and_ends(&points) {
        let r = front[i];
        let subnet = trained.subnet(&r.arch, Some(2000))?;
        let bytes = onnx::export(&subnet, &trained.export_options(false))
            .with_context(|| format!("exporting arch {}", r.arch))?;
        let model = models_dir.join(format!("{role}.onnx"));
        write_atomic(&model, &bytes)?;
        let test = &trained.data.pair.test;
        let all: Vec<usize> = (0..test.len()).collect();
        let bn = BnSource {
            data: &trained.data.pair.train,
            indices: &trained.data.splits.train,
            mode: BnMode::None,
            images: 0,
            seed: 0,
        };
        let acc = evaluate(
            &trained.supernet,
            &r.arch,
            test,
            &all,
            &trained.normalize,
            bn,
            256,
        )?;
        picks.push(Pick {
            role,
            arch: r.arch.to_string(),
            test_accuracy: acc.top1 * 100.0,
            latency: r.latency,
            latency_source: r.latency_source.clone(),
            flops: r.flops,
            model,
        });
    }
    let secs = started.elapsed().as_secs_f64();
    // Which front members latency tells apart beyond their intervals (a front within a few
    // per cent of latency may be ordered by noise).
    let told_apart = crate::report::pareto::latency_summary(&outcome.front);
    if p.json {
        p.json(&serde_json::json!({
            "type": "quickstart", "run_dir": args.out, "seconds": secs, "picks": picks,
            "pareto_svg": search_dir.join("pareto.svg"),
            "front": crate::report::pareto::front_members(&outcome.front, &outcome.npu_accuracy),
            "latency_told_apart": told_apart,
        }))?;
    } else {
        let unit = if config.latency == crate::latency::LatencySpec::Flops {
            "MFLOPs"
        } else {
            "P50 ms"
        };
        let rows: Vec<Vec<String>> = picks
            .iter()
            .map(|k| {
                vec![
                    k.role.to_string(),
                    k.arch.clone(),
                    format!("{:.1}%", k.test_accuracy),
                    format!("{:.3}", k.latency),
                    format!("{:.2}", k.flops as f64 / 1e6),
                ]
            })
            .collect();
        println!();
        let latency = format!("latency ({unit})");
        p.table(&["model", "arch", "test acc", &latency, "MFLOPs"], &rows)?;
        println!(
            "\nfront of {} archs from {} evaluations in {:.0} s (latency source: {})",
            outcome.front.len(),
            outcome.evaluations,
            secs,
            front.first().map_or("-", |r| r.latency_source.as_str())
        );
        println!("latency  {told_apart}");
        println!("run dir  {}", args.out.display());
        println!("plot     {}", search_dir.join("pareto.svg").display());
        println!("models   {}", models_dir.display());
    }
    Ok(ExitStatus::Success)
}

/// The command that continues an interrupted quickstart: the same one on the same folder, with
/// every flag that differs from its default (a stage not started yet still needs its settings;
/// started ones read theirs back from their run dirs).
fn resume_command(args: &QuickstartArgs, ctx: &Context) -> String {
    let settings = |a: &QuickstartArgs| {
        [
            ("steps", a.steps.to_string()),
            ("batch", a.batch.to_string()),
            ("lr", a.lr.to_string()),
            ("pop", a.pop.to_string()),
            ("gens", a.gens.to_string()),
            ("latency", a.latency.to_string()),
            ("seed", a.seed.to_string()),
        ]
    };
    let defaults = settings(&QuickstartArgs::default());
    let mut c = format!("shiftnas quickstart --out {}", args.out.display());
    for (i, (name, value)) in settings(args).into_iter().enumerate() {
        if defaults[i].1 != value {
            c.push_str(&format!(" --{name} {value}"));
        }
    }
    if ctx.compute != Compute::Cpu {
        c.push_str(&format!(" --compute {}", ctx.compute));
    }
    c
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    #[test]
    fn knee_is_the_point_farthest_from_the_chord() {
        // Sorted by latency, error falling: (2, 0.2) bends the front most.
        let front = [(1.0, 0.5), (2.0, 0.2), (3.0, 0.15), (4.0, 0.1)];
        assert_eq!(
            knee_and_ends(&front),
            vec![("fastest", 0), ("knee", 1), ("most-accurate", 3)]
        );
        assert_eq!(
            knee_and_ends(&front[..2]),
            vec![("fastest", 0), ("most-accurate", 1)]
        );
        assert_eq!(knee_and_ends(&front[..1]), vec![("fastest", 0)]);
        assert!(knee_and_ends(&[]).is_empty());
    }

    /// The resume hint repeats exactly the flags that differ from their defaults.
    #[test]
    fn resume_command_keeps_non_default_flags() {
        let ctx = |compute| Context {
            printer: crate::output::Printer::silent(),
            compute,
        };
        let a = QuickstartArgs::default();
        assert_eq!(
            resume_command(&a, &ctx(Compute::Cpu)),
            "shiftnas quickstart --out runs/quickstart"
        );
        let argv = "shiftnas quickstart --out q --steps 20 --gens 2 --latency flops --lr 0.1";
        let Command::Quickstart(a) = Cli::try_parse_from(argv.split(' ')).unwrap().command else {
            panic!("not quickstart")
        };
        assert_eq!(
            resume_command(&a, &ctx(Compute::Cpu)),
            "shiftnas quickstart --out q --steps 20 --lr 0.1 --gens 2 --latency flops"
        );
    }

    /// The train and search the quickstart runs are what its flags say, the rest the commands'
    /// defaults; an existing run dir is resumed instead.
    #[test]
    fn stage_args_carry_the_quickstart_flags() {
        let tmp = tempfile::tempdir().unwrap();
        let (t, s) = (tmp.path().join("train"), tmp.path().join("search"));
        let q = QuickstartArgs {
            steps: 7,
            batch: 8,
            lr: 0.25,
            pop: 4,
            gens: 2,
            latency: crate::latency::LatencySpec::Flops,
            seed: 3,
            ..QuickstartArgs::default()
        };
        let a = train_args(&q, t.clone());
        assert_eq!(a.out.as_deref(), Some(t.as_path()));
        assert_eq!(
            (a.training.steps, a.training.batch, a.training.lr, a.seed),
            (7, 8, Some(0.25), 3)
        );
        assert_eq!((a.space.as_str(), &a.data.data), (SPACE, &DATA));
        assert_eq!(a.training.momentum, TrainingArgs::default().momentum);
        let b = search_args(&q, t.clone(), s.clone());
        assert_eq!(b.supernet.as_deref(), Some(t.as_path()));
        assert_eq!(b.out.as_deref(), Some(s.as_path()));
        assert_eq!((b.pop, b.gens, b.seed, b.split_seed), (4, 2, 3, 3));
        assert_eq!(b.latency, crate::latency::LatencySpec::Flops);
        assert_eq!(b.shift.shift, Some(ShiftMode::Accumulate));
        assert_eq!((b.shift.shift_samples, b.bn_images), (256, 512));
        assert_eq!(b.shift.shift_lr, ShiftArgs::default().shift_lr);

        std::fs::create_dir_all(&t).unwrap();
        std::fs::write(t.join("config.toml"), "").unwrap();
        let a = train_args(&q, t.clone());
        assert_eq!((a.resume.as_deref(), a.out), (Some(t.as_path()), None));
    }
}
