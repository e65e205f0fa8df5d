//! Depthwise convolution as a candle custom op with direct CPU loops.
//!
//! candle's grouped `conv2d` runs a depthwise conv as C single-channel convolutions stitched with
//! `narrow`/`cat`, 20–240× slower than PyTorch forward+backward. [`depthwise_conv2d`] runs the
//! forward pass and both gradients as loops over channels-last rows (module `dw_rows`), an image
//! per rayon job. Only square kernels with padding `k / 2`, f32 and contiguous NCHW are handled by the
//! loops; anything else (CUDA or other storage, other dtypes) falls back to candle's native grouped
//! `conv2d`, which gives the same numbers.

use super::cpu::contiguous_f32;
use super::dw_rows::{conv_nchw, grad_input_nchw, grad_weight_nchw};
use super::infer::depthwise::DwShape;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};

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
            batch: b,
            h,
            w,
            c,
            k: self.k,
            stride: self.stride,
        };
        let out = conv_nchw(x, s, wt);
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
        let (h, w, k) = (self.h, self.w, self.k);
        let go = contiguous_f32(s1, l1, OP, "output gradient")?;
        let wt = contiguous_f32(s2, l2, OP, "weight")?;
        let s = DwShape {
            batch: b,
            h,
            w,
            c,
            k,
            stride: self.stride,
        };
        let gx = if self.stride == 1 {
            // At stride 1 the input gradient is the forward conv of the output gradient with the
            // kernel flipped, whose loops need no check of which taps land where.
            let flipped: Vec<f32> = wt
                .chunks_exact(k * k)
                .flat_map(|k| k.iter().rev())
                .copied()
                .collect();
            conv_nchw(go, s, &flipped)
        } else {
            grad_input_nchw(go, s, wt)
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
        let x = contiguous_f32(s1, l1, OP, "input")?;
        let go = contiguous_f32(s2, l2, OP, "output gradient")?;
        let s = DwShape {
            batch: b,
            h,
            w,
            c,
            k: self.k,
            stride: self.stride,
        };
        let gw = grad_weight_nchw(x, go, s);
        Ok((CpuStorage::F32(gw), Shape::from((c, 1, self.k, self.k))))
    }
}
