//! `shiftnas`: parse the command line, run it, and turn the outcome into an exit code.

use std::process::ExitCode;

use clap::Parser;

// glibc returns large blocks to the OS after every tensor op, and the page faults that follow
// halved training speed in our measurements (docs/benchmarks.md); mimalloc keeps them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // SAFETY: the first statement of `main`; no other thread exists yet.
    unsafe { shiftnas_kernels::tuning::configure() };
    let cli = shiftnas::cli::Cli::parse();
    match shiftnas_kernels::tuning::on_pool(|| shiftnas::commands::run(cli)) {
        Ok(status) => status.into(),
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {err:#}");
            shiftnas::commands::ExitStatus::Error.into()
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
