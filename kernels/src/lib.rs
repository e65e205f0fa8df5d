//! The kernel library of the shiftnas supernet: candle custom ops with CPU loops (depthwise conv,
//! 1×1 conv as gemm, the stem as a 1×1 conv over image patches, fused batch norm, channel
//! split/concat), the NVRTC CUDA kernels of the depthwise conv (feature `cuda`), affine-free batch
//! norm, seeded init, and the process-wide CPU tuning the ops run fastest under ([`tuning`]).
//!
//! One op per module. Every op computes the same numbers as a plain-candle composition, which
//! other devices and dtypes run; the tests check each op against it.
#![deny(missing_docs)]

pub mod bn;
pub mod bn_affine;
pub mod bn_op;
pub mod conv;
mod cpu;
#[cfg(feature = "cuda")]
pub mod dw_cuda;
mod dw_rows;
pub mod dw_shift;
pub mod dwconv;
pub mod glue;
pub mod infer;
pub mod init;
mod layout;
pub mod pointwise;
pub mod tuning;

pub use bn::BatchNorm;
pub use dwconv::{depthwise_conv2d, native_depthwise_conv2d};
pub use pointwise::pointwise_conv2d;
