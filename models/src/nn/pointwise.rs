//! 1×1 convolution as one candle custom op around candle's CPU gemm (DESIGN §6).
//!
//! The plain composition (contiguous → reshape → broadcast weight → batched matmul → reshape)
//! puts five nodes in the graph, each with a `zeros_like + add` gradient accumulation and the
//! broadcast weight's `[b, cout, cin]` gradient. [`pointwise_conv2d`] is one node: the forward is
//! a single batched gemm reading the weight with a zero batch stride, the backward two gemms.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};

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
        if !l1.is_contiguous() || !l2.is_contiguous() {
            candle_core::bail!("pointwise conv: inputs must be contiguous");
        }
        // weight as [b, cout, cin] with batch stride 0; x as [b, cin, hw].
        let wl = Layout::new(
            Shape::from((b, cout, cin)),
            vec![0, cin, 1],
            l2.start_offset(),
        );
        let xl = Layout::new(
            Shape::from((b, cin, hw)),
            vec![cin * hw, hw, 1],
            l1.start_offset(),
        );
        let out = s2.matmul(s1, (b, cout, hw, cin), &wl, &xl)?;
        Ok((out, Shape::from((b, cout, h, w))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (b, cin, h, w) = x.dims4()?;
        let cout = weight.dim(0)?;
        let g3 = grad.detach().contiguous()?.reshape((b, cout, h * w))?;
        let w2 = weight.detach().reshape((cout, cin))?;
        let gx = w2.t()?.broadcast_matmul(&g3)?.reshape((b, cin, h, w))?;
        let x3 = x.detach().reshape((b, cin, h * w))?;
        let gw = g3.matmul(&x3.t()?)?.sum(0)?.reshape((cout, cin, 1, 1))?;
        Ok((Some(gx), Some(gw)))
    }
}
