//! The weight-sharing supernet over a [`Space`] of any [`Family`](crate::space::Family), in candle.
//!
//! Layout: stem conv k×k stride s → BN → activation (ReLU; ReLU6 in MobileNetV2 spaces, followed
//! by the fixed first block); one [`Choice`] per block, each (block, choice) with its own weights
//! and BN statistics, wired as [`Space::wiring`] says; last 1×1 conv → BN → activation; global
//! average pool; dropout (training only); bias-free linear. Only the path an [`Arch`] picks runs.
//!
//! Batch norms are affine-free (γ = 1, β = 0, ε = 1e-5). Parameter names are fixed — checkpoints,
//! the ONNX exporter and path-masked updates rely on them:
//!
//! | name | shape |
//! |---|---|
//! | `stem.conv.weight` | `[stem_ch, in_ch, k, k]` |
//! | `stem.bn.running_mean`, `stem.bn.running_var` | `[stem_ch]` |
//! | `stem.block.conv{0,1}.weight`, `stem.block.bn{0,1}.*` | MobileNetV2's fixed first block: dw 3×3, pw |
//! | `blocks.{i}.choice{c}.main.conv{j}.weight` | OIHW; Shuffle and MBConv: j = 0 pw, 1 dw, 2 pw; Xception: j = 0 dw, 1 pw, 2 dw, 3 pw, 4 dw, 5 pw |
//! | `blocks.{i}.choice{c}.main.bn{j}.running_mean / running_var` | BN after conv j |
//! | `blocks.{i}.choice{c}.proj.conv0.weight` (dw), `proj.conv1.weight` (pw), `proj.bn{0,1}.*` | ShuffleNetV2 stride-2 blocks only |
//! | `last.conv.weight`, `last.bn.*` | `[last_ch, stage_ch, 1, 1]` |
//! | `classifier.weight` | `[classes, last_ch]` |
//!
//! Init (SPOS) draws from one ChaCha8 RNG seeded by the caller: convs N(0, 1/(in_ch/groups)),
//! stem N(0, 0.01), classifier N(0, 0.01).

pub(crate) mod block;
pub(crate) mod net;

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, Var};

use crate::arch::Arch;
use crate::error::{Error, Result};
use crate::space::{Choice, Space};
use shiftnas_kernels::bn::BN_MOMENTUM;

pub use block::channel_split;
use block::{BnMode, ChoiceBlock, ConvBn};
use net::Net;

/// How [`Supernet::calibrate_bn`] recomputes a path's BN running statistics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BnCalibration {
    /// Reset, then batch k (0-based) updates with momentum 1/(k+1): the exact average of the batch
    /// means and unbiased batch variances.
    Exact,
    /// Reset, then an exponential moving average with `momentum` (SPOS uses 0.1).
    ResetEma {
        /// Weight of each new batch.
        momentum: f64,
    },
    /// Leave the statistics as they are.
    None,
}

/// The weight-sharing supernet of one [`Space`].
#[derive(Debug)]
pub struct Supernet {
    /// `net.blocks[i][c]`: block i, choice c.
    net: Net<Vec<Vec<ChoiceBlock>>>,
}

impl Supernet {
    /// Builds the supernet of `space` on `device` with SPOS init drawn from `seed`.
    ///
    /// # Errors
    /// [`Error::InvalidSpace`] when the space cannot build a network (see [`Space::validate`]).
    pub fn new(space: &Space, device: &Device, seed: u64) -> Result<Supernet> {
        space.validate()?;
        let net = Net::new(space, device, seed, false, |shapes, rng| {
            let mut blocks = Vec::with_capacity(shapes.len());
            for shape in shapes {
                let mut per_choice = Vec::with_capacity(space.choices.len());
                for (c, &choice) in space.choices.iter().enumerate() {
                    per_choice.push(ChoiceBlock::new(
                        shape,
                        choice,
                        c,
                        space.wiring(shape),
                        &space.name,
                        rng,
                        device,
                    )?);
                }
                blocks.push(per_choice);
            }
            Ok(blocks)
        })?;
        Ok(Supernet { net })
    }

    /// The space this supernet was built from.
    pub fn space(&self) -> &Space {
        &self.net.space
    }

    /// The candle device its tensors live on.
    pub fn device(&self) -> &Device {
        &self.net.device
    }

    /// Reseeds the dropout RNG. Call it once per training step with a seed derived from the step
    /// (e.g. `run_seed ^ step`) so that a resumed run draws the same masks.
    pub fn set_dropout_seed(&self, seed: u64) {
        self.net.set_dropout_seed(seed);
    }

    /// Logits `[b, classes]` of `arch` for images `x` `[b, input_channels, h, w]` (f32; h and w
    /// are normally `space.input_size`).
    ///
    /// `train = true`: BN uses batch statistics and moves that path's running statistics with
    /// momentum 0.1 (unbiased variance, as PyTorch), and dropout (seeded by
    /// [`Supernet::set_dropout_seed`]) is applied. `train = false`: running statistics, no dropout.
    /// Only the chosen path runs and only its weights receive gradients.
    ///
    /// # Errors
    /// An arch that does not fit the space, an input of the wrong rank or channel count.
    pub fn forward_t(&self, x: &Tensor, arch: &Arch, train: bool) -> Result<Tensor> {
        if train {
            return self.forward_train_momentum(x, arch, BN_MOMENTUM);
        }
        let feat = self.features(x, arch, BnMode::Eval, false)?;
        self.net.head(&feat, false)
    }

    /// [`Supernet::forward_t`] in training mode, with the path's BN running statistics moved by
    /// `momentum` instead of 0.1: batch k (0-based) of a sequence with momentum `1/(k+1)` leaves
    /// exactly the statistics [`Supernet::calibrate_bn`] computes with [`BnCalibration::Exact`]
    /// over the same batches, so one forward can both calibrate BN and give a training loss.
    ///
    /// # Errors
    /// As [`Supernet::forward_t`].
    pub fn forward_train_momentum(&self, x: &Tensor, arch: &Arch, momentum: f64) -> Result<Tensor> {
        let feat = self.features(x, arch, BnMode::Train { momentum }, false)?;
        self.net.head(&feat, true)
    }

    /// Output of the last conv block `[b, last_channels, h', w']`.
    fn features(&self, x: &Tensor, arch: &Arch, mode: BnMode, detach: bool) -> Result<Tensor> {
        self.net.space.check_arch(arch)?;
        self.net.check_images(
            x,
            format_args!("supernet of space {:?}", self.net.space.name),
        )?;
        let path = (arch.genes().iter().enumerate()).map(|(i, &g)| &self.net.blocks[i][g as usize]);
        self.net.features(x, path, mode, detach)
    }

    /// Every conv and linear weight, sorted by name (running statistics excluded).
    pub fn trainable(&self) -> Vec<(String, Var)> {
        self.net
            .index
            .iter()
            .filter(|(n, _)| n.ends_with(".weight"))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect()
    }

    /// The weights `arch` uses (stem, its (block, choice) pairs, last conv, classifier), sorted by
    /// name. Genes beyond the space's blocks or choices are ignored: check the arch with
    /// [`Space::check_arch`] first.
    pub fn path_trainable(&self, arch: &Arch) -> Vec<(String, Var)> {
        let mut out: Vec<(String, Var)> = self
            .path_layers(arch)
            .map(|l| (l.conv_name.clone(), l.weight.clone()))
            .chain([("classifier.weight".to_string(), self.net.classifier.clone())])
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// A live, detached handle on the weight or statistic called `name` (it changes when the
    /// supernet is trained; `.copy()` it for a snapshot), or `None` for an unknown name.
    pub fn tensor(&self, name: &str) -> Option<Tensor> {
        self.net.tensor(name)
    }

    /// All parameter and statistic names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.net.names()
    }

    /// Copies of the weights and running statistics `arch` uses, by name (see the module table).
    ///
    /// # Errors
    /// An arch that does not fit the space.
    pub fn arch_tensors(&self, arch: &Arch) -> Result<BTreeMap<String, Tensor>> {
        self.net.space.check_arch(arch)?;
        let mut out = BTreeMap::new();
        for l in self.path_layers(arch) {
            for (n, v) in l.named_vars() {
                out.insert(n, v.as_tensor().copy()?.detach());
            }
        }
        out.insert(
            "classifier.weight".into(),
            self.net.classifier.as_tensor().copy()?.detach(),
        );
        Ok(out)
    }

    /// Recomputes the BN running statistics of `arch`'s path from `batches` of images
    /// `[b, c, h, w]` (no gradients, no dropout; other paths untouched).
    ///
    /// # Errors
    /// A failing batch, a bad arch or input, or no batches at all with a resetting `mode`.
    pub fn calibrate_bn(
        &self,
        arch: &Arch,
        batches: impl IntoIterator<Item = Result<Tensor>>,
        mode: BnCalibration,
    ) -> Result<()> {
        self.net.space.check_arch(arch)?;
        self.net
            .calibrate_bn(self.path_layers(arch), batches, mode, arch, |x, mode| {
                self.features(x, arch, mode, true)
            })
    }

    /// The conv+BN layers `arch` runs, in order (stem, blocks, last). Genes beyond the space are
    /// ignored.
    fn path_layers<'a>(&'a self, arch: &'a Arch) -> impl Iterator<Item = &'a ConvBn> + 'a {
        self.net.path_layers(
            arch.genes()
                .iter()
                .enumerate()
                .filter_map(|(i, &g)| self.net.blocks.get(i)?.get(g as usize))
                .flat_map(|b| b.layers()),
        )
    }

    /// Kernel inheritance: every choice of every block that has the same convs as choice `from`
    /// (numbered as in the space) up to larger depthwise kernels — the other ShuffleNet kernels,
    /// or the MBConv kernels of the same expansion — takes the weights and BN statistics of
    /// `from`, with its depthwise kernels zero-padded at the border to the larger size, as
    /// Once-for-All's elastic kernels share their centre. Afterwards those choices compute
    /// exactly what `from` computes, then diverge as each trains on its own; Xception choices and
    /// MBConv choices of another expansion (other hidden widths) are left alone. Returns the
    /// names of the overwritten weights (their optimizer state is stale).
    ///
    /// # Errors
    /// [`Error::BadInput`] when `from` is not a ShuffleNet or MBConv choice of the space or is
    /// larger than a choice it would feed (kernels only grow).
    pub fn inherit_kernels(&self, from: usize) -> Result<Vec<String>> {
        let choices = &self.net.space.choices;
        let src_choice = choices.get(from).copied().filter(|&c| c != Choice::Xception).ok_or_else(|| {
            Error::BadInput(format!(
                "kernel inheritance needs a ShuffleNet choice or an MBConv choice to copy from; choice {from} of space {} is {:?}",
                self.net.space.name,
                choices.get(from)
            ))
        })?;
        // Same layers up to the depthwise kernel size.
        let compatible = |c: Choice| {
            c != Choice::Xception
                && c.family() == src_choice.family()
                && c.expansion() == src_choice.expansion()
        };
        let mut written = Vec::new();
        for block in &self.net.blocks {
            let src = &block[from];
            for (c, dst) in block.iter().enumerate() {
                if c == from || !compatible(choices[c]) {
                    continue;
                }
                if choices[c].kernel() < src_choice.kernel() {
                    return Err(Error::BadInput(format!(
                        "kernel inheritance copies choice {from} ({}) into choice {c} ({}): kernels can only grow",
                        src_choice.short_name(),
                        choices[c].short_name()
                    )));
                }
                for (d, s) in dst.layers().zip(src.layers()) {
                    let w = s.weight.as_tensor();
                    let pad = (d.weight.dim(3)? - w.dim(3)?) / 2;
                    d.weight
                        .set(&w.pad_with_zeros(2, pad, pad)?.pad_with_zeros(3, pad, pad)?)?;
                    d.bn.running_mean().set(s.bn.running_mean().as_tensor())?;
                    d.bn.running_var().set(s.bn.running_var().as_tensor())?;
                    written.push(d.conv_name.clone());
                }
            }
        }
        Ok(written)
    }

    /// Overwrites the tensor called `name` (shape must match). Used by checkpoint loading.
    pub(crate) fn set_tensor(&self, name: &str, value: &Tensor) -> Result<()> {
        match self.net.index.get(name) {
            Some(v) => Ok(v.set(&value.to_dtype(DType::F32)?.to_device(&self.net.device)?)?),
            None => Err(Error::BadInput(format!("unknown supernet tensor {name:?}"))),
        }
    }

    /// The choice block `arch` runs at position `i`.
    pub fn choice(&self, arch: &Arch, i: usize) -> Choice {
        self.net.space.choice(arch, i)
    }
}
