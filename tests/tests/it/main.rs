//! One integration-test binary; each module covers one area across crates.

mod agent;
mod boards;
mod export_ort;
