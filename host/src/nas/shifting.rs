//! Supernet Shifting: the supernet keeps training on the paths the search visits.
//!
//! `accumulate` (the paper's Algorithm 1): every candidate's training loss over `shift_samples`
//! images (its mean loss) is back-propagated while the generation is scored, the candidates'
//! gradients are summed, and after the generation the supernet takes exactly one SGD step
//! ([`Shifter::end_generation`]).
//! `immediate` (the authors' released code): each candidate first takes `shift_steps` SGD steps of
//! `shift_batch` images on its own path, then is scored ([`Shifter::before_score`]).
//! `masked` updates touch only the parameters that got a gradient (the visited paths: momentum and
//! weight decay only there); `full` gives every trainable parameter a (zero) gradient, so momentum
//! and weight decay move all of them. The optimizer's buffers persist across generations and are
//! checkpointed by the driver.

use anyhow::{Context as _, Result};
use candle_core::Tensor;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use shiftnas_models::{Arch, Supernet};

use crate::data::{Batcher, BatcherPosition};
use crate::train::{Gradients, Sgd, SgdConfig, logits_loss_and_grads};

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
    /// The generation's summed gradients (empty when no candidate accumulated).
    pending: Gradients,
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
            steps_taken: 0,
        }
    }

    /// The settings.
    pub fn config(&self) -> &ShiftConfig {
        &self.config
    }

    /// Mean gradient of `arch`'s loss over `images` training images drawn from `batcher`, and
    /// the result of `then`.
    ///
    /// Each batch's backward runs alongside the next batch's forward, and the last one alongside
    /// `then` (`rayon::join`): a backward reads only its own forward's saved tensors and the
    /// weights, which nothing changes before the generation's step, and its ops' one-core tails
    /// leave the other cores free for that work (3 % of a candidate's shifting and scoring on 2
    /// cores, docs/benchmarks.md). The sums are the same as one batch after another.
    ///
    /// `calibrate`: batch k moves the path's BN running statistics with momentum `1/(k+1)`, so
    /// they end as the exact average over these batches ([`BnMode::Exact`](crate::train::BnMode::Exact) calibration),
    /// before `then` runs; otherwise with the training momentum 0.1.
    #[allow(clippy::too_many_arguments)]
    fn loss_grads<T: Send>(
        &mut self,
        net: &Supernet,
        arch: &Arch,
        batcher: &mut Batcher<'_>,
        images: usize,
        rng: &mut ChaCha8Rng,
        calibrate: bool,
        then: impl FnOnce() -> Result<T> + Send,
    ) -> Result<(Gradients, T)> {
        let batch = self.config.batch.max(1);
        let n = images.div_ceil(batch).max(1);
        let eps = self.config.label_smoothing;
        // The mean gradient so far, with a batch's (logits, labels) whose backward is to come.
        let mut grads = Gradients::default();
        let mut pending: Option<(Tensor, Tensor)> = None;
        let backward = |pending: Option<(Tensor, Tensor)>| -> Result<Option<Gradients>> {
            let Some((logits, labels)) = pending else {
                return Ok(None);
            };
            let (loss, mut g) = logits_loss_and_grads(net, arch, &logits, &labels, eps)?;
            anyhow::ensure!(
                loss.is_finite(),
                "shifting loss of arch {arch} is {loss}; lower --shift-lr"
            );
            g.scale(1.0 / n as f64)?;
            Ok(Some(g))
        };
        for k in 0..n {
            let b = batcher.next_batch(rng, net.device())?;
            let momentum = calibrate.then(|| 1.0 / (k as f64 + 1.0));
            let forward = || {
                match momentum {
                    Some(m) => net.forward_train_momentum(&b.images, arch, m),
                    None => net.forward_t(&b.images, arch, true),
                }
                .with_context(|| format!("shifting forward of arch {arch}"))
            };
            let last = pending.take();
            let (logits, done) = rayon::join(forward, || backward(last));
            if let Some(g) = done? {
                grads.add(g)?;
            }
            pending = Some((logits?, b.labels));
        }
        let (out, done) = rayon::join(then, || backward(pending));
        if let Some(g) = done? {
            grads.add(g)?;
        }
        Ok((grads, out?))
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
            let (g, ()) =
                self.loss_grads(net, arch, batcher, self.config.batch, rng, false, || Ok(()))?;
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
        let (g, ()) =
            self.loss_grads(net, arch, batcher, self.config.samples, rng, false, || {
                Ok(())
            })?;
        self.pending.add(g)?;
        Ok(())
    }

    /// `accumulate` sharing its forward with BN calibration, then `score`: the train-mode forward
    /// over `arch`'s shift samples also leaves the path's BN running statistics at their exact
    /// average over those images (what [`BnMode::Exact`](crate::train::BnMode::Exact)
    /// calibration computes from the same batches), so `score` needs no calibration forward of
    /// its own; it runs alongside the last backward. The gradients are the same as
    /// [`Shifter::accumulate`]'s on these images. Returns `score`'s result.
    ///
    /// # Errors
    /// A mode other than `accumulate`, forward/backward failures, a non-finite loss, or `score`'s
    /// error.
    pub fn accumulate_calibrating<T: Send>(
        &mut self,
        net: &Supernet,
        arch: &Arch,
        batcher: &mut Batcher<'_>,
        rng: &mut ChaCha8Rng,
        score: impl FnOnce() -> Result<T> + Send,
    ) -> Result<T> {
        anyhow::ensure!(
            self.config.mode == ShiftMode::Accumulate,
            "BN calibration can share the shifting forward only with --shift accumulate"
        );
        let (g, out) =
            self.loss_grads(net, arch, batcher, self.config.samples, rng, true, score)?;
        self.pending.add(g)?;
        Ok(out)
    }

    /// Images per candidate that `accumulate` trains on (and calibrates BN with when sharing):
    /// `⌈samples / batch⌉ × batch`.
    pub fn images_per_candidate(&self) -> usize {
        let batch = self.config.batch.max(1);
        self.config.samples.div_ceil(batch).max(1) * batch
    }

    /// `accumulate`: the one SGD step of the generation, on the *sum* of the candidates'
    /// gradients (each the gradient of its mean loss over its shift samples), as a PyTorch loop
    /// calling `loss.backward()` per candidate accumulates them: the step grows with the
    /// population, and the paper's lr 1e-4 applies unscaled. Returns whether a step was taken.
    ///
    /// # Errors
    /// Tensor failures.
    pub fn end_generation(&mut self, net: &Supernet) -> Result<bool> {
        if self.config.mode != ShiftMode::Accumulate || self.pending.is_empty() {
            return Ok(false);
        }
        let g = std::mem::take(&mut self.pending);
        self.step(net, g)?;
        Ok(true)
    }
}

/// Zero gradients for every trainable parameter (so `full` updates reach all of them).
fn zero_grads(net: &Supernet) -> Result<Gradients> {
    let params = net.trainable();
    let mut total: Option<Tensor> = None;
    for (_, v) in &params {
        // candle prunes `× 0` from the graph, so take d(Σw)/dw = 1 and scale it to 0 below.
        let t = v.as_tensor().sum_all()?;
        total = Some(match total {
            Some(s) => (s + t)?,
            None => t,
        });
    }
    match total {
        Some(t) => {
            let mut g = Gradients::from_store(&params, &t.backward()?)?;
            g.scale(0.0)?;
            Ok(g)
        }
        None => Ok(Gradients::default()),
    }
}

/// Where the shifting batcher is, for checkpoints.
pub type ShiftCursor = BatcherPosition;

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use candle_core::Device;
    use rand::SeedableRng;
    use shiftnas_models::BnCalibration;

    use super::*;
    use crate::data::{Augment, ConformOptions, DataSpec, Normalize};
    use crate::train::{PreparedData, batch_loss_and_grads, prepare_data, space_for};

    fn data() -> PreparedData {
        let space = space_for("tiny", 10).unwrap();
        prepare_data(
            &DataSpec::BuiltinFashionMnist,
            &space,
            ConformOptions::default(),
            Some(200),
            1,
        )
        .unwrap()
    }

    fn net() -> Supernet {
        Supernet::new(&space_for("tiny", 10).unwrap(), &Device::Cpu, 5).unwrap()
    }

    fn trainable(net: &Supernet) -> Vec<(String, Vec<u32>)> {
        net.trainable()
            .into_iter()
            .map(|(n, v)| {
                let t = v
                    .as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                (n, t.iter().map(|x| x.to_bits()).collect())
            })
            .collect()
    }

    fn changed(a: &[(String, Vec<u32>)], b: &[(String, Vec<u32>)]) -> BTreeSet<String> {
        a.iter()
            .zip(b)
            .filter(|(x, y)| x.1 != y.1)
            .map(|(x, _)| x.0.clone())
            .collect()
    }

    fn pattern(k: usize) -> Arch {
        Arch::new((0..20).map(|i| ((i * (k + 1) + k) % 4) as u8).collect())
    }

    fn config(mode: ShiftMode, update: ShiftUpdate) -> ShiftConfig {
        ShiftConfig {
            mode,
            update,
            samples: 16,
            steps: 3,
            batch: 8,
            sgd: SgdConfig {
                lr: 0.05,
                momentum: 0.9,
                weight_decay: 0.01,
            },
            label_smoothing: 0.1,
        }
    }

    fn batcher<'a>(d: &'a PreparedData) -> Batcher<'a> {
        let norm = Normalize::from_dataset(&d.pair.train, &d.splits.train);
        Batcher::new(
            &d.pair.train,
            d.splits.train.clone(),
            8,
            Augment::NONE,
            norm,
            7,
        )
        .unwrap()
    }

    #[test]
    fn accumulate_masked_takes_one_step_on_the_union_of_paths() {
        let d = data();
        let net = net();
        let mut b = batcher(&d);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut s = Shifter::new(config(ShiftMode::Accumulate, ShiftUpdate::Masked));
        let archs = [pattern(0), pattern(1)];
        assert_eq!(archs[0].len(), net.space().num_blocks());
        let before = trainable(&net);
        for a in &archs {
            s.before_score(&net, a, &mut b, &mut rng).unwrap();
            s.accumulate(&net, a, &mut b, &mut rng).unwrap();
        }
        assert_eq!(
            trainable(&net),
            before,
            "no update before the generation ends"
        );
        assert!(s.end_generation(&net).unwrap());
        assert_eq!(s.steps_taken, 1);
        assert!(
            !s.end_generation(&net).unwrap(),
            "nothing pending: no second step"
        );
        let union: BTreeSet<String> = archs
            .iter()
            .flat_map(|a| net.path_trainable(a))
            .map(|(n, _)| n)
            .collect();
        let moved = changed(&before, &trainable(&net));
        assert!(!moved.is_empty());
        assert!(
            moved.is_subset(&union),
            "moved off-path: {:?}",
            moved.difference(&union)
        );
        assert!(
            union.len() < before.len(),
            "the test needs unvisited params"
        );
    }

    /// Algorithm 1 by definition: one SGD step on the *sum* over the candidates of each one's
    /// mean-loss gradient over its shift batches (a mean over candidates would halve it here).
    #[test]
    fn accumulate_steps_on_the_sum_of_the_candidates_mean_gradients() {
        let d = data();
        let (n1, n2) = (net(), net());
        let cfg = config(ShiftMode::Accumulate, ShiftUpdate::Masked);
        let archs = [pattern(0), pattern(1)];
        let mut s = Shifter::new(cfg);
        let (mut b1, mut r1) = (batcher(&d), ChaCha8Rng::seed_from_u64(5));
        for a in &archs {
            s.accumulate(&n1, a, &mut b1, &mut r1).unwrap();
        }
        assert!(s.end_generation(&n1).unwrap());

        let (mut b2, mut r2) = (batcher(&d), ChaCha8Rng::seed_from_u64(5));
        let batches = cfg.samples.div_ceil(cfg.batch);
        assert_eq!(batches, 2);
        let mut total = Gradients::default();
        for a in &archs {
            let mut mean = Gradients::default();
            for _ in 0..batches {
                let batch = b2.next_batch(&mut r2, &Device::Cpu).unwrap();
                let (_, mut g) =
                    batch_loss_and_grads(&n2, a, &batch.images, &batch.labels, 0.1).unwrap();
                g.scale(1.0 / batches as f64).unwrap();
                mean.add(g).unwrap();
            }
            total.add(mean).unwrap();
        }
        Sgd::new(cfg.sgd).step(&total).unwrap();
        assert_eq!(trainable(&n1), trainable(&n2));
    }

    fn bn_stats(net: &Supernet, a: &Arch) -> Vec<(String, Vec<f32>)> {
        net.arch_tensors(a)
            .unwrap()
            .into_iter()
            .filter(|(n, _)| n.contains(".running_"))
            .map(|(n, t)| (n, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
            .collect()
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    /// The shared forward leaves the BN statistics that exact calibration computes over the same
    /// images, the same proxy score, and the same gradients as the unshared shifting forward.
    #[test]
    fn shared_forward_calibrates_bn_exactly_with_the_same_gradients_and_score() {
        let d = data();
        let net = net();
        let a = pattern(3);
        let cfg = config(ShiftMode::Accumulate, ShiftUpdate::Masked);
        let b0 = batcher(&d);
        // Unshared reference: exact calibration over the shift batches, then the shift forward.
        let (mut b1, mut r1) = (b0.clone(), ChaCha8Rng::seed_from_u64(2));
        let (mut bc, mut rc) = (b0.clone(), ChaCha8Rng::seed_from_u64(2));
        let images: Vec<Tensor> = (0..cfg.samples.div_ceil(cfg.batch))
            .map(|_| bc.next_batch(&mut rc, &Device::Cpu).unwrap().images)
            .collect();
        assert_eq!(images.len(), 2);
        net.calibrate_bn(&a, images.into_iter().map(Ok), BnCalibration::Exact)
            .unwrap();
        let calibrated = bn_stats(&net, &a);
        let norm = Normalize::from_dataset(&d.pair.train, &d.splits.train);
        let proxy = &d.splits.proxy;
        let no_bn = || crate::train::BnSource {
            data: &d.pair.train,
            indices: &d.splits.train,
            mode: crate::train::BnMode::None,
            images: 0,
            seed: 0,
        };
        let score_ref =
            crate::train::evaluate(&net, &a, &d.pair.train, proxy, &norm, no_bn(), 50).unwrap();
        let mut unshared = Shifter::new(cfg);
        net.set_dropout_seed(11);
        unshared.accumulate(&net, &a, &mut b1, &mut r1).unwrap();

        // Shared: scramble the statistics first, so only the shared forward can set them.
        net.calibrate_bn(
            &a,
            [Ok((Tensor::ones(
                (4, 1, 28, 28),
                candle_core::DType::F32,
                &Device::Cpu,
            )
            .unwrap()
                * 3.0)
                .unwrap())],
            BnCalibration::ResetEma { momentum: 0.5 },
        )
        .unwrap();
        assert!(max_diff(&bn_stats(&net, &a)[0].1, &calibrated[0].1) > 1e-3);
        let mut shared = Shifter::new(cfg);
        let (mut b2, mut r2) = (b0.clone(), ChaCha8Rng::seed_from_u64(2));
        net.set_dropout_seed(11);
        // The score runs alongside the last backward, with the statistics the forwards left.
        let score = shared
            .accumulate_calibrating(&net, &a, &mut b2, &mut r2, || {
                crate::train::evaluate(&net, &a, &d.pair.train, proxy, &norm, no_bn(), 50)
            })
            .unwrap();
        assert_eq!(b2.position(), b1.position(), "same shift images consumed");
        let after = bn_stats(&net, &a);
        assert_eq!(after.len(), calibrated.len());
        assert!(after.len() > 10);
        for ((n, x), (_, y)) in after.iter().zip(&calibrated) {
            let scale = y.iter().fold(1f32, |m, v| m.max(v.abs()));
            assert!(max_diff(x, y) <= 1e-5 * scale, "{n}: {}", max_diff(x, y));
        }
        assert_eq!(score.top1, score_ref.top1);
        assert!(
            (score.loss - score_ref.loss).abs() < 1e-5,
            "{score:?} {score_ref:?}"
        );
        // Same gradients as the unshared forward on the same images.
        assert_eq!(shared.pending.len(), unshared.pending.len());
        for name in unshared.pending.names() {
            let g1 = unshared.pending.get(name).unwrap().flatten_all().unwrap();
            let g2 = shared.pending.get(name).unwrap().flatten_all().unwrap();
            let (g1, g2) = (g1.to_vec1::<f32>().unwrap(), g2.to_vec1::<f32>().unwrap());
            let scale = g1.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
            assert!(max_diff(&g1, &g2) <= 1e-5 * scale, "{name}");
        }
    }

    /// Sharing BN calibration keeps Algorithm 1: gradients pile up, one step per generation.
    #[test]
    fn shared_accumulate_takes_exactly_one_step_per_generation() {
        let d = data();
        let net = net();
        let mut b = batcher(&d);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut s = Shifter::new(config(ShiftMode::Accumulate, ShiftUpdate::Masked));
        assert_eq!(s.images_per_candidate(), 16);
        for gen_ in 0..2u64 {
            let before = trainable(&net);
            for a in [pattern(0), pattern(1), pattern(2)] {
                s.accumulate_calibrating(&net, &a, &mut b, &mut rng, || Ok(()))
                    .unwrap();
            }
            assert_eq!(trainable(&net), before, "no update inside a generation");
            assert!(s.end_generation(&net).unwrap());
            assert!(!s.end_generation(&net).unwrap());
            assert_eq!(s.steps_taken, gen_ + 1);
            assert_ne!(trainable(&net), before);
        }
        let mut imm = Shifter::new(config(ShiftMode::Immediate, ShiftUpdate::Masked));
        let err = imm.accumulate_calibrating(&net, &pattern(0), &mut b, &mut rng, || Ok(()));
        assert!(format!("{:#}", err.unwrap_err()).contains("--shift accumulate"));
    }

    #[test]
    fn full_update_also_decays_unvisited_weights() {
        let d = data();
        let net = net();
        let mut b = batcher(&d);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut s = Shifter::new(config(ShiftMode::Accumulate, ShiftUpdate::Full));
        let a = Arch::uniform(20, 0);
        let before = trainable(&net);
        s.accumulate(&net, &a, &mut b, &mut rng).unwrap();
        s.end_generation(&net).unwrap();
        let path: BTreeSet<String> = net.path_trainable(&a).into_iter().map(|(n, _)| n).collect();
        let moved = changed(&before, &trainable(&net));
        assert!(
            moved
                .iter()
                .any(|n| !path.contains(n) && n.ends_with("weight"))
        );
    }

    #[test]
    fn immediate_is_n_sgd_steps_on_the_path_before_scoring() {
        let d = data();
        let (n1, n2) = (net(), net());
        let a = pattern(2);
        let cfg = config(ShiftMode::Immediate, ShiftUpdate::Masked);
        let mut s = Shifter::new(cfg);
        let (mut b1, mut r1) = (batcher(&d), ChaCha8Rng::seed_from_u64(4));
        s.before_score(&n1, &a, &mut b1, &mut r1).unwrap();
        s.accumulate(&n1, &a, &mut b1, &mut r1).unwrap();
        assert!(!s.end_generation(&n1).unwrap());
        assert_eq!(s.steps_taken, 3);
        // By definition: 3 × (one batch of 8 → loss → path gradients → SGD step).
        let mut sgd = Sgd::new(cfg.sgd);
        let (mut b2, mut r2) = (batcher(&d), ChaCha8Rng::seed_from_u64(4));
        for _ in 0..3 {
            let batch = b2.next_batch(&mut r2, &Device::Cpu).unwrap();
            let (_, g) = batch_loss_and_grads(&n2, &a, &batch.images, &batch.labels, 0.1).unwrap();
            sgd.step(&g).unwrap();
        }
        assert_eq!(trainable(&n1), trainable(&n2));
    }
}
