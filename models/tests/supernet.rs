//! The supernet against an independent reference written with plain candle ops (grouped
//! `conv2d`, `index_select` for the channel split, the batch-norm formula), shapes for every
//! preset, path-masked parameter lists and exact BN calibration.

use std::collections::BTreeMap;

use candle_core::{D, DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shiftnas_models::{Arch, BnCalibration, Choice, Space, Supernet};

const EPS: f64 = 1e-5;

/// Batch statistics a reference train-mode forward saw: name prefix → (mean, unbiased var).
type Stats = BTreeMap<String, (Tensor, Tensor)>;

struct Reference<'a> {
    t: &'a BTreeMap<String, Tensor>,
    train: bool,
    stats: Stats,
    /// F64 for the accurate reference, F32 to measure how far plain f32 candle ops drift.
    dtype: DType,
}

/// Logits and batch statistics of the reference in `dtype`.
fn reference(
    space: &Space,
    t: &BTreeMap<String, Tensor>,
    x: &Tensor,
    arch: &Arch,
    train: bool,
    dtype: DType,
) -> (Tensor, Stats) {
    let mut r = Reference {
        t,
        train,
        stats: Stats::new(),
        dtype,
    };
    let y = r.forward(space, x, arch);
    (y, r.stats)
}

/// `ours` must match the f64 reference to 1e-5, or — where train-mode BN over few values per
/// channel (16 at the last stage here) amplifies f32 rounding through 20 blocks — be within 5× of
/// what the same computation with plain candle ops in f32 drifts (measured: 2.7× and 3.6×, from a
/// different summation order; a wiring error would be off by orders of magnitude).
fn assert_close(ours: &Tensor, exact: &Tensor, plain_f32: &Tensor, what: &str) {
    let d = max_diff(ours, exact);
    let floor = max_diff(plain_f32, exact);
    assert!(
        d <= 1e-5f32.max(5.0 * floor),
        "{what}: differs from the f64 reference by {d}; plain f32 candle drifts {floor}"
    );
}

impl Reference<'_> {
    fn w(&self, name: &str) -> Tensor {
        self.t
            .get(name)
            .unwrap_or_else(|| panic!("arch_tensors lacks {name}"))
            .to_dtype(self.dtype)
            .unwrap()
    }

    fn conv(&self, x: &Tensor, name: &str, stride: usize, depthwise: bool) -> Tensor {
        let w = self.w(name);
        let k = w.dim(2).unwrap();
        let groups = if depthwise { x.dim(1).unwrap() } else { 1 };
        x.conv2d(&w, k / 2, stride, 1, groups).unwrap()
    }

    fn bn(&mut self, x: &Tensor, prefix: &str) -> Tensor {
        let (b, c, h, w) = x.dims4().unwrap();
        let (mean, var) = if self.train {
            let n = b * h * w;
            let flat = x
                .transpose(0, 1)
                .unwrap()
                .contiguous()
                .unwrap()
                .reshape((c, n))
                .unwrap();
            let mean = flat.mean_keepdim(D::Minus1).unwrap();
            let var = flat
                .broadcast_sub(&mean)
                .unwrap()
                .sqr()
                .unwrap()
                .mean_keepdim(D::Minus1)
                .unwrap();
            let unbiased = (&var * (n as f64 / (n as f64 - 1.0))).unwrap();
            let f32 = |t: &Tensor| t.flatten_all().unwrap().to_dtype(DType::F32).unwrap();
            self.stats
                .insert(prefix.to_string(), (f32(&mean), f32(&unbiased)));
            (mean, var)
        } else {
            (
                self.w(&format!("{prefix}.running_mean")),
                self.w(&format!("{prefix}.running_var")),
            )
        };
        let mean = mean.reshape((1, c, 1, 1)).unwrap();
        let std = (var.reshape((1, c, 1, 1)).unwrap() + EPS)
            .unwrap()
            .sqrt()
            .unwrap();
        x.broadcast_sub(&mean).unwrap().broadcast_div(&std).unwrap()
    }

    fn conv_bn(&mut self, x: &Tensor, p: &str, j: usize, s: usize, dw: bool, relu: bool) -> Tensor {
        let y = self.conv(x, &format!("{p}.conv{j}.weight"), s, dw);
        let y = self.bn(&y, &format!("{p}.bn{j}"));
        if relu { y.relu().unwrap() } else { y }
    }

    /// Logits (f32) of `arch`, computed in f64.
    fn forward(&mut self, space: &Space, x: &Tensor, arch: &Arch) -> Tensor {
        let x = &x.to_dtype(self.dtype).unwrap();
        let mut h = self.conv(x, "stem.conv.weight", space.stem.stride, false);
        h = self.bn(&h, "stem.bn").relu().unwrap();
        for (i, shape) in space.blocks().iter().enumerate() {
            let g = arch.genes()[i] as usize;
            let choice = space.choices[g];
            let p = format!("blocks.{i}.choice{g}");
            let s = shape.stride;
            let (pass, mut m) = if s == 1 {
                let c = h.dim(1).unwrap();
                let even: Vec<u32> = (0..c as u32).step_by(2).collect();
                let odd: Vec<u32> = (1..c as u32).step_by(2).collect();
                let ev = Tensor::new(even.as_slice(), h.device()).unwrap();
                let od = Tensor::new(odd.as_slice(), h.device()).unwrap();
                (
                    h.index_select(&ev, 1).unwrap(),
                    h.index_select(&od, 1).unwrap(),
                )
            } else {
                let pp = format!("{p}.proj");
                let y = self.conv_bn(&h, &pp, 0, s, true, false);
                (self.conv_bn(&y, &pp, 1, 1, false, true), h.clone())
            };
            let mp = format!("{p}.main");
            if choice == Choice::Xception {
                for t in 0..3 {
                    m = self.conv_bn(&m, &mp, 2 * t, if t == 0 { s } else { 1 }, true, false);
                    m = self.conv_bn(&m, &mp, 2 * t + 1, 1, false, true);
                }
            } else {
                m = self.conv_bn(&m, &mp, 0, 1, false, true);
                m = self.conv_bn(&m, &mp, 1, s, true, false);
                m = self.conv_bn(&m, &mp, 2, 1, false, true);
            }
            h = Tensor::cat(&[&pass, &m], 1).unwrap();
        }
        let h = self.conv(&h, "last.conv.weight", 1, false);
        let h = self.bn(&h, "last.bn").relu().unwrap();
        let pooled = h.mean((2, 3)).unwrap();
        pooled
            .matmul(&self.w("classifier.weight").t().unwrap())
            .unwrap()
    }
}

fn images(space: &Space, b: usize, seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = b * space.input_channels * space.input_size * space.input_size;
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-2.0..2.0)).collect();
    Tensor::from_vec(
        v,
        (b, space.input_channels, space.input_size, space.input_size),
        &Device::Cpu,
    )
    .unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let f = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
    let d = (f(a) - f(b)).unwrap().abs().unwrap().flatten_all().unwrap();
    d.max(0).unwrap().to_scalar::<f64>().unwrap() as f32
}

fn mixed_arch(space: &Space) -> Arch {
    // Every choice at every stage, including each stage's stride-2 first block.
    Arch::new(
        (0..space.num_blocks())
            .map(|i| ((i * 7 + i / 4) % 4) as u8)
            .collect(),
    )
}

#[test]
fn forward_shapes_for_every_preset_and_choice() {
    for space in Space::presets() {
        let net = Supernet::new(&space, &Device::Cpu, 1).unwrap();
        let b = if space.name == "spos-imagenet" { 1 } else { 2 };
        let x = images(&space, b, 2);
        for c in 0..space.choices.len() as u8 {
            let arch = Arch::uniform(space.num_blocks(), c);
            let y = net.forward_t(&x, &arch, false).unwrap();
            assert_eq!(y.dims(), &[b, space.classes], "{} choice {c}", space.name);
        }
    }
}

#[test]
fn eval_forward_matches_plain_candle_reference() {
    let space = Space::tiny();
    let net = Supernet::new(&space, &Device::Cpu, 7).unwrap();
    // Non-trivial running statistics first, so eval mode exercises them.
    let arch = mixed_arch(&space);
    net.forward_t(&images(&space, 4, 10), &arch, true).unwrap();
    let x = images(&space, 3, 11);
    let ours = net.forward_t(&x, &arch, false).unwrap();
    let t = net.arch_tensors(&arch).unwrap();
    let (exact, _) = reference(&space, &t, &x, &arch, false, DType::F64);
    let (plain, _) = reference(&space, &t, &x, &arch, false, DType::F32);
    assert_close(&ours, &exact, &plain, "eval logits");
    assert!(max_diff(&ours, &exact) < 1e-5);
}

#[test]
fn train_forward_matches_reference_and_updates_running_stats() {
    let space = Space {
        dropout: 0.0,
        ..Space::tiny()
    };
    let net = Supernet::new(&space, &Device::Cpu, 3).unwrap();
    let arch = mixed_arch(&space);
    let before = net.arch_tensors(&arch).unwrap();
    let x = images(&space, 4, 12);
    let ours = net.forward_t(&x, &arch, true).unwrap();
    let (exact, stats) = reference(&space, &before, &x, &arch, true, DType::F64);
    let (plain, stats32) = reference(&space, &before, &x, &arch, true, DType::F32);
    assert_close(&ours, &exact, &plain, "train logits");
    // Every BN on the path moved by momentum 0.1 towards the unbiased batch statistics.
    let bn_count = before
        .keys()
        .filter(|k| k.ends_with(".running_mean"))
        .count();
    assert_eq!(stats.len(), bn_count);
    let moved = |prefix: &str, which: &str, batch: &Tensor| {
        let old = &before[&format!("{prefix}.{which}")];
        ((old * 0.9).unwrap() + (batch * 0.1).unwrap()).unwrap()
    };
    for (prefix, (mean, var)) in &stats {
        let (mean32, var32) = &stats32[prefix];
        for (which, b, b32) in [("running_mean", mean, mean32), ("running_var", var, var32)] {
            let got = net.tensor(&format!("{prefix}.{which}")).unwrap();
            let (want, want32) = (moved(prefix, which, b), moved(prefix, which, b32));
            assert_close(&got, &want, &want32, &format!("{prefix}.{which}"));
        }
    }
    // Other choices' statistics are untouched.
    let other = net.tensor("blocks.0.choice1.main.bn0.running_var").unwrap();
    assert_eq!(arch.genes()[0], 0);
    assert_eq!(
        other.sum_all().unwrap().to_scalar::<f32>().unwrap(),
        other.dim(0).unwrap() as f32
    );
}

#[test]
fn gradients_reach_only_the_path() {
    let space = Space::tiny();
    let net = Supernet::new(&space, &Device::Cpu, 5).unwrap();
    let arch = mixed_arch(&space);
    net.set_dropout_seed(9);
    let loss = net
        .forward_t(&images(&space, 2, 13), &arch, true)
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    let path: Vec<String> = net
        .path_trainable(&arch)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    for (name, var) in net.trainable() {
        let has = grads.get(&var).is_some();
        assert_eq!(has, path.contains(&name), "{name}");
    }
}

#[test]
fn dropout_is_seeded() {
    let space = Space::tiny();
    let net = Supernet::new(&space, &Device::Cpu, 5).unwrap();
    let arch = mixed_arch(&space);
    let x = images(&space, 2, 14);
    let run = |seed| {
        net.set_dropout_seed(seed);
        net.forward_t(&x, &arch, true).unwrap()
    };
    let (a, b, c) = (run(1), run(1), run(2));
    assert_eq!(max_diff(&a, &b), 0.0);
    assert!(max_diff(&a, &c) > 0.0);
}

#[test]
fn init_is_reproducible_and_follows_spos() {
    let space = Space::tiny();
    let a = Supernet::new(&space, &Device::Cpu, 42).unwrap();
    let b = Supernet::new(&space, &Device::Cpu, 42).unwrap();
    let c = Supernet::new(&space, &Device::Cpu, 43).unwrap();
    let stem = |n: &Supernet| n.tensor("stem.conv.weight").unwrap();
    assert_eq!(max_diff(&stem(&a), &stem(&b)), 0.0);
    assert!(max_diff(&stem(&a), &stem(&c)) > 0.0);
    let std = |t: Tensor| {
        let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        (v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
    };
    // pw 128 → 128 in stage 3 (block 9 is stride 1 with branch_in 64 → mid 64).
    let pw = std(a.tensor("blocks.9.choice0.main.conv0.weight").unwrap());
    assert!((pw - 1.0 / 64.0).abs() < 0.1 / 64.0, "pw std {pw}");
    let cls = std(a.tensor("classifier.weight").unwrap());
    assert!((cls - 0.01).abs() < 0.001, "classifier std {cls}");
    let dw = std(a.tensor("blocks.9.choice0.main.conv1.weight").unwrap());
    assert!((dw - 1.0).abs() < 0.1, "dw std {dw}");
}

#[test]
fn path_trainable_lists_exactly_the_arch_weights() {
    let space = Space::tiny();
    let net = Supernet::new(&space, &Device::Cpu, 1).unwrap();
    let arch = mixed_arch(&space);
    let mut want = vec![
        "stem.conv.weight".to_string(),
        "last.conv.weight".to_string(),
        "classifier.weight".to_string(),
    ];
    for b in space.blocks() {
        let g = arch.genes()[b.index];
        let convs = if space.choices[g as usize] == Choice::Xception {
            6
        } else {
            3
        };
        for j in 0..convs {
            want.push(format!("blocks.{}.choice{g}.main.conv{j}.weight", b.index));
        }
        if b.stride == 2 {
            for j in 0..2 {
                want.push(format!("blocks.{}.choice{g}.proj.conv{j}.weight", b.index));
            }
        }
    }
    want.sort();
    let got: Vec<String> = net
        .path_trainable(&arch)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(got, want);
    // trainable() = every choice's weights: 20 blocks × (3+3+3+6) + 4 stride-2 blocks × 4 × 2 + 3.
    assert_eq!(net.trainable().len(), 20 * 15 + 4 * 4 * 2 + 3);
    let t = net.arch_tensors(&arch).unwrap();
    assert_eq!(t.len(), 1 + 3 * (want.len() - 1));
}

#[test]
fn exact_calibration_averages_batch_statistics() {
    let space = Space::tiny();
    let net = Supernet::new(&space, &Device::Cpu, 8).unwrap();
    let arch = mixed_arch(&space);
    let batches: Vec<Tensor> = (0..3).map(|i| images(&space, 4, 100 + i)).collect();
    // Scramble the running statistics first: calibration must reset them.
    net.forward_t(&images(&space, 4, 99), &arch, true).unwrap();
    net.calibrate_bn(&arch, batches.iter().cloned().map(Ok), BnCalibration::Exact)
        .unwrap();
    let weights = net.arch_tensors(&arch).unwrap();
    // Per-batch statistics of every BN from the reference in training mode.
    let per_batch = |dtype| -> Vec<Stats> {
        batches
            .iter()
            .map(|x| reference(&space, &weights, x, &arch, true, dtype).1)
            .collect()
    };
    let (exact, plain) = (per_batch(DType::F64), per_batch(DType::F32));
    let avg = |runs: &[Stats], prefix: &str, var: bool| {
        let sum = runs
            .iter()
            .map(|s| {
                if var {
                    s[prefix].1.clone()
                } else {
                    s[prefix].0.clone()
                }
            })
            .reduce(|a, b| (a + b).unwrap())
            .unwrap();
        (sum / runs.len() as f64).unwrap()
    };
    assert_eq!(
        exact[0].len(),
        weights
            .keys()
            .filter(|k| k.ends_with("running_var"))
            .count()
    );
    for prefix in exact[0].keys() {
        for (which, var) in [("running_mean", false), ("running_var", true)] {
            let got = net.tensor(&format!("{prefix}.{which}")).unwrap();
            assert_close(
                &got,
                &avg(&exact, prefix, var),
                &avg(&plain, prefix, var),
                &format!("{prefix}.{which}"),
            );
        }
    }
    // The stem sees raw images, so its mean is the mean over all 12 images, computed directly.
    let all = Tensor::cat(&batches, 0).unwrap();
    let stem = all
        .conv2d(&weights["stem.conv.weight"], 1, 1, 1, 1)
        .unwrap();
    let direct = stem
        .mean_keepdim((0, 2, 3))
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    assert!(max_diff(&net.tensor("stem.bn.running_mean").unwrap(), &direct) < 1e-5);
    // Zero batches is an error, not silently reset statistics.
    let e = net
        .calibrate_bn(&arch, std::iter::empty(), BnCalibration::Exact)
        .unwrap_err();
    assert!(e.to_string().contains("no batches"), "{e}");
}

#[test]
fn bad_input_and_arch_are_errors() {
    let space = Space::tiny();
    let net = Supernet::new(&space, &Device::Cpu, 1).unwrap();
    let x = Tensor::zeros((2, 3, 28, 28), DType::F32, &Device::Cpu).unwrap();
    let e = net
        .forward_t(&x, &mixed_arch(&space), false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("[batch, 1, 28, 28]"), "{e}");
    let short: Arch = "0123".parse().unwrap();
    let e = net
        .forward_t(&images(&space, 1, 1), &short, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("20 choice blocks"), "{e}");
    let mut bad = Space::tiny();
    bad.stem.channels = 0;
    assert!(Supernet::new(&bad, &Device::Cpu, 1).is_err());
}

/// Backward through the fused ops (BN, glue, 1×1 conv, depthwise) equals autograd through the
/// plain-ops f64 reference, for every weight on a path with every choice and both strides.
#[test]
fn train_gradients_match_reference() {
    let space = Space {
        dropout: 0.0,
        ..Space::tiny()
    };
    let net = Supernet::new(&space, &Device::Cpu, 21).unwrap();
    let arch = mixed_arch(&space);
    let x = images(&space, 4, 15);
    let before = net.arch_tensors(&arch).unwrap();
    // Fixed loss weights so each logit gets a different output gradient.
    let lw = images(&space, 4, 16)
        .flatten_all()
        .unwrap()
        .narrow(0, 0, 4 * space.classes)
        .unwrap()
        .reshape((4, space.classes))
        .unwrap();
    let ours = net.forward_t(&x, &arch, true).unwrap();
    let grads = (&ours * &lw)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let vars: BTreeMap<String, candle_core::Var> = before
        .iter()
        .map(|(n, t)| {
            let v = candle_core::Var::from_tensor(&t.to_dtype(DType::F64).unwrap()).unwrap();
            (n.clone(), v)
        })
        .collect();
    let t64: BTreeMap<String, Tensor> = vars
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
        .collect();
    let (exact, _) = reference(&space, &t64, &x, &arch, true, DType::F64);
    let rgrads = (&exact * lw.to_dtype(DType::F64).unwrap())
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let path = net.path_trainable(&arch);
    assert!(path.len() > 10);
    for (name, var) in path {
        let g = grads
            .get(&var)
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let r = rgrads.get(&vars[&name]).unwrap();
        let scale = r
            .abs()
            .unwrap()
            .max_keepdim(0)
            .unwrap()
            .flatten_all()
            .unwrap();
        let scale = scale.max(0).unwrap().to_scalar::<f64>().unwrap() as f32;
        let d = max_diff(g, r);
        assert!(
            d <= 1e-3 * scale.max(1e-6),
            "{name}: gradient differs from the f64 reference by {d} (max |grad| {scale})"
        );
    }
}

#[test]
fn inherited_kernels_compute_what_their_source_computes() {
    let space = Space::tiny();
    let net = Supernet::new(&space, &Device::Cpu, 4).unwrap();
    let x = images(&space, 4, 5);
    let xcp = "blocks.5.choice3.main.conv2.weight";
    let before = net.tensor(xcp).unwrap().copy().unwrap();
    let train = |arch: &str| {
        net.set_dropout_seed(9);
        net.forward_t(&x, &space.parse_arch(arch).unwrap(), true)
            .unwrap()
    };
    let (k3, k7) = (train("00000000000000000000"), train("22222222222222222222"));
    assert!(max_diff(&k3, &k7) > 1e-3, "distinct choices before");
    let written = net.inherit_kernels(0).unwrap();
    // 20 blocks × 2 target choices × 3 main convs, + 4 stride-2 blocks × 2 × 2 projection convs.
    assert_eq!(written.len(), 20 * 2 * 3 + 4 * 2 * 2);
    let k3 = train("00000000000000000000");
    for arch in [
        "11111111111111111111",
        "22222222222222222222",
        "01201201201201201201",
    ] {
        let d = max_diff(&k3, &train(arch));
        assert!(d <= 1e-6, "arch {arch}: {d} from all-k3 after inheritance");
    }
    assert!(max_diff(&k3, &train("30000000000000000000")) > 1e-3);
    assert_eq!(
        net.tensor(xcp)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap(),
        before.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        "Xception weights untouched"
    );
    let w7 = net.tensor("blocks.0.choice2.main.conv1.weight").unwrap();
    let w3 = net.tensor("blocks.0.choice0.main.conv1.weight").unwrap();
    let centre = w7.narrow(2, 2, 3).unwrap().narrow(3, 2, 3).unwrap();
    assert_eq!(max_diff(&centre, &w3), 0.0);
    // The border is zero: padding the centre back to 7×7 gives w7 exactly.
    let padded = centre
        .pad_with_zeros(2, 2, 2)
        .unwrap()
        .pad_with_zeros(3, 2, 2)
        .unwrap();
    assert_eq!(max_diff(&padded, &w7), 0.0);
    let err = net.inherit_kernels(3).unwrap_err().to_string();
    assert!(err.contains("ShuffleNet choice"), "{err}");
}
