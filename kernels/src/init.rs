//! Seeded weight initialisation (SPOS): every draw comes from a ChaCha RNG we seed, so a supernet
//! built twice from the same seed has the same weights on every machine.

use candle_core::{Device, Tensor, Var};
use rand::Rng;
use rand_distr::{Distribution, Normal};

/// A `Var` of `shape` with entries drawn from N(0, std²) by `rng`.
pub fn normal_var(
    shape: &[usize],
    std: f64,
    rng: &mut impl Rng,
    device: &Device,
) -> candle_core::Result<Var> {
    let n: usize = shape.iter().product();
    let dist = Normal::new(0f32, std as f32)
        .map_err(|e| candle_core::Error::Msg(format!("normal init with std {std}: {e}")))?;
    let data: Vec<f32> = (0..n).map(|_| dist.sample(rng)).collect();
    Var::from_tensor(&Tensor::from_vec(data, shape, device)?)
}

/// SPOS conv init std: `1 / (in_channels / groups)` (the std itself, not its square root).
pub fn spos_conv_std(in_per_group: usize) -> f64 {
    1.0 / in_per_group as f64
}
