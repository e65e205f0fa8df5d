//! Latency predictors fitted to board measurements, and the statistics that say how far to trust them.
#![deny(missing_docs)]

pub mod error;
pub mod stats;

pub use error::{Error, Result};
