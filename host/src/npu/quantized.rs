//! What the NPU's number format costs a trained subnet in accuracy: top-1 on the same images
//! through the fp32 subnet (candle, on the CPU) and through rknn-toolkit2's simulator of the
//! converted model ([`simulated_accuracy`]).
//!
//! The simulator is the toolkit's model of the RK3588 NPU, run on the host: whether a board gives
//! the same outputs is not verified (docs/npu.md).

use anyhow::{Context as _, Result, ensure};
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use shiftnas_models::onnx::{self, ExportOptions};
use shiftnas_models::subnet::Subnet;

use super::{ConvertConfig, Converter, Dtype, npu_options, toolkit, write_npy};
use crate::data::{Augment, Dataset, Normalize, batch::assemble};

/// Normalised NCHW images with their labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Images {
    /// One image's shape: channels, height, width.
    pub shape: [usize; 3],
    /// The images, one after the other.
    pub pixels: Vec<f32>,
    /// Their labels.
    pub labels: Vec<u32>,
}

impl Images {
    /// `n` of the images `indices` of `data` (evenly spaced over the list, all of them when it is
    /// shorter), normalised as in training.
    ///
    /// # Errors
    /// An empty selection, or a normalisation that does not fit the data.
    pub fn spread(
        data: &Dataset,
        indices: &[usize],
        n: usize,
        normalize: &Normalize,
    ) -> Result<Images> {
        let picked = spread(indices, n);
        ensure!(
            !picked.is_empty(),
            "no images to take from {} (the split is empty or N is 0)",
            data.name
        );
        let batch = assemble(
            data,
            &picked,
            Augment::NONE,
            normalize,
            &mut ChaCha8Rng::seed_from_u64(0),
            &Device::Cpu,
        )?;
        Ok(Images {
            shape: [data.channels, data.height, data.width],
            pixels: batch.images.flatten_all()?.to_vec1()?,
            labels: picked.iter().map(|&i| data.labels[i]).collect(),
        })
    }

    /// `n` images of `shape` (C, H, W) uniform in [−2, 2), seeded: int8 calibration inputs where
    /// no data set is at hand (latency does not depend on the quantisation scales they set).
    pub fn random(shape: [usize; 3], n: usize, seed: u64) -> Images {
        use rand::Rng as _;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let len = n * shape.iter().product::<usize>();
        Images {
            shape,
            pixels: (0..len).map(|_| rng.random_range(-2.0f32..2.0)).collect(),
            labels: vec![0; n],
        }
    }

    /// How many images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The NCHW shape of all of them.
    fn batch_shape(&self) -> [usize; 4] {
        let [c, h, w] = self.shape;
        [self.len(), c, h, w]
    }
}

/// `n` entries of `indices` at even spacing (index ⌊k·len/n⌋ for k < n), or all of them.
fn spread(indices: &[usize], n: usize) -> Vec<usize> {
    if n >= indices.len() {
        return indices.to_vec();
    }
    (0..n).map(|k| indices[k * indices.len() / n]).collect()
}

/// Top-1 accuracy of one subnet in fp32 and on the NPU's simulator, on the same images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantAccuracy {
    /// The NPU format simulated.
    pub dtype: Dtype,
    /// Images scored.
    pub images: usize,
    /// Int8 calibration images (0 for fp16).
    pub calibration_images: usize,
    /// Top-1 accuracy of the fp32 subnet, in [0, 1].
    pub fp32_accuracy: f64,
    /// Top-1 accuracy of the simulated NPU model, in [0, 1].
    pub npu_accuracy: f64,
    /// Share of images on which both give the same class.
    pub agreement: f64,
    /// rknn-toolkit2's version.
    pub toolkit_version: String,
}

impl QuantAccuracy {
    /// fp32 minus NPU accuracy, in percentage points (positive: the NPU model is worse).
    pub fn drop_points(&self) -> f64 {
        100.0 * (self.fp32_accuracy - self.npu_accuracy)
    }
}

/// Scores `subnet` (named `name` in errors) on `eval` in fp32 and through the toolkit's
/// simulator of its `dtype` conversion, int8 calibrated on `calibration`. `options` carry the
/// export's metadata; the graph is exported for the NPU (batch 1, `ReshapeSplit`).
///
/// # Errors
/// A conversion that fails or puts ops on the CPU, the simulator failing, or images whose shape
/// is not the subnet's input.
pub fn simulated_accuracy(
    converter: &Converter,
    name: &str,
    subnet: &Subnet,
    options: &ExportOptions,
    dtype: Dtype,
    calibration: &Images,
    eval: &Images,
) -> Result<QuantAccuracy> {
    let space = subnet.space();
    let want = [space.input_channels, space.input_size, space.input_size];
    for (what, images) in [("calibration", calibration), ("evaluation", eval)] {
        ensure!(
            images.shape == want,
            "{name}: {what} images are {:?} (C, H, W) but the subnet takes {want:?}",
            images.shape
        );
    }
    ensure!(!eval.is_empty(), "{name}: no evaluation images");
    let onnx = onnx::export(subnet, &npu_options(options))
        .with_context(|| format!("exporting {name} for the NPU"))?;
    let fp32 = top1(&fp32_logits(subnet, eval)?, eval.len());
    let (npu, toolkit_version) = with_config(dtype, Some(calibration), |config| {
        let (outputs, report) = converter.simulate(
            name,
            &onnx,
            config,
            &eval.batch_shape(),
            std::slice::from_ref(&eval.pixels),
        )?;
        let logits = outputs
            .into_iter()
            .next()
            .with_context(|| format!("the simulator gave {name} no output"))?;
        Ok((top1(&logits, eval.len()), report.toolkit_version))
    })?;
    ensure!(
        npu.len() == fp32.len(),
        "{name}: the simulator gave {} outputs for {} images",
        npu.len(),
        fp32.len()
    );
    let share = |hits: usize| hits as f64 / eval.len() as f64;
    let correct = |pred: &[usize]| {
        pred.iter()
            .zip(&eval.labels)
            .filter(|(p, l)| **p == **l as usize)
            .count()
    };
    Ok(QuantAccuracy {
        dtype,
        images: eval.len(),
        calibration_images: match dtype {
            Dtype::Int8 => calibration.len(),
            Dtype::Fp16 => 0,
        },
        fp32_accuracy: share(correct(&fp32)),
        npu_accuracy: share(correct(&npu)),
        agreement: share(fp32.iter().zip(&npu).filter(|(a, b)| a == b).count()),
        toolkit_version,
    })
}

/// Runs `f` with the `rk3588` conversion config of `dtype`; for int8 its calibration list is
/// `calibration`, one `.npy` per image (the toolkit's dataset list takes a file per input) in a
/// scratch folder that is removed afterwards.
///
/// # Errors
/// Int8 without calibration images, I/O errors, and `f`'s.
pub fn with_config<T>(
    dtype: Dtype,
    calibration: Option<&Images>,
    f: impl FnOnce(&ConvertConfig) -> Result<T>,
) -> Result<T> {
    let mut config = ConvertConfig::rk3588(dtype);
    if dtype == Dtype::Fp16 {
        return f(&config);
    }
    let images = calibration
        .filter(|i| !i.is_empty())
        .context("int8 needs calibration images; none were given")?;
    let dir = toolkit::scratch_dir()?;
    let result = (|| {
        let [c, h, w] = images.shape;
        for (i, x) in images.pixels.chunks(c * h * w).enumerate() {
            let p = dir.join(format!("calib_{i}.npy"));
            write_npy(&p, &[1, c, h, w], x)?;
            config.calibration.push(p);
        }
        f(&config)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The fp32 subnet's logits for `images`, flattened, in batches of 256.
fn fp32_logits(subnet: &Subnet, images: &Images) -> Result<Vec<f32>> {
    let [c, h, w] = images.shape;
    let mut out = Vec::new();
    for chunk in images.pixels.chunks(256 * c * h * w) {
        let x = Tensor::from_slice(chunk, (chunk.len() / (c * h * w), c, h, w), &Device::Cpu)?;
        out.extend(subnet.forward(&x)?.flatten_all()?.to_vec1::<f32>()?);
    }
    Ok(out)
}

/// The arg-max of each of the `n` rows of `logits`.
fn top1(logits: &[f32], n: usize) -> Vec<usize> {
    if n == 0 || !logits.len().is_multiple_of(n) {
        return Vec::new();
    }
    logits
        .chunks(logits.len() / n)
        .map(|row| {
            row.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(i, _)| i)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_even_and_takes_all_when_short() {
        let idx: Vec<usize> = (100..110).collect();
        assert_eq!(spread(&idx, 5), vec![100, 102, 104, 106, 108]);
        assert_eq!(spread(&idx, 3), vec![100, 103, 106]);
        assert_eq!(spread(&idx, 10), idx);
        assert_eq!(spread(&idx, 50), idx);
        assert!(spread(&idx, 0).is_empty());
    }

    #[test]
    fn top1_takes_each_rows_argmax() {
        let logits = [0.1, 0.9, 0.0, 3.0, -1.0, 2.0];
        assert_eq!(top1(&logits, 2), vec![1, 0]);
        assert!(top1(&logits, 4).is_empty());
    }

    #[test]
    fn drop_is_in_points() {
        let q = QuantAccuracy {
            dtype: Dtype::Int8,
            images: 100,
            calibration_images: 10,
            fp32_accuracy: 0.9,
            npu_accuracy: 0.87,
            agreement: 0.95,
            toolkit_version: "2.5.0".into(),
        };
        assert!((q.drop_points() - 3.0).abs() < 1e-9);
    }
}
