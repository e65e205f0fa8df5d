//! `shiftnas-agent`: measures ONNX model latency on a board and reports JSON.
//!
//! The binary (`main.rs`) only parses arguments and picks the exit code; everything else lives
//! here so tests call it directly. Commands: `bench` (one measurement, [`bench::measure`], or
//! an interleaved set against a reference, [`interleaved::measure_set`]),
//! `info` ([`board_info`]), `serve` (the JSON-lines protocol of `shiftnas_protocol`, [`serve`])
//! and `run` (one inference on a `.npy` input, for output checks).
//!
//! The runtime is ONNX Runtime loaded at run time ([`runtime::ort`]); a pure-Rust tract fallback
//! exists behind the `tract` feature. Every report names its backend.

pub mod affinity;
pub mod bench;
pub mod cli;
pub mod interleaved;
pub mod report;
pub mod runtime;
pub mod serve;
pub mod system;

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use shiftnas_protocol::npy;
use shiftnas_protocol::{
    Backend, BackendName, BenchSetSpec, BenchSpec, BoardInfo, PROTOCOL_VERSION, Warning,
    encode_line,
};

use crate::bench::BenchEnv;
use crate::cli::{BenchArgs, Cli, Command, Switch};
use crate::runtime::{BackendChoice, SessionOptions};
use crate::system::SysRoot;

/// Describes the board; a missing runtime is reported as backend `none` with the reason.
pub fn board_info(choice: &BackendChoice, root: &SysRoot) -> BoardInfo {
    let (cores, cpu_model) = system::cores(root);
    let cpus: Vec<usize> = cores.iter().map(|c| c.cpu).collect();
    let (arch, kernel) = system::uname();
    let (backend, backend_error) = match runtime::load(choice) {
        Ok(b) => (b.id(), None),
        Err(e) => (
            Backend {
                name: BackendName::None,
                version: String::new(),
            },
            Some(format!("{e:#}")),
        ),
    };
    BoardInfo {
        cpu_model,
        arch,
        governors: system::governors(root, &cpus),
        cores,
        kernel,
        backend,
        backend_error,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        protocol_version: PROTOCOL_VERSION,
    }
}

fn read_model(path: &Path) -> Result<(Vec<u8>, String)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading model {}", path.display()))?;
    let sha = hex::encode(Sha256::digest(&bytes));
    Ok((bytes, sha))
}

fn cores_flag(a: &BenchArgs) -> Result<Vec<usize>> {
    match &a.cores {
        Some(s) => affinity::parse_cpu_list(s).context("--cores"),
        None => Ok(Vec::new()),
    }
}

fn print_warnings(warnings: &[Warning]) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
}

/// The spec of `bench` with a set: the flags given, the defaults of [`BenchSetSpec`] otherwise.
///
/// # Errors
/// A malformed `--cores`.
pub fn set_spec(a: &BenchArgs) -> Result<BenchSetSpec> {
    let d = BenchSetSpec::default();
    Ok(BenchSetSpec {
        threads: a.threads,
        cores: cores_flag(a)?,
        warmup: a.warmup,
        runs_per_slice: a.slice_runs.unwrap_or(d.runs_per_slice),
        precision: a.precision.unwrap_or(d.precision),
        confidence: a.confidence.unwrap_or(d.confidence),
        min_rounds: a.min_rounds.unwrap_or(d.min_rounds),
        max_rounds: a.max_rounds.unwrap_or(d.max_rounds),
        budget_seconds: a.budget_seconds,
        spin: a.spin == Switch::On,
        seed: a.seed,
    })
}

/// `bench` with two or more models or a reference: the interleaved protocol.
fn bench_set(choice: &BackendChoice, a: &BenchArgs) -> Result<()> {
    let flags = a.single_flags();
    anyhow::ensure!(
        flags.is_empty(),
        "{}: only for one model measured alone; a set uses --slice-runs and --budget-seconds",
        flags.join(", ")
    );
    let (reference, set) = match &a.reference {
        Some(r) => (r, &a.models[..]),
        None => (&a.models[0], &a.models[1..]),
    };
    let spec = set_spec(a)?;
    // Before reading the models or loading a runtime: a bad flag is the first thing to fix.
    spec.check(set.len())
        .map_err(anyhow::Error::msg)
        .and_then(|()| interleaved::stop_rule(&spec, set.len()).map(|_| ()))
        .context(
            "bench flags (--threads, --warmup, --slice-runs, --precision, --confidence, \
             --min-rounds, --max-rounds, --budget-seconds)",
        )?;
    let mut files: Vec<(&Path, Vec<u8>, String)> = Vec::new();
    for path in std::iter::once(reference).chain(set) {
        let (bytes, sha) = read_model(path)?;
        if let Some((same, ..)) = files.iter().find(|(_, _, s)| *s == sha) {
            bail!(
                "{} and {} are the same model (sha256 {sha}); give each model once, and a \
                 reference that is not in the set",
                same.display(),
                path.display()
            );
        }
        files.push((path, bytes, sha));
    }
    let backend = runtime::load(choice)?;
    let env = BenchEnv {
        root: SysRoot::default(),
        thermal_limit_c: a.thermal_limit,
    };
    let models: Vec<interleaved::SetModel> = files
        .iter()
        .map(|(_, bytes, sha)| interleaved::SetModel { sha256: sha, bytes })
        .collect();
    let report = interleaved::measure_set(backend.as_ref(), models[0], &models[1..], &spec, &env)
        .context("measuring the set")?;
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(out, "{}", encode_line(&report)?)?;
    } else {
        let names: Vec<String> = files
            .iter()
            .map(|(p, ..)| p.display().to_string())
            .collect();
        out.write_all(report::set_table(&report, &names[0], &names[1..]).as_bytes())?;
        print_warnings(&report.warnings);
    }
    Ok(())
}

/// Runs one parsed command line, writing results to stdout.
///
/// # Errors
/// Any failure, with context naming the file or flag at fault.
pub fn run(cli: Cli) -> Result<()> {
    let choice = BackendChoice {
        ort_lib: cli.ort_lib,
    };
    let stdout = std::io::stdout();
    match cli.command {
        Command::Bench(a) if a.is_set() => bench_set(&choice, &a)?,
        Command::Bench(a) => {
            let flags = a.set_flags();
            anyhow::ensure!(
                flags.is_empty(),
                "{}: only for a set; give two or more models, or --reference",
                flags.join(", ")
            );
            let defaults = BenchSpec::default();
            let spec = BenchSpec {
                threads: a.threads,
                cores: cores_flag(&a)?,
                warmup: a.warmup,
                runs: a.runs.unwrap_or(defaults.runs),
                min_seconds: a.min_seconds.unwrap_or(defaults.min_seconds),
                spin: a.spin == Switch::On,
                seed: a.seed,
            };
            let model = &a.models[0];
            // Before reading the model or loading a runtime: a bad flag is the first thing to fix.
            spec.check()
                .map_err(anyhow::Error::msg)
                .context("bench flags (--threads, --runs, --warmup, --min-seconds)")?;
            let (bytes, sha) = read_model(model)?;
            let backend = runtime::load(&choice)?;
            let env = BenchEnv {
                root: SysRoot::default(),
                thermal_limit_c: a.thermal_limit,
            };
            let report = bench::measure(backend.as_ref(), &bytes, &sha, &spec, &env)
                .with_context(|| format!("measuring {}", model.display()))?;
            let mut out = stdout.lock();
            if a.json {
                writeln!(out, "{}", encode_line(&report)?)?;
            } else {
                out.write_all(
                    report::bench_table(&report, &model.display().to_string()).as_bytes(),
                )?;
                print_warnings(&report.warnings);
            }
        }
        Command::Info(a) => {
            let info = board_info(&choice, &SysRoot::default());
            let mut out = stdout.lock();
            if a.json {
                writeln!(out, "{}", encode_line(&info)?)?;
            } else {
                out.write_all(report::info_table(&info).as_bytes())?;
            }
        }
        Command::Serve(a) => {
            let env = BenchEnv {
                root: SysRoot::default(),
                thermal_limit_c: a.thermal_limit,
            };
            let mut server = serve::Server::new(choice, env);
            serve::serve(&mut server, std::io::stdin().lock(), stdout.lock())?;
        }
        Command::Run(a) => {
            let (bytes, _) = read_model(&a.model)?;
            let input_bytes = std::fs::read(&a.input)
                .with_context(|| format!("reading --input {}", a.input.display()))?;
            let input = npy::decode(&input_bytes)
                .with_context(|| format!("--input {}", a.input.display()))?;
            let backend = runtime::load(&choice)?;
            let mut m = backend
                .open(
                    &bytes,
                    SessionOptions {
                        threads: a.threads,
                        spin: true,
                    },
                )
                .with_context(|| format!("opening {}", a.model.display()))?;
            anyhow::ensure!(
                input.shape == m.input_shape(),
                "--input {} has shape {:?} but the model's input {:?} has shape {:?}",
                a.input.display(),
                input.shape,
                m.input_name(),
                m.input_shape()
            );
            m.set_input(input.data)?;
            let out = m
                .run_output()
                .with_context(|| format!("running {}", a.model.display()))?;
            std::fs::write(&a.output, npy::encode(&out)?)
                .with_context(|| format!("writing --output {}", a.output.display()))?;
        }
    }
    Ok(())
}
