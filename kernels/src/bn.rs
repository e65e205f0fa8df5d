//! Affine-free batch normalisation with running statistics, as the SPOS supernet uses it.
//!
//! γ = 1 and β = 0 are fixed; only the running mean and variance are state. Training mode
//! normalises with the batch statistics and updates the running ones PyTorch-style:
//! `running = (1 − m)·running + m·batch`, with the *unbiased* batch variance.

use candle_core::{DType, Device, Tensor, Var};

use super::infer::Activation;

/// ε added to the variance, as PyTorch's default.
pub const BN_EPS: f64 = 1e-5;

/// PyTorch's default running-statistics momentum.
pub const BN_MOMENTUM: f64 = 0.1;

/// Batch norm over `[b, c, h, w]` without learnable affine parameters.
#[derive(Debug, Clone)]
pub struct BatchNorm {
    channels: usize,
    running_mean: Var,
    running_var: Var,
}

impl BatchNorm {
    /// A batch norm over `channels` channels with running mean 0 and variance 1.
    pub fn new(channels: usize, device: &Device) -> candle_core::Result<BatchNorm> {
        if channels == 0 {
            candle_core::bail!("batch norm over zero channels: the layer before it produces none");
        }
        Ok(BatchNorm {
            channels,
            running_mean: Var::zeros(channels, DType::F32, device)?,
            running_var: Var::ones(channels, DType::F32, device)?,
        })
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// The running mean `[c]` (a live handle: it changes as training updates it).
    pub fn running_mean(&self) -> &Var {
        &self.running_mean
    }

    /// The running variance `[c]` (a live handle).
    pub fn running_var(&self) -> &Var {
        &self.running_var
    }

    /// Resets the running statistics to mean 0, variance 1.
    pub fn reset(&self) -> candle_core::Result<()> {
        let dev = self.running_mean.device();
        self.running_mean
            .set(&Tensor::zeros(self.channels, DType::F32, dev)?)?;
        self.running_var
            .set(&Tensor::ones(self.channels, DType::F32, dev)?)
    }

    /// Normalises with the running statistics.
    pub fn forward_eval(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_eval_act(x, Activation::None)
    }

    /// [`BatchNorm::forward_eval`] followed by `act`, fused into one op on CPU.
    pub fn forward_eval_act(&self, x: &Tensor, act: Activation) -> candle_core::Result<Tensor> {
        super::bn_op::bn_eval(
            x,
            &self.running_mean.as_detached_tensor(),
            &self.running_var.as_detached_tensor(),
            BN_EPS,
            act,
        )
    }

    /// Normalises with the batch statistics and moves the running ones by `momentum`.
    ///
    /// Fails when a channel has a single value (batch 1 at 1×1), as PyTorch does, since the
    /// unbiased variance is undefined.
    pub fn forward_train(&self, x: &Tensor, momentum: f64) -> candle_core::Result<Tensor> {
        self.forward_train_act(x, momentum, Activation::None)
    }

    /// [`BatchNorm::forward_train`] followed by `act`: one fused op on CPU (f64 statistics,
    /// one-node backward), the plain-ops composition elsewhere.
    pub fn forward_train_act(
        &self,
        x: &Tensor,
        momentum: f64,
        act: Activation,
    ) -> candle_core::Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        if c != self.channels {
            candle_core::bail!("batch norm over {} channels got {c}", self.channels);
        }
        let n = b * h * w;
        if n < 2 {
            candle_core::bail!(
                "batch norm in training mode needs more than one value per channel, got input {:?}; use a larger batch",
                x.dims()
            );
        }
        let (y, mean, var) = super::bn_op::bn_train(x, BN_EPS, act)?;
        self.update(&mean, &var, n, momentum)?;
        Ok(y)
    }

    /// Moves the running statistics towards a batch mean and biased variance over `n` values.
    pub(crate) fn update(
        &self,
        mean: &Tensor,
        biased_var: &Tensor,
        n: usize,
        momentum: f64,
    ) -> candle_core::Result<()> {
        let unbiased = (biased_var * (n as f64 / (n as f64 - 1.0)))?;
        let m = momentum;
        let rm = (self
            .running_mean
            .as_detached_tensor()
            .affine(1.0 - m, 0.0)?
            + mean.affine(m, 0.0)?)?;
        let rv = (self.running_var.as_detached_tensor().affine(1.0 - m, 0.0)?
            + unbiased.affine(m, 0.0)?)?;
        self.running_mean.set(&rm)?;
        self.running_var.set(&rv)
    }
}
