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
//!
//! ```
//! use shiftnas_calibration::{ArchFeatures, FitOptions, Predictor, PredictorFile, Provenance, Runtime};
//!
//! // Three blocks with two choices; latency = 1 ms + 0.5 ms per block taking choice 1.
//! let samples: Vec<(ArchFeatures, f64)> = (0..8u8)
//!     .map(|m| {
//!         let choices = vec![m & 1, (m >> 1) & 1, (m >> 2) & 1];
//!         let ms = 1.0 + 0.5 * choices.iter().map(|&c| c as f64).sum::<f64>();
//!         let f = ArchFeatures {
//!             choices,
//!             block_flops: vec![1_000_000; 3],
//!             stage_of_block: vec![0, 0, 1],
//!             total_flops: 3_000_000,
//!             params: 1000,
//!         };
//!         (f, ms)
//!     })
//!     .collect();
//! let provenance = Provenance {
//!     board_fingerprint: "my-board".into(),
//!     runtime: Runtime { name: "onnxruntime".into(), version: "1.22.0".into() },
//!     threads: 1,
//!     cores: vec![],
//!     space: "tiny".into(),
//! };
//! let opts = FitOptions { holdout: 0.25, ..FitOptions::default() };
//! let (file, report) = shiftnas_calibration::calibrate(&samples, None, &opts, provenance)?;
//! assert!(report.linear.holdout.rmspe_pct < 1.0);
//! let file = PredictorFile::from_json(&file.to_json())?;
//! file.check_board("my-board", false)?;
//! assert!((file.predict_checked(&samples[7].0)? - 2.5).abs() < 0.05);
//! # Ok::<(), shiftnas_calibration::Error>(())
//! ```
#![deny(missing_docs)]

pub mod error;
pub mod file;
pub mod fit;
pub mod linalg;
pub mod predictor;
pub mod ranking;
mod rng;
pub mod stats;

pub use error::{Error, Result};
pub use file::{PredictorFile, Provenance, Runtime};
pub use fit::{Calibration, FitOptions, FitReport, calibrate, calibrate_all};
pub use predictor::{ArchFeatures, Predictor};
