//! Inference kernels on plain f32 buffers: the eval-mode forward of a BN-folded network, with no
//! candle tensors and no autograd bookkeeping.
//!
//! Activations are channels-last (NHWC): a `[pixels, channels]` matrix per image batch, so a 1×1
//! conv is one gemm, a depthwise conv runs 8 channels per SIMD lane group (16 with AVX-512) with
//! its accumulators in registers, and the SPOS channel split and concat are strided copies. On a
//! CPU with AVX-512F the 1×1 and depthwise convs run hand-written AVX-512 copies ([`avx512`]);
//! elsewhere the `gemm` crate and AVX2/baseline loops. Measured on a 2-core AMD
//! EPYC (docs/benchmarks.md, "Supernet training step (CPU)") this beat the NCHW training kernels
//! on every shape of the SPOS spaces. Each kernel is single-threaded: the caller runs a few images
//! through the whole network per rayon job, which keeps their activations in the core's L2 cache.
//!
//! Every kernel checks its buffer sizes and panics with the shapes on a mismatch (a wiring bug,
//! not a user error).

#[cfg(target_arch = "x86_64")]
pub mod avx512;
pub mod batchnorm;
pub mod channels;
pub mod dense;
pub mod depthwise;
pub mod head;
pub mod pointwise;

pub use batchnorm::{Moments, channel_sq_devs, channel_sums, normalize_act};
pub use channels::copy_channels;
pub use dense::dense_conv_nchw_in;
pub use depthwise::depthwise_nhwc;
pub use head::pool_linear;
pub use pointwise::pointwise_nhwc;

/// The activation a kernel applies after its bias (the folded BN's shift).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Identity.
    None,
    /// `max(v, 0)`.
    Relu,
    /// `min(max(v, 0), 6)` (MobileNetV2).
    Relu6,
}

impl Activation {
    /// The activation of one value.
    #[inline(always)]
    pub fn apply(self, v: f32) -> f32 {
        match self {
            Activation::None => v,
            Activation::Relu => v.max(0.0),
            Activation::Relu6 => v.clamp(0.0, 6.0),
        }
    }

    /// The upper clip of a rectifier (∞ for the ReLU, 6 for ReLU6); `None` for the identity.
    /// A rectified value passes the gradient where `0 < v < cap`.
    pub(crate) fn cap(self) -> Option<f32> {
        match self {
            Activation::None => None,
            Activation::Relu => Some(f32::INFINITY),
            Activation::Relu6 => Some(6.0),
        }
    }

    /// `act(t)` with plain candle ops (the composition the fused ops are checked against).
    ///
    /// # Errors
    /// A candle error.
    pub fn apply_tensor(self, t: candle_core::Tensor) -> candle_core::Result<candle_core::Tensor> {
        match self {
            Activation::None => Ok(t),
            Activation::Relu => t.relu(),
            Activation::Relu6 => t.relu()?.minimum(6f32),
        }
    }
}

/// `act(x + bias)` on every row of `rows` rows of `bias.len()` values, row stride `rs`.
#[inline(always)]
pub(crate) fn bias_act(out: &mut [f32], rows: usize, rs: usize, bias: &[f32], act: Activation) {
    let n = bias.len();
    for r in 0..rows {
        let row = &mut out[r * rs..r * rs + n];
        match act {
            Activation::None => {
                for (v, &b) in row.iter_mut().zip(bias) {
                    *v += b;
                }
            }
            Activation::Relu => {
                for (v, &b) in row.iter_mut().zip(bias) {
                    *v = (*v + b).max(0.0);
                }
            }
            Activation::Relu6 => {
                for (v, &b) in row.iter_mut().zip(bias) {
                    *v = (*v + b).clamp(0.0, 6.0);
                }
            }
        }
    }
}
