//! Head warm-up of a transferred supernet (`search --transfer-from`), before the search starts.
//!
//! A transferred supernet has a fresh classifier (and a fresh stem when the input channels
//! differ): scored as it is, every arch is at chance accuracy, and the search ranks noise. The
//! warm-up trains it on the target data in two phases, each step on one uniformly sampled path
//! (SPOS style) with one batch of `batch` training images:
//! 1. **probe** (`probe_steps` at `probe_lr`): only the head (the classifier and any other fresh
//!    weight) learns; the copied features stay frozen (a linear probe over the sampled paths);
//! 2. **fine-tune** (`finetune_steps` at `finetune_lr`, fresh momentum): every weight on the
//!    sampled path learns, adapting the features to the target data.
//!
//! It costs `(probe_steps + finetune_steps) × batch` training images (forward and backward).
//! The warm-up checkpoints through [`RunDir::swap_checkpoint`] every `checkpoint_every` steps and
//! at its end (`state.json` holds `{"warmup": …}`), so a run killed during the warm-up resumes to
//! bit-identical weights. When it is done, `warmup.json` in the run dir records what was copied,
//! what was fresh, the images it processed and the mean proxy accuracy of a few fixed archs
//! before and after.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use candle_core::Device;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use shiftnas_models::{Arch, Space, Supernet};

use super::transfer::TransferReport;
use crate::data::{Augment, Batcher, BatcherPosition, Normalize};
use crate::run_dir::{RunDir, STATE_FILE, write_atomic};
use crate::train::engine::dropout_seed;
use crate::train::{
    BnMode, BnSource, Gradients, PreparedData, Sgd, SgdConfig, evaluate, smoothed_cross_entropy,
};

/// The supernet's file in a warm-up checkpoint.
const SUPERNET_FILE: &str = "supernet.safetensors";
/// The optimizer's buffers in a warm-up checkpoint.
const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// The warm-up's record in the run dir.
pub const RECORD_FILE: &str = "warmup.json";
/// Archs whose mean proxy accuracy the record reports.
const SCORED_ARCHS: usize = 3;
/// Label smoothing of the warm-up loss (as training's and shifting's).
const LABEL_SMOOTHING: f64 = 0.1;

/// Warm-up settings (`--warmup-*`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WarmupConfig {
    /// Steps training only the head on frozen features.
    pub probe_steps: u64,
    /// Learning rate of the probe.
    pub probe_lr: f64,
    /// Steps fine-tuning every weight of the sampled path.
    pub finetune_steps: u64,
    /// Learning rate of the fine-tune.
    pub finetune_lr: f64,
    /// Training images per step.
    pub batch: usize,
    /// Steps between checkpoints (the last step always checkpoints).
    pub checkpoint_every: u64,
}

impl Default for WarmupConfig {
    fn default() -> Self {
        WarmupConfig {
            probe_steps: 30,
            probe_lr: 0.1,
            finetune_steps: 66,
            finetune_lr: 0.03,
            batch: 64,
            checkpoint_every: 25,
        }
    }
}

impl WarmupConfig {
    /// All steps.
    pub fn steps(&self) -> u64 {
        self.probe_steps + self.finetune_steps
    }

    /// Training images the whole warm-up processes.
    pub fn images(&self) -> u64 {
        self.steps() * self.batch as u64
    }

    /// The SGD of the phase that `step` (0-based) belongs to.
    fn sgd(&self, step: u64) -> SgdConfig {
        let lr = if step < self.probe_steps {
            self.probe_lr
        } else {
            self.finetune_lr
        };
        SgdConfig {
            lr,
            momentum: 0.9,
            weight_decay: 4e-5,
        }
    }
}

/// What the warm-up did (`warmup.json`; printed before the search starts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WarmupRecord {
    /// Weights copied from the source supernet.
    pub copied: Vec<String>,
    /// Weights left at their fresh initialisation.
    pub fresh: Vec<String>,
    /// The settings.
    pub config: WarmupConfig,
    /// Training images processed.
    pub images: u64,
    /// Mean proxy top-1 (in [0, 1]) of the scored archs before the warm-up.
    pub accuracy_before: f64,
    /// The same after the warm-up.
    pub accuracy_after: f64,
    /// The scored archs.
    pub archs: Vec<String>,
}

/// `state.json` of a warm-up checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointState {
    warmup: WarmupState,
}

/// Where a warm-up stands.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct WarmupState {
    /// Steps done.
    step: u64,
    /// The path sampler's and batches' RNG.
    rng: ChaCha8Rng,
    /// Where the batches continue.
    batcher: BatcherPosition,
    /// What the transfer copied.
    copied: Vec<String>,
    /// What it left fresh.
    fresh: Vec<String>,
    /// Mean proxy accuracy before step 0.
    accuracy_before: f64,
}

/// The target data the warm-up trains and scores on.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    /// Data set with its splits.
    pub data: &'a PreparedData,
    /// Normalisation of the training split.
    pub normalize: &'a Normalize,
    /// BN calibration images when scoring.
    pub bn_images: usize,
    /// Seed of the calibration images.
    pub split_seed: u64,
    /// Images per scoring batch.
    pub eval_batch: usize,
}

/// Whether the checkpoint folder `dir` is a warm-up's (not a search generation's).
pub fn is_checkpoint(dir: &Path) -> bool {
    fs::read(dir.join(STATE_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice::<CheckpointState>(&b).ok())
        .is_some()
}

/// Warms up the freshly transferred `net` in `run` and returns its record (also written to
/// `warmup.json`); `stop_after` (tests) stops after that many steps as a kill would, returning
/// `None`.
///
/// # Errors
/// Tensor, data or checkpoint failures, naming the file; a non-finite loss names the flag.
#[allow(clippy::too_many_arguments)]
pub fn start(
    run: &RunDir,
    net: &Supernet,
    transfer: &TransferReport,
    config: &WarmupConfig,
    target: Target<'_>,
    seed: u64,
    stop_after: Option<u64>,
) -> Result<Option<WarmupRecord>> {
    let archs = scored_archs(net.space(), seed);
    let before = mean_accuracy(net, &archs, target)?;
    let batcher = batcher(config, target, seed)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(2);
    let state = WarmupState {
        step: 0,
        rng,
        batcher: batcher.position(),
        copied: transfer.copied.clone(),
        fresh: transfer.fresh.clone(),
        accuracy_before: before,
    };
    continue_from(
        run,
        net,
        state,
        Sgd::new(config.sgd(0)),
        config,
        target,
        seed,
        stop_after,
    )
}

/// Continues the warm-up of the checkpoint folder `dir` to its end; returns the supernet and
/// the record (`None` when `stop_after` stopped it).
///
/// # Errors
/// As [`start`]; an unreadable checkpoint names its file.
#[allow(clippy::too_many_arguments)]
pub fn resume(
    dir: &Path,
    run: &RunDir,
    space: &Space,
    device: &Device,
    config: &WarmupConfig,
    target: Target<'_>,
    seed: u64,
    stop_after: Option<u64>,
) -> Result<(Supernet, Option<WarmupRecord>)> {
    let path = dir.join(STATE_FILE);
    let state: CheckpointState = serde_json::from_slice(
        &fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("parsing {}", path.display()))?;
    let (net, _) = Supernet::load_for(dir.join(SUPERNET_FILE), space, device)
        .with_context(|| format!("loading the warm-up checkpoint {}", dir.display()))?;
    let mut sgd = Sgd::new(config.sgd(state.warmup.step));
    sgd.load_buffers(&dir.join(OPTIMIZER_FILE), device)?;
    let record = continue_from(
        run,
        &net,
        state.warmup,
        sgd,
        config,
        target,
        seed,
        stop_after,
    )?;
    Ok((net, record))
}

/// The warm-up's record of the run dir `run`, if its warm-up finished.
///
/// # Errors
/// A `warmup.json` that does not parse.
pub fn read_record(run: &Path) -> Result<Option<WarmupRecord>> {
    let path = run.join(RECORD_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let text = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Some(
        serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))?,
    ))
}

/// The warm-up's training batches (no augmentation, seeded by the search seed).
fn batcher<'a>(config: &WarmupConfig, target: Target<'a>, seed: u64) -> Result<Batcher<'a>> {
    let train = &target.data.splits.train;
    Batcher::new(
        &target.data.pair.train,
        train.clone(),
        config.batch.min(train.len()).max(1),
        Augment::NONE,
        target.normalize.clone(),
        seed ^ 0x5741_524D,
    )
}

/// Runs the steps from `state` to the end, checkpointing, then scores and writes the record.
#[allow(clippy::too_many_arguments)]
fn continue_from(
    run: &RunDir,
    net: &Supernet,
    mut state: WarmupState,
    mut sgd: Sgd,
    config: &WarmupConfig,
    target: Target<'_>,
    seed: u64,
    stop_after: Option<u64>,
) -> Result<Option<WarmupRecord>> {
    let mut batcher = batcher(config, target, seed)?;
    batcher.set_position(state.batcher);
    let space = net.space().clone();
    let head: Vec<String> = state
        .fresh
        .iter()
        .cloned()
        .chain(std::iter::once("classifier.weight".to_string()))
        .collect();
    let total = config.steps();
    while state.step < total {
        if state.step == config.probe_steps {
            // The fine-tune starts with its own learning rate and fresh momentum.
            sgd = Sgd::new(config.sgd(state.step));
        }
        let arch = Arch::random(space.num_blocks(), space.choices.len(), &mut state.rng);
        let b = batcher.next_batch(&mut state.rng, net.device())?;
        net.set_dropout_seed(dropout_seed(seed, state.step));
        let logits = net
            .forward_t(&b.images, &arch, true)
            .with_context(|| format!("warm-up forward of arch {arch}"))?;
        let loss = smoothed_cross_entropy(&logits, &b.labels, LABEL_SMOOTHING)?;
        let value = f64::from(loss.to_scalar::<f32>()?);
        anyhow::ensure!(
            value.is_finite(),
            "warm-up loss at step {} is {value}; lower --warmup-probe-lr / --warmup-lr",
            state.step
        );
        let store = loss.backward()?;
        let mut params = net.path_trainable(&arch);
        if state.step < config.probe_steps {
            // The probe: the copied features stay frozen.
            params.retain(|(name, _)| head.contains(name));
        }
        sgd.step(&Gradients::from_store(&params, &store)?)?;
        state.step += 1;
        state.batcher = batcher.position();
        if state.step == total || state.step.is_multiple_of(config.checkpoint_every.max(1)) {
            save(run, net, &sgd, &state)?;
        }
        if stop_after == Some(state.step) {
            return Ok(None);
        }
    }
    let archs = scored_archs(&space, seed);
    let after = mean_accuracy(net, &archs, target)?;
    let record = WarmupRecord {
        copied: state.copied,
        fresh: state.fresh,
        config: *config,
        images: config.images(),
        accuracy_before: state.accuracy_before,
        accuracy_after: after,
        archs: archs.iter().map(ToString::to_string).collect(),
    };
    write_atomic(&run.join(RECORD_FILE), &serde_json::to_vec_pretty(&record)?)?;
    Ok(Some(record))
}

/// Writes the warm-up checkpoint (supernet, optimizer buffers, `state.json`).
fn save(run: &RunDir, net: &Supernet, sgd: &Sgd, state: &WarmupState) -> Result<()> {
    let record = CheckpointState {
        warmup: state.clone(),
    };
    run.swap_checkpoint(|tmp| {
        net.save(tmp.join(SUPERNET_FILE), 0)?;
        sgd.save_buffers(&tmp.join(OPTIMIZER_FILE))?;
        write_atomic(&tmp.join(STATE_FILE), &serde_json::to_vec_pretty(&record)?)
    })
}

/// The fixed archs whose mean proxy accuracy the record reports (seeded by the search seed).
fn scored_archs(space: &Space, seed: u64) -> Vec<Arch> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(3);
    (0..SCORED_ARCHS)
        .map(|_| Arch::random(space.num_blocks(), space.choices.len(), &mut rng))
        .collect()
}

/// Mean proxy top-1 of `archs`, each with its BN statistics calibrated on the target data.
fn mean_accuracy(net: &Supernet, archs: &[Arch], target: Target<'_>) -> Result<f64> {
    let splits = &target.data.splits;
    let mut sum = 0.0;
    for arch in archs {
        let bn = BnSource {
            data: &target.data.pair.train,
            indices: &splits.train,
            mode: BnMode::Exact,
            images: target.bn_images.clamp(1, 1000),
            seed: target.split_seed,
        };
        let acc = evaluate(
            net,
            arch,
            &target.data.pair.train,
            &splits.proxy,
            target.normalize,
            bn,
            target.eval_batch,
        )?;
        sum += acc.top1;
    }
    Ok(sum / archs.len().max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{ConformOptions, DataSpec};
    use crate::train::{prepare_data, space_for};

    fn data() -> PreparedData {
        let space = space_for("tiny", 10).unwrap();
        prepare_data(
            &DataSpec::BuiltinFashionMnist,
            &space,
            ConformOptions::default(),
            Some(200),
            3,
        )
        .unwrap()
    }

    /// A transferred supernet (from an untrained source, so only the warm-up can lift it) with
    /// its report, in a new run dir.
    fn transferred(dir: &Path) -> (RunDir, Supernet, TransferReport) {
        let space = space_for("tiny", 10).unwrap();
        std::fs::create_dir_all(dir).unwrap();
        let src = dir.join("src.safetensors");
        Supernet::new(&space, &Device::Cpu, 1)
            .unwrap()
            .save(&src, 100)
            .unwrap();
        let (net, rep) =
            super::super::transfer::transfer(&src, &space, &Device::Cpu, 2, false).unwrap();
        (RunDir::create(&dir.join("run")).unwrap(), net, rep)
    }

    fn config() -> WarmupConfig {
        WarmupConfig {
            probe_steps: 12,
            probe_lr: 0.1,
            finetune_steps: 8,
            finetune_lr: 0.02,
            batch: 32,
            checkpoint_every: 5,
        }
    }

    fn weights(net: &Supernet) -> Vec<(String, Vec<f32>)> {
        let mut names: Vec<String> = net.names().map(str::to_string).collect();
        names.sort();
        names
            .into_iter()
            .map(|n| {
                let v = net
                    .tensor(&n)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                (n, v)
            })
            .collect()
    }

    /// On the embedded Fashion-MNIST the warm-up lifts a fresh head from near chance (10 %) well
    /// above it, records that in `warmup.json`, and counts the images it trained on. The source
    /// is the training tests' short run on the same images (≥ 50 % with its own head), so its
    /// features are useful and only the head is new.
    #[test]
    fn warmup_raises_accuracy_above_chance() {
        let tmp = tempfile::tempdir().unwrap();
        let data = data();
        let normalize = Normalize::from_dataset(&data.pair.train, &data.splits.train);
        let src_file = tmp.path().join("src.safetensors");
        fs::write(&src_file, &crate::train::tests::short_run().1).unwrap();
        let space = space_for("tiny", 10).unwrap();
        let (net, rep) =
            super::super::transfer::transfer(&src_file, &space, &Device::Cpu, 2, false).unwrap();
        let run = RunDir::create(&tmp.path().join("run")).unwrap();
        let target = Target {
            data: &data,
            normalize: &normalize,
            bn_images: 200,
            split_seed: 3,
            eval_batch: 100,
        };
        let cfg = WarmupConfig {
            probe_steps: 30,
            finetune_steps: 10,
            ..config()
        };
        let rec = start(&run, &net, &rep, &cfg, target, 5, None)
            .unwrap()
            .unwrap();
        let (before, after) = (rec.accuracy_before, rec.accuracy_after);
        // A random head on trained features: far under the source's own head (≥ 50 %, the
        // training test), lifted by the warm-up by a wide margin.
        assert!(before < 0.3, "{before} -> {after}");
        assert!(after > before + 0.25, "{before} -> {after}");
        assert_eq!(rec.images, 40 * 32);
        assert_eq!(rec.fresh, vec!["classifier.weight".to_string()]);
        assert_eq!(rec.copied, rep.copied);
        assert_eq!(read_record(run.path()).unwrap(), Some(rec));
        assert!(is_checkpoint(&run.resumable_checkpoint().unwrap()));
    }

    /// A warm-up killed between checkpoints (in the probe, and in the fine-tune) and resumed from
    /// its last checkpoint ends with bit-identical weights and the same record.
    #[test]
    fn warmup_resumed_after_a_kill_is_bit_identical() {
        let data = data();
        let normalize = Normalize::from_dataset(&data.pair.train, &data.splits.train);
        let target = Target {
            data: &data,
            normalize: &normalize,
            bn_images: 100,
            split_seed: 3,
            eval_batch: 100,
        };
        let cfg = config();
        let tmp = tempfile::tempdir().unwrap();
        let (run, net, rep) = transferred(&tmp.path().join("a"));
        let full = start(&run, &net, &rep, &cfg, target, 5, None)
            .unwrap()
            .unwrap();
        let want = weights(&net);
        for kill_at in [7, 17] {
            let (run, net, rep) = transferred(&tmp.path().join(format!("k{kill_at}")));
            assert!(
                start(&run, &net, &rep, &cfg, target, 5, Some(kill_at))
                    .unwrap()
                    .is_none()
            );
            drop(net);
            let dir = run.resumable_checkpoint().unwrap();
            assert!(is_checkpoint(&dir));
            let space = space_for("tiny", 10).unwrap();
            let (resumed, rec) =
                resume(&dir, &run, &space, &Device::Cpu, &cfg, target, 5, None).unwrap();
            assert_eq!(rec.as_ref(), Some(&full), "kill at {kill_at}");
            assert!(weights(&resumed) == want, "kill at {kill_at}");
        }
    }
}
