//! `shiftnas rank`: order-preserving figures of a supernet against retrained accuracies.

use std::path::Path;

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};
use shiftnas_calibration::interleaved::DEFAULT_CONFIDENCE;
use shiftnas_calibration::ranking::{Figures, best_first, default_k, figures};
use shiftnas_calibration::stats::{mean, paired_difference};
use shiftnas_models::{Arch, Space};

use super::{Context, ExitStatus};
use crate::cli::rank::RankArgs;
use crate::rank::{
    ArchCheck, Paired, SupernetScores, Truth, pair, read_paired, read_truth, scores_from_archive,
    scores_from_csv,
};

/// The space named in a run's `config.toml`, if it has one.
fn run_space(dir: &Path) -> Result<Option<String>> {
    let path = dir.join("config.toml");
    if !path.is_file() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))?;
    Ok(table
        .get("space")
        .and_then(|v| v.as_str())
        .map(String::from))
}

/// The space archs are checked against: `--space`, else the run's; they must agree.
fn choose_space(args: &RankArgs) -> Result<Option<Space>> {
    let from_run = match &args.run {
        Some(dir) => run_space(dir)?,
        None => None,
    };
    let name = match (&args.space, from_run) {
        (Some(flag), Some(run)) if *flag != run => bail!(
            "--space {flag} but the run {} searched space {run}; drop --space or give the run's",
            args.run.as_deref().unwrap_or(Path::new("")).display()
        ),
        (Some(flag), _) => Some(flag.clone()),
        (None, run) => run,
    };
    name.map(|n| Space::by_name(&n).with_context(|| format!("space for rank: {n}")))
        .transpose()
}

/// Up to three archs, comma-separated, and "…" when there are more.
fn examples(archs: &[Arch]) -> String {
    let mut s: Vec<String> = archs.iter().take(3).map(Arch::to_string).collect();
    if archs.len() > 3 {
        s.push("…".into());
    }
    s.join(", ")
}

/// Both inputs, paired.
struct Loaded {
    scores: SupernetScores,
    source: std::path::PathBuf,
    truth: Truth,
    truth_file: std::path::PathBuf,
    paired: Paired,
    space: Option<Space>,
}

/// Loads both inputs, warns about archs only one of them has, and pairs the rest.
fn load(args: &RankArgs, ctx: &Context) -> Result<Loaded> {
    let space = choose_space(args)?;
    let mut check = ArchCheck::new(space.clone());
    let (scores, source) = match (&args.run, &args.archs) {
        (Some(dir), _) => {
            let path = dir.join("archive.jsonl");
            if !path.is_file() {
                bail!(
                    "--run {}: no archive.jsonl there; give a `shiftnas search` run dir, or scores with --archs FILE",
                    dir.display()
                );
            }
            (scores_from_archive(&path, &mut check)?, path)
        }
        (None, Some(file)) => (scores_from_csv(file, &mut check)?, file.clone()),
        (None, None) => bail!("give the supernet's scores with --run DIR or --archs FILE"),
    };
    let truth_file = args
        .truth
        .as_deref()
        .context("give the retrained accuracies with --truth")?;
    let truth = read_truth(truth_file, &mut check)?;
    let p = pair(&scores, &truth);
    let (src, tru) = (source.display(), truth_file.display());
    if !p.no_score.is_empty() {
        ctx.printer.warn(format!(
            "{} of the {} archs in {tru} have no supernet score in {src} ({}); they are left out",
            p.no_score.len(),
            truth.values.entries.len(),
            examples(&p.no_score)
        ));
    }
    if !p.no_truth.is_empty() {
        ctx.printer.note(format!(
            "{} of the {} archs in {src} have no retrained accuracy in {tru} ({}); they are left out",
            p.no_truth.len(),
            scores.values.entries.len(),
            examples(&p.no_truth)
        ));
    }
    if scores.rescored > 0 {
        ctx.printer.note(format!(
            "{src}: {} arch(s) scored more than once; each one's latest score is used",
            scores.rescored
        ));
    }
    if scores.steps.len() > 1 {
        ctx.printer.note(format!(
            "the scores in {src} were measured at {} different supernet steps (shifting moves the weights); \
             for one set of weights, score the archs with `shiftnas eval` and pass them with --archs",
            scores.steps.len()
        ));
    }
    Ok(Loaded {
        scores,
        source,
        truth,
        truth_file: truth_file.to_path_buf(),
        paired: p,
        space,
    })
}

/// One arch of a top-k list as JSON.
fn entry(p: &Paired, i: usize, rank_key: &str, rank: usize) -> Value {
    json!({"arch": p.archs[i].to_string(), "accuracy": p.accuracy[i], "supernet": p.supernet_raw[i], rank_key: rank})
}

/// 1-based position of each arch in the best-first order of `v`.
fn positions(v: &[f64]) -> Vec<usize> {
    let mut pos = vec![0; v.len()];
    for (r, i) in best_first(v).into_iter().enumerate() {
        pos[i] = r + 1;
    }
    pos
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.3}"))
}

fn print_human(f: &Figures, p: &Paired, s: &SupernetScores, ctx: &Context) -> Result<()> {
    let (n, k) = (f.n, f.k);
    ctx.printer.table(
        &["figure", "value", "what it measures"],
        &[
            vec![
                "N".into(),
                n.to_string(),
                "archs with a supernet score and a retrained accuracy".into(),
            ],
            vec![
                "global".into(),
                format!("{:.3}", f.global),
                format!(
                    "{} of the supernet's top-{k} are in the true top-{k} (chance {:.3})",
                    f.overlap, f.global_chance
                ),
            ],
            vec![
                "local tau-b".into(),
                fmt(f.local_tau_b),
                format!("supernet vs true order within the true top-{k}"),
            ],
            vec!["tau-b".into(), fmt(f.tau_b), format!("over all {n}")],
            vec![
                "spearman rho".into(),
                fmt(f.spearman_rho),
                format!("over all {n}"),
            ],
        ],
    )?;
    let srank = positions(&p.supernet);
    let rows: Vec<Vec<String>> = (f.true_top.iter().enumerate())
        .map(|(r, &i)| {
            vec![
                (r + 1).to_string(),
                p.archs[i].to_string(),
                format!("{:.2}", p.accuracy[i] * 100.0),
                format!("{:.4}", p.supernet_raw[i]),
                srank[i].to_string(),
            ]
        })
        .collect();
    println!();
    let col = format!("supernet {}", s.column);
    ctx.printer.table(
        &["true rank", "arch", "accuracy %", &col, "supernet rank"],
        &rows,
    )
}

/// `shiftnas rank --paired`: each setting's mean difference from the base, with its interval.
fn run_paired(path: &Path, confidence: f64, ctx: &Context) -> Result<ExitStatus> {
    let t = read_paired(path)?;
    let base = &t.values[0];
    let diffs = (t.settings.iter().zip(&t.values).skip(1))
        .map(|(name, v)| {
            paired_difference(base, v, confidence)
                .map(|d| (name, d))
                .with_context(|| format!("--paired {}, column {name}", path.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let means: Vec<f64> = t.values.iter().map(|v| mean(v)).collect();
    if ctx.printer.json {
        return ctx
            .printer
            .json(&json!({
                "paired": path,
                "unit": t.unit,
                "base": t.settings[0],
                "confidence": confidence,
                "means": t.settings.iter().zip(&means)
                    .map(|(name, m)| json!({"setting": name, "mean": m}))
                    .collect::<Vec<_>>(),
                "differences": diffs.iter().map(|(name, d)| {
                    let mut v = serde_json::to_value(d).expect("plain numbers");
                    v["setting"] = json!(name);
                    v
                }).collect::<Vec<_>>(),
            }))
            .map(|()| ExitStatus::Success);
    }
    ctx.printer.note(format!(
        "{}: differences from {} over {} {}s, paired Student-t intervals",
        path.display(),
        t.settings[0],
        base.len(),
        t.unit
    ));
    ctx.printer.note(format!(
        "means: {}",
        (t.settings.iter().zip(&means))
            .map(|(name, m)| format!("{name} {m:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let pct = 100.0 * confidence;
    let rows: Vec<Vec<String>> = diffs
        .iter()
        .map(|(name, d)| {
            vec![
                format!("{name} − {}", t.settings[0]),
                d.n.to_string(),
                format!("{:+.3}", d.mean),
                format!("{:.3}", d.sd),
                format!("[{:+.3}, {:+.3}]", d.low, d.high),
            ]
        })
        .collect();
    ctx.printer.table(
        &[
            "difference",
            "n",
            "mean",
            "sd",
            &format!("{pct} % interval"),
        ],
        &rows,
    )?;
    Ok(ExitStatus::Success)
}

/// Runs `shiftnas rank`.
pub fn run(args: RankArgs, ctx: &Context) -> Result<ExitStatus> {
    if let Some(path) = &args.paired {
        return run_paired(path, args.confidence.unwrap_or(DEFAULT_CONFIDENCE), ctx);
    }
    let Loaded {
        scores,
        source,
        truth,
        truth_file,
        paired: p,
        space,
    } = load(&args, ctx)?;
    let k = args.top_k.unwrap_or_else(|| default_k(p.archs.len()));
    let f = figures(&p.supernet, &p.accuracy, k)?;
    for note in &f.notes {
        ctx.printer.note(note);
    }
    if ctx.printer.json {
        let (srank, trank) = (positions(&p.supernet), positions(&p.accuracy));
        let mut out = serde_json::to_value(&f)?;
        let extra = json!({
            "space": space.map(|s| s.name),
            "supernet_column": scores.column,
            "accuracy_unit": if truth.percent { "percent" } else { "fraction" },
            "true_top_k": f.true_top.iter().map(|&i| entry(&p, i, "supernet_rank", srank[i])).collect::<Vec<_>>(),
            "supernet_top_k": f.supernet_top.iter().map(|&i| entry(&p, i, "true_rank", trank[i])).collect::<Vec<_>>(),
            "no_score": p.no_score.iter().map(Arch::to_string).collect::<Vec<_>>(),
            "no_truth": p.no_truth.len(),
        });
        if let (Some(o), Value::Object(e)) = (out.as_object_mut(), extra) {
            o.extend(e);
        }
        ctx.printer.json(&out)?;
    } else {
        ctx.printer.note(format!(
            "supernet {} from {}; retrained accuracy from {} read as {}",
            scores.column,
            source.display(),
            truth_file.display(),
            if truth.percent { "%" } else { "fractions" }
        ));
        print_human(&f, &p, &scores, ctx)?;
    }
    Ok(ExitStatus::Success)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::archive::{ArchiveRecord, append};
    use crate::compute::Compute;
    use crate::output::Printer;

    fn ctx() -> Context {
        Context {
            printer: Printer::silent(),
            compute: Compute::Cpu,
        }
    }

    fn args(run: &Path, truth: &Path) -> RankArgs {
        RankArgs {
            run: Some(run.to_path_buf()),
            archs: None,
            truth: Some(truth.to_path_buf()),
            top_k: None,
            space: None,
            paired: None,
            confidence: None,
        }
    }

    /// A run dir of space `tiny` with archs `d…d` (20 digits) scored `error`, and a truth file.
    fn write_run(dir: &Path, scored: &[(char, f64)], truth: &str) -> (PathBuf, PathBuf) {
        let run = dir.join("run");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(run.join("config.toml"), "space = \"tiny\"\npop = 4\n").unwrap();
        for &(d, error) in scored {
            let record = ArchiveRecord {
                generation: 1,
                arch: d.to_string().repeat(20).parse().unwrap(),
                error,
                latency: 1.0,
                latency_source: "flops".into(),
                latency_interval: None,
                flops: 1,
                params: 1,
                supernet_step: 7,
            };
            append(&run.join("archive.jsonl"), &record).unwrap();
        }
        let t = dir.join("truth.csv");
        std::fs::write(&t, truth).unwrap();
        (run, t)
    }

    #[test]
    fn rank_command_reads_a_run_and_its_space() {
        let d = tempfile::tempdir().unwrap();
        let z = |c: char| c.to_string().repeat(20);
        let truth = format!(
            "arch,accuracy\n{},0.9\n{},0.8\n{},0.7\n",
            z('0'),
            z('1'),
            z('2')
        );
        let (run, t) = write_run(
            d.path(),
            &[('0', 0.1), ('1', 0.3), ('2', 0.2), ('3', 0.5)],
            &truth,
        );
        let a = args(&run, &t);
        assert_eq!(choose_space(&a).unwrap().unwrap().name, "tiny");
        let l = load(&a, &ctx()).unwrap();
        assert_eq!((l.paired.archs.len(), l.paired.no_truth.len()), (3, 1));
        assert!(!l.truth.percent);
        assert_eq!(run_cmd(a), ExitStatus::Success);
        let mut a = args(&run, &t);
        a.top_k = Some(3);
        assert_eq!(run_cmd(a), ExitStatus::Success);
        assert_eq!(positions(&[0.2, 0.9, 0.5]), vec![3, 1, 2]);
    }

    fn run_cmd(a: RankArgs) -> ExitStatus {
        run(a, &ctx()).unwrap()
    }

    #[test]
    fn rank_command_errors_name_the_input_at_fault() {
        let d = tempfile::tempdir().unwrap();
        let (dir, t) = write_run(
            d.path(),
            &[('0', 0.1), ('1', 0.3)],
            "arch,accuracy\n0123,1\n",
        );
        let msg = |a: RankArgs| format!("{:#}", super::run(a, &ctx()).unwrap_err());
        // The truth's arch is checked against the run's space.
        let e = msg(args(&dir, &t));
        assert!(
            e.contains("truth.csv line 2, column 1") && e.contains("space \"tiny\""),
            "{e}"
        );
        let mut a = args(&dir, &t);
        a.space = Some("spos-cifar".into());
        let e = msg(a);
        assert!(
            e.contains("--space spos-cifar") && e.contains("searched space tiny"),
            "{e}"
        );
        let e = msg(args(d.path(), &t));
        assert!(e.contains("no archive.jsonl there"), "{e}");
        let truth = format!(
            "arch,accuracy\n{},90\n{},80\n",
            "0".repeat(20),
            "1".repeat(20)
        );
        std::fs::write(&t, truth).unwrap();
        let mut a = args(&dir, &t);
        a.top_k = Some(3);
        let e = msg(a);
        assert!(e.contains("--top-k 3 must be between 1 and N = 2"), "{e}");
        // Without a run, --archs with an unknown --space is refused by name.
        let mut a = args(&dir, &t);
        (a.run, a.archs, a.space) = (None, Some(t.clone()), Some("big".into()));
        let e = msg(a);
        assert!(e.contains("unknown space \"big\""), "{e}");
    }

    #[test]
    fn paired_mode_compares_each_setting_with_the_base() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("tau.csv");
        std::fs::write(
            &p,
            "seed,off,accumulate\n1,0.1,0.25\n2,-0.2,0.05\n3,0.05,0.1\n",
        )
        .unwrap();
        let mut a = args(d.path(), d.path());
        (a.run, a.truth, a.paired) = (None, None, Some(p.clone()));
        assert_eq!(run_cmd(a), ExitStatus::Success);
        let mut a = args(d.path(), d.path());
        (a.run, a.truth, a.paired, a.confidence) = (None, None, Some(p), Some(1.5));
        let e = format!("{:#}", super::run(a, &ctx()).unwrap_err());
        assert!(
            e.contains("tau.csv, column accumulate") && e.contains("confidence = 1.5"),
            "{e}"
        );
    }
}
