//! One conv + BN (+ activation) unit and the choice block built from them, for every family:
//! the convs come from [`crate::cost::block_convs`], the wiring from [`Wiring`].

use candle_core::{DType, Device, Tensor, Var};
use rand::Rng;

use crate::cost::{self, Act};
use crate::error::{Error, Result};
use crate::space::{BlockShape, Choice, Wiring};
use shiftnas_kernels::infer::Activation;
use shiftnas_kernels::{BatchNorm, conv, depthwise_conv2d, glue, init, pointwise_conv2d};

/// How a [`ConvBn`] convolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConvKind {
    /// Dense k×k conv (the stem), padding k/2.
    Full { stride: usize },
    /// Depthwise k×k, padding k/2 (custom op on CPU).
    Depthwise { stride: usize },
    /// 1×1 conv as a gemm.
    Pointwise,
}

/// How batch norms run in one forward pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum BnMode {
    /// Running statistics.
    Eval,
    /// Batch statistics; running ones move by `momentum`.
    Train { momentum: f64 },
}

/// conv → BN (affine-free, or with learnable γ/β) → activation, with its parameter names.
#[derive(Debug, Clone)]
pub(crate) struct ConvBn {
    /// Name of the conv weight, e.g. `blocks.3.choice1.main.conv0.weight`.
    pub conv_name: String,
    /// Prefix of the BN statistics, e.g. `blocks.3.choice1.main.bn0`.
    pub bn_name: String,
    pub weight: Var,
    pub bn: BatchNorm,
    pub kind: ConvKind,
    pub act: Act,
    /// Learnable BN scale γ and shift β `[cout]` (`{bn_name}.weight`, `{bn_name}.bias`); `None`
    /// in the supernet (affine-free BN).
    pub affine: Option<(Var, Var)>,
}

/// What to build: shape and naming of one [`ConvBn`].
pub(crate) struct ConvSpec<'a> {
    pub conv_name: String,
    pub bn_name: String,
    pub cin: usize,
    pub cout: usize,
    pub k: usize,
    pub kind: ConvKind,
    pub act: Act,
    /// Init std; `None` = SPOS `1 / (in_ch / groups)`.
    pub std: Option<f64>,
    /// Where the block lives, for error messages.
    pub context: &'a str,
}

impl ConvBn {
    pub fn new(spec: ConvSpec<'_>, rng: &mut impl Rng, device: &Device) -> Result<ConvBn> {
        if spec.cin == 0 || spec.cout == 0 {
            return Err(Error::InvalidSpace {
                space: spec.context.to_string(),
                reason: format!(
                    "{} would have {} → {} channels; every conv needs at least one input and output channel (raise the stage channels or width multiplier)",
                    spec.conv_name, spec.cin, spec.cout
                ),
            });
        }
        let (shape, in_per_group) = match spec.kind {
            ConvKind::Depthwise { .. } => {
                debug_assert_eq!(spec.cin, spec.cout);
                ([spec.cout, 1, spec.k, spec.k], 1)
            }
            ConvKind::Pointwise => ([spec.cout, spec.cin, 1, 1], spec.cin),
            ConvKind::Full { .. } => ([spec.cout, spec.cin, spec.k, spec.k], spec.cin),
        };
        let std = spec
            .std
            .unwrap_or_else(|| init::spos_conv_std(in_per_group));
        Ok(ConvBn {
            weight: init::normal_var(&shape, std, rng, device)?,
            bn: BatchNorm::new(spec.cout, device)?,
            conv_name: spec.conv_name,
            bn_name: spec.bn_name,
            kind: spec.kind,
            act: spec.act,
            affine: None,
        })
    }

    /// The layer of `spec` (a conv of [`cost`]) named `{prefix}.{spec.name}.weight`, its BN
    /// `{prefix}.{bn}` (`conv{j}` → `bn{j}`, `conv` → `bn`); `std` as in [`ConvSpec`].
    pub fn from_spec(
        prefix: &str,
        spec: &cost::ConvSpec,
        std: Option<f64>,
        context: &str,
        rng: &mut impl Rng,
        device: &Device,
    ) -> Result<ConvBn> {
        let kind = if spec.groups > 1 {
            ConvKind::Depthwise {
                stride: spec.stride,
            }
        } else if spec.kernel == 1 && spec.stride == 1 {
            ConvKind::Pointwise
        } else {
            ConvKind::Full {
                stride: spec.stride,
            }
        };
        ConvBn::new(
            ConvSpec {
                conv_name: format!("{prefix}.{}.weight", spec.name),
                bn_name: format!("{prefix}.{}", bn_name(&spec.name)),
                cin: spec.in_channels,
                cout: spec.out_channels,
                k: spec.kernel,
                kind,
                act: spec.act,
                std,
                context,
            },
            rng,
            device,
        )
    }

    /// Gives the BN a learnable scale γ = 1 and shift β = 0 (SPOS retraining).
    pub fn with_affine(mut self, device: &Device) -> Result<ConvBn> {
        let c = self.bn.channels();
        self.affine = Some((
            Var::ones(c, DType::F32, device)?,
            Var::zeros(c, DType::F32, device)?,
        ));
        Ok(self)
    }

    /// Runs conv, BN and ReLU. `detach` cuts the weights out of the autograd graph.
    pub fn forward(&self, x: &Tensor, mode: BnMode, detach: bool) -> Result<Tensor> {
        let w = if detach {
            self.weight.as_detached_tensor()
        } else {
            self.weight.as_tensor().clone()
        };
        let y = match self.kind {
            ConvKind::Full { stride } => conv::conv2d(x, &w, stride)?,
            ConvKind::Depthwise { stride } => depthwise_conv2d(x, &w, stride)?,
            ConvKind::Pointwise => pointwise_conv2d(x, &w)?,
        };
        let act: Activation = self.act.into();
        let Some((gamma, beta)) = &self.affine else {
            return Ok(match mode {
                BnMode::Eval => self.bn.forward_eval_act(&y, act)?,
                BnMode::Train { momentum } => self.bn.forward_train_act(&y, momentum, act)?,
            });
        };
        let (g, b) = if detach {
            (gamma.as_detached_tensor(), beta.as_detached_tensor())
        } else {
            (gamma.as_tensor().clone(), beta.as_tensor().clone())
        };
        if let BnMode::Train { momentum } = mode {
            return Ok(self.bn.forward_train_affine(&y, &g, &b, momentum, act)?);
        }
        // Eval: x̂ · γ + β, then the activation (not on the training hot path).
        let shape = (1, g.dim(0)?, 1, 1);
        let z = self
            .bn
            .forward_eval_act(&y, Activation::None)?
            .broadcast_mul(&g.reshape(shape)?)?
            .broadcast_add(&b.reshape(shape)?)?;
        Ok(act.apply_tensor(z)?)
    }

    /// `(name, tensor)` of the conv weight, both BN statistics and, when affine, BN γ and β.
    pub fn named_vars(&self) -> Vec<(String, &Var)> {
        let mut out = vec![
            (self.conv_name.clone(), &self.weight),
            (
                format!("{}.running_mean", self.bn_name),
                self.bn.running_mean(),
            ),
            (
                format!("{}.running_var", self.bn_name),
                self.bn.running_var(),
            ),
        ];
        if let Some((gamma, beta)) = &self.affine {
            out.push((format!("{}.weight", self.bn_name), gamma));
            out.push((format!("{}.bias", self.bn_name), beta));
        }
        out
    }
}

/// `conv{j}` → `bn{j}`, `block.conv1` → `block.bn1`, `conv` → `bn`: the BN after a conv.
pub(crate) fn bn_name(conv: &str) -> String {
    match conv.rsplit_once("conv") {
        Some((head, idx)) => format!("{head}bn{idx}"),
        None => format!("{conv}.bn"),
    }
}

/// One (block, choice) pair of the supernet: its main branch and, for ShuffleNetV2 at stride 2,
/// its projection.
#[derive(Debug, Clone)]
pub(crate) struct ChoiceBlock {
    pub stride: usize,
    pub wiring: Wiring,
    pub main: Vec<ConvBn>,
    /// Empty except in ShuffleNetV2 stride-2 blocks.
    pub proj: Vec<ConvBn>,
}

impl ChoiceBlock {
    /// Builds block `shape.index`'s `choice` (numbered `c` in the space) with SPOS init, one
    /// conv of [`cost::block_convs`] after the other.
    pub fn new(
        shape: &BlockShape,
        choice: Choice,
        c: usize,
        wiring: Wiring,
        space_name: &str,
        rng: &mut impl Rng,
        device: &Device,
    ) -> Result<ChoiceBlock> {
        let prefix = format!("blocks.{}.choice{c}", shape.index);
        let (mut main, mut proj) = (Vec::new(), Vec::new());
        for spec in cost::block_convs(shape, choice) {
            let layer = ConvBn::from_spec(&prefix, &spec, None, space_name, rng, device)?;
            if spec.name.starts_with("proj.") {
                proj.push(layer);
            } else {
                main.push(layer);
            }
        }
        Ok(ChoiceBlock {
            stride: shape.stride,
            wiring,
            main,
            proj,
        })
    }

    /// The block's output: concat(pass-through or projection, main) along channels
    /// (ShuffleNetV2), or main plus the input where residual (inverted residual).
    pub fn forward(&self, x: &Tensor, mode: BnMode, detach: bool) -> Result<Tensor> {
        if let Wiring::InvertedResidual { residual } = self.wiring {
            let mut h = x.clone();
            for l in &self.main {
                h = l.forward(&h, mode, detach)?;
            }
            return Ok(if residual { (h + x)? } else { h });
        }
        if self.stride == 1 {
            // SPOS channel shuffle: even channels pass through, odd ones feed the main branch.
            return glue::shuffle_block(x, |odd| {
                let mut h = odd.clone();
                for l in &self.main {
                    h = l.forward(&h, mode, detach)?;
                }
                Ok(h)
            });
        }
        let mut p = x.clone();
        for l in &self.proj {
            p = l.forward(&p, mode, detach)?;
        }
        let mut h = x.clone();
        for l in &self.main {
            h = l.forward(&h, mode, detach)?;
        }
        Ok(glue::concat_channels(&p, &h)?)
    }

    /// Gives every BN of the block a learnable γ = 1, β = 0.
    pub fn with_affine(self, device: &Device) -> Result<ChoiceBlock> {
        let affine = |v: Vec<ConvBn>| -> Result<Vec<ConvBn>> {
            v.into_iter().map(|l| l.with_affine(device)).collect()
        };
        Ok(ChoiceBlock {
            stride: self.stride,
            wiring: self.wiring,
            main: affine(self.main)?,
            proj: affine(self.proj)?,
        })
    }

    /// All layers: main then projection.
    pub fn layers(&self) -> impl Iterator<Item = &ConvBn> {
        self.main.iter().chain(&self.proj)
    }
}

/// SPOS `channel_shuffle`: even channels (pass-through) and odd channels (main branch), each
/// `[b, c/2, h, w]`.
pub fn channel_split(x: &Tensor) -> Result<(Tensor, Tensor)> {
    Ok(glue::plain_channel_split(x)?)
}
