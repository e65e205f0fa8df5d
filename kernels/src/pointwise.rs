//! 1×1 convolution as one candle custom op with direct gemm calls.
//!
//! The plain composition (contiguous → reshape → broadcast weight → batched matmul → reshape)
//! puts five nodes in the graph, and its backward copies the broadcast, transposed weight per
//! image and reduces a `[b, cout, cin]` weight gradient over the batch with a strided sum — more
//! time than the gemms. [`pointwise_conv2d`] is one node; forward and both gradients call the
//! `gemm` crate (the one candle uses) on the NCHW buffers: per image for large planes (an image
//! per rayon job; the weight gradient summed in parts of the batch), and for small planes (late
//! stages: 2×2 to 8×8 pixels) as one gemm over the whole batch on a `[channels, batch·pixels]`
//! copy, because a gemm only 4–64 columns wide runs far below peak and does not parallelise. A
//! tracked forward keeps its copy of `x` for the weight gradient, which then needs no copy of its
//! own.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};
use gemm::{Parallelism, gemm};

use super::cpu::{contiguous_f32, par_filled, plane};

/// Names the op in errors.
const OP: &str = "pointwise conv";

/// 1×1 conv without bias: `x` `[b, cin, h, w]`, `weight` `[cout, cin, 1, 1]` → `[b, cout, h, w]`.
/// Same numbers as `conv2d`; f32 CPU tensors use the one-node op, others the plain composition.
pub fn pointwise_conv2d(x: &Tensor, weight: &Tensor) -> candle_core::Result<Tensor> {
    let (b, cin, h, w) = x.dims4()?;
    let (cout, wcin, kh, kw) = weight.dims4()?;
    if wcin != cin || kh != 1 || kw != 1 {
        candle_core::bail!(
            "pointwise conv: input {:?} needs a weight [cout, {cin}, 1, 1], got {:?}",
            x.dims(),
            weight.dims()
        );
    }
    let cpu_f32 = x.device().is_cpu() && x.dtype() == DType::F32 && weight.dtype() == DType::F32;
    if cpu_f32 {
        // Only a tracked op's backward runs, so only then is the copy of x worth keeping.
        let x_cols = (x.track_op() || weight.track_op()).then(Cols::default);
        return x
            .contiguous()?
            .apply_op2(&weight.contiguous()?, Pointwise { x_cols });
    }
    let x3 = x.contiguous()?.reshape((b, cin, h * w))?;
    weight
        .reshape((cout, cin))?
        .broadcast_matmul(&x3)?
        .reshape((b, cout, h, w))
}

fn parallelism() -> Parallelism {
    let n = candle_core::utils::get_num_threads();
    if n > 1 {
        Parallelism::Rayon(n)
    } else {
        Parallelism::None
    }
}

/// A row-major-or-transposed matrix view: pointer plus (row stride, column stride).
#[derive(Clone, Copy)]
struct Mat {
    ptr: *const f32,
    rs: isize,
    cs: isize,
}

// SAFETY: a `Mat` only reads through its pointer, into buffers that outlive the gemms using it
// (the ops' inputs), so rayon jobs may share one.
unsafe impl Send for Mat {}
unsafe impl Sync for Mat {}

/// `dst (m×n, row-major) = [dst +] lhs (m×k) · rhs (k×n)`.
///
/// # Safety
/// `dst` must address m·n writable values (initialised when `acc`; k ≥ 1 otherwise, so that
/// every value gets written), and `lhs`/`rhs` must address m×k and k×n values inside live
/// buffers with the given strides.
unsafe fn mm(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    acc: bool,
    lhs: Mat,
    rhs: Mat,
    par: Parallelism,
) {
    unsafe {
        gemm(
            m,
            n,
            k,
            dst,
            1,
            n as isize,
            acc,
            lhs.ptr,
            lhs.cs,
            lhs.rs,
            rhs.ptr,
            rhs.cs,
            rhs.rs,
            if acc { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

/// Planes with fewer pixels than this go through one batch-wide gemm (see the module doc).
const BATCHED_BELOW: usize = 256;

/// Pixels per part of the weight gradient's sum (see [`par_sum`]).
const PIXELS_PER_PART: usize = 4096;

/// `Σ part(range, out)` over `parts` ranges splitting `0..units`, each written into its own
/// `len`-value buffer on a rayon job, the partial sums added in order: the result depends on
/// `parts` (fixed by the sizes), not on the thread count.
fn par_sum(
    len: usize,
    units: usize,
    parts: usize,
    part: impl Fn(std::ops::Range<usize>, &mut [f32]) + Sync,
) -> Vec<f32> {
    use rayon::prelude::*;
    let range = |i: usize| i * units / parts..(i + 1) * units / parts;
    let partial: Vec<Vec<f32>> = (0..parts)
        .into_par_iter()
        .map(|i| {
            let mut out = vec![0f32; len];
            part(range(i), &mut out);
            out
        })
        .collect();
    let mut partial = partial.into_iter();
    let mut sum = partial.next().unwrap_or_else(|| vec![0f32; len]);
    for p in partial {
        for (s, v) in sum.iter_mut().zip(&p) {
            *s += v;
        }
    }
    sum
}

/// NCHW `[b, c, hw]` → channel-major `[c, b·hw]`, a channel per rayon job (a serial copy left
/// the second core idle for a tenth of a training step).
fn to_cols(x: &[f32], b: usize, c: usize, hw: usize) -> Vec<f32> {
    // SAFETY: piece `ch` is channel ch's b·hw values, all copied.
    unsafe {
        par_filled(
            x.len(),
            b * hw,
            || (),
            |_, ch, out| {
                for (n, o) in out.chunks_exact_mut(hw).enumerate() {
                    o.copy_from_slice(plane(x, hw, n * c + ch));
                }
            },
        )
    }
}

/// Channel-major `[c, b·hw]` → NCHW `[b, c, hw]`, an image per rayon job.
fn from_cols(cols: &[f32], b: usize, c: usize, hw: usize) -> Vec<f32> {
    // SAFETY: piece `n` is image n's c·hw values, all copied.
    unsafe {
        par_filled(
            cols.len(),
            c * hw,
            || (),
            |_, n, out| {
                for (ch, o) in out.chunks_exact_mut(hw).enumerate() {
                    o.copy_from_slice(plane(cols, hw, ch * b + n));
                }
            },
        )
    }
}

/// A buffer of `len` values all written by `fill` (through a raw pointer: no zeroing pass).
///
/// # Safety
/// `fill` must write every one of the `len` values.
unsafe fn filled(len: usize, fill: impl FnOnce(*mut f32)) -> Vec<f32> {
    let mut v = Vec::<f32>::with_capacity(len);
    fill(v.as_mut_ptr());
    // SAFETY: the caller guarantees `fill` initialised all `len` values.
    unsafe { v.set_len(len) };
    v
}

/// Row-major view of an `r×c` buffer.
fn rows(m: &[f32], c: usize) -> Mat {
    Mat {
        ptr: m.as_ptr(),
        rs: c as isize,
        cs: 1,
    }
}

/// Transposed view of a row-major `r×c` buffer (a `c×r` matrix).
fn transposed(m: &[f32], c: usize) -> Mat {
    Mat {
        ptr: m.as_ptr(),
        rs: 1,
        cs: c as isize,
    }
}

/// `a (m×k) · x` for NCHW `x` `[b, k, hw]` → NCHW `[b, m, hw]`, `a` given as a view. When it
/// makes the channel-major copy of `x` (small planes) and `keep` is given, leaves it there.
fn apply(
    a: Mat,
    m: usize,
    k: usize,
    x: &[f32],
    (b, hw): (usize, usize),
    keep: Option<&Cols>,
) -> Vec<f32> {
    if hw == 0 || k == 0 || b == 0 {
        return vec![0f32; b * m * hw];
    }
    if hw < BATCHED_BELOW {
        let xc = to_cols(x, b, k, hw);
        // SAFETY: the gemm writes all of yc (m×(b·hw), k ≥ 1); a is m×k; xc is k×(b·hw).
        let yc = unsafe {
            filled(m * b * hw, |yc| {
                mm(
                    (m, b * hw, k),
                    yc,
                    false,
                    a,
                    rows(&xc, b * hw),
                    parallelism(),
                )
            })
        };
        if let Some(keep) = keep {
            *keep.lock().unwrap_or_else(|e| e.into_inner()) = Some(xc);
        }
        return from_cols(&yc, b, m, hw);
    }
    // An image per rayon job, each gemm on one thread: a per-image gemm is too small to split.
    // SAFETY: image n's gemm writes all of its m×hw piece (k ≥ 1); a is m×k; xₙ k×hw.
    unsafe {
        par_filled(
            b * m * hw,
            m * hw,
            || (),
            |_, n, out| {
                let xn = &x[n * k * hw..(n + 1) * k * hw];
                mm(
                    (m, hw, k),
                    out.as_mut_ptr(),
                    false,
                    a,
                    rows(xn, hw),
                    Parallelism::None,
                );
            },
        )
    }
}

/// Forward: (x `[b, cin, h, w]`, weight `[cout, cin, 1, 1]`) → `[b, cout, h, w]`.
struct Pointwise {
    /// Where the forward leaves its channel-major copy of `x` (small planes) for [`GradWeight`],
    /// when the graph tracks the op.
    x_cols: Option<Cols>,
}

impl CustomOp2 for Pointwise {
    fn name(&self) -> &'static str {
        "shiftnas-pointwise-conv"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, cin, h, w) = l1.shape().dims4()?;
        let (cout, _, _, _) = l2.shape().dims4()?;
        let hw = h * w;
        let x = contiguous_f32(s1, l1, OP, "input")?;
        let wt = contiguous_f32(s2, l2, OP, "weight")?;
        let out = apply(rows(wt, cin), cout, cin, x, (b, hw), self.x_cols.as_ref());
        Ok((CpuStorage::F32(out), Shape::from((b, cout, h, w))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let g = grad.contiguous()?;
        let g_cols = Cols::default();
        // No input gradient for an input that does not need one (the stem's image patches).
        let gx = if x.track_op() {
            let op = GradInput {
                g_cols: g_cols.clone(),
            };
            Some(g.apply_op2_no_bwd(weight, &op)?)
        } else {
            None
        };
        let x_cols = self.x_cols.clone();
        let gw = x.apply_op2_no_bwd(&g, &GradWeight { g_cols, x_cols })?;
        Ok((gx, Some(gw)))
    }
}

/// A channel-major copy one op makes on small planes and a later one needs: the forward's copy
/// of `x` and [`GradInput`]'s copy of the output gradient, both used by [`GradWeight`].
type Cols = Arc<Mutex<Option<Vec<f32>>>>;

/// The copy left in `cols`, if any (taken: a second backward makes its own).
fn take(cols: Option<&Cols>) -> Option<Vec<f32>> {
    cols?.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// (grad_out `[b, cout, h, w]`, weight) → grad_in `[b, cin, h, w]` = wᵀ · g per image.
struct GradInput {
    g_cols: Cols,
}

impl CustomOp2 for GradInput {
    fn name(&self) -> &'static str {
        "shiftnas-pointwise-grad-input"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, cout, h, w) = l1.shape().dims4()?;
        let (_, cin, _, _) = l2.shape().dims4()?;
        let hw = h * w;
        let g = contiguous_f32(s1, l1, OP, "output gradient")?;
        let wt = contiguous_f32(s2, l2, OP, "weight")?;
        // wᵀ (cin×cout) · g per image.
        let out = apply(
            transposed(wt, cin),
            cin,
            cout,
            g,
            (b, hw),
            Some(&self.g_cols),
        );
        Ok((CpuStorage::F32(out), Shape::from((b, cin, h, w))))
    }
}

/// (x `[b, cin, h, w]`, grad_out `[b, cout, h, w]`) → grad_weight `[cout, cin, 1, 1]` = Σ g · xᵀ.
struct GradWeight {
    g_cols: Cols,
    x_cols: Option<Cols>,
}

impl CustomOp2 for GradWeight {
    fn name(&self) -> &'static str {
        "shiftnas-pointwise-grad-weight"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, cin, h, w) = l1.shape().dims4()?;
        let (_, cout, _, _) = l2.shape().dims4()?;
        let hw = h * w;
        let x = contiguous_f32(s1, l1, OP, "input")?;
        let g = contiguous_f32(s2, l2, OP, "output gradient")?;
        if hw == 0 || b == 0 {
            return Ok((
                CpuStorage::F32(vec![0f32; cout * cin]),
                Shape::from((cout, cin, 1, 1)),
            ));
        }
        // Σ over pixels of g · xᵀ, in parts of the batch summed in parallel: a gemm parallelises
        // over its cout×cin output only, which is small next to the b·hw pixels summed.
        let parts = (b * hw).div_ceil(PIXELS_PER_PART).min(b);
        let par = if parts > 1 {
            Parallelism::None
        } else {
            parallelism()
        };
        let out = if hw < BATCHED_BELOW {
            let gc = take(Some(&self.g_cols)).unwrap_or_else(|| to_cols(g, b, cout, hw));
            let xc = take(self.x_cols.as_ref()).unwrap_or_else(|| to_cols(x, b, cin, hw));
            let k = b * hw;
            par_sum(cout * cin, k, parts, |cols, out| {
                let at = |m: &[f32]| Mat {
                    ptr: m[cols.start..].as_ptr(),
                    ..rows(m, k)
                };
                // SAFETY: out is cout×cin; the part's columns of gc are cout×len, of xcᵀ len×cin.
                unsafe {
                    mm(
                        (cout, cin, cols.len()),
                        out.as_mut_ptr(),
                        false,
                        at(&gc),
                        Mat {
                            rs: 1,
                            cs: k as isize,
                            ..at(&xc)
                        },
                        par,
                    )
                }
            })
        } else {
            par_sum(cout * cin, b, parts, |images, out| {
                for n in images.clone() {
                    let gn = &g[n * cout * hw..(n + 1) * cout * hw];
                    let xn = &x[n * cin * hw..(n + 1) * cin * hw];
                    // SAFETY: out is cout×cin; image n of g is cout×hw, xₙᵀ is hw×cin.
                    unsafe {
                        mm(
                            (cout, cin, hw),
                            out.as_mut_ptr(),
                            n > images.start,
                            rows(gn, hw),
                            transposed(xn, hw),
                            par,
                        )
                    };
                }
            })
        };
        Ok((CpuStorage::F32(out), Shape::from((cout, cin, 1, 1))))
    }
}
