//! The resumable step loop shared by supernet training (`train`) and standalone retraining
//! (`retrain`): batches, SGD under a [`LinearDecay`] schedule, checkpoints, progress reports.
//!
//! What differs between the two is behind [`Trainable`]: how a model is built or loaded, what a
//! step samples (the supernet's paths), and how a batch becomes losses and gradients. Everything
//! else is here, once: the `ChaCha8Rng` (stream 1 of the run seed) for sampling and augmentation,
//! the batcher's `(seed, epoch)` permutations, and checkpoints holding the weights
//! ([`Trainable::WEIGHTS_FILE`]), momentum buffers (`optimizer.safetensors`) and `state.json`
//! ([`TrainState`]: step, RNG, batcher position), so a killed run resumed from its last checkpoint
//! ends with the same weights as an uninterrupted one. Checkpoints are written into
//! `checkpoint.tmp/` and swapped in by renames; a run killed during the swap resumes from
//! `checkpoint.old/`.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::r#loop::{PreparedData, StepReport, TrainState};
use super::{Gradients, LinearDecay, Sgd, SgdConfig};
use crate::data::{Augment, Batcher, Normalize};
use crate::run_dir::{RunDir, write_atomic};

/// A model the step loop can train, checkpoint and resume.
pub trait Trainable: Sized {
    /// File name of the weights inside a checkpoint folder, e.g. `supernet.safetensors`.
    const WEIGHTS_FILE: &'static str;

    /// Writes the weights, tagged with `step`, to `path`.
    ///
    /// # Errors
    /// I/O failures naming the file.
    fn save(&self, path: &Path, step: u64) -> Result<()>;

    /// Called before step `step`'s batch is drawn; draws what the step needs from `rng` (the
    /// supernet samples its paths here) and may drop the momentum of weights it overwrites from
    /// `sgd` (the supernet's warm-up kernel inheritance). Nothing by default.
    ///
    /// # Errors
    /// Whatever the model's sampling fails with.
    fn prepare_step(&mut self, step: u64, rng: &mut ChaCha8Rng, sgd: &mut Sgd) -> Result<()> {
        let _ = (step, rng, sgd);
        Ok(())
    }

    /// The losses of step `step` on one batch (one per forward pass) and their summed gradients.
    ///
    /// # Errors
    /// Forward/backward failures or a non-finite loss, naming the arch and the flag to change.
    fn loss_and_grads(
        &mut self,
        step: u64,
        images: &Tensor,
        labels: &Tensor,
    ) -> Result<(Vec<f64>, Gradients)>;
}

/// The settings of the step loop (a subset of a run's config).
#[derive(Debug, Clone)]
pub struct LoopSettings {
    /// Optimizer steps in the whole run (the schedule reaches 0 there).
    pub steps: u64,
    /// Images per batch.
    pub batch: usize,
    /// Initial learning rate.
    pub lr: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// Weight decay (conv/linear weights only, see [`super::sgd::decays`]).
    pub weight_decay: f64,
    /// Seed of the batch order and of the sampling/augmentation RNG.
    pub seed: u64,
    /// Steps between checkpoints (the last step always checkpoints).
    pub checkpoint_every: u64,
    /// Steps between reports.
    pub log_every: u64,
    /// Training augmentation.
    pub augment: Augment,
    /// Per-channel normalisation.
    pub normalize: Normalize,
}

/// The files of one checkpoint folder: weights, optimizer, state.
fn ckpt_files<M: Trainable>(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    (
        dir.join(M::WEIGHTS_FILE),
        dir.join("optimizer.safetensors"),
        dir.join("state.json"),
    )
}

/// Writes a complete checkpoint and swaps it in ([`RunDir::swap_checkpoint`]).
fn save_checkpoint<M: Trainable>(
    run: &RunDir,
    model: &M,
    sgd: &Sgd,
    state: &TrainState,
) -> Result<()> {
    run.swap_checkpoint(|tmp| {
        let (w, o, s) = ckpt_files::<M>(tmp);
        model
            .save(&w, state.step)
            .with_context(|| format!("writing {}", w.display()))?;
        sgd.save_buffers(&o)?;
        write_atomic(&s, &serde_json::to_vec_pretty(state)?)
    })
}

/// Trains until step `until` (at most `settings.steps`), checkpointing there, and returns the
/// model. A Ctrl-C ([`crate::interrupt`]) ends the step in flight, checkpoints and returns
/// [`crate::interrupt::Interrupted`].
///
/// `open(None)` builds a fresh model; `open(Some(weights))` loads one from a checkpoint and
/// returns the step it was saved at (checked against `state.json`). Stopping early keeps the
/// schedule of the whole run, so resuming later continues exactly. `on_report` is called every
/// `log_every` steps and at the end, after the line is appended to `log.jsonl`.
///
/// # Errors
/// Data, checkpoint or tensor failures, naming the file.
pub fn run_steps<M: Trainable>(
    open: impl FnOnce(Option<&Path>) -> Result<(M, u64)>,
    settings: &LoopSettings,
    data: &PreparedData,
    run: &RunDir,
    device: &Device,
    until: u64,
    on_report: &mut dyn FnMut(&StepReport),
) -> Result<M> {
    check_steps(settings.steps)?;
    let until = until.min(settings.steps);
    let mut sgd = Sgd::new(SgdConfig {
        lr: settings.lr,
        momentum: settings.momentum,
        weight_decay: settings.weight_decay,
    });
    let mut batcher = Batcher::new(
        &data.pair.train,
        data.splits.train.clone(),
        settings.batch,
        settings.augment,
        settings.normalize.clone(),
        settings.seed,
    )?;
    let (mut model, mut state) = match run.resumable_checkpoint() {
        Some(dir) => {
            let (w, o, s) = ckpt_files::<M>(&dir);
            let state: TrainState = serde_json::from_slice(
                &fs::read(&s).with_context(|| format!("reading {}", s.display()))?,
            )
            .with_context(|| format!("parsing {}", s.display()))?;
            let (model, step) =
                open(Some(&w)).with_context(|| format!("loading {}", w.display()))?;
            if step != state.step {
                bail!(
                    "{}: weights are from step {step} but state.json says {}; the checkpoint is inconsistent",
                    dir.display(),
                    state.step
                );
            }
            sgd.load_buffers(&o, device)?;
            batcher.set_position(state.batcher);
            (model, state)
        }
        None => (
            open(None)?.0,
            TrainState {
                step: 0,
                // A stream of its own so init and sampling never share numbers.
                rng: {
                    let mut r = ChaCha8Rng::seed_from_u64(settings.seed);
                    r.set_stream(1);
                    r
                },
                batcher: batcher.position(),
            },
        ),
    };
    // Steps logged after the checkpoint (all of them when a killed run never checkpointed) are
    // trained and logged again.
    run.trim_log_after_step(state.step)?;
    let schedule = LinearDecay {
        base_lr: settings.lr,
        total_steps: settings.steps,
    };
    let (mut loss_sum, mut loss_n, mut images, mut t0) = (0.0, 0usize, 0usize, Instant::now());
    while state.step < until {
        let lr = schedule.lr(state.step);
        sgd.set_lr(lr);
        model.prepare_step(state.step, &mut state.rng, &mut sgd)?;
        let batch = batcher.next_batch(&mut state.rng, device)?;
        let (losses, grads) = model.loss_and_grads(state.step, &batch.images, &batch.labels)?;
        sgd.step(&grads)?;
        loss_sum += losses.iter().sum::<f64>();
        loss_n += losses.len();
        images += settings.batch * losses.len();
        state.step += 1;
        state.batcher = batcher.position();
        let stop = crate::interrupt::requested();
        let last = state.step == until || stop;
        let ckpt =
            last || (settings.checkpoint_every > 0 && state.step % settings.checkpoint_every == 0);
        // The log line goes first: a kill between it and the checkpoint leaves a line past the
        // checkpoint, which the resume drops and writes again, so every step is logged once.
        let report = (last || (settings.log_every > 0 && state.step % settings.log_every == 0))
            .then(|| StepReport {
                step: state.step,
                steps: settings.steps,
                loss: loss_sum / loss_n.max(1) as f64,
                lr,
                images_per_s: images as f64 / t0.elapsed().as_secs_f64().max(1e-9),
                checkpoint: ckpt,
            });
        if let Some(report) = &report {
            run.log(report)?;
        }
        if ckpt {
            save_checkpoint(run, &model, &sgd, &state)?;
        }
        if let Some(report) = &report {
            on_report(report);
            (loss_sum, loss_n, images, t0) = (0.0, 0, 0, Instant::now());
        }
        if stop && state.step < until {
            return Err(crate::interrupt::Interrupted { step: state.step }.into());
        }
    }
    Ok(model)
}

/// Refuses a run of 0 steps: it would train nothing and write no checkpoint to name.
///
/// # Errors
/// When `steps` is 0, naming `--steps`.
pub fn check_steps(steps: u64) -> Result<()> {
    if steps == 0 {
        bail!("--steps 0 trains nothing and writes no checkpoint; give --steps 1 or more");
    }
    Ok(())
}

/// The dropout seed of step `step` in a run seeded `seed` (so a resumed run draws the same masks).
pub fn dropout_seed(seed: u64, step: u64) -> u64 {
    seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}
