//! The supernet training loop: path sampling, resumable run dirs.
//!
//! Each step samples its paths ([`PathSampler`]: SPOS uniform single path; FairNAS strict
//! fairness, as many paths as choices, every choice of every block used exactly once; GreedyNAS,
//! the best `k` of `m` candidates scored on a held-out batch; AttentiveNAS, the best or worst of
//! `k` candidates by a cheap accuracy predictor), runs forward/backward on one batch with
//! label-smoothed cross-entropy (gradients of several paths summed, one update), and updates only
//! the sampled weights with [`Sgd`](super::Sgd) under a [`LinearDecay`](super::LinearDecay)
//! schedule. The step loop itself (batches, schedule, checkpoints, resume, reports) is
//! [`super::engine`]'s, shared with standalone retraining.
//!
//! Everything random comes from one `ChaCha8Rng` seeded by `--seed` (arch sampling and
//! augmentation), the batcher's `(seed, epoch)` permutations, and a dropout seed derived from the
//! step. A checkpoint holds the weights and BN statistics (`supernet.safetensors`), momentum
//! buffers (`optimizer.safetensors`), `state.json` (step, RNG, batcher position) and, for
//! GreedyNAS, the candidate pool (`greedy_pool.json`), so a killed run resumed from its last
//! checkpoint ends with the same weights as an uninterrupted one.
//! Checkpoints are written into `checkpoint.tmp/` and swapped in by renames; a run killed during
//! the swap resumes from `checkpoint.old/`.

use std::path::Path;

use anyhow::{Context, Result, bail};
use candle_core::{Device, Tensor};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use shiftnas_models::{Arch, Space, Supernet};

use super::attentive::{self, AttentiveScore};
use super::engine::{LoopSettings, Trainable, dropout_seed, run_steps};
use super::evaluate::smoothed_cross_entropy;
use super::greedy::GreedyPool;
use super::sampling::{MultiPath, PathSampler, Sampling, StepPaths};
use super::{Gradients, Sgd};
use crate::data::Dataset;
use crate::data::batch::assemble;
use crate::data::split::default_proxy_size;
use crate::data::{
    Augment, BatcherPosition, ConformOptions, DataPair, DataSpec, Normalize, Splits,
};
use crate::run_dir::{RunDir, write_atomic};

/// Every effective setting of a training run; written to `config.toml` and read by `--resume`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Search-space preset name.
    pub space: String,
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
    /// Weight decay on conv/linear weights.
    pub weight_decay: f64,
    /// Label smoothing of the cross-entropy.
    pub label_smoothing: f64,
    /// Seed of init, sampling, augmentation, proxy split and batch order.
    pub seed: u64,
    /// Steps between checkpoints (the last step always checkpoints).
    pub checkpoint_every: u64,
    /// Steps between `log.jsonl` lines.
    pub log_every: u64,
    /// Path sampling.
    pub sampling: Sampling,
    /// Steps of path warm-up (uniform and FLOPs-binned sampling; see
    /// [`super::sampling::warmup_arch`]); 0 = plain SPOS.
    #[serde(default)]
    pub warmup_steps: u64,
    /// FLOPs bins of `--sampling flops-binned`.
    #[serde(default = "default_flops_bins")]
    pub flops_bins: usize,
    /// Images held out from training for proxy scoring.
    pub proxy_size: usize,
    /// Channel conversion / resizing allowed.
    pub conform: ConformOptions,
    /// Training augmentation.
    pub augment: Augment,
    /// Per-channel normalisation (computed from the training split when the run starts).
    pub normalize: Normalize,
    /// GreedyNAS and AttentiveNAS settings (ignored by the other sampling methods).
    #[serde(default)]
    pub multi_path: MultiPath,
}

fn default_flops_bins() -> usize {
    10
}

/// Data ready for a space: both sets conformed, splits, and normalisation.
#[derive(Debug, Clone)]
pub struct PreparedData {
    /// Training and test sets, fitted to the space's input.
    pub pair: DataPair,
    /// Train / proxy / test index lists.
    pub splits: Splits,
}

/// The space of a run: the preset with the dataset's number of classes.
///
/// # Errors
/// An unknown preset name.
pub fn space_for(name: &str, classes: usize) -> Result<Space> {
    Ok(Space::by_name(name)?.with_classes(classes))
}

/// Loads `spec`, fits it to `space`'s input and holds out the proxy split (`None`: the default
/// size, [`default_proxy_size`]).
///
/// # Errors
/// Reader errors, a shape mismatch without the matching option, a proxy split that does not fit.
pub fn prepare_data(
    spec: &DataSpec,
    space: &Space,
    conform: ConformOptions,
    proxy_size: Option<usize>,
    seed: u64,
) -> Result<PreparedData> {
    let raw = spec.load(space.input_size)?;
    let pair = DataPair {
        train: raw
            .train
            .conform(space.input_channels, space.input_size, conform)?,
        test: raw
            .test
            .conform(space.input_channels, space.input_size, conform)?,
    };
    let proxy_size = proxy_size.unwrap_or_else(|| default_proxy_size(pair.train.len()));
    let splits = Splits::new(&pair, proxy_size, seed)?;
    Ok(PreparedData { pair, splits })
}

/// The space of preset `name` with the class count of its data, and that data: `spec` loaded,
/// fitted to the preset's input (size and channels; the class count plays no part in that) and
/// split with `seed`. What a run needs before it can build a network.
///
/// # Errors
/// An unknown preset, or as [`prepare_data`].
pub fn space_and_data(
    name: &str,
    spec: &DataSpec,
    conform: ConformOptions,
    proxy_size: Option<usize>,
    seed: u64,
) -> Result<(Space, PreparedData)> {
    let preset = Space::by_name(name)?;
    let data = prepare_data(spec, &preset, conform, proxy_size, seed)?;
    let classes = data.pair.train.num_classes();
    Ok((preset.with_classes(classes), data))
}

/// What a checkpoint's `state.json` holds besides the tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState {
    /// Steps completed.
    pub step: u64,
    /// The RNG for arch sampling and augmentation.
    pub rng: ChaCha8Rng,
    /// Where the batcher is.
    pub batcher: BatcherPosition,
}

/// One line of progress (also the `log.jsonl` record and the `--json` progress line).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepReport {
    /// Steps completed.
    pub step: u64,
    /// Total steps of the run.
    pub steps: u64,
    /// Mean training loss since the previous report.
    pub loss: f64,
    /// Learning rate of the last step.
    pub lr: f64,
    /// Training throughput since the previous report.
    pub images_per_s: f64,
    /// Whether a checkpoint was written at this step.
    pub checkpoint: bool,
}

/// Loss and gradients of one arch on one batch (`forward_t(train) → smoothed CE → backward`).
///
/// Only the weights on `arch`'s path get gradients; BN running statistics of that path move.
///
/// # Errors
/// Forward/backward failures, naming the arch.
pub fn batch_loss_and_grads(
    supernet: &Supernet,
    arch: &Arch,
    images: &Tensor,
    labels: &Tensor,
    label_smoothing: f64,
) -> Result<(f64, Gradients)> {
    let logits = supernet
        .forward_t(images, arch, true)
        .with_context(|| format!("training forward of arch {arch}"))?;
    logits_loss_and_grads(supernet, arch, &logits, labels, label_smoothing)
}

/// The backward half of [`batch_loss_and_grads`]: the smoothed cross-entropy of `logits` (from a
/// train-mode forward of `arch`) and the gradients of its path's weights.
///
/// # Errors
/// Loss or backward failures.
pub fn logits_loss_and_grads(
    supernet: &Supernet,
    arch: &Arch,
    logits: &Tensor,
    labels: &Tensor,
    label_smoothing: f64,
) -> Result<(f64, Gradients)> {
    let loss = smoothed_cross_entropy(logits, labels, label_smoothing)?;
    let store = loss.backward()?;
    let grads = Gradients::from_store(&supernet.path_trainable(arch), &store)?;
    Ok((f64::from(loss.to_scalar::<f32>()?), grads))
}

/// Losses of `archs` on one batch under the current weights, to rank paths (GreedyNAS,
/// AttentiveNAS): a training-mode forward, so BN normalises with the batch's statistics as in
/// training, that leaves every running statistic as it was (momentum 0); every arch sees the
/// dropout masks of `dropout_seed`; no backward.
///
/// # Errors
/// Forward failures, naming the arch.
pub fn path_losses(
    supernet: &Supernet,
    archs: &[Arch],
    images: &Tensor,
    labels: &Tensor,
    label_smoothing: f64,
    dropout_seed: u64,
) -> Result<Vec<f64>> {
    archs
        .iter()
        .map(|arch| {
            supernet.set_dropout_seed(dropout_seed);
            let logits = supernet
                .forward_train_momentum(images, arch, 0.0)
                .with_context(|| format!("scoring forward of arch {arch}"))?;
            let loss = smoothed_cross_entropy(&logits.detach(), labels, label_smoothing)?;
            Ok(f64::from(loss.to_scalar::<f32>()?))
        })
        .collect()
}

/// Mean loss and gradients of `arch` over the images `indices` of `data` (for shifting).
///
/// Images are processed in chunks of `batch`; each chunk's gradient is weighted by its share of
/// the images, so the result is the gradient of the mean loss over all of them (up to BN's
/// per-batch statistics). Augmentation randomness comes from `rng`.
///
/// # Errors
/// An empty index list or forward/backward failures.
#[allow(clippy::too_many_arguments)]
pub fn arch_loss_and_grads(
    supernet: &Supernet,
    arch: &Arch,
    data: &Dataset,
    indices: &[usize],
    batch: usize,
    augment: Augment,
    normalize: &Normalize,
    label_smoothing: f64,
    rng: &mut ChaCha8Rng,
) -> Result<(f64, Gradients)> {
    if indices.is_empty() {
        bail!("no images to compute arch {arch}'s loss on");
    }
    let device = supernet.device().clone();
    let n = indices.len() as f64;
    let (mut total, mut grads) = (0.0, Gradients::default());
    for idx in indices.chunks(batch.max(1)) {
        let b = assemble(data, idx, augment, normalize, rng, &device)?;
        let (loss, mut g) =
            batch_loss_and_grads(supernet, arch, &b.images, &b.labels, label_smoothing)?;
        let share = idx.len() as f64 / n;
        g.scale(share)?;
        grads.add(g)?;
        total += loss * share;
    }
    Ok((total, grads))
}

/// Trains a supernet in `run` (fresh, or resumed from its checkpoint) and returns it.
///
/// Same as [`train_until`] with `until = config.steps`.
///
/// # Errors
/// Data, checkpoint or tensor failures, naming the file or arch.
pub fn train(
    config: &TrainConfig,
    data: &PreparedData,
    run: &RunDir,
    device: &Device,
    on_report: &mut dyn FnMut(&StepReport),
) -> Result<Supernet> {
    train_until(config, data, run, device, config.steps, on_report)
}

/// Trains until step `until` (at most `config.steps`), checkpointing there, and returns the net.
///
/// A Ctrl-C ([`crate::interrupt`]) ends the step in flight, checkpoints and returns
/// [`crate::interrupt::Interrupted`].
///
/// Stopping early keeps the schedule of the whole run, so resuming later continues exactly
/// (this is how an interruption is simulated in tests). `on_report` is called every `log_every` steps and at the end (after the line is appended to
/// `log.jsonl`). The run's `config.toml` must already be written.
///
/// # Errors
/// Data, checkpoint or tensor failures, naming the file or arch.
pub fn train_until(
    config: &TrainConfig,
    data: &PreparedData,
    run: &RunDir,
    device: &Device,
    until: u64,
    on_report: &mut dyn FnMut(&StepReport),
) -> Result<Supernet> {
    let space = space_for(&config.space, data.pair.train.num_classes())?;
    let settings = LoopSettings {
        steps: config.steps,
        batch: config.batch,
        lr: config.lr,
        momentum: config.momentum,
        weight_decay: config.weight_decay,
        seed: config.seed,
        checkpoint_every: config.checkpoint_every,
        log_every: config.log_every,
        augment: config.augment,
        normalize: config.normalize.clone(),
    };
    let open = |weights: Option<&Path>| -> Result<(SupernetStep<'_>, u64)> {
        let (net, step) = match weights {
            Some(w) => Supernet::load_for(w, &space, device)?,
            None => (Supernet::new(&space, device, config.seed)?, 0),
        };
        let mut sampler = PathSampler::new(
            net.space(),
            config.sampling,
            config.warmup_steps,
            config.flops_bins,
            &config.multi_path,
            config.steps,
        )?;
        if let (Some(w), Some(_)) = (weights, sampler.greedy_pool()) {
            let file = w.with_file_name(POOL_FILE);
            let bytes = std::fs::read(&file).with_context(|| {
                format!(
                    "reading {}: a --sampling greedy checkpoint holds its candidate pool there",
                    file.display()
                )
            })?;
            let pool: GreedyPool = serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing {}", file.display()))?;
            sampler
                .set_greedy_pool(pool)
                .with_context(|| format!("{}", file.display()))?;
        }
        Ok((
            SupernetStep {
                net,
                config,
                data,
                sampler,
                archs: Vec::new(),
                attentive: None,
            },
            step,
        ))
    };
    let trained = run_steps(open, &settings, data, run, device, until, on_report)?;
    Ok(trained.net)
}

/// The file of a checkpoint holding the GreedyNAS candidate pool, beside the weights.
pub const POOL_FILE: &str = "greedy_pool.json";

/// The supernet as the step loop trains it: the paths of the current step and the run's config.
struct SupernetStep<'a> {
    net: Supernet,
    config: &'a TrainConfig,
    data: &'a PreparedData,
    sampler: PathSampler,
    archs: Vec<Arch>,
    /// AttentiveNAS candidates waiting for the step's batch to be scored on.
    attentive: Option<(Vec<Arch>, attentive::Pick)>,
}

/// The dropout seed every candidate of step `step` is scored with (one per step, unlike the
/// training forward's).
pub(crate) fn scoring_dropout_seed(seed: u64, step: u64) -> u64 {
    dropout_seed(seed, step) ^ 0x5C0E_5C0E_5C0E_5C0E
}

impl SupernetStep<'_> {
    /// GreedyNAS: the candidates' losses on `batch` images drawn from the proxy split (no
    /// augmentation; the split itself is not changed), then the kept ones.
    fn greedy_keep(&mut self, step: u64, candidates: &[Arch], rng: &mut ChaCha8Rng) -> Result<()> {
        let proxy = &self.data.splits.proxy;
        if proxy.is_empty() {
            bail!(
                "--sampling greedy scores paths on held-out images, but the proxy split is empty; give --proxy-size 1 or more"
            );
        }
        let n = self.config.batch.min(proxy.len());
        let idx: Vec<usize> = rand::seq::index::sample(rng, proxy.len(), n)
            .into_iter()
            .map(|i| proxy[i])
            .collect();
        let device = self.net.device().clone();
        let val = assemble(
            &self.data.pair.train,
            &idx,
            Augment::NONE,
            &self.config.normalize,
            rng,
            &device,
        )?;
        let losses = path_losses(
            &self.net,
            candidates,
            &val.images,
            &val.labels,
            self.config.label_smoothing,
            scoring_dropout_seed(self.config.seed, step),
        )?;
        self.archs = self.sampler.greedy_select(candidates, &losses);
        Ok(())
    }

    /// AttentiveNAS: the candidate its predictor ranks best or worst on this step's batch.
    fn attentive_pick(
        &self,
        step: u64,
        candidates: &[Arch],
        pick: attentive::Pick,
        images: &Tensor,
        labels: &Tensor,
    ) -> Result<Arch> {
        let scores = match self.sampler.multi_path().attentive_score {
            AttentiveScore::Flops => attentive::flops_scores(self.net.space(), candidates),
            AttentiveScore::Loss => attentive::loss_scores(&path_losses(
                &self.net,
                candidates,
                images,
                labels,
                self.config.label_smoothing,
                scoring_dropout_seed(self.config.seed, step),
            )?),
        };
        Ok(candidates[attentive::pick(&scores, pick)].clone())
    }
}

impl Trainable for SupernetStep<'_> {
    const WEIGHTS_FILE: &'static str = "supernet.safetensors";

    fn save(&self, path: &Path, step: u64) -> Result<()> {
        self.net.save(path, step)?;
        if let Some(pool) = self.sampler.greedy_pool() {
            write_atomic(
                &path.with_file_name(POOL_FILE),
                &serde_json::to_vec_pretty(pool)?,
            )?;
        }
        Ok(())
    }

    fn prepare_step(&mut self, step: u64, rng: &mut ChaCha8Rng, sgd: &mut Sgd) -> Result<()> {
        for base in self.sampler.inherits_at(step) {
            sgd.forget(&self.net.inherit_kernels(base)?);
        }
        self.attentive = None;
        match self.sampler.paths(step, rng) {
            StepPaths::Train(archs) => self.archs = archs,
            StepPaths::Greedy(candidates) => self.greedy_keep(step, &candidates, rng)?,
            StepPaths::Attentive(candidates, pick) => self.attentive = Some((candidates, pick)),
        }
        self.net
            .set_dropout_seed(dropout_seed(self.config.seed, step));
        Ok(())
    }

    fn loss_and_grads(
        &mut self,
        step: u64,
        images: &Tensor,
        labels: &Tensor,
    ) -> Result<(Vec<f64>, Gradients)> {
        if let Some((candidates, pick)) = self.attentive.take() {
            self.archs = vec![self.attentive_pick(step, &candidates, pick, images, labels)?];
            self.net
                .set_dropout_seed(dropout_seed(self.config.seed, step));
        }
        let mut grads = Gradients::default();
        let mut losses = Vec::with_capacity(self.archs.len());
        for arch in &self.archs {
            let (loss, g) =
                batch_loss_and_grads(&self.net, arch, images, labels, self.config.label_smoothing)?;
            if !loss.is_finite() {
                bail!(
                    "step {step}: loss of arch {arch} is {loss}; lower --lr (now {})",
                    self.config.lr
                );
            }
            grads.add(g)?;
            losses.push(loss);
        }
        Ok((losses, grads))
    }
}
