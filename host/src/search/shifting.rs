//! Supernet Shifting: the supernet keeps training on the paths the search visits.
//!
//! `accumulate` (the paper's Algorithm 1): every candidate's training loss over `shift_samples`
//! images is back-propagated while the generation is scored, the gradients are summed, and after
//! the generation the supernet takes exactly one SGD step ([`Shifter::end_generation`]).
//! `immediate` (the authors' released code): each candidate first takes `shift_steps` SGD steps of
//! `shift_batch` images on its own path, then is scored ([`Shifter::before_score`]).
//! `masked` updates touch only the parameters that got a gradient (the visited paths: momentum and
//! weight decay only there); `full` gives every trainable parameter a (zero) gradient, so momentum
//! and weight decay move all of them. The optimizer's buffers persist across generations and are
//! checkpointed by the driver.

use anyhow::Result;
use candle_core::Tensor;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use shiftnas_models::{Arch, Supernet};

use crate::data::{Batcher, BatcherPosition};
use crate::train::{Gradients, Sgd, SgdConfig, batch_loss_and_grads};

/// How the supernet shifts during the search (`--shift`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ShiftMode {
    /// Accumulate candidates' gradients, one SGD step per generation (paper, Alg. 1).
    Accumulate,
    /// `shift_steps` SGD steps on each candidate's path before scoring it (authors' code).
    Immediate,
    /// No shifting: the supernet is frozen.
    Off,
}

/// Which parameters a shifting step updates (`--shift-update`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ShiftUpdate {
    /// Only the parameters on the evaluated paths.
    Masked,
    /// Every trainable parameter gets momentum and weight decay.
    Full,
}

/// Shifting settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ShiftConfig {
    /// The mode.
    pub mode: ShiftMode,
    /// Masked or full updates.
    pub update: ShiftUpdate,
    /// `accumulate`: training images per candidate (paper: 640).
    pub samples: usize,
    /// `immediate`: SGD steps per candidate (authors: 20).
    pub steps: usize,
    /// Images per shifting batch (authors: 150).
    pub batch: usize,
    /// SGD learning rate, momentum, weight decay (1e-4, 0.9, 4e-5).
    pub sgd: SgdConfig,
    /// Label smoothing of the shifting loss.
    pub label_smoothing: f64,
}

impl Default for ShiftConfig {
    fn default() -> Self {
        ShiftConfig {
            mode: ShiftMode::Accumulate,
            update: ShiftUpdate::Masked,
            samples: 640,
            steps: 20,
            batch: 150,
            sgd: SgdConfig {
                lr: 1e-4,
                momentum: 0.9,
                weight_decay: 4e-5,
            },
            label_smoothing: 0.1,
        }
    }
}

/// Applies shifting to a supernet; owns the optimizer and the pending gradients.
#[derive(Debug)]
pub struct Shifter {
    config: ShiftConfig,
    /// The optimizer (its buffers are checkpointed).
    pub sgd: Sgd,
    pending: Gradients,
    candidates: usize,
    /// Optimizer steps taken so far (added to the checkpoint's training step).
    pub steps_taken: u64,
}

impl Shifter {
    /// A shifter with fresh optimizer state.
    pub fn new(config: ShiftConfig) -> Shifter {
        Shifter {
            config,
            sgd: Sgd::new(config.sgd),
            pending: Gradients::default(),
            candidates: 0,
            steps_taken: 0,
        }
    }

    /// The settings.
    pub fn config(&self) -> &ShiftConfig {
        &self.config
    }

    /// Mean gradient of `arch`'s loss over `images` training images drawn from `batcher`.
    fn loss_grads(
        &self,
        net: &Supernet,
        arch: &Arch,
        batcher: &mut Batcher<'_>,
        images: usize,
        rng: &mut ChaCha8Rng,
    ) -> Result<Gradients> {
        let batch = self.config.batch.max(1);
        let n = images.div_ceil(batch).max(1);
        let mut grads = Gradients::default();
        for _ in 0..n {
            let b = batcher.next_batch(rng, net.device())?;
            let (loss, mut g) =
                batch_loss_and_grads(net, arch, &b.images, &b.labels, self.config.label_smoothing)?;
            anyhow::ensure!(
                loss.is_finite(),
                "shifting loss of arch {arch} is {loss}; lower --shift-lr"
            );
            g.scale(1.0 / n as f64)?;
            grads.add(g)?;
        }
        Ok(grads)
    }

    /// One optimizer step with `grads`, widened to all parameters in `full` mode.
    fn step(&mut self, net: &Supernet, mut grads: Gradients) -> Result<()> {
        if self.config.update == ShiftUpdate::Full {
            grads.add(zero_grads(net)?)?;
        }
        self.sgd.step(&grads)?;
        self.steps_taken += 1;
        Ok(())
    }

    /// `immediate`: `steps` SGD steps on `arch`'s path (call before scoring it); else nothing.
    ///
    /// # Errors
    /// Forward/backward failures or a non-finite loss.
    pub fn before_score(
        &mut self,
        net: &Supernet,
        arch: &Arch,
        batcher: &mut Batcher<'_>,
        rng: &mut ChaCha8Rng,
    ) -> Result<()> {
        if self.config.mode != ShiftMode::Immediate {
            return Ok(());
        }
        for _ in 0..self.config.steps {
            let g = self.loss_grads(net, arch, batcher, self.config.batch, rng)?;
            self.step(net, g)?;
        }
        Ok(())
    }

    /// `accumulate`: adds `arch`'s loss gradient over `samples` images; else nothing.
    ///
    /// # Errors
    /// Forward/backward failures or a non-finite loss.
    pub fn accumulate(
        &mut self,
        net: &Supernet,
        arch: &Arch,
        batcher: &mut Batcher<'_>,
        rng: &mut ChaCha8Rng,
    ) -> Result<()> {
        if self.config.mode != ShiftMode::Accumulate {
            return Ok(());
        }
        let g = self.loss_grads(net, arch, batcher, self.config.samples, rng)?;
        self.pending.add(g)?;
        self.candidates += 1;
        Ok(())
    }

    /// `accumulate`: the one SGD step of the generation (mean of the candidates' gradients).
    /// Returns whether a step was taken.
    ///
    /// # Errors
    /// Tensor failures.
    pub fn end_generation(&mut self, net: &Supernet) -> Result<bool> {
        if self.config.mode != ShiftMode::Accumulate || self.candidates == 0 {
            return Ok(false);
        }
        let mut g = std::mem::take(&mut self.pending);
        g.scale(1.0 / self.candidates as f64)?;
        self.candidates = 0;
        self.step(net, g)?;
        Ok(true)
    }
}

/// Zero gradients for every trainable parameter (so `full` updates reach all of them).
fn zero_grads(net: &Supernet) -> Result<Gradients> {
    let params = net.trainable();
    let mut total: Option<Tensor> = None;
    for (_, v) in &params {
        let t = (v.as_tensor().sum_all()? * 0.0)?;
        total = Some(match total {
            Some(s) => (s + t)?,
            None => t,
        });
    }
    match total {
        Some(t) => Gradients::from_store(&params, &t.backward()?),
        None => Ok(Gradients::default()),
    }
}

/// Where the shifting batcher is, for checkpoints.
pub type ShiftCursor = BatcherPosition;
