//! One integration-test binary; each module covers one area across crates.

mod agent;
mod agent_fuzz;
mod boards;
mod calibrate;
mod export_ort;
mod glibc;
mod interleaved;
mod npu;
mod rank;
mod rknn;
mod search;
mod torture;
mod train;
