//! The channel split / concat glue ops against `index_select` + `cat` (forward values exactly,
//! and the gradients autograd gives through both).

use candle_core::{DType, Device, IndexOp, Tensor, Var};
use shiftnas_kernels::glue::{concat_channels, odd_channels, shuffle_block};

fn seq(shape: (usize, usize, usize, usize), scale: f32) -> Tensor {
    let n = shape.0 * shape.1 * shape.2 * shape.3;
    let v: Vec<f32> = (0..n)
        .map(|i| scale * ((i * 7919 % 1013) as f32 - 500.0))
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn idx(c: usize, first: u32) -> Tensor {
    let v: Vec<u32> = (0..c as u32 / 2).map(|k| 2 * k + first).collect();
    Tensor::new(v, &Device::Cpu).unwrap()
}

fn assert_equal(a: &Tensor, b: &Tensor, what: &str) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes");
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(a, b, "{what}");
}

#[test]
fn stride1_split_and_concat_match_index_select_and_cat() {
    let (n, c, h, w) = (3, 6, 2, 5);
    let x = Var::from_tensor(&seq((n, c, h, w), 0.01)).unwrap();
    // Main branch stand-in: y = odd · 3, so the odd channels also get gradient through it.
    let lw = seq((n, c, h, w), 0.003);
    // x also feeds the loss directly: that gradient adds to the one the block hands back.
    let lx = seq((n, c, h, w), 0.0007);
    let ours_odd = odd_channels(x.as_tensor()).unwrap();
    let ours = shuffle_block(x.as_tensor(), |odd| odd * 3.0).unwrap();
    let g_ours = ((&ours * &lw).unwrap().sum_all().unwrap()
        + (x.as_tensor() * &lx).unwrap().sum_all().unwrap())
    .unwrap()
    .backward()
    .unwrap()
    .get(&x)
    .unwrap()
    .clone();

    let x2 = Var::from_tensor(x.as_tensor()).unwrap();
    let even = x2.as_tensor().index_select(&idx(c, 0), 1).unwrap();
    let odd = x2.as_tensor().index_select(&idx(c, 1), 1).unwrap();
    let reference = Tensor::cat(&[&even, &(&odd * 3.0).unwrap()], 1).unwrap();
    let g_ref = ((&reference * &lw).unwrap().sum_all().unwrap()
        + (x2.as_tensor() * &lx).unwrap().sum_all().unwrap())
    .unwrap()
    .backward()
    .unwrap()
    .get(&x2)
    .unwrap()
    .clone();
    assert_equal(&ours_odd, &odd, "odd channels");
    assert_equal(&ours, &reference, "concat");
    assert_equal(&g_ours, &g_ref, "gradient");
    // Spot check: an even channel's gradient is the loss weight of its output position plus
    // its direct one.
    assert_equal(
        &g_ours.i((.., 2, .., ..)).unwrap(),
        &(lw.i((.., 1, .., ..)).unwrap() + lx.i((.., 2, .., ..)).unwrap()).unwrap(),
        "even channel 2 gradient",
    );
}

#[test]
fn stride2_concat_matches_cat() {
    let a = Var::from_tensor(&seq((2, 3, 4, 4), 0.01)).unwrap();
    let b = Var::from_tensor(&seq((2, 5, 4, 4), 0.02)).unwrap();
    let lw = seq((2, 8, 4, 4), 0.001);
    let ours = concat_channels(a.as_tensor(), b.as_tensor()).unwrap();
    let reference = Tensor::cat(&[a.as_tensor(), b.as_tensor()], 1).unwrap();
    assert_equal(&ours, &reference, "concat");
    let g = (&ours * &lw)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert_equal(g.get(&a).unwrap(), &lw.narrow(1, 0, 3).unwrap(), "grad a");
    assert_equal(g.get(&b).unwrap(), &lw.narrow(1, 3, 5).unwrap(), "grad b");
}

#[test]
fn odd_channel_count_is_an_error() {
    let x = Tensor::zeros((1, 3, 2, 2), DType::F32, &Device::Cpu).unwrap();
    let e = odd_channels(&x).unwrap_err().to_string();
    assert!(e.contains("even channel count"), "{e}");
}
