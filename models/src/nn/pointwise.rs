//! 1×1 convolution as one candle custom op with direct gemm calls (DESIGN §6).
//!
//! The plain composition (contiguous → reshape → broadcast weight → batched matmul → reshape)
//! puts five nodes in the graph, and its backward copies the broadcast, transposed weight per
//! image and reduces a `[b, cout, cin]` weight gradient over the batch with a strided sum — more
//! time than the gemms. [`pointwise_conv2d`] is one node; forward and both gradients call the
//! `gemm` crate (the one candle uses) per image on the NCHW buffers, the weight gradient
//! accumulating in place across the batch.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};
use gemm::{Parallelism, gemm};

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
        return x.contiguous()?.apply_op2(&weight.contiguous()?, Pointwise);
    }
    let x3 = x.contiguous()?.reshape((b, cin, h * w))?;
    weight
        .reshape((cout, cin))?
        .broadcast_matmul(&x3)?
        .reshape((b, cout, h, w))
}

fn slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("pointwise conv: {what} must be contiguous"),
    }
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

/// `dst (m×n, row-major) = [dst +] lhs (m×k) · rhs (k×n)`.
///
/// # Safety
/// `dst` must hold m·n values, and `lhs`/`rhs` must address m×k and k×n values inside live
/// buffers with the given strides.
unsafe fn mm(m: usize, n: usize, k: usize, dst: &mut [f32], acc: bool, lhs: Mat, rhs: Mat) {
    debug_assert!(dst.len() >= m * n);
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
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
            parallelism(),
        )
    }
}

/// Forward: (x `[b, cin, h, w]`, weight `[cout, cin, 1, 1]`) → `[b, cout, h, w]`.
struct Pointwise;

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
        let x = slice(s1, l1, "input")?;
        let wt = slice(s2, l2, "weight")?;
        let mut out = vec![0f32; b * cout * hw];
        if hw > 0 && cin > 0 {
            let wm = Mat {
                ptr: wt.as_ptr(),
                rs: cin as isize,
                cs: 1,
            };
            for (n, o) in out.chunks_mut(cout * hw).enumerate() {
                let xm = Mat {
                    ptr: x[n * cin * hw..].as_ptr(),
                    rs: hw as isize,
                    cs: 1,
                };
                // SAFETY: o is cout×hw; wt is cout×cin; image n of x is cin×hw, all in bounds.
                unsafe { mm(cout, hw, cin, o, false, wm, xm) };
            }
        }
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
        let gx = g.apply_op2_no_bwd(weight, &GradInput)?;
        let gw = x.apply_op2_no_bwd(&g, &GradWeight)?;
        Ok((Some(gx), Some(gw)))
    }
}

/// (grad_out `[b, cout, h, w]`, weight) → grad_in `[b, cin, h, w]` = wᵀ · g per image.
struct GradInput;

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
        let g = slice(s1, l1, "output gradient")?;
        let wt = slice(s2, l2, "weight")?;
        let mut out = vec![0f32; b * cin * hw];
        if hw > 0 && cout > 0 {
            // wᵀ (cin×cout): element (i, j) = w[j·cin + i].
            let wm = Mat {
                ptr: wt.as_ptr(),
                rs: 1,
                cs: cin as isize,
            };
            for (n, o) in out.chunks_mut(cin * hw).enumerate() {
                let gm = Mat {
                    ptr: g[n * cout * hw..].as_ptr(),
                    rs: hw as isize,
                    cs: 1,
                };
                // SAFETY: o is cin×hw; wᵀ is cin×cout; image n of g is cout×hw.
                unsafe { mm(cin, hw, cout, o, false, wm, gm) };
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((b, cin, h, w))))
    }
}

/// (x `[b, cin, h, w]`, grad_out `[b, cout, h, w]`) → grad_weight `[cout, cin, 1, 1]` = Σ g · xᵀ.
struct GradWeight;

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
        let x = slice(s1, l1, "input")?;
        let g = slice(s2, l2, "output gradient")?;
        let mut out = vec![0f32; cout * cin];
        if hw > 0 {
            for n in 0..b {
                let gm = Mat {
                    ptr: g[n * cout * hw..].as_ptr(),
                    rs: hw as isize,
                    cs: 1,
                };
                // xᵀ (hw×cin): element (p, i) = x[i·hw + p].
                let xm = Mat {
                    ptr: x[n * cin * hw..].as_ptr(),
                    rs: 1,
                    cs: hw as isize,
                };
                // SAFETY: out is cout×cin; image n of g is cout×hw, of x cin×hw.
                unsafe { mm(cout, cin, hw, &mut out, n > 0, gm, xm) };
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((cout, cin, 1, 1))))
    }
}
