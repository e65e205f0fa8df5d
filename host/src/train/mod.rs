//! Supernet training: uniform single-path sampling, SGD with momentum, BN calibration.

pub mod schedule;
pub mod sgd;

pub use schedule::LinearDecay;
pub use sgd::{Gradients, Sgd, SgdConfig};
