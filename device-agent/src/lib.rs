//! `shiftnas-agent`: measures ONNX model latency on a board and reports JSON.
//!
//! The binary (`main.rs`) only parses arguments and picks the exit code; everything else lives
//! here so tests call it directly. Commands: `bench` (one measurement, [`bench::measure`]),
//! `info` ([`board_info`]), `serve` (the JSON-lines protocol of `shiftnas_protocol`, [`serve`])
//! and `run` (one inference on a `.npy` input, for output checks).
//!
//! The runtime is ONNX Runtime loaded at run time ([`runtime::ort`]); a pure-Rust tract fallback
//! exists behind the `tract` feature, and `--runtime rknn` measures `.rknn` models on the RK3588
//! NPU ([`runtime::rknn`]). Every report names its backend.

pub mod affinity;
pub mod bench;
pub mod cli;
pub mod report;
pub mod runtime;
pub mod serve;
pub mod system;

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use shiftnas_protocol::npy;
use shiftnas_protocol::{
    Backend, BackendName, BenchSpec, BoardInfo, PROTOCOL_VERSION, encode_line,
};

use crate::bench::BenchEnv;
use crate::cli::{Cli, Command, Switch};
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

/// Runs one parsed command line, writing results to stdout.
///
/// # Errors
/// Any failure, with context naming the file or flag at fault.
pub fn run(cli: Cli) -> Result<()> {
    let choice = BackendChoice {
        runtime: cli.runtime,
        ort_lib: cli.ort_lib,
        rknn_lib: cli.rknn_lib,
        npu_cores: cli.npu_core_mask,
    };
    let stdout = std::io::stdout();
    match cli.command {
        Command::Bench(a) => {
            let cores = match &a.cores {
                Some(s) => affinity::parse_cpu_list(s).context("--cores")?,
                None => Vec::new(),
            };
            let spec = BenchSpec {
                threads: a.threads,
                cores,
                warmup: a.warmup,
                runs: a.runs,
                min_seconds: a.min_seconds,
                spin: a.spin == Switch::On,
                seed: a.seed,
            };
            // Before reading the model or loading a runtime: a bad flag is the first thing to fix.
            spec.check()
                .map_err(anyhow::Error::msg)
                .context("bench flags (--threads, --runs, --warmup, --min-seconds)")?;
            let (bytes, sha) = read_model(&a.model)?;
            let backend = runtime::load(&choice)?;
            let env = BenchEnv {
                root: SysRoot::default(),
                thermal_limit_c: a.thermal_limit,
            };
            let report = bench::measure(backend.as_ref(), &bytes, &sha, &spec, &env)
                .with_context(|| format!("measuring {}", a.model.display()))?;
            let mut out = stdout.lock();
            if a.json {
                writeln!(out, "{}", encode_line(&report)?)?;
            } else {
                out.write_all(
                    report::bench_table(&report, &a.model.display().to_string()).as_bytes(),
                )?;
                for w in &report.warnings {
                    eprintln!("warning: {w}");
                }
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
