//! Full k×k convolution (the stem) as image patches through the 1×1 conv op.
//!
//! candle's CPU `conv2d` runs on one core here, and its kernel gradient is a second convolution
//! whose "kernel" is the whole output gradient: together 3 % of a `tiny` training step with the
//! other core idle. [`conv2d`] lays the k×k windows out as channels ([`patches`], in parallel) and
//! hands them to [`pointwise_conv2d`], whose gemms and parallel weight-gradient sums then serve
//! the stem too; the image needs no gradient, so none is computed for it.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::cpu::{contiguous_f32, par_filled};
use super::pointwise_conv2d;

/// Names the op in errors.
const OP: &str = "conv patches";

/// k×k convolution without bias, zero padding k/2: `x` `[b, cin, h, w]`, `weight`
/// `[cout, cin, k, k]` → `[b, cout, h', w']`. Same numbers as candle's `conv2d(weight, k / 2,
/// stride, 1, 1)`, which non-CPU or non-f32 tensors use.
pub fn conv2d(x: &Tensor, weight: &Tensor, stride: usize) -> candle_core::Result<Tensor> {
    let (cout, cin, k, kw) = weight.dims4()?;
    let cpu_f32 = x.device().is_cpu() && x.dtype() == DType::F32 && weight.dtype() == DType::F32;
    if !cpu_f32 || k != kw || stride == 0 || x.dim(1)? != cin {
        return x.conv2d(weight, k / 2, stride, 1, 1);
    }
    let p = patches(x, k, stride)?;
    pointwise_conv2d(&p, &weight.reshape((cout, cin * k * k, 1, 1))?)
}

/// Output size of a k×k window with padding k/2 and `stride` over `n` pixels.
fn out_size(n: usize, k: usize, stride: usize) -> usize {
    (n + 2 * (k / 2)).saturating_sub(k) / stride + 1
}

/// `[b, c, h, w]` → `[b, c·k·k, h', w']`: channel `(ci, ky, kx)` of output pixel `(oy, ox)` is
/// `x[ci, oy·stride + ky − k/2, ox·stride + kx − k/2]` (0 outside), the weight's order, so a k×k
/// conv is a 1×1 conv over the patches.
fn patches(x: &Tensor, k: usize, stride: usize) -> candle_core::Result<Tensor> {
    if k == 0 || stride == 0 {
        candle_core::bail!("{OP}: kernel size {k} and stride {stride} must be at least 1");
    }
    x.contiguous()?.apply_op1(Patches { k, stride })
}

/// The geometry of one [`Patches`] call.
#[derive(Clone, Copy)]
struct Geom {
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    ho: usize,
    wo: usize,
}

impl Geom {
    fn new(c: usize, h: usize, w: usize, k: usize, stride: usize) -> Geom {
        let (ho, wo) = (out_size(h, k, stride), out_size(w, k, stride));
        Geom {
            c,
            h,
            w,
            k,
            stride,
            ho,
            wo,
        }
    }

    /// For patch row `r` = (ci, ky, kx): the input channel, and per output row/column the input
    /// row/column it reads (None in the padding).
    fn source(&self, r: usize) -> (usize, impl Fn(usize, usize) -> Option<(usize, usize)>) {
        let (k, s, pad) = (self.k, self.stride, self.k / 2);
        let (ky, kx) = ((r / k) % k, r % k);
        let (h, w) = (self.h, self.w);
        let at = move |oy: usize, ox: usize| {
            let iy = (oy * s + ky).checked_sub(pad).filter(|&v| v < h)?;
            let ix = (ox * s + kx).checked_sub(pad).filter(|&v| v < w)?;
            Some((iy, ix))
        };
        (r / (k * k), at)
    }
}

struct Patches {
    k: usize,
    stride: usize,
}

impl CustomOp1 for Patches {
    fn name(&self) -> &'static str {
        "shiftnas-conv-patches"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = l.shape().dims4()?;
        let x = contiguous_f32(s, l, OP, "input")?;
        let g = Geom::new(c, h, w, self.k, self.stride);
        let rows = c * g.k * g.k;
        let hw = g.ho * g.wo;
        // SAFETY: every value of each output plane (image n, patch row r) is written.
        let out = unsafe {
            par_filled(
                b * rows * hw,
                hw,
                || (),
                |_, i, out| {
                    let (n, r) = (i / rows, i % rows);
                    let (ci, at) = g.source(r);
                    let src = &x[(n * c + ci) * h * w..][..h * w];
                    for (oy, row) in out.chunks_exact_mut(g.wo).enumerate() {
                        for (ox, o) in row.iter_mut().enumerate() {
                            *o = at(oy, ox).map_or(0.0, |(iy, ix)| src[iy * w + ix]);
                        }
                    }
                },
            )
        };
        Ok((CpuStorage::F32(out), Shape::from((b, rows, g.ho, g.wo))))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let (_, c, h, w) = x.dims4()?;
        let g = Geom::new(c, h, w, self.k, self.stride);
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&PatchesGrad(g))?))
    }
}

/// Input gradient of [`Patches`]: each patch value's gradient added back to the pixel it copied.
struct PatchesGrad(Geom);

impl CustomOp1 for PatchesGrad {
    fn name(&self) -> &'static str {
        "shiftnas-conv-patches-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.0;
        let (b, rows, _, _) = l.shape().dims4()?;
        let grad = contiguous_f32(s, l, OP, "gradient")?;
        let (kk, hw) = (g.k * g.k, g.ho * g.wo);
        let mut out = vec![0f32; b * g.c * g.h * g.w];
        // A job per input plane (image n, channel ci): it gathers that channel's k·k patch rows.
        out.par_chunks_mut((g.h * g.w).max(1))
            .enumerate()
            .for_each(|(i, plane)| {
                let (n, ci) = (i / g.c, i % g.c);
                for r in ci * kk..(ci + 1) * kk {
                    let (_, at) = g.source(r);
                    let src = &grad[(n * rows + r) * hw..][..hw];
                    for oy in 0..g.ho {
                        for ox in 0..g.wo {
                            if let Some((iy, ix)) = at(oy, ox) {
                                plane[iy * g.w + ix] += src[oy * g.wo + ox];
                            }
                        }
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((b, g.c, g.h, g.w))))
    }
}
