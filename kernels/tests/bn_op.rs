//! The fused batch-norm (+ReLU) ops against plain candle ops (forward and autograd backward) and
//! against central finite differences of a scalar loss computed in f64.

use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shiftnas_kernels::bn_op::{bn_eval, bn_train};

const EPS: f64 = 1e-5;

fn randn(shape: (usize, usize, usize, usize), seed: u64, scale: f32, shift: f32) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = shape.0 * shape.1 * shape.2 * shape.3;
    let v: Vec<f32> = (0..n)
        .map(|_| shift + scale * (rng.random::<f32>() * 2.0 - 1.0))
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// Plain-ops train-mode BN(+ReLU) in the input's dtype: (y, mean, biased var).
fn plain_train(x: &Tensor, relu: bool) -> (Tensor, Tensor, Tensor) {
    let mean = x.mean_keepdim((0, 2, 3)).unwrap();
    let xc = x.broadcast_sub(&mean).unwrap();
    let var = xc.sqr().unwrap().mean_keepdim((0, 2, 3)).unwrap();
    let y = xc
        .broadcast_div(&(&var + EPS).unwrap().sqrt().unwrap())
        .unwrap();
    let y = if relu { y.relu().unwrap() } else { y };
    (y, mean.flatten_all().unwrap(), var.flatten_all().unwrap())
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
    for &(relu, shape, shift) in &[
        (false, (4, 3, 5, 5), 0.0f32),
        (true, (4, 3, 5, 5), 0.0),
        (true, (2, 5, 1, 1), 3.0),
        (false, (8, 16, 4, 4), 100.0),
    ] {
        let x0 = randn(shape, 1, 2.0, shift);
        let wl = loss_weights(shape);
        // Reference in f64 with plain ops.
        let x64 = Var::from_tensor(&x0.to_dtype(DType::F64).unwrap()).unwrap();
        let (yr, mr, vr) = plain_train(x64.as_tensor(), relu);
        let lr = (&yr * wl.to_dtype(DType::F64).unwrap())
            .unwrap()
            .sum_all()
            .unwrap();
        let gr = lr.backward().unwrap().get(&x64).unwrap().clone();
        // Fused in f32.
        let x = Var::from_tensor(&x0).unwrap();
        let (y, m, v) = bn_train(x.as_tensor(), EPS, relu).unwrap();
        let l = (&y * &wl).unwrap().sum_all().unwrap();
        let g = l.backward().unwrap().get(&x).unwrap().clone();
        let what = format!("relu {relu} shape {shape:?} shift {shift}");
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
    let shape = (3, 2, 3, 3);
    for relu in [false, true] {
        let x0 = randn(shape, 7, 1.5, 0.5);
        let wl = loss_weights(shape);
        let x = Var::from_tensor(&x0).unwrap();
        let (y, _, _) = bn_train(x.as_tensor(), EPS, relu).unwrap();
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
            let (y, _, _) = plain_train(&t, relu);
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
                "relu {relu}, element {i}: finite difference {fd}, fused {}",
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
    for relu in [false, true] {
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
        let yr = if relu { yr.relu().unwrap() } else { yr };
        let gr = (&yr * &wl)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap()
            .get(&x)
            .unwrap()
            .clone();
        let y = bn_eval(x.as_tensor(), &mean, &var, EPS, relu).unwrap();
        let g = (&y * &wl)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap()
            .get(&x)
            .unwrap()
            .clone();
        assert!(max_diff(&y, &yr) < 1e-6, "relu {relu}: y");
        assert!(max_diff(&g, &gr) < 1e-6, "relu {relu}: grad");
    }
}
