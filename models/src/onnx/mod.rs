//! ONNX export.
pub mod pb;
