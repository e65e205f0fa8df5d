//! Is the CUDA-vs-CPU gradient gap of the supernet (docs/benchmarks.md, "CUDA check on a lent GPU")
//! float32 conditioning or a bug? Compares, on CPU, the supernet's f32 training-step gradients with
//! an f64 evaluation of the same network on the same input, with the shapes `scripts/gpu-check`
//! uses (`spos-cifar` batch 8, `spos-imagenet` batch 4, all-k3/k5/k7/Xception and the SPOS arch).
//!
//! The supernet keeps its weights as f32 `Var`s, so it cannot run in f64 itself. The f64 side is a
//! plain-candle re-statement of its training-mode forward, generic in dtype: dense/1×1 convs as
//! candle ops, depthwise convs as the shift-and-add composition (`shiftnas_kernels::dw_shift`), BN with batch
//! mean and biased variance (ε = 1e-5, affine-free), ReLU, SPOS channel split, global average pool,
//! bias-free classifier, label-smoothed (0.1) cross entropy. Dropout is off (p = 0) on both sides
//! so both see the same function. Three gradients per arch, all from the same f32 weights:
//!
//! - `G32`: the supernet on CPU (custom f32 ops) — what gpu-check calls "CPU";
//! - `R32`: the re-statement in f32 (other ops, other summation order, like another device);
//! - `R64`: the re-statement in f64 (the reference).
//!
//! `G32 vs R64` is the f32 error of the real CPU path; `G32 vs R32` is what two correct f32
//! implementations disagree by. A wiring mistake in the re-statement would show as O(1) on the
//! logits; the logits rows check that first.
//!
//! ```text
//! cargo run --release -p shiftnas-models --example grad_conditioning -- [--space spos-cifar] [--batch 8] [--arch DIGITS]
//! ```

use std::process::ExitCode;

use candle_core::{DType, Device, Tensor, Var};
use shiftnas_kernels::{bn::BN_EPS, dw_shift::shift_add_depthwise_conv2d, glue};
use shiftnas_models::{Arch, Choice, Space, Supernet};

mod common;
use common::{BoxResult, SPOS_ARCH, data, host, rel_l2, smoothed_ce};

/// The path's weights as `Var`s of `dtype`, by name (copied from the supernet's f32 weights).
struct Weights(std::collections::BTreeMap<String, Var>);

impl Weights {
    fn w(&self, name: &str) -> candle_core::Result<Tensor> {
        match self.0.get(name) {
            Some(v) => Ok(v.as_tensor().clone()),
            None => candle_core::bail!("no weight {name}"),
        }
    }
}

/// Training-mode BN (batch mean, biased variance, affine-free) and optional ReLU, plain ops.
fn bn_train(y: &Tensor, relu: bool) -> candle_core::Result<Tensor> {
    let mean = y.mean_keepdim((0, 2, 3))?;
    let xc = y.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim((0, 2, 3))?;
    let out = xc.broadcast_div(&(var + BN_EPS)?.sqrt()?)?;
    if relu { out.relu() } else { Ok(out) }
}

fn pw(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    x.conv2d(w, 0, 1, 1, 1)
}

/// The supernet's training-mode forward for `arch`, re-stated with plain candle ops.
fn forward(space: &Space, arch: &Arch, ws: &Weights, x: &Tensor) -> candle_core::Result<Tensor> {
    let k = space.stem.kernel;
    let y = x.conv2d(&ws.w("stem.conv.weight")?, k / 2, space.stem.stride, 1, 1)?;
    let mut h = bn_train(&y, true)?;
    for (shape, &g) in space.blocks().iter().zip(arch.genes()) {
        let choice = space.choices[g as usize];
        let p = format!("blocks.{}.choice{g}", shape.index);
        let s = shape.stride;
        // (conv index, depthwise kernel or 0 for 1×1, stride, relu)
        let layers: Vec<(usize, usize, usize, bool)> = match choice {
            Choice::Xception => vec![
                (0, 3, s, false),
                (1, 0, 1, true),
                (2, 3, 1, false),
                (3, 0, 1, true),
                (4, 3, 1, false),
                (5, 0, 1, true),
            ],
            _ => vec![
                (0, 0, 1, true),
                (1, choice.kernel(), s, false),
                (2, 0, 1, true),
            ],
        };
        let run = |part: &str, spec: &[(usize, usize, usize, bool)], mut t: Tensor| {
            for &(j, dk, st, relu) in spec {
                let w = ws.w(&format!("{p}.{part}.conv{j}.weight"))?;
                let y = if dk > 0 {
                    shift_add_depthwise_conv2d(&t, &w, st)?
                } else {
                    pw(&t, &w)?
                };
                t = bn_train(&y, relu)?;
            }
            Ok::<_, candle_core::Error>(t)
        };
        h = if s == 1 {
            let (even, odd) = glue::plain_channel_split(&h)?;
            Tensor::cat(&[&even, &run("main", &layers, odd)?], 1)?
        } else {
            let proj = [(0, choice.kernel(), s, false), (1, 0, 1, true)];
            let side = run("proj", &proj, h.clone())?;
            Tensor::cat(&[&side, &run("main", &layers, h)?], 1)?
        };
    }
    let h = bn_train(&pw(&h, &ws.w("last.conv.weight")?)?, true)?;
    h.mean((2, 3))?.matmul(&ws.w("classifier.weight")?.t()?)
}

/// (logits, loss, gradients by name) of one evaluation.
type Run = (Vec<f64>, f64, Vec<(String, Vec<f64>)>);

fn restated(
    space: &Space,
    arch: &Arch,
    net: &Supernet,
    x: &Tensor,
    y: &Tensor,
    dt: DType,
) -> BoxResult<Run> {
    let mut map = std::collections::BTreeMap::new();
    for (name, v) in net.path_trainable(arch) {
        map.insert(
            name,
            Var::from_tensor(&v.as_detached_tensor().to_dtype(dt)?)?,
        );
    }
    let ws = Weights(map);
    let logits = forward(space, arch, &ws, &x.to_dtype(dt)?)?;
    let loss = smoothed_ce(&logits, y, 0.1)?;
    let grads = loss.backward()?;
    let mut gs = Vec::new();
    for (name, v) in &ws.0 {
        let g = grads
            .get(v.as_tensor())
            .ok_or_else(|| format!("no gradient for {name}"))?;
        gs.push((name.clone(), host(g)?));
    }
    Ok((
        host(&logits)?,
        loss.to_dtype(DType::F64)?.to_scalar::<f64>()?,
        gs,
    ))
}

fn supernet_run(arch: &Arch, net: &Supernet, x: &Tensor, y: &Tensor) -> BoxResult<Run> {
    let logits = net.forward_t(x, arch, true)?;
    let loss = smoothed_ce(&logits, y, 0.1)?;
    let grads = loss.backward()?;
    let mut gs = Vec::new();
    for (name, v) in net.path_trainable(arch) {
        let g = grads
            .get(v.as_tensor())
            .ok_or_else(|| format!("no gradient for {name}"))?;
        gs.push((name, host(g)?));
    }
    Ok((
        host(&logits)?,
        loss.to_dtype(DType::F64)?.to_scalar::<f64>()?,
        gs,
    ))
}

/// Relative L2 of all gradients together and of the worst single tensor (name, value).
fn grad_gap(a: &Run, b: &Run) -> (f64, String, f64) {
    let (mut all_a, mut all_b) = (Vec::new(), Vec::new());
    let mut worst = (String::new(), 0.0);
    for ((name, ga), (nb, gb)) in a.2.iter().zip(&b.2) {
        assert_eq!(name, nb, "gradient order differs");
        let r = rel_l2(ga, gb);
        if r >= worst.1 {
            worst = (name.clone(), r);
        }
        all_a.extend_from_slice(ga);
        all_b.extend_from_slice(gb);
    }
    (rel_l2(&all_a, &all_b), worst.0, worst.1)
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("grad_conditioning: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> BoxResult<()> {
    let mut space_name = "spos-cifar".to_string();
    let (mut batch, mut arch_arg, mut seed) = (8usize, None::<String>, 0u64);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--space" => space_name = val()?,
            "--batch" => batch = val()?.parse().map_err(|e| format!("--batch: {e}"))?,
            "--arch" => arch_arg = Some(val()?),
            "--seed" => seed = val()?.parse().map_err(|e| format!("--seed: {e}"))?,
            other => {
                return Err(
                    format!("unknown argument {other:?} (see the file's doc comment)").into(),
                );
            }
        }
    }
    let mut space = Space::by_name(&space_name)?;
    space.dropout = 0.0;
    let n = space.num_blocks();
    let archs: Vec<String> = match arch_arg {
        Some(a) => vec![a],
        None => (0..4)
            .map(|d| d.to_string().repeat(n))
            .chain([SPOS_ARCH.to_string()])
            .collect(),
    };
    println!(
        "{} batch {batch} seed {seed}: relative L2 (all path gradients together; worst single tensor)",
        space.name
    );
    for a in &archs {
        let arch = space
            .parse_arch(a)
            .map_err(|e| format!("--arch {a}: {e}"))?;
        let net = Supernet::new(&space, &Device::Cpu, seed)?;
        let (x, y) = data(&space, batch, seed, &Device::Cpu)?;
        let g32 = supernet_run(&arch, &net, &x, &y)?;
        let r32 = restated(&space, &arch, &net, &x, &y, DType::F32)?;
        let r64 = restated(&space, &arch, &net, &x, &y, DType::F64)?;
        let (a1, w1n, w1) = grad_gap(&g32, &r64);
        let (a2, _, w2) = grad_gap(&r32, &r64);
        let (a3, w3n, w3) = grad_gap(&g32, &r32);
        println!(
            "{a}  logits G32~R64 {:.1e}  loss {:.1e} | grads G32~R64 {a1:.2e} (worst {w1:.2e} {w1n}) | R32~R64 {a2:.2e} (worst {w2:.2e}) | G32~R32 {a3:.2e} (worst {w3:.2e} {w3n})",
            rel_l2(&g32.0, &r64.0),
            ((g32.1 - r64.1) / r64.1).abs(),
        );
    }
    Ok(())
}
