//! Building blocks of the supernet: the depthwise conv custom op, 1×1 convs as gemm, affine-free
//! batch norm and seeded init.

pub mod bn;
pub mod bn_op;
#[cfg(feature = "cuda")]
pub mod dw_cuda;
pub mod dw_shift;
pub mod dwconv;
pub mod init;

use candle_core::Tensor;

pub use bn::BatchNorm;
pub use dwconv::{depthwise_conv2d, native_depthwise_conv2d};

/// 1×1 conv without bias as a batched matrix product: `x` `[b, cin, h, w]`, `weight`
/// `[cout, cin, 1, 1]` → `[b, cout, h, w]`. Same numbers as `conv2d`, and candle's matmul
/// backward gives both gradients.
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
    let x3 = x.contiguous()?.reshape((b, cin, h * w))?;
    weight
        .reshape((cout, cin))?
        .broadcast_matmul(&x3)?
        .reshape((b, cout, h, w))
}
