//! What the `train_step` and `grad_conditioning` examples share: the fixed random data, the
//! label-smoothed loss and the relative-L2 comparison of their outputs (`mod common;`).

use candle_core::{D, DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shiftnas_models::Space;

/// The examples' error type.
pub type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

/// The SPOS paper's searched arch of `spos-imagenet` (20 blocks).
pub const SPOS_ARCH: &str = "21012020202300003233";

/// Fixed random images `[b, c, s, s]` (N(0,1)) and labels in `0..classes`, the same on every device.
pub fn data(space: &Space, b: usize, seed: u64, dev: &Device) -> BoxResult<(Tensor, Tensor)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (c, s) = (space.input_channels, space.input_size);
    let n = b * c * s * s;
    // Box-Muller from the seeded RNG keeps the data independent of rand_distr versions.
    let xs: Vec<f32> = (0..n)
        .map(|_| {
            let u1: f64 = rng.random::<f64>().max(1e-12);
            let u2: f64 = rng.random();
            ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
        })
        .collect();
    let ys: Vec<u32> = (0..b)
        .map(|_| rng.random_range(0..space.classes as u32))
        .collect();
    Ok((
        Tensor::from_vec(xs, (b, c, s, s), dev)?,
        Tensor::from_vec(ys, b, dev)?,
    ))
}

/// Cross entropy with label smoothing `eps` (PyTorch's `label_smoothing`): `(1-eps)·NLL + eps·mean_c(-log p_c)`.
pub fn smoothed_ce(logits: &Tensor, labels: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let nll = logp
        .gather(&labels.unsqueeze(1)?, 1)?
        .squeeze(1)?
        .mean_all()?
        .neg()?;
    let uniform = logp.mean(D::Minus1)?.mean_all()?.neg()?;
    (nll * (1.0 - eps))? + (uniform * eps)?
}

/// Host copy of a tensor as f64s.
pub fn host(t: &Tensor) -> candle_core::Result<Vec<f64>> {
    t.to_device(&Device::Cpu)?
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()
}

/// `‖a − b‖₂ / max(‖b‖₂, tiny)`.
pub fn rel_l2(a: &[f64], b: &[f64]) -> f64 {
    let d: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let n: f64 = b.iter().map(|y| y * y).sum();
    (d / n.max(1e-300)).sqrt()
}
