//! Scoring archs with supernet weights, remembering at which supernet step each score was taken.
//!
//! Error is `100 − top-1 %` on the fixed proxy split after BN calibration. A cached score is reused
//! only while the supernet has not moved since it was measured; after a shift it is stale and the
//! arch is scored again. [`Evaluator::error`] calibrates BN over the fixed `bn_images` first;
//! [`Evaluator::error_calibrated`] scores with the statistics already set (shared with shifting).

use std::collections::HashMap;

use anyhow::Result;
use shiftnas_models::{Arch, Supernet};

use crate::data::{Dataset, Normalize};
use crate::train::{BnMode, BnSource, evaluate};

/// Scores archs on the proxy split; owns the score cache.
#[derive(Debug)]
pub struct Evaluator<'a> {
    /// The training set (proxy and calibration images).
    pub data: &'a Dataset,
    /// Proxy split indices (scored).
    pub proxy: &'a [usize],
    /// Training split indices (BN calibration).
    pub train: &'a [usize],
    /// Normalisation.
    pub normalize: &'a Normalize,
    /// BN calibration mode.
    pub bn: BnMode,
    /// BN calibration images.
    pub bn_images: usize,
    /// Seed of the calibration images.
    pub seed: u64,
    /// Images per forward batch.
    pub batch: usize,
    cache: HashMap<Arch, (f64, u64)>,
}

impl<'a> Evaluator<'a> {
    /// An evaluator with an empty cache.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        data: &'a Dataset,
        proxy: &'a [usize],
        train: &'a [usize],
        normalize: &'a Normalize,
        bn: BnMode,
        bn_images: usize,
        seed: u64,
        batch: usize,
    ) -> Evaluator<'a> {
        Evaluator {
            data,
            proxy,
            train,
            normalize,
            bn,
            bn_images,
            seed,
            batch,
            cache: HashMap::new(),
        }
    }

    /// Remembers a score (e.g. read back from the archive on resume).
    pub fn remember(&mut self, arch: Arch, error: f64, step: u64) {
        self.cache.insert(arch, (error, step));
    }

    /// Error % of `arch` under the weights of supernet step `step` (cached while not stale).
    ///
    /// # Errors
    /// BN calibration or forward failures, naming the arch.
    pub fn error(&mut self, net: &Supernet, arch: &Arch, step: u64) -> Result<f64> {
        self.score(net, arch, step, self.bn)
    }

    /// Error % of `arch` whose BN statistics were already set for it (e.g. by the shifting
    /// forward, [`super::shifting::Shifter::accumulate_calibrating`]): no calibration here.
    ///
    /// # Errors
    /// Forward failures, naming the arch.
    pub fn error_calibrated(&mut self, net: &Supernet, arch: &Arch, step: u64) -> Result<f64> {
        self.score(net, arch, step, BnMode::None)
    }

    /// Error % of `arch` under the current weights, BN calibrated as [`Evaluator::error`] does,
    /// neither read from nor kept in the cache: a score outside the search (`--track`) that must
    /// not stand in for a candidate's.
    ///
    /// # Errors
    /// BN calibration or forward failures, naming the arch.
    pub fn error_uncached(&self, net: &Supernet, arch: &Arch) -> Result<f64> {
        self.measure(net, arch, self.bn)
    }

    fn score(&mut self, net: &Supernet, arch: &Arch, step: u64, mode: BnMode) -> Result<f64> {
        if let Some(&(e, s)) = self.cache.get(arch)
            && s == step
        {
            return Ok(e);
        }
        let e = self.measure(net, arch, mode)?;
        self.cache.insert(arch.clone(), (e, step));
        Ok(e)
    }

    fn measure(&self, net: &Supernet, arch: &Arch, mode: BnMode) -> Result<f64> {
        let bn = BnSource {
            data: self.data,
            indices: self.train,
            mode,
            images: self.bn_images,
            seed: self.seed,
        };
        let acc = evaluate(
            net,
            arch,
            self.data,
            self.proxy,
            self.normalize,
            bn,
            self.batch,
        )?;
        Ok(100.0 * (1.0 - acc.top1))
    }
}
