//! Latency predictors fitted to board measurements, and the statistics that say how far to trust them.
//!
//! - [`stats`]: Kendall τ-b, Spearman ρ, Pearson r, RMSE, RMSPE, MAE, share within ±5/10/15 %,
//!   bundled in [`stats::Report`].
//! - [`predictor`]: [`predictor::ArchFeatures`] (what the host knows of a subnet), the
//!   [`predictor::Predictor`] trait, the block-table and the ridge-regression predictors.
//! - [`fit`]: [`fit::calibrate`] splits measured subnets, fits both predictors, keeps the one
//!   with the lower held-out RMSPE, and returns a [`file::PredictorFile`].
//! - [`file`]: the JSON predictor file, with its board fingerprint check.
//!
//! No I/O: the host reads and writes the files and does the measuring.
#![deny(missing_docs)]

pub mod error;
pub mod file;
pub mod fit;
pub mod linalg;
pub mod predictor;
mod rng;
pub mod stats;

pub use error::{Error, Result};
pub use file::{PredictorFile, Provenance, Runtime};
pub use fit::{FitOptions, FitReport, calibrate};
pub use predictor::{ArchFeatures, Predictor};
