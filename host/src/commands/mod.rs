//! One function per subcommand: args → config → library calls → output.

mod board;
mod cache;
mod calibrate;
mod eval;
pub mod export;
mod quickstart;
mod rank;
mod retrain;
pub mod search;
mod space;
pub mod train;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::compute::Compute;
use crate::output::Printer;

/// What a command's outcome means for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: done.
    Success,
    /// 1: the command ran and the answer is "no".
    Failure,
    /// 2: it could not do the job.
    Error,
    /// 130: interrupted by Ctrl-C after finishing the checkpoint.
    Interrupted,
}

impl From<ExitStatus> for ExitCode {
    fn from(s: ExitStatus) -> ExitCode {
        match s {
            ExitStatus::Success => ExitCode::SUCCESS,
            ExitStatus::Failure => ExitCode::from(1),
            ExitStatus::Error => ExitCode::from(2),
            ExitStatus::Interrupted => ExitCode::from(130),
        }
    }
}

/// What every command gets besides its own args.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    /// Output channel.
    pub printer: Printer,
    /// Where candle runs.
    pub compute: Compute,
}

/// Runs the parsed command line.
///
/// # Errors
/// Whatever the command fails with; `main` prints the chain and exits 2.
pub fn run(cli: Cli) -> Result<ExitStatus> {
    let g = &cli.global;
    let ctx = Context {
        printer: Printer::new(g.json, g.quiet, g.no_progress),
        compute: g.compute,
    };
    match cli.command {
        Command::Space(a) => space::run(a, &ctx),
        Command::Train(a) => train::run(a, &ctx),
        Command::Eval(a) => eval::run(a, &ctx),
        Command::Search(a) => search::run(a, &ctx),
        Command::Export(a) => export::run(a, &ctx),
        Command::Board(a) => board::run(a, &ctx),
        Command::Cache(a) => cache::run(a, &ctx),
        Command::Calibrate(a) => calibrate::run(a, &ctx),
        Command::Quickstart(a) => quickstart::run(a, &ctx),
        Command::Retrain(a) => retrain::run(a, &ctx),
        Command::Rank(a) => rank::run(a, &ctx),
    }
}

/// After Ctrl-C stopped a run at a checkpoint: the note naming `resume`, the command that
/// continues it, and with `--json` an `{"type": "interrupted", "run_dir", "resume", …}` line
/// carrying `fields` (`step`, `generation`) too.
fn report_interrupted(
    p: &Printer,
    why: &dyn std::fmt::Display,
    run_dir: &Path,
    resume: &str,
    fields: serde_json::Value,
) -> Result<()> {
    p.note(format!("{why}; continue with `{resume}`"));
    if p.json {
        let mut v =
            serde_json::json!({"type": "interrupted", "run_dir": run_dir, "resume": resume});
        if let (Some(v), serde_json::Value::Object(extra)) = (v.as_object_mut(), fields) {
            v.extend(extra);
        }
        p.json(&v)?;
    }
    Ok(())
}
