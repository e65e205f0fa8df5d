//! What the [`Supernet`](super::Supernet) and a [`Standalone`](crate::standalone::Standalone)
//! subnet share: the stem convs, a set of choice blocks, a last conv, a bias-free classifier and a
//! dropout RNG, built in the same init order and run with the same ops. Only the set of blocks
//! differs (every choice of every block, or one choice per block) and which of them a forward runs.

use std::collections::BTreeMap;
use std::sync::Mutex;

use candle_core::{Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::arch::Arch;
use crate::error::{Error, Result};
use crate::space::{BlockShape, Space};
use shiftnas_kernels::init;

use super::BnCalibration;
use super::block::{BnMode, ChoiceBlock, ConvBn};
use crate::cost;

/// The blocks a [`Net`] holds.
pub(crate) trait Blocks {
    /// Every conv+BN layer of every block, in order.
    fn all_layers(&self) -> impl Iterator<Item = &ConvBn>;
}

/// One choice per block (a standalone subnet).
impl Blocks for Vec<ChoiceBlock> {
    fn all_layers(&self) -> impl Iterator<Item = &ConvBn> {
        self.iter().flat_map(|b| b.layers())
    }
}

/// `[i][c]`: block i, choice c (the supernet).
impl Blocks for Vec<Vec<ChoiceBlock>> {
    fn all_layers(&self) -> impl Iterator<Item = &ConvBn> {
        self.iter().flatten().flat_map(|b| b.layers())
    }
}

/// Stem → blocks → last conv → global average pool → dropout (training) → linear.
#[derive(Debug)]
pub(crate) struct Net<B> {
    pub space: Space,
    pub device: Device,
    /// The stem conv, then the family's fixed stem block if any.
    pub stem: Vec<ConvBn>,
    pub blocks: B,
    pub last: ConvBn,
    pub classifier: Var,
    /// Every weight, BN parameter and statistic by name (live handles).
    pub index: BTreeMap<String, Var>,
    dropout_rng: Mutex<ChaCha8Rng>,
}

impl<B: Blocks> Net<B> {
    /// Builds the network of `space` (already validated) with SPOS init from one ChaCha8 RNG
    /// seeded by `seed`, drawn in this order: stem conv (N(0, 0.01)), the fixed stem block's convs
    /// (MobileNetV2), `blocks(shapes, rng)`, last conv,
    /// classifier (N(0, 0.01)). `affine` gives the stem's and the last conv's BN a learnable γ/β
    /// (the blocks' BN is `blocks`' business).
    pub fn new(
        space: &Space,
        device: &Device,
        seed: u64,
        affine: bool,
        blocks: impl FnOnce(&[BlockShape], &mut ChaCha8Rng) -> Result<B>,
    ) -> Result<Net<B>> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let with_affine = |l: ConvBn| if affine { l.with_affine(device) } else { Ok(l) };
        // Stem conv N(0, 0.01) as SPOS; a family's fixed stem block gets the SPOS conv init.
        let stem = cost::stem_convs(space)
            .iter()
            .enumerate()
            .map(|(j, spec)| {
                let std = (j == 0).then_some(0.01);
                with_affine(ConvBn::from_spec(
                    "stem",
                    spec,
                    std,
                    &space.name,
                    &mut rng,
                    device,
                )?)
            })
            .collect::<Result<Vec<_>>>()?;
        let shapes = space.blocks();
        let blocks = blocks(&shapes, &mut rng)?;
        let last = with_affine(ConvBn::from_spec(
            "last",
            &cost::last_conv(space),
            None,
            &space.name,
            &mut rng,
            device,
        )?)?;
        let classifier = init::normal_var(
            &[space.classes, space.last_channels],
            0.01,
            &mut rng,
            device,
        )?;
        let mut net = Net {
            space: space.clone(),
            device: device.clone(),
            stem,
            blocks,
            last,
            classifier,
            index: BTreeMap::new(),
            dropout_rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed ^ 0xD50F_0D50)),
        };
        net.index = net
            .path_layers(net.blocks.all_layers())
            .flat_map(|l| l.named_vars())
            .map(|(n, v)| (n, v.clone()))
            .chain([("classifier.weight".to_string(), net.classifier.clone())])
            .collect();
        Ok(net)
    }
}

impl<B> Net<B> {
    /// Reseeds the dropout RNG.
    pub fn set_dropout_seed(&self, seed: u64) {
        *self.dropout_rng.lock().unwrap_or_else(|e| e.into_inner()) =
            ChaCha8Rng::seed_from_u64(seed);
    }

    /// A live, detached handle on the tensor called `name`, or `None` for an unknown name.
    pub fn tensor(&self, name: &str) -> Option<Tensor> {
        self.index.get(name).map(|v| v.as_detached_tensor())
    }

    /// All parameter and statistic names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    /// Fails with [`Error::BadInput`] ("`what` expects images […], got […]") unless `x` is
    /// `[b, input_channels, h, w]`.
    pub fn check_images(&self, x: &Tensor, what: std::fmt::Arguments<'_>) -> Result<()> {
        let dims = x.dims();
        if dims.len() != 4 || dims[1] != self.space.input_channels {
            return Err(Error::BadInput(format!(
                "{what} expects images [batch, {}, {s}, {s}], got {dims:?}",
                self.space.input_channels,
                s = self.space.input_size
            )));
        }
        Ok(())
    }

    /// The stem, the layers of `blocks`, the last conv, in order.
    pub fn path_layers<'a>(
        &'a self,
        blocks: impl Iterator<Item = &'a ConvBn> + 'a,
    ) -> impl Iterator<Item = &'a ConvBn> + 'a {
        self.stem
            .iter()
            .chain(blocks)
            .chain(std::iter::once(&self.last))
    }

    /// Output of the last conv `[b, last_channels, h', w']` through the stem, `path` and the last
    /// conv; `detach` keeps the weights out of the autograd graph.
    pub fn features<'a>(
        &self,
        x: &Tensor,
        path: impl IntoIterator<Item = &'a ChoiceBlock>,
        mode: BnMode,
        detach: bool,
    ) -> Result<Tensor> {
        let mut h = x.clone();
        for l in &self.stem {
            h = l.forward(&h, mode, detach)?;
        }
        for b in path {
            h = b.forward(&h, mode, detach)?;
        }
        self.last.forward(&h, mode, detach)
    }

    /// Logits from `features`: global average pool, inverted dropout when `dropout` and the
    /// space's rate is positive, bias-free linear.
    pub fn head(&self, features: &Tensor, dropout: bool) -> Result<Tensor> {
        let pooled = features.mean((2, 3))?;
        let pooled = if dropout && self.space.dropout > 0.0 {
            self.dropout(&pooled)?
        } else {
            pooled
        };
        Ok(pooled.matmul(&self.classifier.as_tensor().t()?)?)
    }

    /// Inverted dropout with the space's drop probability p, masks drawn from the dropout RNG.
    fn dropout(&self, x: &Tensor) -> Result<Tensor> {
        let p = self.space.dropout;
        let n = x.elem_count();
        let scale = (1.0 / (1.0 - p)) as f32;
        let mask: Vec<f32> = {
            let mut rng = self.dropout_rng.lock().unwrap_or_else(|e| e.into_inner());
            (0..n)
                .map(|_| if rng.random::<f64>() < p { 0.0 } else { scale })
                .collect()
        };
        let mask = Tensor::from_vec(mask, x.shape(), x.device())?;
        Ok(x.mul(&mask)?)
    }

    /// Precise BN: unless `mode` is [`BnCalibration::None`], resets the BN of `layers`, then runs
    /// `features(x, mode)` (which should move exactly those BNs) over `batches` with the
    /// momentum `mode` asks for. Fails when there are no batches; the message names `arch`.
    pub fn calibrate_bn<'a>(
        &self,
        layers: impl Iterator<Item = &'a ConvBn>,
        batches: impl IntoIterator<Item = Result<Tensor>>,
        mode: BnCalibration,
        arch: &Arch,
        mut features: impl FnMut(&Tensor, BnMode) -> Result<Tensor>,
    ) -> Result<()> {
        if mode == BnCalibration::None {
            return Ok(());
        }
        for l in layers {
            l.bn.reset()?;
        }
        let mut k = 0usize;
        for batch in batches {
            let x = batch?;
            let momentum = match mode {
                BnCalibration::Exact => 1.0 / (k as f64 + 1.0),
                BnCalibration::ResetEma { momentum } => momentum,
                BnCalibration::None => unreachable!("returned above"),
            };
            features(&x, BnMode::Train { momentum })?;
            k += 1;
        }
        if k == 0 {
            return Err(Error::BadInput(format!(
                "BN calibration of arch {arch} got no batches: pass at least one batch of images"
            )));
        }
        Ok(())
    }
}
