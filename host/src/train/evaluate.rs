//! Scoring one arch with supernet weights: BN calibration, then top-1/top-5 on a split.
//!
//! Supernet BN statistics are shared nonsense for any single path, so each arch's statistics are
//! recomputed before scoring (as SPOS does): `exact` resets them and averages over the calibration
//! images (batch k gets momentum 1/(k+1), mmrazor's method); `reset-ema` resets and runs an EMA with
//! momentum 0.1 (SPOS); `none` keeps what training left. Calibration images are the first
//! `bn_images` of a seeded permutation of the training split, the same for every arch.
//!
//! On the CPU both run on the channels-last f32 kernels of [`shiftnas_models::inference`] (no
//! autograd graph): calibration with the unfolded convs in training-mode BN (the same statistics
//! as the supernet's training forward up to f32 rounding), the forward through the BN-folded
//! network (the same logits as the supernet's eval-mode forward up to f32 rounding, relative L2
//! ≤ 1e-3, see the tests), each several times faster. Other devices run the supernet's ops.

use anyhow::{Context, Result, bail};
use candle_core::{D, Device, Tensor};
use candle_nn::ops::log_softmax;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use shiftnas_models::inference::Inference;
use shiftnas_models::{Arch, BnCalibration, Supernet};

use crate::data::batch::assemble;
use crate::data::{Augment, Dataset, Normalize};

/// How BN statistics are set before scoring an arch (`--bn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum BnMode {
    /// Reset, then the exact average over the calibration images (default).
    Exact,
    /// Reset, then an exponential moving average with momentum 0.1 (SPOS).
    ResetEma,
    /// Keep the running statistics from training.
    None,
}

impl BnMode {
    /// The supernet's calibration mode.
    pub fn calibration(self) -> BnCalibration {
        match self {
            BnMode::Exact => BnCalibration::Exact,
            BnMode::ResetEma => BnCalibration::ResetEma { momentum: 0.1 },
            BnMode::None => BnCalibration::None,
        }
    }
}

/// Accuracy of one arch on one split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    /// Share of images whose top class is right, in [0, 1].
    pub top1: f64,
    /// Share whose right class is among the top 5 (top-k with k = classes when fewer than 5).
    pub top5: f64,
    /// Mean cross-entropy (no label smoothing).
    pub loss: f64,
    /// Number of images scored.
    pub images: usize,
}

/// Where BN calibration images come from and how they are used.
#[derive(Debug, Clone, Copy)]
pub struct BnSource<'a> {
    /// The training set.
    pub data: &'a Dataset,
    /// The training split (proxy excluded).
    pub indices: &'a [usize],
    /// Calibration mode.
    pub mode: BnMode,
    /// How many images (SPOS: 200 × 128; exact averaging: about 2,000 suffice).
    pub images: usize,
    /// Seed of the permutation the images are taken from.
    pub seed: u64,
}

/// Recomputes `arch`'s BN statistics from `bn.images` training images in batches of `batch`.
///
/// # Errors
/// No calibration images, or a failing forward pass.
pub fn calibrate_bn(
    supernet: &Supernet,
    arch: &Arch,
    bn: BnSource<'_>,
    normalize: &Normalize,
    batch: usize,
) -> Result<()> {
    let kernels = supernet.device().is_cpu();
    calibrate_bn_on(supernet, arch, bn, normalize, batch, kernels)
}

/// [`calibrate_bn`] on the inference kernels when `kernels` (CPU only), else with the
/// supernet's own training forward.
fn calibrate_bn_on(
    supernet: &Supernet,
    arch: &Arch,
    bn: BnSource<'_>,
    normalize: &Normalize,
    batch: usize,
    kernels: bool,
) -> Result<()> {
    if bn.mode == BnMode::None {
        return Ok(());
    }
    let mut order = bn.indices.to_vec();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(bn.seed));
    order.truncate(bn.images);
    if order.is_empty() {
        bail!("BN calibration needs at least one image: raise --bn-images");
    }
    let device = supernet.device().clone();
    let mut unused = ChaCha8Rng::seed_from_u64(0);
    let batches = order.chunks(batch.max(1)).map(|idx| {
        assemble(bn.data, idx, Augment::NONE, normalize, &mut unused, &device)
            .map(|b| b.images)
            .map_err(|e| shiftnas_models::Error::BadInput(format!("{e:#}")))
    });
    let mode = bn.mode.calibration();
    if kernels {
        shiftnas_models::inference::calibrate_bn(supernet, arch, batches, mode)
    } else {
        supernet.calibrate_bn(arch, batches, mode)
    }
    .with_context(|| format!("calibrating BN of arch {arch}"))
}

/// Calibrates BN (per `bn`), then scores `arch` on images `indices` of `data`.
///
/// # Errors
/// An arch that does not fit the supernet, an empty split, or a failing forward pass.
pub fn evaluate(
    supernet: &Supernet,
    arch: &Arch,
    data: &Dataset,
    indices: &[usize],
    normalize: &Normalize,
    bn: BnSource<'_>,
    batch: usize,
) -> Result<Accuracy> {
    if indices.is_empty() {
        bail!("nothing to evaluate: the split of {} is empty", data.name);
    }
    calibrate_bn(supernet, arch, bn, normalize, batch)?;
    let folded = supernet.device().is_cpu();
    score_calibrated(supernet, arch, data, indices, normalize, batch, folded)
}

/// Scores `arch` with the BN statistics it has: through the folded inference network when
/// `folded`, else through the supernet's eval-mode forward.
fn score_calibrated(
    supernet: &Supernet,
    arch: &Arch,
    data: &Dataset,
    indices: &[usize],
    normalize: &Normalize,
    batch: usize,
    folded: bool,
) -> Result<Accuracy> {
    let device = supernet.device();
    if folded {
        let net = Inference::new(supernet, arch)
            .with_context(|| format!("folding BN into the convs of arch {arch}"))?;
        let logits = |x: &Tensor| {
            net.forward_tensor(x)
                .with_context(|| format!("evaluating arch {arch}"))
        };
        return score(logits, data, indices, normalize, batch, device);
    }
    let logits = |x: &Tensor| {
        supernet
            .forward_t(x, arch, false)
            .with_context(|| format!("evaluating arch {arch}"))
    };
    score(logits, data, indices, normalize, batch, device)
}

/// Top-1/top-5 and mean cross-entropy of a classifier on images `indices` of `data`, in batches
/// of `batch` normalised by `normalize` (no augmentation); `logits` maps images to `[b, classes]`.
///
/// # Errors
/// An empty split or a failing forward pass.
pub fn score(
    mut logits: impl FnMut(&Tensor) -> Result<Tensor>,
    data: &Dataset,
    indices: &[usize],
    normalize: &Normalize,
    batch: usize,
    device: &Device,
) -> Result<Accuracy> {
    if indices.is_empty() {
        bail!("nothing to evaluate: the split of {} is empty", data.name);
    }
    let mut unused = ChaCha8Rng::seed_from_u64(0);
    let (mut top1, mut top5, mut loss) = (0usize, 0usize, 0f64);
    for idx in indices.chunks(batch.max(1)) {
        let b = assemble(data, idx, Augment::NONE, normalize, &mut unused, device)?;
        let logits = logits(&b.images)?;
        let logp = log_softmax(&logits, D::Minus1)?;
        let nll = logp
            .gather(&b.labels.unsqueeze(1)?, 1)?
            .sum_all()?
            .to_scalar::<f32>()?;
        loss -= f64::from(nll);
        let rows: Vec<Vec<f32>> = logits.to_device(&Device::Cpu)?.to_vec2()?;
        for (row, &i) in rows.iter().zip(idx) {
            let label = data.labels[i] as usize;
            let target = row[label];
            // Rank = how many classes score strictly higher (ties count in the label's favour).
            let rank = row.iter().filter(|&&v| v > target).count();
            top1 += usize::from(rank == 0);
            top5 += usize::from(rank < 5);
        }
    }
    let n = indices.len() as f64;
    Ok(Accuracy {
        top1: top1 as f64 / n,
        top5: top5 as f64 / n,
        loss: loss / n,
        images: indices.len(),
    })
}

/// Cross-entropy with label smoothing `eps` (PyTorch `CrossEntropyLoss(label_smoothing=eps)`):
/// `(1 − eps) · NLL + eps · mean over classes of −log p`, averaged over the batch.
///
/// # Errors
/// Shape mismatches between `logits [b, k]` and `labels [b]`.
pub fn smoothed_cross_entropy(logits: &Tensor, labels: &Tensor, eps: f64) -> Result<Tensor> {
    let logp = log_softmax(logits, D::Minus1)?;
    let nll = logp.gather(&labels.unsqueeze(1)?, 1)?.mean_all()?.neg()?;
    if eps == 0.0 {
        return Ok(nll);
    }
    let uniform = logp.mean(D::Minus1)?.mean_all()?.neg()?;
    Ok(((nll * (1.0 - eps))? + (uniform * eps)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel path (BN calibration and folded forward) scores like the supernet's own
    /// calibration and eval forward on real images (the embedded Fashion-MNIST subset), for an
    /// arch of each choice (every choice at every stride) of an untrained supernet of each
    /// family. Tolerances: logits relative L2 ≤ 1e-3 (f32 rounding
    /// through the affine-free net, models/tests/inference.rs), mean loss within 1e-4 relative, and
    /// top-1 agreeing on every image whose two best logits are more than 1e-4 apart.
    #[test]
    fn folded_scores_match_the_supernet_forward() {
        use crate::train::space_for;
        for name in ["tiny", "mbv2-tiny"] {
            folded_scores_match_on(&space_for(name, 10).unwrap());
        }
    }

    fn folded_scores_match_on(space: &shiftnas_models::Space) {
        use crate::data::{ConformOptions, DataSpec};
        use crate::train::prepare_data;
        let data = prepare_data(
            &DataSpec::BuiltinFashionMnist,
            space,
            ConformOptions::default(),
            Some(300),
            3,
        )
        .unwrap();
        let normalize = Normalize {
            mean: vec![0.2867],
            std: vec![0.354],
        };
        let net = Supernet::new(space, &Device::Cpu, 5).unwrap();
        let train = &data.pair.train;
        let proxy = &data.splits.proxy;
        for c in 0..space.choices.len() {
            let arch: Arch = space
                .parse_arch(&c.to_string().repeat(space.num_blocks()))
                .unwrap();
            let bn = BnSource {
                data: train,
                indices: &data.splits.train,
                mode: BnMode::Exact,
                images: 256,
                seed: 0,
            };
            calibrate_bn_on(&net, &arch, bn, &normalize, 128, false).unwrap();
            let old = score_calibrated(&net, &arch, train, proxy, &normalize, 128, false).unwrap();
            calibrate_bn_on(&net, &arch, bn, &normalize, 128, true).unwrap();
            let new = score_calibrated(&net, &arch, train, proxy, &normalize, 128, true).unwrap();
            assert!(
                (new.loss - old.loss).abs() <= 1e-4 * old.loss.abs(),
                "{arch}: {new:?} vs {old:?}"
            );
            // Per image on one real batch: logits and top-1.
            let mut rng = ChaCha8Rng::seed_from_u64(0);
            let b = assemble(
                train,
                &proxy[..128],
                Augment::NONE,
                &normalize,
                &mut rng,
                &Device::Cpu,
            )
            .unwrap();
            let want: Vec<Vec<f32>> = net
                .forward_t(&b.images, &arch, false)
                .unwrap()
                .to_vec2()
                .unwrap();
            let inf = Inference::new(&net, &arch).unwrap();
            let got: Vec<Vec<f32>> = inf.forward_tensor(&b.images).unwrap().to_vec2().unwrap();
            let (mut num, mut den) = (0f64, 0f64);
            for (g, w) in got.iter().zip(&want) {
                for (a, b) in g.iter().zip(w) {
                    num += f64::from(a - b).powi(2);
                    den += f64::from(*b).powi(2);
                }
                let argmax =
                    |r: &[f32]| (0..r.len()).max_by(|&i, &j| r[i].total_cmp(&r[j])).unwrap();
                let mut sorted = w.clone();
                sorted.sort_by(|a, b| b.total_cmp(a));
                if sorted[0] - sorted[1] > 1e-4 * sorted[0].abs().max(1.0) {
                    assert_eq!(argmax(g), argmax(w), "{arch}: top-1 differs");
                }
            }
            let rel = (num / den).sqrt();
            assert!(rel <= 1e-3, "{arch}: logits rel L2 {rel:.2e}");
            let top1_gap = (new.top1 - old.top1).abs() * new.images as f64;
            assert!(
                top1_gap <= 1.0,
                "{arch}: top-1 {} vs {}",
                new.top1,
                old.top1
            );
        }
    }

    /// Reference from scipy: `lp = scipy.special.log_softmax([[1, 2, .5], [0, 0, 3]], 1)`,
    /// labels [1, 0]: nll = -mean(lp[0,1], lp[1,0]) = 1.7796459, uniform = -lp.mean(1).mean() =
    /// 1.6963125, loss = 0.9 · nll + 0.1 · uniform = 1.7713125.
    #[test]
    fn smoothed_cross_entropy_matches_reference() {
        let logits = Tensor::new(&[[1f32, 2.0, 0.5], [0.0, 0.0, 3.0]], &Device::Cpu).unwrap();
        let labels = Tensor::new(&[1u32, 0], &Device::Cpu).unwrap();
        let l = smoothed_cross_entropy(&logits, &labels, 0.1).unwrap();
        assert!((l.to_scalar::<f32>().unwrap() - 1.7713125).abs() < 1e-5);
        let l0 = smoothed_cross_entropy(&logits, &labels, 0.0).unwrap();
        assert!((l0.to_scalar::<f32>().unwrap() - 1.7796459).abs() < 1e-5);
    }

    #[test]
    fn bn_mode_spellings() {
        assert_eq!(
            serde_json::to_string(&BnMode::ResetEma).unwrap(),
            "\"reset-ema\""
        );
        use clap::ValueEnum;
        assert_eq!(
            BnMode::from_str("reset-ema", false).unwrap(),
            BnMode::ResetEma
        );
    }
}
