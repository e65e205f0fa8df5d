//! The fused batch-norm (+ReLU / ReLU6) ops against plain candle ops (forward and autograd
//! backward) and against central finite differences of a scalar loss computed in f64.

use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shiftnas_kernels::bn_op::{bn_eval, bn_train};
use shiftnas_kernels::infer::Activation;

const EPS: f64 = 1e-5;

fn randn(shape: (usize, usize, usize, usize), seed: u64, scale: f32, shift: f32) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = shape.0 * shape.1 * shape.2 * shape.3;
    let v: Vec<f32> = (0..n)
        .map(|_| shift + scale * (rng.random::<f32>() * 2.0 - 1.0))
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// `act(y)` with candle's own ops.
fn plain_act(y: Tensor, act: Activation) -> Tensor {
    match act {
        Activation::None => y,
        Activation::Relu => y.relu().unwrap(),
        Activation::Relu6 => y.clamp(0f32, 6f32).unwrap(),
    }
}

/// `x` with every `every`-th value replaced by `value`: in a channel of n values one such outlier
/// normalises to nearly (n − 1)/√n, above ReLU6's cap from n = 42.
fn with_outliers(x: &Tensor, every: usize, value: f32) -> Tensor {
    let mut v = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    v.iter_mut().step_by(every).for_each(|e| *e = value);
    Tensor::from_vec(v, x.shape(), &Device::Cpu).unwrap()
}

/// Plain-ops train-mode BN(+activation) in the input's dtype: (y, mean, biased var).
fn plain_train(x: &Tensor, act: Activation) -> (Tensor, Tensor, Tensor) {
    let mean = x.mean_keepdim((0, 2, 3)).unwrap();
    let xc = x.broadcast_sub(&mean).unwrap();
    let var = xc.sqr().unwrap().mean_keepdim((0, 2, 3)).unwrap();
    let y = xc
        .broadcast_div(&(&var + EPS).unwrap().sqrt().unwrap())
        .unwrap();
    (
        plain_act(y, act),
        mean.flatten_all().unwrap(),
        var.flatten_all().unwrap(),
    )
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a.to_dtype(DType::F32).unwrap() - b.to_dtype(DType::F32).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Fixed weights for a scalar loss `sum(w · y)` so the output gradient is not uniform.
fn loss_weights(shape: (usize, usize, usize, usize)) -> Tensor {
    randn(shape, 99, 1.0, 0.0)
}

#[test]
fn train_forward_and_backward_match_plain_ops() {
    use Activation::{None, Relu, Relu6};
    for &(act, shape, shift, outliers) in &[
        (None, (4, 3, 5, 5), 0.0f32, false),
        (Relu, (4, 3, 5, 5), 0.0, false),
        (Relu, (2, 5, 1, 1), 3.0, false),
        (None, (8, 16, 4, 4), 100.0, false),
        (Relu6, (4, 3, 5, 5), 0.0, false),
        (Relu6, (2, 3, 6, 6), 0.5, true),
    ] {
        let x0 = randn(shape, 1, 2.0, shift);
        // One value in 71 at 40: some normalise above 6, where ReLU6 clips.
        let x0 = if outliers {
            with_outliers(&x0, 71, 40.0)
        } else {
            x0
        };
        let wl = loss_weights(shape);
        // Reference in f64 with plain ops.
        let x64 = Var::from_tensor(&x0.to_dtype(DType::F64).unwrap()).unwrap();
        let (yr, mr, vr) = plain_train(x64.as_tensor(), act);
        let lr = (&yr * wl.to_dtype(DType::F64).unwrap())
            .unwrap()
            .sum_all()
            .unwrap();
        let gr = lr.backward().unwrap().get(&x64).unwrap().clone();
        // Fused in f32.
        let x = Var::from_tensor(&x0).unwrap();
        let (y, m, v) = bn_train(x.as_tensor(), EPS, act).unwrap();
        let l = (&y * &wl).unwrap().sum_all().unwrap();
        let g = l.backward().unwrap().get(&x).unwrap().clone();
        let what = format!("{act:?} shape {shape:?} shift {shift}");
        if outliers {
            let capped = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!(capped.contains(&6.0), "{what}: nothing reaches the cap");
        }
        assert!(max_diff(&y, &yr) < 2e-5, "{what}: y {}", max_diff(&y, &yr));
        assert!(max_diff(&m, &mr) < 1e-5 * (1.0 + shift), "{what}: mean");
        assert!(
            max_diff(&v, &vr) < 1e-4,
            "{what}: var {}",
            max_diff(&v, &vr)
        );
        assert!(
            max_diff(&g, &gr) < 1e-4,
            "{what}: grad {}",
            max_diff(&g, &gr)
        );
    }
}

#[test]
fn train_backward_matches_finite_differences() {
    // 48 values per channel; with ReLU6 one outlier per channel normalises to ≈ 6.8 (clipped).
    let shape = (3, 2, 4, 4);
    for act in [Activation::None, Activation::Relu, Activation::Relu6] {
        let x0 = randn(shape, 7, 1.5, 0.5);
        let x0 = if act == Activation::Relu6 {
            with_outliers(&x0, 47, 200.0)
        } else {
            x0
        };
        let wl = loss_weights(shape);
        let x = Var::from_tensor(&x0).unwrap();
        let (y, _, _) = bn_train(x.as_tensor(), EPS, act).unwrap();
        let g = (&y * &wl)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap()
            .get(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        // Finite differences of the f64 plain-ops loss (the fused forward equals it, tested above).
        let base: Vec<f64> = x0
            .to_dtype(DType::F64)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let wl64 = wl.to_dtype(DType::F64).unwrap();
        let loss = |v: &[f64]| -> f64 {
            let t = Tensor::from_slice(v, shape, &Device::Cpu).unwrap();
            let (y, _, _) = plain_train(&t, act);
            (&y * &wl64)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        let h = 1e-6;
        for i in 0..base.len() {
            let mut p = base.clone();
            p[i] += h;
            let mut m = base.clone();
            m[i] -= h;
            let fd = (loss(&p) - loss(&m)) / (2.0 * h);
            assert!(
                (fd - g[i] as f64).abs() < 1e-3 * (1.0 + fd.abs()),
                "{act:?}, element {i}: finite difference {fd}, fused {}",
                g[i]
            );
        }
    }
}

#[test]
fn eval_matches_plain_ops_forward_and_backward() {
    let shape = (2, 4, 3, 3);
    let x0 = randn(shape, 3, 2.0, 0.3);
    let mean = Tensor::new(&[0.1f32, -0.2, 0.3, 0.0], &Device::Cpu).unwrap();
    let var = Tensor::new(&[1.0f32, 0.5, 2.0, 0.01], &Device::Cpu).unwrap();
    let wl = loss_weights(shape);
    // The channel of variance 0.01 scales by 10: values above 6, where ReLU6 clips.
    for act in [Activation::None, Activation::Relu, Activation::Relu6] {
        let x = Var::from_tensor(&x0).unwrap();
        let m = mean.reshape((1, 4, 1, 1)).unwrap();
        let inv = (&var + EPS)
            .unwrap()
            .sqrt()
            .unwrap()
            .recip()
            .unwrap()
            .reshape((1, 4, 1, 1))
            .unwrap();
        let yr = x
            .as_tensor()
            .broadcast_sub(&m)
            .unwrap()
            .broadcast_mul(&inv)
            .unwrap();
        let yr = plain_act(yr, act);
        let gr = (&yr * &wl)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap()
            .get(&x)
            .unwrap()
            .clone();
        let y = bn_eval(x.as_tensor(), &mean, &var, EPS, act).unwrap();
        let g = (&y * &wl)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap()
            .get(&x)
            .unwrap()
            .clone();
        assert!(max_diff(&y, &yr) < 1e-6, "{act:?}: y");
        assert!(max_diff(&g, &gr) < 1e-6, "{act:?}: grad");
    }
}
