//! Scoring one arch with supernet weights: BN calibration, then top-1/top-5 on a split.
//!
//! Supernet BN statistics are shared nonsense for any single path, so each arch's statistics are
//! recomputed before scoring (DESIGN §5): `exact` resets them and averages over the calibration
//! images (batch k gets momentum 1/(k+1), mmrazor's method); `reset-ema` resets and runs an EMA with
//! momentum 0.1 (SPOS); `none` keeps what training left. Calibration images are the first
//! `bn_images` of a seeded permutation of the training split, the same for every arch.

use anyhow::{Context, Result, bail};
use candle_core::{D, Device, Tensor};
use candle_nn::ops::log_softmax;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
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
    supernet
        .calibrate_bn(arch, batches, bn.mode.calibration())
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
    let logits = |x: &Tensor| {
        supernet
            .forward_t(x, arch, false)
            .with_context(|| format!("evaluating arch {arch}"))
    };
    score(logits, data, indices, normalize, batch, supernet.device())
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
