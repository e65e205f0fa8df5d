//! Building blocks of the supernet: the depthwise conv custom op, 1×1 convs as gemm (and the stem
//! as a 1×1 conv over image patches), affine-free batch norm and seeded init.

pub mod bn;
pub mod bn_affine;
pub mod bn_op;
pub mod conv;
mod cpu;
#[cfg(feature = "cuda")]
pub mod dw_cuda;
pub mod dw_shift;
pub mod dwconv;
pub mod glue;
pub mod init;
pub mod pointwise;

pub use bn::BatchNorm;
pub use dwconv::{depthwise_conv2d, native_depthwise_conv2d};
pub use pointwise::pointwise_conv2d;
