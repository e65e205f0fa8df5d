//! What a network is: search spaces (ShuffleNetV2 and MobileNetV2 families), architectures, their cost, the weight-sharing supernet, the
//! standalone subnet and its ONNX export.
//!
//! Data flows space → arch → supernet → subnet → ONNX:
//!
//! ```
//! use shiftnas_models::{Arch, Space};
//! let space = Space::by_name("spos-imagenet").unwrap();
//! let arch: Arch = "21012020202300003233".parse().unwrap();
//! space.check_arch(&arch).unwrap();
//! assert_eq!(arch.to_string(), "21012020202300003233");
//! ```
#![deny(missing_docs)]

pub mod arch;
pub mod checkpoint;
pub mod cost;
pub mod error;
pub mod inference;
pub mod onnx;
pub mod space;
pub mod standalone;
pub mod subnet;
pub mod supernet;

pub use arch::Arch;
pub use error::{ArchError, Error, Result};
pub use space::{BlockShape, Choice, Family, Space, Stage, Stem, Wiring};
pub use standalone::Standalone;
pub use supernet::{BnCalibration, Supernet};
