//! The standalone (retraining) network against independent references: a plain-candle forward
//! with the affine batch-norm formula (f64 autograd for the gradients), finite differences for
//! BN γ/β, the BN-folded [`Subnet`] for eval mode, and a checkpoint round trip.

mod common;

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shiftnas_models::subnet::Subnet;
use shiftnas_models::{Arch, Choice, Space, Standalone};

const EPS: f64 = 1e-5;

/// The tiny space without dropout, so train-mode outputs are deterministic.
fn space() -> Space {
    let mut s = Space::by_name("tiny").unwrap();
    s.dropout = 0.0;
    s
}

/// Every choice, at stride-1 and stride-2 blocks.
fn mixed_arch(space: &Space) -> Arch {
    Arch::new(
        (0..space.num_blocks())
            .map(|i| ((i * 7 + i / 4) % 4) as u8)
            .collect(),
    )
}

fn uniform(shape: &[usize], lo: f32, hi: f32, rng: &mut ChaCha8Rng) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(lo..hi)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// A standalone net whose BN γ/β are random (γ ∈ [0.5, 1.5], β ∈ [−0.3, 0.3]), so the affine
/// parameters matter in every comparison.
fn net(space: &Space, arch: &Arch) -> Standalone {
    let net = Standalone::new(space, arch, &Device::Cpu, 5).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let names: Vec<String> = net.names().map(str::to_string).collect();
    for n in &names {
        let dims = net.tensor(n).unwrap().dims().to_vec();
        if n.contains(".bn") && n.ends_with(".weight") {
            net.set_tensor(n, &uniform(&dims, 0.5, 1.5, &mut rng))
                .unwrap();
        } else if n.ends_with(".bias") {
            net.set_tensor(n, &uniform(&dims, -0.3, 0.3, &mut rng))
                .unwrap();
        }
    }
    net
}

fn images(space: &Space, b: usize, seed: u64) -> Tensor {
    let s = space.input_size;
    uniform(
        &[b, space.input_channels, s, s],
        -2.0,
        2.0,
        &mut ChaCha8Rng::seed_from_u64(seed),
    )
}

/// Train-mode forward with plain candle ops in `dtype`: grouped `conv2d`, `index_select` for the
/// channel split, `(x − mean) / √(var + ε) · γ + β` with biased batch statistics.
fn reference(space: &Space, p: &BTreeMap<String, Var>, x: &Tensor, arch: &Arch) -> Tensor {
    let w = |n: &str| p.get(n).unwrap_or_else(|| panic!("no {n}")).as_tensor();
    let conv_bn = |x: &Tensor, prefix: &str, j: &str, s: usize, dw: bool, relu: bool| {
        let wt = w(&format!("{prefix}.conv{j}.weight"));
        let k = wt.dim(2).unwrap();
        let groups = if dw { x.dim(1).unwrap() } else { 1 };
        let y = x.conv2d(wt, k / 2, s, 1, groups).unwrap();
        let c = y.dim(1).unwrap();
        let mean = y.mean_keepdim((0, 2, 3)).unwrap();
        let yc = y.broadcast_sub(&mean).unwrap();
        let var = yc.sqr().unwrap().mean_keepdim((0, 2, 3)).unwrap();
        let bn = format!("{prefix}.bn{j}");
        let g = w(&format!("{bn}.weight")).reshape((1, c, 1, 1)).unwrap();
        let b = w(&format!("{bn}.bias")).reshape((1, c, 1, 1)).unwrap();
        let z = yc
            .broadcast_div(&(var + EPS).unwrap().sqrt().unwrap())
            .unwrap()
            .broadcast_mul(&g)
            .unwrap()
            .broadcast_add(&b)
            .unwrap();
        if relu { z.relu().unwrap() } else { z }
    };
    let mut h = conv_bn(x, "stem", "", space.stem.stride, false, true);
    for (i, shape) in space.blocks().iter().enumerate() {
        let g = arch.genes()[i] as usize;
        let p = format!("blocks.{i}.choice{g}");
        let s = shape.stride;
        let (pass, mut m) = if s == 1 {
            let c = h.dim(1).unwrap() as u32;
            let idx = |start| {
                let v: Vec<u32> = (start..c).step_by(2).collect();
                Tensor::new(v.as_slice(), &Device::Cpu).unwrap()
            };
            (
                h.index_select(&idx(0), 1).unwrap(),
                h.index_select(&idx(1), 1).unwrap(),
            )
        } else {
            let pp = format!("{p}.proj");
            let y = conv_bn(&h, &pp, "0", s, true, false);
            (conv_bn(&y, &pp, "1", 1, false, true), h.clone())
        };
        let mp = format!("{p}.main");
        if space.choices[g] == Choice::Xception {
            for t in 0..3 {
                let st = if t == 0 { s } else { 1 };
                m = conv_bn(&m, &mp, &(2 * t).to_string(), st, true, false);
                m = conv_bn(&m, &mp, &(2 * t + 1).to_string(), 1, false, true);
            }
        } else {
            m = conv_bn(&m, &mp, "0", 1, false, true);
            m = conv_bn(&m, &mp, "1", s, true, false);
            m = conv_bn(&m, &mp, "2", 1, false, true);
        }
        h = Tensor::cat(&[&pass, &m], 1).unwrap();
    }
    let h = conv_bn(&h, "last", "", 1, false, true);
    h.mean((2, 3))
        .unwrap()
        .matmul(&w("classifier.weight").t().unwrap())
        .unwrap()
}

/// The reference's parameters as fresh `Var`s in `dtype` (names as in the standalone net; the
/// stem and last conv are `stem.conv.weight` / `stem.bn.*`, hence the empty conv index).
fn reference_params(net: &Standalone, dtype: DType) -> BTreeMap<String, Var> {
    net.tensors()
        .unwrap()
        .into_iter()
        .map(|(n, t)| (n, Var::from_tensor(&t.to_dtype(dtype).unwrap()).unwrap()))
        .collect()
}

fn max_abs(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

fn diff(a: &Tensor, b: &Tensor) -> f64 {
    let f = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
    max_abs(&(f(a) - f(b)).unwrap())
}

/// Fixed random weights of the logits, so that `sum(logits · r)` is a scalar loss.
fn loss_weights(b: usize, k: usize) -> Tensor {
    uniform(&[b, k], -1.0, 1.0, &mut ChaCha8Rng::seed_from_u64(77))
}

#[test]
fn train_forward_and_gradients_match_plain_candle_reference() {
    let space = space();
    let arch = mixed_arch(&space);
    let net = net(&space, &arch);
    let x = images(&space, 4, 1);
    let r = loss_weights(4, space.classes);
    let ours = net.forward_t(&x, true).unwrap();
    let store = (&ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
    // The same computation in f64 (exact) and with plain f32 ops (how far f32 itself drifts).
    let mut runs = Vec::new();
    for dtype in [DType::F64, DType::F32] {
        let p = reference_params(&net, dtype);
        let y = reference(&space, &p, &x.to_dtype(dtype).unwrap(), &arch);
        let g = (&y * r.to_dtype(dtype).unwrap())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        runs.push((p, y, g));
    }
    let [(p64, y64, g64), (p32, y32, g32)] = <[_; 2]>::try_from(runs).ok().unwrap();
    let (d, floor) = (diff(&ours, &y64), diff(&y32, &y64));
    assert!(
        d <= 1e-5f64.max(5.0 * floor),
        "logits differ from the f64 reference by {d}; plain f32 drifts {floor}"
    );
    let trainable = net.trainable();
    assert!(trainable.iter().any(|(n, _)| n == "last.bn.bias"));
    assert!(!trainable.iter().any(|(n, _)| n.ends_with("running_var")));
    for (name, var) in &trainable {
        let mine = store
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name} got no gradient"));
        let exact = g64.get(p64[name].as_tensor()).unwrap();
        let plain = g32.get(p32[name].as_tensor()).unwrap();
        let scale = max_abs(exact).max(1e-6);
        let (d, floor) = (diff(mine, exact) / scale, diff(plain, exact) / scale);
        assert!(
            d <= 1e-4f64.max(5.0 * floor),
            "gradient of {name}: relative error {d}, plain f32 {floor}"
        );
    }
}

/// A small space (4 blocks, 12×12 input) where the loss is smooth enough for finite differences.
fn small_space() -> Space {
    let mut s = space();
    s.input_size = 12;
    s.stages = vec![
        shiftnas_models::Stage {
            repeats: 2,
            channels: 24,
            stride: 2,
        },
        shiftnas_models::Stage {
            repeats: 2,
            channels: 48,
            stride: 2,
        },
    ];
    s.last_channels = 32;
    s
}

#[test]
fn bn_affine_gradients_match_finite_differences() {
    let space = small_space();
    let arch = Arch::new(vec![3, 1, 0, 2]);
    let net = net(&space, &arch);
    let x = images(&space, 8, 2);
    let r = loss_weights(8, space.classes);
    let loss = |net: &Standalone| -> f64 {
        let y = net.forward_t(&x, true).unwrap();
        f64::from(
            (&y.to_dtype(DType::F64).unwrap() * r.to_dtype(DType::F64).unwrap())
                .unwrap()
                .sum_all()
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
        )
    };
    let y = net.forward_t(&x, true).unwrap();
    let store = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let params: BTreeMap<String, Var> = net.trainable().into_iter().collect();
    let h = 3e-3f32;
    for name in [
        "stem.bn.weight",
        "stem.bn.bias",
        "blocks.0.choice3.main.bn4.weight",
        "blocks.1.choice1.main.bn2.bias",
        "blocks.2.choice0.proj.bn1.bias",
        "last.bn.weight",
        "last.bn.bias",
    ] {
        let var = params
            .get(name)
            .unwrap_or_else(|| panic!("{name} not trainable"));
        let g: Vec<f32> = store.get(var.as_tensor()).unwrap().to_vec1().unwrap();
        // The entry with the largest gradient, where the finite difference is most telling.
        let (i, &gi) = g
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
            .unwrap();
        let orig: Vec<f32> = var.as_tensor().to_vec1().unwrap();
        let at = |delta: f32| {
            let mut v = orig.clone();
            v[i] += delta;
            net.set_tensor(name, &Tensor::new(v.as_slice(), &Device::Cpu).unwrap())
                .unwrap();
            loss(&net)
        };
        let fd = (at(h) - at(-h)) / (2.0 * f64::from(h));
        at(0.0);
        let err = (fd - f64::from(gi)).abs();
        eprintln!("{name}[{i}]: autograd {gi}, finite difference {fd}");
        assert!(
            err <= 2e-2 * f64::from(gi.abs()) + 2e-4,
            "{name}[{i}]: autograd {gi}, finite difference {fd}"
        );
    }
}

#[test]
fn folded_subnet_matches_standalone_eval_forward() {
    let space = space();
    let arch = mixed_arch(&space);
    let net = net(&space, &arch);
    // Move the running statistics away from (0, 1) with a few training forwards.
    for seed in 0..3 {
        net.forward_t(&images(&space, 8, 10 + seed), true).unwrap();
    }
    let subnet = Subnet::from_tensors(&space, &arch, &net.tensors().unwrap()).unwrap();
    let x = images(&space, 3, 20);
    let exact = common::subnet_f64(&subnet, &x);
    let drift = diff(&subnet.forward(&x).unwrap(), &exact);
    let ours = net.forward_t(&x, false).unwrap();
    let off = diff(&ours, &exact);
    assert!(
        off <= (4.0 * drift).max(1e-5),
        "standalone eval is {off} from the exact folded net, the f32 subnet {drift}"
    );
    assert!(max_abs(&exact) > 1e-3, "degenerate logits");
    assert_eq!(net.subnet().unwrap().arch(), &arch);
}

#[test]
fn checkpoint_round_trip_and_arch_mismatch() {
    let space = space();
    let arch = mixed_arch(&space);
    let net = net(&space, &arch);
    net.forward_t(&images(&space, 4, 3), true).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    net.save(&path, 17).unwrap();
    let (back, step) = Standalone::load_for(&path, &space, &arch, &Device::Cpu).unwrap();
    assert_eq!(step, 17);
    let (a, b) = (net.tensors().unwrap(), back.tensors().unwrap());
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (n, t) in &a {
        assert_eq!(diff(t, &b[n]), 0.0, "{n}");
    }
    let other = Arch::uniform(space.num_blocks(), 1);
    let e = Standalone::load_for(&path, &space, &other, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("model.safetensors") && e.contains(&other.to_string()),
        "{e}"
    );
    // A supernet checkpoint is refused with a message naming the expected writer.
    let sup = dir.path().join("supernet.safetensors");
    shiftnas_models::Supernet::new(&space, &Device::Cpu, 0)
        .unwrap()
        .save(&sup, 0)
        .unwrap();
    let e = Standalone::load(&sup, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("shiftnas retrain"), "{e}");
}

#[test]
fn fresh_init_has_unit_gamma_zero_beta_and_rejects_bad_arch() {
    let space = space();
    let arch = Arch::uniform(space.num_blocks(), 2);
    let net = Standalone::new(&space, &arch, &Device::Cpu, 0).unwrap();
    let g: Vec<f32> = net.tensor("last.bn.weight").unwrap().to_vec1().unwrap();
    let b: Vec<f32> = net.tensor("stem.bn.bias").unwrap().to_vec1().unwrap();
    assert!(g.iter().all(|&v| v == 1.0) && b.iter().all(|&v| v == 0.0));
    assert!(net.tensor("blocks.0.choice2.main.conv1.weight").is_some());
    assert!(net.tensor("blocks.0.choice0.main.conv1.weight").is_none());
    let mut names = Subnet::parameter_names(&space, &arch);
    names.sort();
    assert_eq!(names, net.names().collect::<Vec<_>>());
    let short = Arch::uniform(3, 0);
    let e = Standalone::new(&space, &short, &Device::Cpu, 0).unwrap_err();
    assert!(e.to_string().contains("digits"), "{e}");
}

#[test]
fn exact_bn_calibration_averages_the_batches() {
    let space = space();
    let arch = mixed_arch(&space);
    let net = net(&space, &arch);
    let (x1, x2) = (images(&space, 4, 30), images(&space, 4, 31));
    net.calibrate_bn(
        [Ok(x1.clone()), Ok(x2.clone())],
        shiftnas_models::BnCalibration::Exact,
    )
    .unwrap();
    // Stem BN: the mean of the two batches' per-channel means of the stem conv output.
    let w = net.tensor("stem.conv.weight").unwrap();
    let pad = space.stem.kernel / 2;
    let mean = |x: &Tensor| {
        x.to_dtype(DType::F64)
            .unwrap()
            .conv2d(
                &w.to_dtype(DType::F64).unwrap(),
                pad,
                space.stem.stride,
                1,
                1,
            )
            .unwrap()
            .mean((0, 2, 3))
            .unwrap()
    };
    let want = ((mean(&x1) + mean(&x2)).unwrap() / 2.0).unwrap();
    let got = net.tensor("stem.bn.running_mean").unwrap();
    assert!(diff(&got, &want) < 1e-5, "{}", diff(&got, &want));
    let e = net
        .calibrate_bn(std::iter::empty(), shiftnas_models::BnCalibration::Exact)
        .unwrap_err();
    assert!(e.to_string().contains(&arch.to_string()), "{e}");
}
