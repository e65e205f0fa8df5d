//! `shiftnas-agent`: measures ONNX model latency on a board (see the library crate doc).
//!
//! `main` only decides the exit code: 0 on success, 2 on error with the error chain on stderr;
//! a closed stdout (broken pipe) exits 0.
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = shiftnas_agent::cli::Cli::parse();
    match shiftnas_agent::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let broken_pipe = e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            });
            if broken_pipe {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
