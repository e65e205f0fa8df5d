//! `shiftnas`: parse the command line, run it, and turn the outcome into an exit code.

use std::process::ExitCode;

use clap::Parser;

// glibc returns large blocks to the OS after every tensor op, and the page faults that follow
// halved training speed in our measurements (DESIGN §6); mimalloc keeps them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    fix_thread_counts();
    let cli = shiftnas::cli::Cli::parse();
    match shiftnas::commands::run(cli) {
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

/// candle 0.11 asks `num_cpus::get_physical()` on every CPU matmul unless `RAYON_NUM_THREADS` is
/// set, and that parses `/proc/cpuinfo` each time: half the time of a random-weight subnet export
/// (the `board:` latency source) went into the kernel formatting that file. Sets the variable
/// once to the count candle would compute (unchanged results), and builds rayon's global pool with
/// its usual size (logical CPUs), which the variable would otherwise shrink on SMT machines.
fn fix_thread_counts() {
    if std::env::var_os("RAYON_NUM_THREADS").is_some() {
        return;
    }
    let candle_threads = candle_core::utils::get_num_threads();
    // SAFETY: the first statement of `main`; no other thread exists yet.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", candle_threads.to_string()) };
    let logical = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Fails only when a global pool exists already, which nothing here has built.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(logical)
        .build_global();
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
