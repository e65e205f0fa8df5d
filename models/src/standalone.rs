//! A standalone single-path network of one arch with affine BN and fresh weights: what
//! `shiftnas retrain` trains from scratch (SPOS retraining).
//!
//! It is the supernet's path for the arch built on its own: the same layers, wiring, fast ops and
//! init distributions (convs N(0, 1/(in_ch/groups)), stem and classifier N(0, 0.01), one ChaCha8
//! RNG seeded by the caller), but only the chosen choice of each block exists, and every batch
//! norm has a learnable scale γ (init 1) and shift β (init 0). Tensor names are the supernet's,
//! with the arch's choice digit in them, plus `….bn{j}.weight` (γ) and `….bn{j}.bias` (β): the
//! names [`Subnet::from_tensors`] reads, so [`Standalone::subnet`] folds and exports it directly.
//!
//! Checkpoints are safetensors with a `__metadata__` header `{"format": "shiftnas-standalone",
//! "format_version": "1", "space": <Space as JSON>, "arch": "<digits>", "step": "N"}`, written
//! atomically.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};

use crate::arch::Arch;
use crate::checkpoint::{FORMAT_VERSION, fill_named, meta_value, read_metadata, save_named};
use crate::error::{Error, Result};
use crate::space::Space;
use crate::subnet::Subnet;
use crate::supernet::BnCalibration;
use crate::supernet::block::{BnMode, ChoiceBlock, ConvBn};
use crate::supernet::net::{Blocks, Net};
use shiftnas_kernels::bn::BN_MOMENTUM;

/// The `format` metadata value of standalone checkpoints.
pub const STANDALONE_FORMAT: &str = "shiftnas-standalone";

/// One arch of a space as a trainable network with affine BN (see the module doc).
#[derive(Debug)]
pub struct Standalone {
    arch: Arch,
    /// `net.blocks[i]`: block i's chosen choice.
    net: Net<Vec<ChoiceBlock>>,
}

impl Standalone {
    /// Builds `arch` of `space` on `device` with fresh SPOS init drawn from `seed` (BN γ = 1,
    /// β = 0, running mean 0, variance 1).
    ///
    /// # Errors
    /// [`Error::InvalidSpace`] for a space that cannot build a network, [`Error::Arch`] for an
    /// arch that does not fit it.
    pub fn new(space: &Space, arch: &Arch, device: &Device, seed: u64) -> Result<Standalone> {
        space.validate()?;
        space.check_arch(arch)?;
        let net = Net::new(space, device, seed, true, |shapes, rng| {
            let mut blocks = Vec::with_capacity(shapes.len());
            for shape in shapes {
                let digit = arch.genes()[shape.index] as usize;
                let choice = space.choice(arch, shape.index);
                blocks.push(
                    ChoiceBlock::new(
                        shape,
                        choice,
                        digit,
                        space.wiring(shape),
                        &space.name,
                        rng,
                        device,
                    )?
                    .with_affine(device)?,
                );
            }
            Ok(blocks)
        })?;
        Ok(Standalone {
            arch: arch.clone(),
            net,
        })
    }

    /// The space the arch belongs to.
    pub fn space(&self) -> &Space {
        &self.net.space
    }

    /// The arch this network is.
    pub fn arch(&self) -> &Arch {
        &self.arch
    }

    /// The candle device its tensors live on.
    pub fn device(&self) -> &Device {
        &self.net.device
    }

    /// Reseeds the dropout RNG; call it once per training step with a seed derived from the step
    /// so that a resumed run draws the same masks.
    pub fn set_dropout_seed(&self, seed: u64) {
        self.net.set_dropout_seed(seed);
    }

    /// Logits `[b, classes]` for images `x` `[b, input_channels, h, w]` (f32).
    ///
    /// `train = true`: BN uses batch statistics and moves the running ones with momentum 0.1
    /// (unbiased variance), and dropout is applied. `train = false`: running statistics, no
    /// dropout.
    ///
    /// # Errors
    /// An input of the wrong rank or channel count; BN in training mode over one value per
    /// channel.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.net.check_images(
            x,
            format_args!("arch {} of space {:?}", self.arch, self.net.space.name),
        )?;
        let mode = if train {
            BnMode::Train {
                momentum: BN_MOMENTUM,
            }
        } else {
            BnMode::Eval
        };
        let feat = self.net.features(x, &self.net.blocks, mode, false)?;
        self.net.head(&feat, train)
    }

    /// Recomputes every BN's running statistics from `batches` of images `[b, c, h, w]` with the
    /// current weights (no gradients, no dropout): "precise BN", for runs too short for the
    /// training EMA to catch up with the weights. See [`BnCalibration`] for the modes.
    ///
    /// # Errors
    /// A failing batch, a bad input, or no batches at all with a resetting `mode`.
    pub fn calibrate_bn(
        &self,
        batches: impl IntoIterator<Item = Result<Tensor>>,
        mode: BnCalibration,
    ) -> Result<()> {
        self.net
            .calibrate_bn(self.layers(), batches, mode, &self.arch, |x, mode| {
                self.net.features(x, &self.net.blocks, mode, true)
            })
    }

    /// Every learnable parameter, sorted by name: conv and linear weights (`….weight`), BN γ
    /// (`….bn{j}.weight`) and β (`….bn{j}.bias`). Running statistics are excluded.
    pub fn trainable(&self) -> Vec<(String, Var)> {
        self.net
            .index
            .iter()
            .filter(|(n, _)| !n.ends_with(".running_mean") && !n.ends_with(".running_var"))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect()
    }

    /// All parameter and statistic names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.net.names()
    }

    /// A live, detached handle on the tensor called `name`, or `None` for an unknown name.
    pub fn tensor(&self, name: &str) -> Option<Tensor> {
        self.net.tensor(name)
    }

    /// Overwrites the tensor called `name` (converted to f32 on this network's device).
    ///
    /// # Errors
    /// An unknown name or a shape that differs from the current one.
    pub fn set_tensor(&self, name: &str, value: &Tensor) -> Result<()> {
        let var = self.net.index.get(name).ok_or_else(|| {
            Error::BadInput(format!(
                "arch {} of space {:?} has no tensor {name:?}",
                self.arch, self.net.space.name
            ))
        })?;
        if var.dims() != value.dims() {
            return Err(Error::BadInput(format!(
                "tensor {name:?} of arch {} is {:?}, got {:?}",
                self.arch,
                var.dims(),
                value.dims()
            )));
        }
        Ok(var.set(&value.to_dtype(DType::F32)?.to_device(&self.net.device)?)?)
    }

    /// Copies of every weight, BN parameter and statistic by name: the state dict
    /// [`Subnet::from_tensors`] reads.
    ///
    /// # Errors
    /// A failing copy (never on CPU).
    pub fn tensors(&self) -> Result<BTreeMap<String, Tensor>> {
        self.net
            .index
            .iter()
            .map(|(n, v)| Ok((n.clone(), v.as_tensor().copy()?.detach())))
            .collect()
    }

    /// The BN-folded, exportable subnet of the trained network (eval mode).
    ///
    /// # Errors
    /// A BN variance that is negative or not finite (a diverged run).
    pub fn subnet(&self) -> Result<Subnet> {
        Subnet::from_tensors(&self.net.space, &self.arch, &self.tensors()?)
    }

    /// Saves every tensor with `step` to `path`, atomically.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Checkpoint`] naming the file.
    pub fn save(&self, path: impl AsRef<Path>, step: u64) -> Result<()> {
        let path = path.as_ref();
        let space_json = serde_json::to_string(&self.net.space).map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            reason: format!("cannot serialise the space: {e}"),
        })?;
        let meta = BTreeMap::from([
            ("format".to_string(), STANDALONE_FORMAT.to_string()),
            ("format_version".to_string(), FORMAT_VERSION.to_string()),
            ("space".to_string(), space_json),
            ("arch".to_string(), self.arch.to_string()),
            ("step".to_string(), step.to_string()),
        ]);
        let named = self
            .net
            .index
            .iter()
            .map(|(n, v)| (n.clone(), v.as_detached_tensor()));
        save_named(path, named, meta)
    }

    /// Loads a checkpoint written by [`Standalone::save`], building the network of the space and
    /// arch stored in it; returns it with the step it was saved at.
    ///
    /// # Errors
    /// An unreadable file, another format or version, missing or misshapen tensors, a tensor
    /// whose bytes do not match its checksum.
    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<(Standalone, u64)> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let md = read_metadata(path, &bytes, STANDALONE_FORMAT, "shiftnas retrain")?;
        let bad = |reason: String| Error::Checkpoint {
            path: path.to_path_buf(),
            reason,
        };
        let space: Space = serde_json::from_str(meta_value(path, &md, "space")?)
            .map_err(|e| bad(format!("unreadable space in the header: {e}")))?;
        let arch: Arch = meta_value(path, &md, "arch")?
            .parse()
            .map_err(|e| bad(format!("unreadable arch in the header: {e}")))?;
        let step = meta_value(path, &md, "step")?
            .parse::<u64>()
            .map_err(|e| bad(format!("unreadable step in the header: {e}")))?;
        let net = Standalone::new(&space, &arch, device, 0)?;
        let expected: Vec<(String, Vec<usize>)> = net
            .net
            .index
            .iter()
            .map(|(n, v)| (n.clone(), v.dims().to_vec()))
            .collect();
        let what = format!("arch {arch} of space {:?}", space.name);
        fill_named(path, &bytes, &expected, &what, |n, t| net.set_tensor(n, &t))?;
        Ok((net, step))
    }

    /// As [`Standalone::load`], but fails unless the checkpoint holds `arch` of `space`.
    ///
    /// # Errors
    /// As [`Standalone::load`], and [`Error::Checkpoint`] naming both on a mismatch.
    pub fn load_for(
        path: impl AsRef<Path>,
        space: &Space,
        arch: &Arch,
        device: &Device,
    ) -> Result<(Standalone, u64)> {
        let path = path.as_ref();
        let (net, step) = Standalone::load(path, device)?;
        if &net.net.space != space || &net.arch != arch {
            return Err(Error::Checkpoint {
                path: path.to_path_buf(),
                reason: format!(
                    "holds arch {} of space {:?}, but arch {arch} of space {:?} is expected; resume the run that wrote it or start a new run dir",
                    net.arch, net.net.space.name, space.name
                ),
            });
        }
        Ok((net, step))
    }

    /// Every conv+BN layer in order (stem, blocks, last).
    fn layers(&self) -> impl Iterator<Item = &ConvBn> {
        self.net.path_layers(self.net.blocks.all_layers())
    }
}
