//! The channels-last inference kernels against plain loops over NCHW data, in f64.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shiftnas_kernels::infer::dense::DenseShape;
use shiftnas_kernels::infer::depthwise::{DwShape, taps_major};
use shiftnas_kernels::infer::pointwise::{Rows, transpose};
use shiftnas_kernels::infer::{
    Activation, copy_channels, dense_conv_nchw_in, depthwise_nhwc, pointwise_nhwc, pool_linear,
};

fn rand_vec(n: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// NCHW `[b, c, h, w]` → NHWC.
fn to_nhwc(x: &[f32], b: usize, c: usize, h: usize, w: usize) -> Vec<f32> {
    let mut y = vec![0f32; x.len()];
    for n in 0..b {
        for ch in 0..c {
            for p in 0..h * w {
                y[(n * h * w + p) * c + ch] = x[(n * c + ch) * h * w + p];
            }
        }
    }
    y
}

/// Reference conv (groups 1 or depthwise), NCHW in, NHWC out, f64 sums, zero padding k/2.
#[allow(clippy::too_many_arguments)]
fn conv_ref(
    x: &[f32],
    (b, cin, h, w): (usize, usize, usize, usize),
    weight: &[f32],
    bias: &[f32],
    k: usize,
    stride: usize,
    depthwise: bool,
    act: Activation,
) -> Vec<f32> {
    let cout = bias.len();
    let p = (k / 2) as isize;
    let oh = (h + 2 * (k / 2) - k) / stride + 1;
    let ow = (w + 2 * (k / 2) - k) / stride + 1;
    let mut out = vec![0f32; b * oh * ow * cout];
    for n in 0..b {
        for o in 0..cout {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = f64::from(bias[o]);
                    let chans: Vec<usize> = if depthwise {
                        vec![o]
                    } else {
                        (0..cin).collect()
                    };
                    for (ci_w, &ci) in chans.iter().enumerate() {
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy = (oy * stride + ky) as isize - p;
                                let ix = (ox * stride + kx) as isize - p;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let xv = x[((n * cin + ci) * h + iy as usize) * w + ix as usize];
                                let wi = if depthwise { 1 } else { cin };
                                let wv = weight[((o * wi + ci_w) * k + ky) * k + kx];
                                s += f64::from(xv) * f64::from(wv);
                            }
                        }
                    }
                    let v = match act {
                        Activation::None => s,
                        Activation::Relu => s.max(0.0),
                        Activation::Relu6 => s.clamp(0.0, 6.0),
                    };
                    out[((n * oh + oy) * ow + ox) * cout + o] = v as f32;
                }
            }
        }
    }
    out
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
            "{what}: value {i}: got {g}, want {w}"
        );
    }
}

/// Runs `check` on every copy of the kernels this CPU can run: the AVX-512 one where it has
/// AVX-512F, and the AVX2/baseline one.
fn on_each_path(check: impl Fn(&str)) {
    #[cfg(target_arch = "x86_64")]
    {
        use shiftnas_kernels::infer::avx512;
        if avx512::enabled() {
            check("AVX-512");
            avx512::set_enabled(false);
            check("AVX2");
            avx512::set_enabled(true);
            return;
        }
        eprintln!("this CPU has no AVX-512F: only the AVX2/baseline kernels are checked");
    }
    check("portable");
}

#[test]
fn depthwise_matches_reference_for_every_kernel_stride_and_channel_tail() {
    on_each_path(depthwise_cases);
}

fn depthwise_cases(path: &str) {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    // 13, 21 and 37 channels leave tails after the 8- and 16-lane blocks; 2×2 the tiny planes;
    // 12 and 19 pixels wide rows with interior tiles of four and a remainder.
    for (c, size) in [(13, 7), (16, 2), (21, 5), (8, 1), (37, 12), (32, 19)] {
        for k in [3, 5, 7] {
            for stride in [1, 2] {
                for act in [Activation::None, Activation::Relu, Activation::Relu6] {
                    let b = 2;
                    let x = rand_vec(b * c * size * size, &mut rng);
                    let w = rand_vec(c * k * k, &mut rng);
                    let bias = rand_vec(c, &mut rng);
                    let want = conv_ref(&x, (b, c, size, size), &w, &bias, k, stride, true, act);
                    let s = DwShape {
                        batch: b,
                        h: size,
                        w: size,
                        c,
                        k,
                        stride,
                    };
                    let mut out = vec![f32::NAN; want.len()];
                    let xn = to_nhwc(&x, b, c, size, size);
                    depthwise_nhwc(&xn, s, &taps_major(&w, c, k), &bias, act, &mut out);
                    assert_close(
                        &out,
                        &want,
                        &format!("{path}: dw c{c} {size}px k{k} s{stride} {act:?}"),
                    );
                }
            }
        }
    }
}

#[test]
fn dense_stem_matches_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for (cin, size, k, stride, cout) in [(3, 9, 3, 1, 16), (1, 8, 3, 2, 5), (3, 6, 5, 2, 7)] {
        let b = 3;
        let x = rand_vec(b * cin * size * size, &mut rng);
        let w = rand_vec(cout * cin * k * k, &mut rng);
        let bias = rand_vec(cout, &mut rng);
        let want = conv_ref(
            &x,
            (b, cin, size, size),
            &w,
            &bias,
            k,
            stride,
            false,
            Activation::Relu,
        );
        let mut out = vec![f32::NAN; want.len()];
        let s = DenseShape {
            cin,
            h: size,
            w: size,
            k,
            stride,
        };
        let wt = transpose(&w, cout, cin * k * k);
        dense_conv_nchw_in(
            &x,
            b,
            s,
            &wt,
            &bias,
            Activation::Relu,
            &mut out,
            &mut Vec::new(),
        );
        assert_close(
            &out,
            &want,
            &format!("dense cin{cin} {size}px k{k} s{stride}"),
        );
    }
}

#[test]
fn pointwise_reads_strided_channels_and_writes_into_a_wider_buffer() {
    on_each_path(|path| {
        // Output channel counts below, at and past the 16- and 32-wide register blocks; row counts
        // with remainders of 5, 0, 1 and 3 after blocks of 8.
        for (rows, cin, cout, width, off) in [
            (37, 11, 9, 20, 6),
            (16, 40, 32, 32, 0),
            (25, 23, 53, 60, 3),
            (3, 5, 16, 17, 1),
        ] {
            pointwise_case(path, rows, cin, cout, width, off);
        }
    });
}

fn pointwise_case(path: &str, rows: usize, cin: usize, cout: usize, width: usize, off: usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let c = 2 * cin;
    let x = rand_vec(rows * c, &mut rng);
    let w = rand_vec(cout * c / 2, &mut rng);
    let bias = rand_vec(cout, &mut rng);
    // The odd channels of x, read in place with column stride 2.
    let view = Rows {
        data: &x[1..],
        rs: c,
        cs: 2,
    };
    let mut out = vec![-7f32; rows * width];
    let wt = transpose(&w, cout, c / 2);
    pointwise_nhwc(
        view,
        rows,
        c / 2,
        &wt,
        &bias,
        Activation::Relu,
        &mut out[off..],
        width,
    );
    for r in 0..rows {
        for o in 0..width {
            let got = out[r * width + o];
            if o < off || o >= off + cout {
                assert_eq!(
                    got, -7.0,
                    "{path}: row {r} column {o} outside the output was written"
                );
                continue;
            }
            let oo = o - off;
            let s: f64 = f64::from(bias[oo])
                + (0..c / 2)
                    .map(|i| f64::from(x[r * c + 2 * i + 1]) * f64::from(w[oo * c / 2 + i]))
                    .sum::<f64>();
            let want = s.max(0.0) as f32;
            assert!(
                (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                "{path}: {rows}×{cin}→{cout}: row {r} col {o}: {got} vs {want}"
            );
        }
    }
}

#[test]
fn copy_channels_splits_even_and_odd() {
    let x: Vec<f32> = (0..12).map(|v| v as f32).collect(); // 2 rows × 6 channels
    let mut even = vec![0f32; 6];
    copy_channels(&x, 6, 0, 2, &mut even, 3, 0, 2, 3);
    assert_eq!(even, [0., 2., 4., 6., 8., 10.]);
    let mut wide = vec![0f32; 8];
    copy_channels(&x, 6, 1, 2, &mut wide, 4, 1, 2, 3);
    assert_eq!(wide, [0., 1., 3., 5., 0., 7., 9., 11.]);
}

#[test]
fn pool_linear_matches_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let (b, px, c, classes) = (3, 4, 5, 2);
    let x = rand_vec(b * px * c, &mut rng);
    let cls = rand_vec(classes * c, &mut rng);
    let mut out = vec![0f32; b * classes];
    pool_linear(&x, b, px, c, &cls, &mut out);
    for n in 0..b {
        for k in 0..classes {
            let want: f64 = (0..c)
                .map(|ch| {
                    let m = (0..px)
                        .map(|p| f64::from(x[(n * px + p) * c + ch]))
                        .sum::<f64>()
                        / px as f64;
                    m * f64::from(cls[k * c + ch])
                })
                .sum();
            assert!(
                (f64::from(out[n * classes + k]) - want).abs() < 1e-5,
                "image {n} class {k}"
            );
        }
    }
}

#[test]
fn batch_norm_statistics_and_normalisation_match_f64_reference() {
    use shiftnas_kernels::infer::{Moments, channel_sq_devs, channel_sums, normalize_act};
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    // 3 channels at column 2 of rows 7 wide: a branch's slice of a concat buffer.
    let (rows, rs, off, c) = (29, 7, 2, 3);
    let x: Vec<f32> = (0..rows * rs)
        .map(|i| rng.random_range(-1.0f32..1.0) * 3.0 + (i % rs) as f32)
        .collect();
    let col = |ch: usize| {
        (0..rows)
            .map(|r| f64::from(x[r * rs + off + ch]))
            .collect::<Vec<_>>()
    };
    let sums = channel_sums(&x[off..], rows, rs, c);
    let mean: Vec<f32> = sums.iter().map(|s| (s / rows as f64) as f32).collect();
    let sq = channel_sq_devs(&x[off..], rows, rs, &mean);
    for ch in 0..c {
        let m = col(ch).iter().sum::<f64>() / rows as f64;
        assert!(
            (sums[ch] / rows as f64 - m).abs() < 1e-12,
            "mean of channel {ch}"
        );
        let v: f64 = col(ch).iter().map(|v| (v - m).powi(2)).sum();
        assert!(
            (sq[ch] - v).abs() < 1e-6 * v,
            "squares of channel {ch}: {} vs {v}",
            sq[ch]
        );
    }
    // Moments of two row ranges merge into those of all rows.
    let whole = Moments::of(&x[off..], rows, rs, c);
    let split =
        Moments::of(&x[off..], 11, rs, c).merge(Moments::of(&x[11 * rs + off..], rows - 11, rs, c));
    assert_eq!(whole.n, split.n);
    for ch in 0..c {
        assert!(
            (whole.mean[ch] - sums[ch] / rows as f64).abs() < 1e-12,
            "whole mean {ch}"
        );
        assert!(
            (whole.mean[ch] - split.mean[ch]).abs() < 1e-12,
            "merged mean {ch}"
        );
        assert!(
            (whole.m2[ch] - sq[ch]).abs() < 1e-6 * sq[ch],
            "whole m2 {ch}"
        );
        assert!(
            (whole.m2[ch] - split.m2[ch]).abs() < 1e-9 * sq[ch],
            "merged m2 {ch}"
        );
    }
    let invstd: Vec<f32> = sq
        .iter()
        .map(|s| (1.0 / (s / rows as f64 + 1e-5).sqrt()) as f32)
        .collect();
    let (gamma, beta) = ([1.0f32, 2.0, 0.5], [0.0f32, -1.0, 7.0]);
    let mut y = x.clone();
    normalize_act(
        &mut y[off..],
        rows,
        rs,
        &mean,
        &invstd,
        &gamma,
        &beta,
        Activation::Relu6,
    );
    for r in 0..rows {
        for o in 0..rs {
            let (got, v) = (y[r * rs + o], x[r * rs + o]);
            if o < off || o >= off + c {
                assert_eq!(
                    got, v,
                    "row {r} column {o} outside the channels was written"
                );
                continue;
            }
            let ch = o - off;
            let want = ((f64::from(v) - f64::from(mean[ch]))
                * f64::from(invstd[ch])
                * f64::from(gamma[ch])
                + f64::from(beta[ch]))
            .clamp(0.0, 6.0);
            assert!(
                (f64::from(got) - want).abs() < 1e-5,
                "row {r} channel {ch}: {got} vs {want}"
            );
        }
    }
}
