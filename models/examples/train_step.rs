//! Times one supernet training step and the eval throughput of a fixed path in shiftnas — the
//! counterpart of `scripts/bench/supernet_torch.py` (same network, loss, optimiser and JSON keys) —
//! and, with `--check-against-cpu`, compares a CUDA forward and backward with the CPU one.
//!
//! On the CPU, eval is timed twice: the supernet's eval-mode forward (`eval_*`) and the BN-folded
//! inference path scoring runs (`eval_fast_*`, [`Inference`]); then a whole candidate score, exact
//! BN calibration over `--score-bn-images` plus the proxy forward over `--score-images`, through
//! both (`score_s`, `score_fast_s`: the supernet's calibration and forward, then the inference
//! kernels' calibration and folded forward; `score_bn_s`, `score_fast_bn_s`: their calibration
//! parts; `--score-images 0` skips it).
//!
//! A training step = forward in training mode (batch-statistics BN, dropout) + label-smoothed
//! (0.1) cross entropy + backward + SGD with momentum 0.9 and weight decay 4e-5 (PyTorch semantics)
//! on the path's weights only. Inputs and labels are fixed random tensors: this measures compute.
//!
//! ```text
//! cargo run --release -p shiftnas-models --example train_step -- --space spos-cifar --batch 64 --threads 2 --json
//! train_step --compute cuda:0 --check-against-cpu       # needs a build with --features cuda
//! ```

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use shiftnas_models::inference::{Inference, calibrate_bn};
use shiftnas_models::supernet::Supernet;
use shiftnas_models::{Arch, BnCalibration, Space};

mod common;
use common::{BoxResult, SPOS_ARCH, data, host, rel_l2, smoothed_ce};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: train_step [--space NAME] [--arch DIGITS] [--batch N] [--eval-batch N] \
[--steps N] [--eval-steps N] [--warmup N] [--threads N] [--compute cpu|cuda:N] [--lr F] [--seed N] \
[--no-train] [--no-eval] [--score-bn-images N] [--score-images N] [--images-per-job N] [--json] \
[--check-against-cpu]";

/// Relative L2 difference allowed between CUDA and CPU outputs and loss (see `check_against_cpu`).
const TOL_OUTPUT: f64 = 1e-3;
/// The same for all gradients together: f32 itself is 0.2–5 % from f64 on these tiny batches.
const TOL_GRAD_ALL: f64 = 0.15;
/// The same for the worst single gradient tensor.
const TOL_GRAD: f64 = 0.3;

/// Command-line settings.
#[derive(Debug, Clone)]
struct Args {
    space: String,
    arch: Option<String>,
    batch: usize,
    eval_batch: usize,
    steps: usize,
    eval_steps: usize,
    warmup: usize,
    threads: usize,
    compute: String,
    lr: f64,
    seed: u64,
    train: bool,
    eval: bool,
    score_bn_images: usize,
    score_images: usize,
    images_per_job: usize,
    json: bool,
    check: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        space: "spos-cifar".into(),
        arch: None,
        batch: 64,
        eval_batch: 256,
        steps: 10,
        eval_steps: 5,
        warmup: 3,
        threads: 0,
        compute: "cpu".into(),
        lr: 0.1,
        seed: 0,
        train: true,
        eval: true,
        score_bn_images: 2000,
        score_images: 2500,
        images_per_job: shiftnas_models::inference::IMAGES_PER_JOB,
        json: false,
        check: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        fn num<T: std::str::FromStr>(name: &str, v: String) -> Result<T, String> {
            v.parse()
                .map_err(|_| format!("{name}: {v:?} is not a valid number\n{USAGE}"))
        }
        match flag.as_str() {
            "--space" => a.space = value("--space")?,
            "--arch" => a.arch = Some(value("--arch")?),
            "--batch" => a.batch = num("--batch", value("--batch")?)?,
            "--eval-batch" => a.eval_batch = num("--eval-batch", value("--eval-batch")?)?,
            "--steps" => a.steps = num("--steps", value("--steps")?)?,
            "--eval-steps" => a.eval_steps = num("--eval-steps", value("--eval-steps")?)?,
            "--warmup" => a.warmup = num("--warmup", value("--warmup")?)?,
            "--threads" => a.threads = num("--threads", value("--threads")?)?,
            "--compute" => a.compute = value("--compute")?,
            "--lr" => a.lr = num("--lr", value("--lr")?)?,
            "--seed" => a.seed = num("--seed", value("--seed")?)?,
            "--no-train" => a.train = false,
            "--no-eval" => a.eval = false,
            "--score-bn-images" => {
                a.score_bn_images = num("--score-bn-images", value("--score-bn-images")?)?
            }
            "--score-images" => a.score_images = num("--score-images", value("--score-images")?)?,
            "--images-per-job" => {
                a.images_per_job = num("--images-per-job", value("--images-per-job")?)?
            }
            "--json" => a.json = true,
            "--check-against-cpu" => a.check = true,
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if a.batch == 0 || a.eval_batch == 0 || a.steps == 0 || a.eval_steps == 0 {
        return Err("--batch, --eval-batch, --steps and --eval-steps must be at least 1".into());
    }
    Ok(a)
}

/// `cpu` or `cuda:N` (also `cuda` = `cuda:0`) as a candle device, with an error that says what to do.
fn device(compute: &str) -> BoxResult<Device> {
    match compute {
        "cpu" => Ok(Device::Cpu),
        c if c == "cuda" || c.starts_with("cuda:") => {
            let n: usize = c
                .strip_prefix("cuda:")
                .unwrap_or("0")
                .parse()
                .map_err(|_| format!("--compute {c:?}: expected cuda:N with N a GPU index"))?;
            if !candle_core::utils::cuda_is_available() {
                return Err(format!(
                    "--compute {c}: this binary was built without CUDA; rebuild with `source scripts/cuda-env && cargo build --release -p shiftnas-models --features cuda --example train_step`"
                )
                .into());
            }
            Device::new_cuda(n).map_err(|e| {
                format!("--compute {c}: cannot open GPU {n} ({e}); is the NVIDIA driver loaded and libcuda.so.1 on the library path?").into()
            })
        }
        other => Err(format!("--compute {other:?}: expected cpu or cuda:N").into()),
    }
}

/// SGD with momentum and weight decay, PyTorch semantics: `g += wd·w; buf = m·buf + g` (`buf = g`
/// the first time); `w -= lr·buf`. Buffers are detached so the graph never grows.
struct Sgd {
    lr: f64,
    momentum: f64,
    weight_decay: f64,
    bufs: HashMap<String, Tensor>,
}

impl Sgd {
    fn step(
        &mut self,
        grads: &candle_core::backprop::GradStore,
        vars: &[(String, Var)],
    ) -> candle_core::Result<()> {
        for (name, var) in vars {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let w = var.as_detached_tensor();
            let g = (g.detach() + (&w * self.weight_decay)?)?;
            let buf = match self.bufs.get(name) {
                Some(b) => ((b * self.momentum)? + g)?,
                None => g,
            };
            var.set(&(w - (&buf * self.lr)?)?)?;
            self.bufs.insert(name.clone(), buf.detach());
        }
        Ok(())
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn arch_of(space: &Space, arch: Option<&str>) -> BoxResult<Arch> {
    let s = arch.unwrap_or(SPOS_ARCH);
    let s = if arch.is_none() && space.num_blocks() != SPOS_ARCH.len() {
        "0".repeat(space.num_blocks())
    } else {
        s.to_string()
    };
    Ok(space
        .parse_arch(&s)
        .map_err(|e| format!("--arch {s}: {e}"))?)
}

/// Seconds of each of `steps` calls of `f` after `warmup` untimed ones.
fn timed(warmup: usize, steps: usize, mut f: impl FnMut() -> BoxResult<()>) -> BoxResult<Vec<f64>> {
    let mut times = Vec::with_capacity(steps);
    for i in 0..warmup + steps {
        let t0 = Instant::now();
        f()?;
        if i >= warmup {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    Ok(times)
}

/// Times training steps and eval batches on `args.compute`; prints JSON or a line per figure.
fn bench(args: &Args) -> BoxResult<()> {
    let space = Space::by_name(&args.space)?;
    let arch = arch_of(&space, args.arch.as_deref())?;
    let dev = device(&args.compute)?;
    let net = Supernet::new(&space, &dev, args.seed)?;
    let mut out = serde_json::json!({
        "impl": "shiftnas",
        "space": space.name,
        "arch": arch.to_string(),
        "device": args.compute,
        "threads": candle_core::utils::get_num_threads(),
        "batch": args.batch,
        "eval_batch": args.eval_batch,
    });
    if args.train {
        let (x, y) = data(&space, args.batch, args.seed, &dev)?;
        let vars = net.path_trainable(&arch);
        let mut opt = Sgd {
            lr: args.lr,
            momentum: 0.9,
            weight_decay: 4e-5,
            bufs: HashMap::new(),
        };
        let mut times = Vec::with_capacity(args.steps);
        let mut last_loss = f32::NAN;
        for step in 0..args.warmup + args.steps {
            let t0 = Instant::now();
            net.set_dropout_seed(args.seed ^ step as u64);
            let loss = smoothed_ce(&net.forward_t(&x, &arch, true)?, &y, 0.1)?;
            let grads = loss.backward()?;
            opt.step(&grads, &vars)?;
            dev.synchronize()?;
            if step >= args.warmup {
                times.push(t0.elapsed().as_secs_f64() * 1e3);
            }
            if step + 1 == args.warmup + args.steps {
                last_loss = loss.to_scalar::<f32>()?;
            }
        }
        if !last_loss.is_finite() {
            return Err(format!("training loss is {last_loss} after {} steps", args.steps).into());
        }
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        let min = times.iter().copied().fold(f64::INFINITY, f64::min);
        let med = median(&mut times);
        out["train_steps"] = args.steps.into();
        out["train_ms_per_step"] = med.into();
        out["train_ms_mean"] = mean.into();
        out["train_ms_min"] = min.into();
        out["train_images_per_s"] = (args.batch as f64 / (med / 1e3)).into();
        out["last_loss"] = (last_loss as f64).into();
    }
    if args.eval {
        let (x, _) = data(&space, args.eval_batch, args.seed ^ 1, &dev)?;
        let warm = (args.warmup / 2).max(1);
        // Old path: the candle supernet in eval mode.
        let med = median(&mut timed(warm, args.eval_steps, || {
            let logits = net.forward_t(&x, &arch, false)?.detach();
            dev.synchronize()?;
            drop(logits);
            Ok(())
        })?);
        out["eval_steps"] = args.eval_steps.into();
        out["eval_ms_per_batch"] = (med * 1e3).into();
        out["eval_images_per_s"] = (args.eval_batch as f64 / med).into();
        if dev.is_cpu() {
            // New path: BN folded once, channels-last f32 kernels (what scoring runs).
            let t0 = Instant::now();
            let inf = Inference::new(&net, &arch)?.with_images_per_job(args.images_per_job);
            out["fold_ms"] = (t0.elapsed().as_secs_f64() * 1e3).into();
            let med = median(&mut timed(warm, args.eval_steps, || {
                drop(inf.forward_tensor(&x)?);
                Ok(())
            })?);
            out["eval_fast_ms_per_batch"] = (med * 1e3).into();
            out["eval_fast_images_per_s"] = (args.eval_batch as f64 / med).into();
            out["images_per_job"] = args.images_per_job.into();
        }
    }
    if args.score_images > 0 && dev.is_cpu() {
        // A whole candidate score as a search pays it: exact BN calibration over
        // `score_bn_images` training images, then the proxy forward over `score_images`, both in
        // batches of `eval_batch` (random images: this measures compute).
        let batches = |n: usize, seed: u64| -> BoxResult<Vec<Tensor>> {
            (0..n.div_ceil(args.eval_batch))
                .map(|i| {
                    let b = args.eval_batch.min(n - i * args.eval_batch);
                    Ok(data(&space, b, seed ^ (i as u64 + 2), &dev)?.0)
                })
                .collect()
        };
        let bn = batches(args.score_bn_images, 0xB0)?;
        let proxy = batches(args.score_images, 0xF0)?;
        // Old: the supernet's training forward; new: the inference kernels.
        let calibrate = |kernels: bool| -> BoxResult<()> {
            if bn.is_empty() {
                return Ok(());
            }
            let batches = bn.iter().cloned().map(Ok);
            if kernels {
                calibrate_bn(&net, &arch, batches, BnCalibration::Exact)?;
            } else {
                net.calibrate_bn(&arch, batches, BnCalibration::Exact)?;
            }
            Ok(())
        };
        let t0 = Instant::now();
        calibrate(false)?;
        let calib_s = t0.elapsed().as_secs_f64();
        for x in &proxy {
            drop(net.forward_t(x, &arch, false)?);
        }
        let old_s = t0.elapsed().as_secs_f64();
        let t0 = Instant::now();
        calibrate(true)?;
        out["score_fast_bn_s"] = t0.elapsed().as_secs_f64().into();
        let inf = Inference::new(&net, &arch)?.with_images_per_job(args.images_per_job);
        for x in &proxy {
            drop(inf.forward_tensor(x)?);
        }
        let new_s = t0.elapsed().as_secs_f64();
        out["score_bn_images"] = args.score_bn_images.into();
        out["score_images"] = args.score_images.into();
        out["score_bn_s"] = calib_s.into();
        out["score_s"] = old_s.into();
        out["score_fast_s"] = new_s.into();
    }
    if args.json {
        println!("{out}");
    } else {
        for (k, v) in out.as_object().into_iter().flatten() {
            println!("{k:>20}  {v}");
        }
    }
    Ok(())
}

/// One arch's comparison: (what, relative L2 difference, tolerance).
type Rows = Vec<(String, f64, f64)>;

/// One device's results: train-mode logits, loss, the path's gradients by name, eval-mode logits.
type DeviceRun = (Tensor, Tensor, Vec<(String, Tensor)>, Tensor);

/// Forward (training mode, then eval mode with the updated running statistics) and backward of
/// `arch` on CPU and on `gpu` from the same weights, input and dropout mask.
fn compare(space: &Space, arch: &Arch, batch: usize, seed: u64, gpu: &Device) -> BoxResult<Rows> {
    let mut res: Vec<DeviceRun> = Vec::new();
    for dev in [&Device::Cpu, gpu] {
        let net = Supernet::new(space, dev, seed)?;
        let (x, y) = data(space, batch, seed, dev)?;
        net.set_dropout_seed(seed);
        let logits = net.forward_t(&x, arch, true)?;
        let loss = smoothed_ce(&logits, &y, 0.1)?;
        let grads = loss.backward()?;
        let mut gs = Vec::new();
        for (name, var) in net.path_trainable(arch) {
            let g = grads
                .get(var.as_tensor())
                .ok_or_else(|| format!("no gradient for {name} on {dev:?}"))?;
            gs.push((name, g.clone()));
        }
        let eval = net.forward_t(&x, arch, false)?;
        res.push((logits, loss, gs, eval));
    }
    let (cpu, cuda) = (&res[0], &res[1]);
    let mut rows: Rows = vec![
        (
            "logits (train)".into(),
            rel_l2(&host(&cuda.0)?, &host(&cpu.0)?),
            TOL_OUTPUT,
        ),
        (
            "loss".into(),
            rel_l2(&host(&cuda.1)?, &host(&cpu.1)?),
            TOL_OUTPUT,
        ),
        (
            "logits (eval)".into(),
            rel_l2(&host(&cuda.3)?, &host(&cpu.3)?),
            TOL_OUTPUT,
        ),
    ];
    let (mut all_c, mut all_g) = (Vec::new(), Vec::new());
    let mut worst = (String::new(), 0.0f64);
    for ((name, gc), (_, gg)) in cpu.2.iter().zip(&cuda.2) {
        let (c, g) = (host(gc)?, host(gg)?);
        let r = rel_l2(&g, &c);
        if r >= worst.1 {
            worst = (name.clone(), r);
        }
        all_c.extend(c);
        all_g.extend(g);
    }
    rows.push((
        "gradients (all)".into(),
        rel_l2(&all_g, &all_c),
        TOL_GRAD_ALL,
    ));
    rows.push((format!("worst gradient {}", worst.0), worst.1, TOL_GRAD));
    Ok(rows)
}

/// Compares CUDA with CPU on several archs that together use every choice at every stride.
///
/// Tolerance: both sides compute in f32 (candle's CUDA gemm keeps full f32 unless reduced precision
/// is switched on, and it is not here). Summation order differs (cuBLAS vs CPU gemm, reductions),
/// which gives ~1e-6 relative error per layer; through ~60 conv+BN layers with batch statistics it
/// grows to 1e-5..1e-4 on outputs: 1e-3 leaves margin, while any real error — wrong stride,
/// padding, layout, a missing gradient — is O(1). Gradients are far worse conditioned: train-mode
/// BN at batch 4–8 makes them differences of nearly equal terms, and on the CPU alone f32 is
/// 0.2–5 % (relative L2) from an f64 evaluation, two correct f32 implementations 0.4–11 % apart
/// (`examples/grad_conditioning.rs`, docs/cuda.md) — the size of the CUDA-vs-CPU gaps first seen
/// on an H200. Hence 15 % for all gradients together and 30 % for the worst tensor: still far
/// below the O(1) of a wiring bug.
fn check_against_cpu(args: &Args) -> BoxResult<bool> {
    let space = Space::by_name(&args.space)?;
    let gpu = device(&args.compute)?;
    if gpu.is_cuda() {
        candle_core::cuda::set_gemm_reduced_precision_f32(false);
    } else {
        eprintln!(
            "train_step: --compute {}: comparing CPU with itself (a smoke test of this mode)",
            args.compute
        );
    }
    let n = space.num_blocks();
    let mut archs: Vec<String> = match &args.arch {
        Some(a) => vec![a.clone()],
        None => (0..4).map(|d| d.to_string().repeat(n)).collect(),
    };
    if args.arch.is_none() && n == SPOS_ARCH.len() {
        archs.push(SPOS_ARCH.into());
    }
    let batch = args.batch.min(16);
    let mut ok = true;
    let mut report = Vec::new();
    for a in &archs {
        let arch = space
            .parse_arch(a)
            .map_err(|e| format!("--arch {a}: {e}"))?;
        for (what, r, tol) in compare(&space, &arch, batch, args.seed, &gpu)? {
            let pass = r <= tol && r.is_finite();
            ok &= pass;
            if !args.json {
                println!(
                    "{a}  {what:<60} rel_l2 {r:.2e}  tol {tol:.0e}  {}",
                    if pass { "ok" } else { "FAIL" }
                );
            }
            report.push(
                serde_json::json!({"arch": a, "what": what, "rel_l2": r, "tol": tol, "pass": pass}),
            );
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::json!({"check": "cuda-vs-cpu", "space": space.name, "batch": batch, "pass": ok, "rows": report})
        );
    } else {
        println!(
            "cuda vs cpu on {} (batch {batch}): {}",
            space.name,
            if ok { "PASS" } else { "FAIL" }
        );
    }
    Ok(ok)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("train_step: {msg}");
            return ExitCode::from(2);
        }
    };
    // Before any pool exists: rayon (and candle's matmul) read RAYON_NUM_THREADS; then the same
    // process settings as the `shiftnas` binary.
    // SAFETY: no other thread runs yet.
    unsafe {
        if args.threads > 0 {
            std::env::set_var("RAYON_NUM_THREADS", args.threads.to_string());
        }
        shiftnas_kernels::tuning::configure();
    }
    let result = if args.check {
        check_against_cpu(&args).map(|ok| {
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        })
    } else {
        shiftnas_kernels::tuning::on_pool(|| bench(&args).map_err(|e| e.to_string()))
            .map(|_| ExitCode::SUCCESS)
            .map_err(Into::into)
    };
    result.unwrap_or_else(|e| {
        eprintln!("train_step: {e}");
        ExitCode::FAILURE
    })
}
