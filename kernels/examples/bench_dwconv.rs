//! Times forward + backward of every depthwise conv shape of the `spos-cifar` preset at batch 64:
//! our custom op against candle's native grouped `conv2d`.
//!
//! `cargo run --release -p shiftnas-kernels --example bench_dwconv [-- --batch N --space NAME
//! --ours-only]` prints a TSV table (channels, size, k, stride, ours_ms, candle_ms, speedup); times
//! are medians. `--ours-only` skips candle's (10–100× slower) grouped conv.
//! `scripts/bench/dwconv.sh` runs it next to PyTorch.

use std::collections::BTreeSet;
use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use shiftnas_kernels::dwconv::{depthwise_conv2d, native_depthwise_conv2d};
use shiftnas_models::{Choice, Space};

/// (channels, input size, kernel, stride) of every depthwise conv in the space.
fn shapes(space: &Space) -> BTreeSet<(usize, usize, usize, usize)> {
    let mut out = BTreeSet::new();
    for b in space.blocks() {
        for &choice in &space.choices {
            let k = choice.kernel();
            if b.stride == 2 {
                out.insert((b.branch_in(), b.in_size, k, 2));
            }
            if choice == Choice::Xception {
                out.insert((b.branch_in(), b.in_size, 3, b.stride));
                out.insert((b.mid(), b.out_size, 3, 1));
            } else {
                out.insert((b.mid(), b.in_size, k, b.stride));
            }
        }
    }
    out
}

/// Median milliseconds of forward + backward, repeating for at least `budget_s` (3 runs minimum).
fn time(
    f: &dyn Fn(&Tensor, &Tensor, usize) -> candle_core::Result<Tensor>,
    x: &Var,
    w: &Var,
    stride: usize,
    budget_s: f64,
) -> f64 {
    let run = || {
        let t = Instant::now();
        let y = f(x, w, stride).unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        assert!(grads.get(x).is_some() && grads.get(w).is_some());
        t.elapsed().as_secs_f64() * 1e3
    };
    run(); // warm-up
    let start = Instant::now();
    let mut v = Vec::new();
    while v.len() < 3 || (start.elapsed().as_secs_f64() < budget_s && v.len() < 200) {
        v.push(run());
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let batch: usize = arg("--batch").map_or(64, |b| b.parse().expect("--batch takes a number"));
    let space_name = arg("--space").unwrap_or_else(|| "spos-cifar".into());
    let space = match Space::by_name(&space_name) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let ours_only = args.iter().any(|a| a == "--ours-only");
    let dev = Device::Cpu;
    println!("# space {space_name}, batch {batch}, fwd+bwd median ms");
    println!("channels\tsize\tk\tstride\tours_ms\tcandle_ms\tspeedup");
    let (mut tot_ours, mut tot_candle) = (0.0, 0.0);
    for (c, size, k, stride) in shapes(&space) {
        let x = Var::randn(0f32, 1.0, (batch, c, size, size), &dev).unwrap();
        let w = Var::randn(0f32, 1.0, (c, 1, k, k), &dev).unwrap();
        let ours = time(&depthwise_conv2d, &x, &w, stride, 0.5);
        let native = if ours_only {
            f64::NAN
        } else {
            time(&native_depthwise_conv2d, &x, &w, stride, 0.5)
        };
        tot_ours += ours;
        tot_candle += native;
        println!(
            "{c}\t{size}\t{k}\t{stride}\t{ours:.3}\t{native:.3}\t{:.1}",
            native / ours
        );
    }
    println!(
        "# total\t\t\t\t{tot_ours:.2}\t{tot_candle:.2}\t{:.1}",
        tot_candle / tot_ours
    );
}
