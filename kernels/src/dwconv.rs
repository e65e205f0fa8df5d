//! Depthwise convolution as a candle custom op with direct CPU loops.
//!
//! candle's grouped `conv2d` runs a depthwise conv as C single-channel convolutions stitched with
//! `narrow`/`cat`, 20–240× slower than PyTorch forward+backward. [`depthwise_conv2d`] runs the
//! forward pass and the stride-1 input gradient through the channels-last kernel of the inference
//! path (an image per rayon job, see [`conv_nchw`]), the stride-2 input gradient and the kernel
//! gradient as loop nests over NCHW planes, in parallel with rayon. Only square kernels with padding `k / 2`, f32 and contiguous NCHW are handled by the
//! loops; anything else (CUDA or other storage, other dtypes) falls back to candle's native grouped
//! `conv2d`, which gives the same numbers.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::cpu::{self, IMAGES_PER_PART, contiguous_f32, par_filled, simd_fn};
use super::infer::depthwise::{DwShape, depthwise_nhwc_unfused, taps_major};
use super::layout::transpose;

/// Names the op in errors.
const OP: &str = "depthwise conv";

/// Output height/width of a `k`×`k` conv with padding `k / 2` and `stride` over `n` pixels.
pub fn dw_out_size(n: usize, k: usize, stride: usize) -> usize {
    (n + 2 * (k / 2) - k) / stride + 1
}

/// Depthwise conv: `x` `[b, c, h, w]`, `weight` `[c, 1, k, k]` (k odd), padding `k / 2`, `stride`
/// 1 or 2 → `[b, c, h', w']` with `h' = (h + 2·(k/2) − k) / stride + 1`.
///
/// On CPU with f32 it uses the custom op (gradients for both inputs); on CUDA the op's NVRTC
/// kernels (or the shift-and-add composition of `dw_shift` with `SHIFTNAS_CUDA_DWCONV=shift`);
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
        // CUDA with SHIFTNAS_CUDA_DWCONV=shift: k² whole-tensor multiply-adds (see `dw_shift`).
        super::dw_shift::shift_add_depthwise_conv2d(x, weight, stride)
    } else {
        native_depthwise_conv2d(x, weight, stride)
    }
}

/// Whether CUDA tensors use the op's own kernels (unless `SHIFTNAS_CUDA_DWCONV=shift`, see `dw_cuda`).
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

/// Geometry of one op application in the *polyphase padded* layout of the per-plane loops (the
/// stride-2 input gradient and the kernel gradient).
///
/// The zero-padded plane (`h + 2p` × `w + 2p`, `p = k / 2`) is split into `s × s` phases by
/// (row mod s, column mod s); phase `(a, b)` holds padded pixel `(a + s·r, b + s·c)` at `r·l + c`.
/// Kernel tap `(ky, kx)` of output `(oy, ox)` then reads phase `(ky mod s, kx mod s)` at
/// `(oy + ky / s)·l + ox + kx / s`: for every output on a flat grid of row width `l` that is one
/// contiguous slice per tap, so a sum over taps is, for each run of grid positions, one vectorised
/// multiply-add per tap (register-blocked: see [`taps_sum`]), whatever the stride and however
/// small the plane. Grid columns `ox ≥ ow` are scratch (never copied out; zero in gradients).
#[derive(Debug, Clone)]
struct Geom {
    w: usize,
    k: usize,
    s: usize,
    oh: usize,
    ow: usize,
    /// Row width of a phase and of the output grid.
    l: usize,
    /// Length of one phase block (rows·l plus slack for over-reads; a multiple of [`LANES`]).
    block: usize,
    /// Start in the phase buffer of each tap that can touch a real pixel, with its tap index.
    taps: Vec<(usize, usize)>,
    /// Zeros in front of the output grid when the input gradient reads it (the largest tap
    /// offset within its phase block).
    front: usize,
    /// Per phase block, its taps as (read offset into the front-padded grid, tap index): the
    /// input gradient at `q` of phase `ph` is `Σ wk[t] · padded[offset + q]` over `back[ph]`.
    back: Vec<Vec<(usize, usize)>>,
}

impl Geom {
    fn new(h: usize, w: usize, k: usize, s: usize) -> Geom {
        let p = k / 2;
        let (oh, ow) = (dw_out_size(h, k, s), dw_out_size(w, k, s));
        let rows = (h + 2 * p).div_ceil(s);
        let l = (w + 2 * p).div_ceil(s);
        // Slack past the last row for the scratch columns' over-reads and the last register
        // chunk; a whole number of chunks.
        let block = (rows * l + k + LANES).next_multiple_of(LANES);
        // A tap whose reads are all padding for every output contributes nothing: skip it
        // (a 7×7 kernel on a 2×2 plane touches real pixels with 9 of its 49 taps).
        let touches = |kk: usize, n: usize, on: usize| {
            (0..on).any(|o| (o * s + kk).checked_sub(p).is_some_and(|i| i < n))
        };
        let mut taps = Vec::with_capacity(k * k);
        for ky in (0..k).filter(|&ky| touches(ky, h, oh)) {
            for kx in (0..k).filter(|&kx| touches(kx, w, ow)) {
                let phase = (ky % s) * s + kx % s;
                taps.push((phase * block + (ky / s) * l + kx / s, ky * k + kx));
            }
        }
        let front = taps.iter().map(|&(at, _)| at % block).max().unwrap_or(0);
        let mut back = vec![Vec::new(); s * s];
        for &(at, t) in &taps {
            back[at / block].push((front - at % block, t));
        }
        Geom {
            w,
            k,
            s,
            oh,
            ow,
            l,
            block,
            taps,
            front,
            back,
        }
    }

    /// Length of the output grid (`oh` rows of width `l`).
    #[inline(always)]
    fn grid(&self) -> usize {
        self.oh * self.l
    }

    /// Length of the phase buffer.
    #[inline(always)]
    fn phases(&self) -> usize {
        self.s * self.s * self.block
    }

    /// Input row `iy` as runs: for each column phase, the first input column in it and where that
    /// column sits in the phase buffer; the run's later columns follow every `s` input columns
    /// and at consecutive positions.
    #[inline(always)]
    fn runs(&self, iy: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        let (s, p) = (self.s, self.k / 2);
        let py = iy + p;
        (0..s).map(move |b| {
            let ix0 = (b + s - p % s) % s;
            let phase = (py % s) * s + b;
            (ix0, phase * self.block + (py / s) * self.l + (ix0 + p) / s)
        })
    }

    /// Writes plane `x` (`h×w`) into the phase buffer `buf`, zeroed when it is not of this
    /// geometry's size yet: every plane overwrites the same interior positions, so padding and
    /// slack stay zero between planes of one op.
    #[inline(always)]
    fn scatter(&self, x: &[f32], buf: &mut Vec<f32>) {
        zeroed_once(buf, self.phases());
        for (iy, row) in x.chunks_exact(self.w).enumerate() {
            for (ix0, at) in self.runs(iy) {
                if self.s == 1 {
                    buf[at..at + self.w].copy_from_slice(row);
                    continue;
                }
                let src = row.get(ix0..).unwrap_or_default().iter().step_by(self.s);
                for (d, &v) in buf[at..].iter_mut().zip(src) {
                    *d = v;
                }
            }
        }
    }

    /// Reads plane `x` (`h×w`) back out of the phase buffer `buf`.
    #[inline(always)]
    fn gather(&self, buf: &[f32], x: &mut [f32]) {
        for (iy, row) in x.chunks_exact_mut(self.w).enumerate() {
            for (ix0, at) in self.runs(iy) {
                if self.s == 1 {
                    row.copy_from_slice(&buf[at..at + self.w]);
                    continue;
                }
                let dst = row
                    .get_mut(ix0..)
                    .unwrap_or_default()
                    .iter_mut()
                    .step_by(self.s);
                for (d, &v) in dst.zip(&buf[at..]) {
                    *d = v;
                }
            }
        }
    }

    /// Lays an `oh×ow` plane onto the output grid in `buf` after `front` zeros; the scratch
    /// columns and the tail up to `len` stay zero (as in [`Geom::scatter`]).
    #[inline(always)]
    fn to_grid(&self, y: &[f32], buf: &mut Vec<f32>, front: usize, len: usize) {
        zeroed_once(buf, len);
        let grid = &mut buf[front..front + self.grid()];
        for (row, src) in grid.chunks_exact_mut(self.l).zip(y.chunks_exact(self.ow)) {
            row[..self.ow].copy_from_slice(src);
        }
    }
}

/// Makes `buf` `n` zeros unless it already has length `n` (then it is left as it is).
#[inline(always)]
fn zeroed_once(buf: &mut Vec<f32>, n: usize) {
    if buf.len() != n {
        buf.clear();
        buf.resize(n, 0.0);
    }
}

/// Lanes of one register-blocked chunk (two AVX2 registers).
const LANES: usize = 16;

/// `grid[i] = Σ_taps wk[t] · phases[at + i]`, taps added in order, over a grid whose length is a
/// multiple of [`LANES`] (the phase buffer has that much slack). Register-blocked: each chunk of
/// `LANES` outputs stays in registers while every tap is added (one load and a multiply-add per
/// tap), instead of a read-modify-write pass over the grid per tap.
#[inline(always)]
fn taps_sum(grid: &mut [f32], phases: &[f32], taps: &[(usize, usize)], wk: &[f32]) {
    for (j, out) in grid.chunks_exact_mut(LANES).enumerate() {
        let mut acc = [0f32; LANES];
        for &(at, t) in taps {
            let (w, src) = (wk[t], &phases[at + j * LANES..at + (j + 1) * LANES]);
            for i in 0..LANES {
                acc[i] += w * src[i];
            }
        }
        out.copy_from_slice(&acc);
    }
}

/// Per-thread scratch: the phase buffer and the output grid.
type Scratch = (Vec<f32>, Vec<f32>);

simd_fn! {
    /// Input gradient `gx` of one plane from its output gradient `go`: per phase block, a
    /// register-blocked sum of taps over the front-padded grid (the transpose of the forward).
    fn grad_input_plane(g: &Geom, go: &[f32], wk: &[f32], gx: &mut [f32], scratch: &mut Scratch) {
        let (phases, padded) = scratch;
        g.to_grid(go, padded, g.front, g.front + g.block);
        // Every element is written below.
        phases.resize(g.phases(), 0.0);
        for (out, taps) in phases.chunks_exact_mut(g.block).zip(&g.back) {
            taps_sum(out, padded, taps, wk);
        }
        g.gather(phases, gx);
    }
}

simd_fn! {
    /// Adds plane `x`'s kernel-gradient terms (output gradient `go`) to `lanes`, eight f32 lanes
    /// per tap of `g.taps`: tap `(at, _)` gets `go · phases[at..]` over the output grid, rounded
    /// up to whole chunks (the grid's scratch columns and tail are zero, the phases have slack).
    fn add_grad_weight(g: &Geom, x: &[f32], go: &[f32], lanes: &mut [[f32; 8]], scratch: &mut Scratch) {
        let (phases, grid) = scratch;
        g.scatter(x, phases);
        let n = g.grid().next_multiple_of(8);
        g.to_grid(go, grid, 0, n);
        for (acc, &(at, _)) in lanes.iter_mut().zip(&g.taps) {
            for (gs, ps) in grid.chunks_exact(8).zip(phases[at..at + n].chunks_exact(8)) {
                for i in 0..8 {
                    acc[i] += gs[i] * ps[i];
                }
            }
        }
    }
}

/// The depthwise conv of `b` NCHW images (`s` gives one image's shape) with OIHW `weight`
/// `[c, 1, k, k]`, through the channels-last kernel of the inference path: an image per rayon
/// job, laid out channels-last, convolved 8 or 16 channels per register, and laid back out. Its
/// products are added in (ky, kx) order without fused multiply-adds, so every CPU gives the same
/// bits as the per-plane loops it replaced, which vectorised poorly over the 2×2 to 16×16 planes
/// (with the two layout passes, a spos-cifar training step ran ~18 % faster).
fn conv_nchw(x: &[f32], b: usize, s: DwShape, weight: &[f32]) -> Vec<f32> {
    let (oh, ow) = s.out_hw();
    let (c, hw, ohw) = (s.c, s.h * s.w, oh * ow);
    let taps = taps_major(weight, c, s.k);
    // SAFETY: every job writes its whole image (the last transpose covers it).
    unsafe {
        par_filled(
            b * c * ohw,
            c * ohw,
            || (Vec::new(), Vec::new()),
            |(xr, yr): &mut (Vec<f32>, Vec<f32>), n, o| {
                xr.resize(c * hw, 0.0);
                yr.resize(c * ohw, 0.0);
                transpose(&x[n * c * hw..(n + 1) * c * hw], c, hw, xr);
                depthwise_nhwc_unfused(xr, s, &taps, yr);
                transpose(yr, ohw, c, o);
            },
        )
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
        let x = contiguous_f32(s1, l1, OP, "input")?;
        let wt = contiguous_f32(s2, l2, OP, "weight")?;
        let s = DwShape {
            batch: 1,
            h,
            w,
            c,
            k: self.k,
            stride: self.stride,
        };
        let out = conv_nchw(x, b, s, wt);
        let (oh, ow) = s.out_hw();
        Ok((CpuStorage::F32(out), Shape::from((b, c, oh, ow))))
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
        let go = contiguous_f32(s1, l1, OP, "output gradient")?;
        let wt = contiguous_f32(s2, l2, OP, "weight")?;
        let kk = g.k * g.k;
        let plane = g.oh * g.ow;
        if self.stride == 1 {
            // At stride 1 the input gradient is the forward conv of the output gradient with the
            // kernel flipped: the forward's loops, which visit only the output pixels, where the
            // transposed loops below also sum over the padding (3–6× the work on 2×2–4×4 planes).
            let flipped: Vec<f32> = wt
                .chunks_exact(kk)
                .flat_map(|k| k.iter().rev())
                .copied()
                .collect();
            let s = DwShape {
                batch: 1,
                h,
                w,
                c,
                k: self.k,
                stride: 1,
            };
            let gx = conv_nchw(go, b, s, &flipped);
            return Ok((CpuStorage::F32(gx), Shape::from((b, c, h, w))));
        }
        // SAFETY: `grad_input_plane` writes every value of its plane (`gather` covers it).
        let gx = unsafe {
            par_filled(b * c * h * w, h * w, Scratch::default, |scratch, i, o| {
                let ch = i % c;
                let gp = &go[i * plane..(i + 1) * plane];
                grad_input_plane(&g, gp, &wt[ch * kk..(ch + 1) * kk], o, scratch)
            })
        };
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
        let x = contiguous_f32(s1, l1, OP, "input")?;
        let go = contiguous_f32(s2, l2, OP, "output gradient")?;
        let kk = g.k * g.k;
        let plane = g.oh * g.ow;
        // Per part of the batch, eight f32 lanes per (channel, tap) over its planes in memory
        // order; the parts' totals are then added in order. (A total per plane cost a horizontal
        // sum per tap and plane: more than the products on the 2×2 to 7×7 planes.)
        let nt = g.taps.len();
        let parts: Vec<Vec<f32>> = (0..b.div_ceil(IMAGES_PER_PART))
            .into_par_iter()
            .map_init(Scratch::default, |scratch, part| {
                let mut lanes = vec![[0f32; 8]; c * nt];
                for n in part * IMAGES_PER_PART..((part + 1) * IMAGES_PER_PART).min(b) {
                    for (ch, acc) in lanes.chunks_exact_mut(nt.max(1)).enumerate() {
                        let i = n * c + ch;
                        let (xp, gp) = (cpu::plane(x, h * w, i), cpu::plane(go, plane, i));
                        add_grad_weight(&g, xp, gp, acc, scratch);
                    }
                }
                lanes.iter().map(|l| l.iter().sum::<f32>()).collect()
            })
            .collect();
        let mut gw = vec![0f32; c * kk];
        for part in &parts {
            for (ch, sums) in part.chunks_exact(nt.max(1)).enumerate() {
                for (&v, &(_, t)) in sums.iter().zip(&g.taps) {
                    gw[ch * kk + t] += v;
                }
            }
        }
        Ok((CpuStorage::F32(gw), Shape::from((c, 1, g.k, g.k))))
    }
}
