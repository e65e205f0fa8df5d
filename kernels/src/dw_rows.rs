//! The CPU loops of the depthwise training op ([`crate::dwconv`]) on channels-last rows.
//!
//! The op's tensors are NCHW, whose 2×2 to 16×16 planes of the late stages vectorise poorly one
//! plane at a time. Each image is instead transposed to `[pixels, channels]` rows (8×8 AVX
//! blocks), where 8 or 16 neighbouring channels share a register whatever the plane size, worked
//! on there, and transposed back. Every sum adds its products one by one in a fixed order
//! without fused multiply-adds, so every CPU (AVX-512, AVX2, baseline) gives the same bits.

use rayon::prelude::*;

use super::cpu::{IMAGES_PER_PART, par_filled, simd_fn};
use super::infer::depthwise::{DwShape, depthwise_nhwc_unfused, taps_major};
use super::layout::transpose;

/// The depthwise conv of `s.batch` NCHW images of shape `s` with OIHW `weight` `[c, 1, k, k]`,
/// through the inference path's channels-last kernel (products added in (ky, kx) order).
pub(crate) fn conv_nchw(x: &[f32], s: DwShape, weight: &[f32]) -> Vec<f32> {
    let (b, s) = (s.batch, DwShape { batch: 1, ..s });
    let (oh, ow) = s.out_hw();
    let (taps, zero) = (taps_major(weight, s.c, s.k), vec![0.0; s.c]);
    per_image(x, b, s.c, s.h * s.w, oh * ow, |r, o| {
        depthwise_nhwc_unfused(r, s, &taps, &zero, o)
    })
}

/// The input gradient of the conv of `s` (the inputs' shape) for its NCHW output gradients `go`:
/// `gx[iy][ix] = Σ_{ky, kx} go[oy][ox] · w[ky][kx]` over the taps with `oy·stride + ky − k/2 =
/// iy` (likewise x), added in (ky, kx) order. At stride 1 the forward
/// conv with the kernel flipped gives the same sums with fewer checks; use [`conv_nchw`] there.
pub(crate) fn grad_input_nchw(go: &[f32], s: DwShape, weight: &[f32]) -> Vec<f32> {
    let (b, s) = (s.batch, DwShape { batch: 1, ..s });
    let (oh, ow) = s.out_hw();
    let taps = taps_major(weight, s.c, s.k);
    per_image(go, b, s.c, oh * ow, s.h * s.w, |r, o| {
        grad_input_rows(r, s, &taps, o)
    })
}

/// `b` images of `c` NCHW planes of `n_in` pixels → `b` images of `c` planes of `n_out` pixels,
/// an image per rayon job: its planes transposed to `[n_in, c]` rows, `f(rows, out_rows)` writing
/// all `[n_out, c]` of `out_rows`, and those transposed back.
fn per_image(
    src: &[f32],
    b: usize,
    c: usize,
    n_in: usize,
    n_out: usize,
    f: impl Fn(&[f32], &mut [f32]) + Sync,
) -> Vec<f32> {
    // SAFETY: every job writes its whole image (the last transpose covers it).
    unsafe {
        par_filled(b * c * n_out, c * n_out, Rows::default, |r, n, o| {
            r.fill(&src[n * c * n_in..(n + 1) * c * n_in], c, n_in, c * n_out);
            f(&r.a, &mut r.b);
            transpose(&r.b, n_out, c, o);
        })
    }
}

/// The kernel gradient `[c, 1, k, k]` of the conv of `s` over its NCHW inputs `x` and output
/// gradients `go`. Each image's sum over its pixels is added to its part of
/// [`IMAGES_PER_PART`] images (parts run in parallel), and the parts' sums are added in order:
/// the same bits for any thread count.
pub(crate) fn grad_weight_nchw(x: &[f32], go: &[f32], s: DwShape) -> Vec<f32> {
    let (b, s) = (s.batch, DwShape { batch: 1, ..s });
    let (oh, ow) = s.out_hw();
    let (c, kk, hw, ohw) = (s.c, s.k * s.k, s.h * s.w, oh * ow);
    let parts: Vec<Vec<f32>> = (0..b.div_ceil(IMAGES_PER_PART))
        .into_par_iter()
        .map_init(Rows::default, |r, part| {
            let mut acc = vec![0f32; kk * c];
            for n in part * IMAGES_PER_PART..((part + 1) * IMAGES_PER_PART).min(b) {
                r.fill(&x[n * c * hw..(n + 1) * c * hw], c, hw, c * ohw);
                transpose(&go[n * c * ohw..(n + 1) * c * ohw], c, ohw, &mut r.b);
                add_grad_weight_rows(&r.a, &r.b, s, &mut acc);
            }
            acc
        })
        .collect();
    let mut gw = vec![0f32; c * kk];
    for part in &parts {
        for (t, row) in part.chunks_exact(c).enumerate() {
            for (ch, &v) in row.iter().enumerate() {
                gw[ch * kk + t] += v;
            }
        }
    }
    gw
}

/// Per-thread buffers: an image's input rows `a` and its result (or output-gradient) rows `b`.
#[derive(Default)]
struct Rows {
    a: Vec<f32>,
    b: Vec<f32>,
}

impl Rows {
    /// `a` = the rows of `c` NCHW planes of `n` pixels; `b` sized for `out` values.
    fn fill(&mut self, planes: &[f32], c: usize, n: usize, out: usize) {
        self.a.resize(c * n, 0.0);
        transpose(planes, c, n, &mut self.a);
        self.b.resize(out, 0.0);
    }
}

/// The kernel rows `ky` (ascending) whose tap lands on input row `i` from an output row, `o·s +
/// ky − p = i` for some `o < on`: `(ky, o)` pairs in `out`, their count returned (at most k).
#[inline(always)]
fn taps_onto(
    i: usize,
    p: usize,
    s: usize,
    k: usize,
    on: usize,
    out: &mut [(usize, usize)],
) -> usize {
    let mut n = 0;
    for ky in 0..k.min(i + p + 1) {
        let t = i + p - ky;
        if t.is_multiple_of(s) && t / s < on {
            out[n] = (ky, t / s);
            n += 1;
        }
    }
    n
}

/// The output rows `o` whose tap `ky` lands inside the `n` input rows: `0 ≤ o·s + ky − p < n`.
#[inline(always)]
fn outputs_inside(ky: usize, p: usize, s: usize, n: usize, on: usize) -> std::ops::Range<usize> {
    let first = p.saturating_sub(ky).div_ceil(s);
    let end = if n + p > ky {
        ((n + p - ky - 1) / s + 1).min(on)
    } else {
        0
    };
    first..end.max(first)
}

simd_fn! {
    /// [`grad_input_nchw`] of one image on rows: `go` `[oh·ow, c]` → `gx` `[h·w, c]`.
    fn grad_input_rows(go: &[f32], s: DwShape, taps: &[f32], gx: &mut [f32]) {
        let (oh, ow) = s.out_hw();
        let (c, k, p) = (s.c, s.k, s.k / 2);
        let blocks = c / 8;
        let (mut ybuf, mut xbuf) = (vec![(0, 0); k], vec![(0, 0); k]);
        for iy in 0..s.h {
            let ny = taps_onto(iy, p, s.stride, k, oh, &mut ybuf);
            let ys = &ybuf[..ny];
            for ix in 0..s.w {
                let nx = taps_onto(ix, p, s.stride, k, ow, &mut xbuf);
                let xs = &xbuf[..nx];
                let o = &mut gx[(iy * s.w + ix) * c..(iy * s.w + ix + 1) * c];
                for b in 0..blocks {
                    let mut acc = [0f32; 8];
                    for &(ky, oy) in ys {
                        for &(kx, ox) in xs {
                            let g = &go[(oy * ow + ox) * c + b * 8..][..8];
                            let w = &taps[(ky * k + kx) * c + b * 8..][..8];
                            for i in 0..8 {
                                acc[i] += g[i] * w[i];
                            }
                        }
                    }
                    o[b * 8..b * 8 + 8].copy_from_slice(&acc);
                }
                for ch in blocks * 8..c {
                    let mut acc = 0f32;
                    for &(ky, oy) in ys {
                        for &(kx, ox) in xs {
                            acc += go[(oy * ow + ox) * c + ch] * taps[(ky * k + kx) * c + ch];
                        }
                    }
                    o[ch] = acc;
                }
            }
        }
    }
}

simd_fn! {
    /// Adds one image's kernel-gradient terms to `acc` `[k·k, c]`: per tap and channel, the sum
    /// over output pixels (row by row) of `go · x` at the input pixel the tap reads.
    fn add_grad_weight_rows(x: &[f32], go: &[f32], s: DwShape, acc: &mut [f32]) {
        let (oh, ow) = s.out_hw();
        let (c, k, p, st) = (s.c, s.k, s.k / 2, s.stride);
        let blocks = c / 8;
        for ky in 0..k {
            let oys = outputs_inside(ky, p, st, s.h, oh);
            for kx in 0..k {
                let oxs = outputs_inside(kx, p, st, s.w, ow);
                let a = &mut acc[(ky * k + kx) * c..(ky * k + kx + 1) * c];
                for b in 0..blocks {
                    let mut sum = [0f32; 8];
                    for oy in oys.clone() {
                        let iy = oy * st + ky - p;
                        for ox in oxs.clone() {
                            let ix = ox * st + kx - p;
                            let g = &go[(oy * ow + ox) * c + b * 8..][..8];
                            let v = &x[(iy * s.w + ix) * c + b * 8..][..8];
                            for i in 0..8 {
                                sum[i] += g[i] * v[i];
                            }
                        }
                    }
                    for i in 0..8 {
                        a[b * 8 + i] += sum[i];
                    }
                }
                for ch in blocks * 8..c {
                    let mut sum = 0f32;
                    for oy in oys.clone() {
                        let iy = oy * st + ky - p;
                        for ox in oxs.clone() {
                            let ix = ox * st + kx - p;
                            sum += go[(oy * ow + ox) * c + ch] * x[(iy * s.w + ix) * c + ch];
                        }
                    }
                    a[ch] += sum;
                }
            }
        }
    }
}
