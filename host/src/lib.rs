//! The `shiftnas` host: command line, datasets, training, the architecture search ([`nas`], on
//! the generic optimiser in [`search`]), boards and reports.
//!
//! `main.rs` only parses and maps the outcome to an exit code; everything else is library code
//! that the integration tests and `examples/` call directly.

pub mod archive;
pub mod boards;
pub mod cli;
pub mod commands;
pub mod compute;
pub mod data;
pub mod interrupt;
pub mod latency;
pub mod nas;
pub mod output;
pub mod paths;
pub mod rank;
pub mod report;
pub mod run_dir;
pub mod search;
pub mod train;
