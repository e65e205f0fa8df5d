//! Depthwise convolution from whole-tensor ops ("shift and add"): the GPU path of
//! [`super::depthwise_conv2d`].
//!
//! candle's grouped `conv2d` runs a depthwise conv as C single-channel convolutions (one im2col,
//! one gemm and a copy each, forward and backward) stitched with `cat`: on a GPU that is thousands
//! of tiny kernel launches per layer. Here the conv is k² broadcast multiply-adds over the whole
//! batch, `out = Σ_ij x_pad[.., i.., j..] · w[:, i, j]`, each tap a view of the padded input. For
//! stride 2 the padded input is first split into its 2×2 phases (`[b, c, H/2, 2, W/2, 2]`), so every
//! tap is still a plain `narrow` view. candle's autograd provides both gradients.
//!
//! On CPU the loop custom op of [`super::dwconv`] is much faster; this path is for devices without a
//! custom kernel (CUDA), and gives the same numbers (tested against the CPU op).

use candle_core::Tensor;

/// Depthwise conv `x` `[b, c, h, w]` ⊛ `weight` `[c, 1, k, k]` (k odd), padding `k / 2`, `stride`
/// ≥ 1 → `[b, c, h', w']` with `h' = (h + 2·(k/2) − k) / stride + 1`, by k² multiply-adds.
///
/// # Errors
/// Shapes that do not match (as [`super::depthwise_conv2d`]), or a candle error.
pub fn shift_add_depthwise_conv2d(
    x: &Tensor,
    weight: &Tensor,
    stride: usize,
) -> candle_core::Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let (wc, one, k, k2) = weight.dims4()?;
    if wc != c || one != 1 || k != k2 || k % 2 == 0 || stride == 0 {
        candle_core::bail!(
            "shift_add_depthwise_conv2d: input {:?} and weight {:?} do not match: the weight must be [{c}, 1, k, k] with odd k, stride >= 1 (got {stride})",
            x.dims(),
            weight.dims()
        );
    }
    let s = stride;
    let p = k / 2;
    let oh = (h + 2 * p - k) / s + 1;
    let ow = (w + 2 * p - k) / s + 1;
    // Rows/columns the taps read (stride·(o−1) + k), rounded up to a multiple of the stride so the
    // padded input splits into s×s phases.
    let hp = (s * (oh - 1) + k).div_ceil(s) * s;
    let wp = (s * (ow - 1) + k).div_ceil(s) * s;
    let xp = x
        .pad_with_zeros(2, p, hp.saturating_sub(h + p))?
        .pad_with_zeros(3, p, wp.saturating_sub(w + p))?
        .narrow(2, 0, hp)?
        .narrow(3, 0, wp)?;
    // [b, c, hp/s, s, wp/s, s]: row r = s·(r / s) + r % s.
    let phases = xp.reshape((b, c, hp / s, s, wp / s, s))?;
    // Weight taps as rows of [k·k, c]; each broadcast as [1, c, 1, 1, 1, 1].
    let taps = weight.reshape((c, k * k))?.t()?.contiguous()?;
    let mut acc: Option<Tensor> = None;
    for i in 0..k {
        for j in 0..k {
            let xv = phases
                .narrow(2, i / s, oh)?
                .narrow(3, i % s, 1)?
                .narrow(4, j / s, ow)?
                .narrow(5, j % s, 1)?;
            let wv = taps.get(i * k + j)?.reshape((1, c, 1, 1, 1, 1))?;
            let term = xv.broadcast_mul(&wv)?;
            acc = Some(match acc {
                None => term,
                Some(a) => (a + term)?,
            });
        }
    }
    // k ≥ 1, so at least one tap ran.
    let acc =
        acc.ok_or_else(|| candle_core::Error::Msg("depthwise conv with an empty kernel".into()))?;
    acc.reshape((b, c, oh, ow))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn rand_t(shape: &[usize], rng: &mut ChaCha8Rng) -> Tensor {
        let n = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn max_rel(a: &Tensor, b: &Tensor) -> f32 {
        let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        a.iter()
            .zip(&b)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()))
            / scale
    }

    /// Forward and both gradients equal the CPU custom op's (itself checked against finite
    /// differences and PyTorch) for every kernel size, both strides, odd and even sizes.
    #[test]
    fn shift_add_matches_cpu_op_forward_and_backward() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for &(k, s, h, w) in &[
            (3, 1, 8, 8),
            (5, 1, 7, 9),
            (7, 1, 6, 5),
            (3, 2, 8, 8),
            (5, 2, 7, 7),
            (7, 2, 9, 6),
            (3, 2, 1, 1),
            (1, 1, 4, 4),
        ] {
            let (b, c) = (3, 5);
            let x = Var::from_tensor(&rand_t(&[b, c, h, w], &mut rng)).unwrap();
            let wt = Var::from_tensor(&rand_t(&[c, 1, k, k], &mut rng)).unwrap();
            let g = rand_t(
                &[
                    b,
                    c,
                    (h + 2 * (k / 2) - k) / s + 1,
                    (w + 2 * (k / 2) - k) / s + 1,
                ],
                &mut rng,
            );
            let ours = shift_add_depthwise_conv2d(x.as_tensor(), wt.as_tensor(), s).unwrap();
            let reference = crate::depthwise_conv2d(x.as_tensor(), wt.as_tensor(), s).unwrap();
            assert_eq!(ours.dims(), reference.dims(), "k{k} s{s} {h}x{w}");
            assert!(
                max_rel(&ours, &reference) < 1e-5,
                "forward k{k} s{s} {h}x{w}"
            );
            let go = (ours * &g).unwrap().sum_all().unwrap().backward().unwrap();
            let gr = (reference * &g)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            for (name, v) in [("input", &x), ("weight", &wt)] {
                let (a, r) = (
                    go.get(v.as_tensor()).unwrap(),
                    gr.get(v.as_tensor()).unwrap(),
                );
                assert!(
                    max_rel(a, r) < 1e-5,
                    "grad {name} k{k} s{s} {h}x{w}: {}",
                    max_rel(a, r)
                );
            }
        }
    }
}
