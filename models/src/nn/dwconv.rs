//! Depthwise convolution as a candle custom op with direct CPU loops (DESIGN §6).
//!
//! candle's grouped `conv2d` runs a depthwise conv as C single-channel convolutions stitched with
//! `narrow`/`cat`, 20–240× slower than PyTorch forward+backward. [`depthwise_conv2d`] runs the
//! forward pass and both gradients as plain loop nests, parallel over batch × channel planes with
//! rayon. Only square kernels with padding `k / 2`, f32 and contiguous NCHW are handled by the
//! loops; anything else (CUDA or other storage, other dtypes) falls back to candle's native grouped
//! `conv2d`, which gives the same numbers.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

/// Output height/width of a `k`×`k` conv with padding `k / 2` and `stride` over `n` pixels.
pub fn dw_out_size(n: usize, k: usize, stride: usize) -> usize {
    (n + 2 * (k / 2) - k) / stride + 1
}

/// Depthwise conv: `x` `[b, c, h, w]`, `weight` `[c, 1, k, k]` (k odd), padding `k / 2`, `stride`
/// 1 or 2 → `[b, c, h', w']` with `h' = (h + 2·(k/2) − k) / stride + 1`.
///
/// On CPU with f32 it uses the custom op (gradients for both inputs); on CUDA the shift-and-add
/// composition of `dw_shift` (or the op's CUDA kernels with `SHIFTNAS_CUDA_DWCONV=kernel`);
/// otherwise candle's grouped `conv2d`.
pub fn depthwise_conv2d(x: &Tensor, weight: &Tensor, stride: usize) -> candle_core::Result<Tensor> {
    let (_, c, _, _) = x.dims4()?;
    let (wc, one, k, k2) = weight.dims4()?;
    if wc != c || one != 1 || k != k2 || k % 2 == 0 || stride == 0 {
        candle_core::bail!(
            "depthwise_conv2d: input {:?} and weight {:?} do not match: the weight must be [{c}, 1, k, k] with odd k, stride >= 1 (got {stride})",
            x.dims(),
            weight.dims()
        );
    }
    let f32 = x.dtype() == DType::F32 && weight.dtype() == DType::F32;
    if f32 && (x.device().is_cpu() || (x.device().is_cuda() && cuda_kernels_enabled())) {
        x.contiguous()?
            .apply_op2(&weight.contiguous()?, DwConv { k, stride })
    } else if x.device().is_cuda() {
        // CUDA default: k² whole-tensor multiply-adds (see `dw_shift`), not C tiny grouped convs.
        super::dw_shift::shift_add_depthwise_conv2d(x, weight, stride)
    } else {
        native_depthwise_conv2d(x, weight, stride)
    }
}

/// Whether CUDA tensors use the op's own kernels (`SHIFTNAS_CUDA_DWCONV=kernel`, see `dw_cuda`).
fn cuda_kernels_enabled() -> bool {
    #[cfg(feature = "cuda")]
    return super::dw_cuda::kernels_enabled();
    #[cfg(not(feature = "cuda"))]
    false
}

/// The same convolution with candle's grouped `conv2d` (the reference, and the non-CPU path).
pub fn native_depthwise_conv2d(
    x: &Tensor,
    weight: &Tensor,
    stride: usize,
) -> candle_core::Result<Tensor> {
    let (_, c, _, _) = x.dims4()?;
    let k = weight.dim(2)?;
    x.conv2d(weight, k / 2, stride, 1, c)
}

/// Geometry of one op application, read from the layouts.
#[derive(Debug, Clone, Copy)]
struct Geom {
    h: usize,
    w: usize,
    k: usize,
    s: usize,
    oh: usize,
    ow: usize,
    /// `ox_range` for kx < `RANGES`, computed once (it sat in the inner loops' profile).
    ranges: [(usize, usize); RANGES],
}

/// Kernel widths up to this have their column ranges precomputed.
const RANGES: usize = 15;

impl Geom {
    fn new(h: usize, w: usize, k: usize, s: usize) -> Geom {
        let mut g = Geom {
            h,
            w,
            k,
            s,
            oh: dw_out_size(h, k, s),
            ow: dw_out_size(w, k, s),
            ranges: [(0, 0); RANGES],
        };
        for kx in 0..k.min(RANGES) {
            g.ranges[kx] = g.compute_ox_range(kx);
        }
        g
    }

    /// Range of output columns `ox` whose input column `ox·s + kx − p` lies inside `[0, w)`.
    #[inline]
    fn ox_range(&self, kx: usize) -> (usize, usize) {
        if kx < RANGES {
            self.ranges[kx]
        } else {
            self.compute_ox_range(kx)
        }
    }

    /// [`Geom::ox_range`] computed from scratch.
    fn compute_ox_range(&self, kx: usize) -> (usize, usize) {
        let p = (self.k / 2) as isize;
        let s = self.s as isize;
        let off = kx as isize - p;
        // ox*s + off >= 0  ⇔  ox >= ceil(-off / s)
        let lo = if off >= 0 { 0 } else { (-off + s - 1) / s };
        // ox*s + off <= w - 1  ⇔  ox <= floor((w - 1 - off) / s)
        let top = self.w as isize - 1 - off;
        let hi = if top < 0 {
            0
        } else {
            (top / s + 1).min(self.ow as isize)
        };
        (lo as usize, (hi.max(lo)) as usize)
    }

    /// Input row of output row `oy` and kernel row `ky`, if inside the image.
    #[inline]
    fn in_row(&self, oy: usize, ky: usize) -> Option<usize> {
        let iy = (oy * self.s + ky) as isize - (self.k / 2) as isize;
        (iy >= 0 && (iy as usize) < self.h).then_some(iy as usize)
    }
}

fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => {
            candle_core::bail!("depthwise conv: {what} must be contiguous (call .contiguous())")
        }
    }
}

fn fwd_plane(g: &Geom, x: &[f32], wk: &[f32], out: &mut [f32]) {
    let (k, s, w, ow) = (g.k, g.s, g.w, g.ow);
    let p = k / 2;
    out.fill(0.0);
    for oy in 0..g.oh {
        let orow = &mut out[oy * ow..(oy + 1) * ow];
        for ky in 0..k {
            let Some(iy) = g.in_row(oy, ky) else { continue };
            let xrow = &x[iy * w..(iy + 1) * w];
            for kx in 0..k {
                let wv = wk[ky * k + kx];
                let (lo, hi) = g.ox_range(kx);
                if lo >= hi {
                    continue;
                }
                if s == 1 {
                    let start = lo + kx - p;
                    for (o, &xv) in orow[lo..hi].iter_mut().zip(&xrow[start..start + hi - lo]) {
                        *o += wv * xv;
                    }
                } else {
                    for (ox, o) in orow[lo..hi].iter_mut().enumerate() {
                        *o += wv * xrow[(ox + lo) * s + kx - p];
                    }
                }
            }
        }
    }
}

fn grad_input_plane(g: &Geom, go: &[f32], wk: &[f32], gx: &mut [f32]) {
    let (k, s, w, ow) = (g.k, g.s, g.w, g.ow);
    let p = k / 2;
    gx.fill(0.0);
    for oy in 0..g.oh {
        let grow = &go[oy * ow..(oy + 1) * ow];
        for ky in 0..k {
            let Some(iy) = g.in_row(oy, ky) else { continue };
            let xrow = &mut gx[iy * w..(iy + 1) * w];
            for kx in 0..k {
                let wv = wk[ky * k + kx];
                let (lo, hi) = g.ox_range(kx);
                if lo >= hi {
                    continue;
                }
                if s == 1 {
                    let start = lo + kx - p;
                    for (xv, &gv) in xrow[start..start + hi - lo].iter_mut().zip(&grow[lo..hi]) {
                        *xv += wv * gv;
                    }
                } else {
                    for (ox, &gv) in grow[lo..hi].iter().enumerate() {
                        xrow[(ox + lo) * s + kx - p] += wv * gv;
                    }
                }
            }
        }
    }
}

fn grad_weight_plane(g: &Geom, x: &[f32], go: &[f32], gw: &mut [f32]) {
    let (k, s, w, ow) = (g.k, g.s, g.w, g.ow);
    let p = k / 2;
    gw.fill(0.0);
    for oy in 0..g.oh {
        let grow = &go[oy * ow..(oy + 1) * ow];
        for ky in 0..k {
            let Some(iy) = g.in_row(oy, ky) else { continue };
            let xrow = &x[iy * w..(iy + 1) * w];
            for kx in 0..k {
                let (lo, hi) = g.ox_range(kx);
                if lo >= hi {
                    continue;
                }
                let mut acc = 0f32;
                if s == 1 {
                    let start = lo + kx - p;
                    for (&xv, &gv) in xrow[start..start + hi - lo].iter().zip(&grow[lo..hi]) {
                        acc += xv * gv;
                    }
                } else {
                    for (ox, &gv) in grow[lo..hi].iter().enumerate() {
                        acc += xrow[(ox + lo) * s + kx - p] * gv;
                    }
                }
                gw[ky * k + kx] += acc;
            }
        }
    }
}

/// Forward op: (input `[b,c,h,w]`, weight `[c,1,k,k]`) → output.
struct DwConv {
    k: usize,
    stride: usize,
}

impl CustomOp2 for DwConv {
    fn name(&self) -> &'static str {
        "shiftnas-dwconv"
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        super::dw_cuda::fwd(s1, l1, s2, l2, self.k, self.stride)
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = l1.shape().dims4()?;
        let g = Geom::new(h, w, self.k, self.stride);
        let x = contiguous_f32(s1, l1, "input")?;
        let wt = contiguous_f32(s2, l2, "weight")?;
        let kk = g.k * g.k;
        let mut out = vec![0f32; b * c * g.oh * g.ow];
        if !out.is_empty() {
            out.par_chunks_mut(g.oh * g.ow)
                .enumerate()
                .for_each(|(i, o)| {
                    let ch = i % c;
                    fwd_plane(
                        &g,
                        &x[i * h * w..(i + 1) * h * w],
                        &wt[ch * kk..(ch + 1) * kk],
                        o,
                    )
                });
        }
        Ok((CpuStorage::F32(out), Shape::from((b, c, g.oh, g.ow))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let (_, _, h, w) = x.dims4()?;
        let gx = grad.apply_op2_no_bwd(
            weight,
            &DwConvGradInput {
                k: self.k,
                stride: self.stride,
                h,
                w,
            },
        )?;
        let gw = x.apply_op2_no_bwd(
            &grad,
            &DwConvGradWeight {
                k: self.k,
                stride: self.stride,
            },
        )?;
        Ok((Some(gx), Some(gw)))
    }
}

/// Input gradient: (grad_out `[b,c,oh,ow]`, weight) → grad_in `[b,c,h,w]`.
struct DwConvGradInput {
    k: usize,
    stride: usize,
    h: usize,
    w: usize,
}

impl CustomOp2 for DwConvGradInput {
    fn name(&self) -> &'static str {
        "shiftnas-dwconv-grad-input"
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        super::dw_cuda::grad_input(s1, l1, s2, l2, (self.k, self.stride, self.h, self.w))
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, c, _, _) = l1.shape().dims4()?;
        let (h, w) = (self.h, self.w);
        let g = Geom::new(h, w, self.k, self.stride);
        let go = contiguous_f32(s1, l1, "output gradient")?;
        let wt = contiguous_f32(s2, l2, "weight")?;
        let kk = g.k * g.k;
        let plane = g.oh * g.ow;
        let mut gx = vec![0f32; b * c * h * w];
        if !gx.is_empty() {
            gx.par_chunks_mut(h * w).enumerate().for_each(|(i, o)| {
                let ch = i % c;
                grad_input_plane(
                    &g,
                    &go[i * plane..(i + 1) * plane],
                    &wt[ch * kk..(ch + 1) * kk],
                    o,
                )
            });
        }
        Ok((CpuStorage::F32(gx), Shape::from((b, c, h, w))))
    }
}

/// Weight gradient: (input, grad_out) → grad_weight `[c,1,k,k]`.
struct DwConvGradWeight {
    k: usize,
    stride: usize,
}

impl CustomOp2 for DwConvGradWeight {
    fn name(&self) -> &'static str {
        "shiftnas-dwconv-grad-weight"
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        super::dw_cuda::grad_weight(s1, l1, s2, l2, self.k, self.stride)
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = l1.shape().dims4()?;
        let g = Geom::new(h, w, self.k, self.stride);
        let x = contiguous_f32(s1, l1, "input")?;
        let go = contiguous_f32(s2, l2, "output gradient")?;
        let kk = g.k * g.k;
        let plane = g.oh * g.ow;
        // One k×k partial sum per (batch, channel) plane, then a sum over the batch.
        let mut parts = vec![0f32; b * c * kk];
        if !parts.is_empty() {
            parts.par_chunks_mut(kk).enumerate().for_each(|(i, gw)| {
                grad_weight_plane(
                    &g,
                    &x[i * h * w..(i + 1) * h * w],
                    &go[i * plane..(i + 1) * plane],
                    gw,
                )
            });
        }
        let mut gw = vec![0f32; c * kk];
        for n in 0..b {
            for (acc, &v) in gw.iter_mut().zip(&parts[n * c * kk..(n + 1) * c * kk]) {
                *acc += v;
            }
        }
        Ok((CpuStorage::F32(gw), Shape::from((c, 1, g.k, g.k))))
    }
}
