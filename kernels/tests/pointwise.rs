//! The 1×1 conv op, and the k×k conv built on it, against candle's `conv2d` (forward and both
//! gradients through autograd).

use candle_core::{Device, Tensor, Var};
use shiftnas_kernels::{conv, pointwise_conv2d};

fn seq(shape: (usize, usize, usize, usize), scale: f32) -> Tensor {
    let n = shape.0 * shape.1 * shape.2 * shape.3;
    let v: Vec<f32> = (0..n)
        .map(|i| scale * ((i * 7919 % 1013) as f32 - 500.0))
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

#[test]
fn pointwise_matches_conv2d_forward_and_gradients() {
    // Small planes take the batch-wide gemm, 272-pixel ones the per-image one; the last two
    // cases have enough pixels for the weight gradient to be summed in parts.
    for &(b, cin, cout, h, w) in &[
        (3, 5, 7, 4, 6),
        (1, 16, 8, 1, 1),
        (2, 1, 3, 5, 5),
        (2, 3, 4, 16, 17),
        (41, 3, 4, 8, 16),
        (21, 2, 3, 16, 17),
    ] {
        let x = Var::from_tensor(&seq((b, cin, h, w), 0.002)).unwrap();
        let wt = Var::from_tensor(&seq((cout, cin, 1, 1), 0.003)).unwrap();
        let lw = seq((b, cout, h, w), 0.001);
        let ours = pointwise_conv2d(x.as_tensor(), wt.as_tensor()).unwrap();
        let reference = x.as_tensor().conv2d(wt.as_tensor(), 0, 1, 1, 1).unwrap();
        let what = format!("b {b} cin {cin} cout {cout} {h}x{w}");
        assert!(max_diff(&ours, &reference) < 1e-5, "{what}: forward");
        let loss = (&ours * &lw).unwrap().sum_all().unwrap();
        let g1 = loss.backward().unwrap();
        // The forward's copy of x is used up by the first backward; a second one makes its own.
        let again = loss.backward().unwrap();
        let g2 = (&reference * &lw)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for (v, n) in [(&x, "input"), (&wt, "weight")] {
            let d = max_diff(g1.get(v).unwrap(), g2.get(v).unwrap());
            assert!(d < 1e-4, "{what}: {n} gradient differs by {d}");
            let d = max_diff(again.get(v).unwrap(), g1.get(v).unwrap());
            assert!(
                d == 0.0,
                "{what}: second backward's {n} gradient differs by {d}"
            );
        }
    }
}

#[test]
fn full_conv_matches_conv2d_forward_and_gradients() {
    // (b, cin, cout, h, w, k, stride): odd sizes, both strides, a window larger than the image,
    // and 256-pixel planes (the 1×1 op's per-image path) with the weight gradient in parts.
    for &(b, cin, cout, h, w, k, stride) in &[
        (2, 1, 4, 7, 9, 3, 1),
        (3, 3, 5, 8, 8, 3, 2),
        (2, 2, 3, 6, 5, 5, 1),
        (1, 3, 2, 9, 7, 5, 2),
        (2, 3, 4, 1, 1, 3, 1),
        (33, 3, 16, 16, 16, 3, 1),
    ] {
        let x = Var::from_tensor(&seq((b, cin, h, w), 0.002)).unwrap();
        let wt = Var::from_tensor(&seq((cout, cin, k, k), 0.003)).unwrap();
        let reference = x
            .as_tensor()
            .conv2d(wt.as_tensor(), k / 2, stride, 1, 1)
            .unwrap();
        let lw = seq(reference.dims4().unwrap(), 0.001);
        let what = format!("b {b} cin {cin} cout {cout} {h}x{w} k {k} stride {stride}");
        let g_ref = (&reference * &lw)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        // With the input a variable (its gradient through the patches' backward), and a plain
        // tensor (the stem's images: no input gradient, the same weight gradient).
        for input in [x.as_tensor().clone(), x.as_tensor().detach()] {
            let ours = conv::conv2d(&input, wt.as_tensor(), stride).unwrap();
            assert!(max_diff(&ours, &reference) < 1e-5, "{what}: forward");
            let g = (&ours * &lw)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let d = max_diff(g.get(&wt).unwrap(), g_ref.get(&wt).unwrap());
            assert!(d < 1e-4, "{what}: weight gradient differs by {d}");
            match g.get(&x) {
                Some(gx) => {
                    let d = max_diff(gx, g_ref.get(&x).unwrap());
                    assert!(d < 1e-4, "{what}: input gradient differs by {d}");
                }
                None => assert!(!input.track_op(), "{what}: no input gradient"),
            }
        }
    }
}
