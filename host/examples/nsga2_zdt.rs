//! NSGA-II on ZDT1–3: prints the final population's hypervolume (reference (1.1, 1.1)), the
//! true front's hypervolume for comparison, and milliseconds per generation.
//!
//! `cargo run --release -p shiftnas --example nsga2_zdt -- --problem zdt1 --pop 100 --gens 250 --seed 1 --out front.csv`

use std::io::Write;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use shiftnas::search::hypervolume::hv2d;
use shiftnas::search::minimize;
use shiftnas::search::nsga2::{Nsga2, Nsga2Config};
use shiftnas::search::operators::{FloatSampling, PolynomialMutation, Sbx};
use shiftnas::search::termination::MaxGenerations;
use shiftnas::search::zdt::{Zdt, ZdtKind};

/// NSGA-II on a ZDT benchmark.
#[derive(Parser)]
struct Args {
    /// Which ZDT problem (30 variables).
    #[arg(long, value_enum, default_value = "zdt1")]
    problem: ZdtKind,
    /// Population size (= offspring per generation).
    #[arg(long, default_value_t = 100)]
    pop: usize,
    /// Generations, the initial population included (pymoo's n_gen).
    #[arg(long, default_value_t = 250)]
    gens: usize,
    /// RNG seed (ChaCha8).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the final population's objectives as CSV (f1,f2).
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut problem = Zdt::new(args.problem);
    let b = problem.bounds();
    let mut alg = Nsga2::new(
        Nsga2Config::new(args.pop),
        FloatSampling { bounds: b.clone() },
        Sbx::new(b.clone()),
        PolynomialMutation::new(b),
    );
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let start = Instant::now();
    minimize(
        &mut alg,
        &mut problem,
        &MaxGenerations(args.gens),
        &mut (),
        &mut rng,
    )?;
    let ms = start.elapsed().as_secs_f64() * 1000.0 / args.gens as f64;
    let pts: Vec<[f64; 2]> = alg
        .state()
        .population
        .iter()
        .map(|i| [i.eval.objectives[0], i.eval.objectives[1]])
        .collect();
    let hv = hv2d(&pts, [1.1, 1.1]);
    let optimum = problem.true_front_hypervolume([1.1, 1.1], 1_000_000);
    if let Some(path) = &args.out {
        let mut f = std::fs::File::create(path)
            .with_context(|| format!("cannot write --out {}", path.display()))?;
        writeln!(f, "f1,f2")?;
        for p in &pts {
            writeln!(f, "{},{}", p[0], p[1])?;
        }
    }
    println!(
        "shiftnas problem={:?} pop={} gens={} seed={} hv={hv:.6} optimum_hv={optimum:.6} ms_per_gen={ms:.3}",
        args.problem, args.pop, args.gens, args.seed
    );
    Ok(())
}
