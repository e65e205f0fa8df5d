//! Retraining one arch from scratch as a standalone network (SPOS's retrain step), on the same
//! resumable step loop as supernet training ([`super::engine`]).
//!
//! The recipe is SPOS's retraining scaled to the data: a [`Standalone`] (affine BN, fresh SPOS
//! init from `--seed`), SGD with momentum 0.9, lr 0.5 at batch 1024 scaled linearly to `--batch`
//! and decayed linearly to 0, label smoothing 0.1, weight decay 4e-5 on conv/linear weights only
//! (no BN parameters), the dataset's usual augmentation. Checkpoints hold `model.safetensors`,
//! `optimizer.safetensors` and `state.json`, so a killed run resumes exactly.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use shiftnas_models::{Arch, BnCalibration, Standalone};

use super::engine::{LoopSettings, Trainable, dropout_seed, run_steps};
use super::evaluate::{Accuracy, score, smoothed_cross_entropy};
use super::r#loop::{PreparedData, StepReport, space_for};
use super::sgd::Gradients;
use crate::data::batch::assemble;
use crate::data::{Augment, ConformOptions, DataSpec, Dataset, Normalize};
use crate::run_dir::RunDir;

/// SPOS's retraining learning rate at batch 1024; `--lr` defaults to it scaled to `--batch`.
pub const SPOS_RETRAIN_LR_AT_1024: f64 = 0.5;

/// The default learning rate for `batch` images per step (linear scaling of SPOS's 0.5 @ 1024).
pub fn default_retrain_lr(batch: usize) -> f64 {
    SPOS_RETRAIN_LR_AT_1024 * batch as f64 / 1024.0
}

/// Every effective setting of a retraining run; written to `config.toml` and read by `--resume`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrainConfig {
    /// Search-space preset name.
    pub space: String,
    /// The arch's digits.
    pub arch: String,
    /// Where the images come from.
    pub data: DataSpec,
    /// Optimizer steps in total.
    pub steps: u64,
    /// Images per batch.
    pub batch: usize,
    /// Initial learning rate (linear decay to 0 at `steps`).
    pub lr: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// Weight decay on conv/linear weights (BN γ/β are not decayed).
    pub weight_decay: f64,
    /// Label smoothing of the cross-entropy.
    pub label_smoothing: f64,
    /// Seed of init, augmentation and batch order.
    pub seed: u64,
    /// Seed of the proxy split (the supernet run's `seed`, so the proxy images are the same).
    pub split_seed: u64,
    /// Steps between checkpoints (the last step always checkpoints).
    pub checkpoint_every: u64,
    /// Steps between `log.jsonl` lines.
    pub log_every: u64,
    /// Training images held out (the supernet run's proxy split when it came from one).
    pub proxy_size: usize,
    /// Channel conversion / resizing allowed.
    pub conform: ConformOptions,
    /// Training augmentation.
    pub augment: Augment,
    /// Per-channel normalisation (computed from the training split when the run starts).
    pub normalize: Normalize,
    /// The supernet run the arch was found with, if any (for the record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supernet_run: Option<PathBuf>,
}

impl RetrainConfig {
    /// The arch, checked against the space for `classes` classes.
    ///
    /// # Errors
    /// An unknown space or an arch that does not fit it, naming both.
    pub fn parsed_arch(&self, classes: usize) -> Result<(shiftnas_models::Space, Arch)> {
        let space = space_for(&self.space, classes)?;
        let arch = space
            .parse_arch(&self.arch)
            .with_context(|| format!("--arch {} for space {}", self.arch, self.space))?;
        Ok((space, arch))
    }

    fn loop_settings(&self) -> LoopSettings {
        LoopSettings {
            steps: self.steps,
            batch: self.batch,
            lr: self.lr,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            seed: self.seed,
            checkpoint_every: self.checkpoint_every,
            log_every: self.log_every,
            augment: self.augment,
            normalize: self.normalize.clone(),
        }
    }
}

/// The standalone net as the step loop trains it.
struct StandaloneStep<'a> {
    net: Standalone,
    config: &'a RetrainConfig,
}

impl Trainable for StandaloneStep<'_> {
    const WEIGHTS_FILE: &'static str = "model.safetensors";

    fn save(&self, path: &Path, step: u64) -> Result<()> {
        Ok(self.net.save(path, step)?)
    }

    fn loss_and_grads(
        &mut self,
        step: u64,
        images: &Tensor,
        labels: &Tensor,
    ) -> Result<(Vec<f64>, Gradients)> {
        let (net, config) = (&self.net, self.config);
        net.set_dropout_seed(dropout_seed(config.seed, step));
        let logits = net
            .forward_t(images, true)
            .with_context(|| format!("training forward of arch {}", net.arch()))?;
        let loss = smoothed_cross_entropy(&logits, labels, config.label_smoothing)?;
        let store = loss.backward()?;
        let grads = Gradients::from_store(&net.trainable(), &store)?;
        let loss = f64::from(loss.to_scalar::<f32>()?);
        if !loss.is_finite() {
            bail!(
                "step {step}: loss of arch {} is {loss}; lower --lr (now {})",
                net.arch(),
                config.lr
            );
        }
        Ok((vec![loss], grads))
    }
}

/// Retrains `config.arch` in `run` (fresh, or resumed from its checkpoint) and returns the net.
///
/// # Errors
/// Data, checkpoint or tensor failures, naming the file or arch.
pub fn retrain(
    config: &RetrainConfig,
    data: &PreparedData,
    run: &RunDir,
    device: &Device,
    on_report: &mut dyn FnMut(&StepReport),
) -> Result<Standalone> {
    retrain_until(config, data, run, device, config.steps, on_report)
}

/// Retrains until step `until` (at most `config.steps`), checkpointing there; stopping early keeps
/// the whole run's schedule, so a later resume continues exactly. The run's `config.toml` must
/// already be written.
///
/// # Errors
/// Data, checkpoint or tensor failures, naming the file or arch.
pub fn retrain_until(
    config: &RetrainConfig,
    data: &PreparedData,
    run: &RunDir,
    device: &Device,
    until: u64,
    on_report: &mut dyn FnMut(&StepReport),
) -> Result<Standalone> {
    let (space, arch) = config.parsed_arch(data.pair.train.num_classes())?;
    let open = |weights: Option<&Path>| -> Result<(StandaloneStep<'_>, u64)> {
        let (net, step) = match weights {
            Some(w) => Standalone::load_for(w, &space, &arch, device)?,
            None => (Standalone::new(&space, &arch, device, config.seed)?, 0),
        };
        Ok((StandaloneStep { net, config }, step))
    };
    let trained = run_steps(
        open,
        &config.loop_settings(),
        data,
        run,
        device,
        until,
        on_report,
    )?;
    Ok(trained.net)
}

/// Accuracy of a trained standalone net (eval mode: running BN statistics, no dropout) on images
/// `indices` of `data`.
///
/// # Errors
/// An empty split or a failing forward pass.
pub fn score_standalone(
    net: &Standalone,
    data: &Dataset,
    indices: &[usize],
    normalize: &Normalize,
    batch: usize,
) -> Result<Accuracy> {
    let logits = |x: &Tensor| {
        net.forward_t(x, false)
            .with_context(|| format!("evaluating retrained arch {}", net.arch()))
    };
    score(logits, data, indices, normalize, batch, net.device())
}

/// Recomputes the BN running statistics of `net` exactly (the average over `images` training
/// images, in batches of `batch`, taken from a seeded permutation of `indices`) with its final
/// weights: "precise BN". Short runs need it, as the training EMA lags behind weights that are
/// still moving; it is a no-op when `images` is 0.
///
/// # Errors
/// A failing forward pass.
pub fn precise_bn(
    net: &Standalone,
    data: &Dataset,
    indices: &[usize],
    normalize: &Normalize,
    images: usize,
    batch: usize,
) -> Result<()> {
    if images == 0 || indices.is_empty() {
        return Ok(());
    }
    let mut order = indices.to_vec();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(0));
    order.truncate(images);
    let device = net.device().clone();
    let mut unused = ChaCha8Rng::seed_from_u64(0);
    let batches = order.chunks(batch.max(1)).map(|idx| {
        assemble(data, idx, Augment::NONE, normalize, &mut unused, &device)
            .map(|b| b.images)
            .map_err(|e| shiftnas_models::Error::BadInput(format!("{e:#}")))
    });
    net.calibrate_bn(batches, BnCalibration::Exact)
        .with_context(|| format!("recalibrating BN of retrained arch {}", net.arch()))
}

#[cfg(test)]
#[path = "retrain_tests.rs"]
mod tests;
