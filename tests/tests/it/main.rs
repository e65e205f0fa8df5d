//! One integration-test binary; each module covers one area across crates.

mod agent;
mod boards;
mod calibrate;
mod export_ort;
mod npu;
mod rank;
mod search;
mod train;
