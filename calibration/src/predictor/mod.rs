//! Latency predictors: what an arch looks like to them ([`ArchFeatures`]), the [`Predictor`]
//! trait, and the serialisable [`Model`] that is either a block table ([`lut`]) or a fitted
//! linear model ([`linear`]).
//!
//! [`ArchFeatures`] is plain data the host builds from `shiftnas_models::cost`, so this crate
//! stays free of candle and of the space definition.

pub mod linear;
pub mod lut;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
pub use linear::{FeatureSet, LinearPredictor};
pub use lut::{BlockTable, LutPredictor};

/// What a predictor sees of one subnet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArchFeatures {
    /// The chosen op per searchable block (the arch digits, 0-based).
    pub choices: Vec<u8>,
    /// FLOPs (multiply-adds) of each block with its chosen op.
    pub block_flops: Vec<u64>,
    /// Stage index (0-based) of each block.
    pub stage_of_block: Vec<usize>,
    /// FLOPs of the whole subnet, stem and head included.
    pub total_flops: u64,
    /// Parameters of the whole subnet.
    pub params: u64,
}

impl ArchFeatures {
    /// Number of searchable blocks.
    pub fn n_blocks(&self) -> usize {
        self.choices.len()
    }

    /// Number of stages (largest stage index + 1).
    pub fn n_stages(&self) -> usize {
        self.stage_of_block.iter().max().map_or(0, |s| s + 1)
    }

    /// Checks that the per-block vectors agree in length and are not empty.
    pub fn validate(&self) -> Result<()> {
        let n = self.choices.len();
        if n == 0 {
            return Err(Error::Features("no blocks (`choices` is empty)".into()));
        }
        if self.block_flops.len() != n || self.stage_of_block.len() != n {
            return Err(Error::Features(format!(
                "{n} choices but {} block_flops and {} stage_of_block entries; build all three per block",
                self.block_flops.len(),
                self.stage_of_block.len()
            )));
        }
        Ok(())
    }
}

/// Predicts a subnet's latency in milliseconds.
pub trait Predictor {
    /// Predicted latency (ms). Call [`Predictor::check`] first on features from elsewhere: on
    /// mismatching features this does not panic, but the number is meaningless.
    fn predict(&self, features: &ArchFeatures) -> f64;

    /// Errors when `features` does not fit this predictor (block count, choice range, stages).
    fn check(&self, features: &ArchFeatures) -> Result<()>;
}

/// Which kind of predictor a [`Model`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Block table + linear correction, [`LutPredictor`].
    Lut,
    /// Ridge regression on arch features, [`LinearPredictor`].
    Linear,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Lut => "lut",
            Kind::Linear => "linear",
        })
    }
}

/// A fitted predictor of either kind; serialised with a `kind` tag (`"lut"` | `"linear"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Model {
    /// See [`LutPredictor`].
    Lut(LutPredictor),
    /// See [`LinearPredictor`].
    Linear(LinearPredictor),
}

impl Model {
    /// The kind tag.
    pub fn kind(&self) -> Kind {
        match self {
            Model::Lut(_) => Kind::Lut,
            Model::Linear(_) => Kind::Linear,
        }
    }

    /// Checks internal consistency after parsing (table shape, coefficient count, finiteness).
    pub fn validate(&self) -> Result<()> {
        match self {
            Model::Lut(p) => p.validate(),
            Model::Linear(p) => p.validate(),
        }
    }
}

impl Predictor for Model {
    fn predict(&self, features: &ArchFeatures) -> f64 {
        match self {
            Model::Lut(p) => p.predict(features),
            Model::Linear(p) => p.predict(features),
        }
    }

    fn check(&self, features: &ArchFeatures) -> Result<()> {
        match self {
            Model::Lut(p) => p.check(features),
            Model::Linear(p) => p.check(features),
        }
    }
}

/// Errors unless every value is finite; `field` names where it sits for the message.
pub(crate) fn check_finite(field: &str, values: &[f64]) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(Error::Field {
            field: format!("{field}[{i}]"),
            reason: format!("{} is not a finite number", values[i]),
        }),
        None => Ok(()),
    }
}
