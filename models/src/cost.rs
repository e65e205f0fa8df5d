//! FLOPs and parameter counts, computed analytically from a [`Space`] and an [`Arch`].
//!
//! **FLOPs** are multiply-adds of the convolutions and the classifier only (BN, ReLU, pooling,
//! split and concat are free), as in SPOS. A conv with `cin → cout` channels,
//! `groups`, a `k×k` kernel and an `h×w` output costs `cout · (cin / groups) · k² · h · w`; the
//! bias-free classifier costs `last_channels · classes`.
//!
//! **Parameters** are conv and classifier weights. The supernet's BN has no affine parameters, so
//! [`supernet_params`] counts weights only; a standalone subnet ([`arch_cost`]) is retrained with
//! affine BN and also counts γ and β (2 per BN channel; running statistics are buffers, not
//! parameters).
//!
//! Every conv of the network is described by a [`ConvSpec`] ([`stem_convs`], [`block_convs`],
//! [`last_conv`]); the supernet, the subnet builder and the ONNX exporter read the same list, so
//! costs, weights and graph can never disagree on the wiring. The residual `Add` of MobileNetV2
//! blocks is free, like BN and activations.
//!
//! ```
//! use shiftnas_models::{cost, Space};
//! let space = Space::spos_imagenet();
//! let arch = space.parse_arch("21012020202300003233").unwrap();
//! assert_eq!(cost::arch_flops(&space, &arch), 322_918_720);
//! ```

use std::iter::Sum;
use std::ops::{Add, AddAssign};

use serde::{Deserialize, Serialize};

use crate::arch::Arch;
use crate::space::{BlockShape, Choice, Family, Space, mobilenet, shufflenet};

/// The activation after a conv's BN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Act {
    /// None (linear).
    None,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)` (MobileNetV2).
    Relu6,
}

impl From<Act> for shiftnas_kernels::infer::Activation {
    fn from(a: Act) -> Self {
        match a {
            Act::None => Self::None,
            Act::Relu => Self::Relu,
            Act::Relu6 => Self::Relu6,
        }
    }
}

/// FLOPs (multiply-adds) and parameters of a network or part of one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cost {
    /// Multiply-adds of convs and the classifier for one image.
    pub flops: u64,
    /// Learnable parameters (see the module doc for what counts).
    pub params: u64,
}

impl Add for Cost {
    type Output = Cost;
    fn add(self, o: Cost) -> Cost {
        Cost {
            flops: self.flops + o.flops,
            params: self.params + o.params,
        }
    }
}

impl AddAssign for Cost {
    fn add_assign(&mut self, o: Cost) {
        *self = *self + o;
    }
}

impl Sum for Cost {
    fn sum<I: Iterator<Item = Cost>>(iter: I) -> Cost {
        iter.fold(Cost::default(), Add::add)
    }
}

/// One square, zero-padded (`kernel / 2`), bias-free convolution followed by a BN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvSpec {
    /// Parameter-name prefix inside its module: `main.conv1`, `proj.conv0`, `conv` (stem, last).
    pub name: String,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel size (square).
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Groups: 1 for dense convs, `in_channels` for depthwise ones.
    pub groups: usize,
    /// Input height = width.
    pub in_size: usize,
    /// Output height = width.
    pub out_size: usize,
    /// The activation after the BN.
    pub act: Act,
}

impl ConvSpec {
    /// Weight shape, OIHW: `[out, in / groups, k, k]`.
    pub fn weight_shape(&self) -> [usize; 4] {
        [
            self.out_channels,
            self.in_channels / self.groups,
            self.kernel,
            self.kernel,
        ]
    }

    /// Number of weights.
    pub fn weights(&self) -> u64 {
        self.weight_shape().iter().map(|&d| d as u64).product()
    }

    /// Multiply-adds for one image.
    pub fn flops(&self) -> u64 {
        self.weights() * (self.out_size * self.out_size) as u64
    }

    /// Padding on each side (`kernel / 2`).
    pub fn padding(&self) -> usize {
        self.kernel / 2
    }

    /// Cost of this conv; `affine_bn` adds the γ and β of its BN.
    pub fn cost(&self, affine_bn: bool) -> Cost {
        Cost {
            flops: self.flops(),
            params: self.weights()
                + if affine_bn {
                    2 * self.out_channels as u64
                } else {
                    0
                },
        }
    }
}

/// The parts of one conv that differ from layer to layer (a builder shorthand).
pub(crate) fn conv(
    name: &str,
    (cin, cout): (usize, usize),
    kernel: usize,
    stride: usize,
    depthwise: bool,
    (in_size, out_size): (usize, usize),
    act: Act,
) -> ConvSpec {
    ConvSpec {
        name: name.to_string(),
        in_channels: cin,
        out_channels: cout,
        kernel,
        stride,
        groups: if depthwise { cin } else { 1 },
        in_size,
        out_size,
        act,
    }
}

/// The first conv: `input_channels → stem_channels`, `kernel`, `stride`, then BN and the
/// family's activation.
pub fn stem_conv(space: &Space) -> ConvSpec {
    conv(
        "conv",
        (space.input_channels, space.stem_channels()),
        space.stem.kernel,
        space.stem.stride,
        false,
        (space.input_size, space.stem_out_size()),
        space.family.activation(),
    )
}

/// Every conv of the stem part, in order: [`stem_conv`] and, where the family has one, its fixed
/// first block (MobileNetV2: `block.conv0` dw 3×3, `block.conv1` pw). Names are relative to the
/// `stem.` prefix.
pub fn stem_convs(space: &Space) -> Vec<ConvSpec> {
    let mut out = vec![stem_conv(space)];
    if space.stem.block_channels.is_some() {
        out.extend(mobilenet::stem_block_convs(space));
    }
    out
}

/// The last conv: 1×1 `last block channels → last_channels`, then BN and the family's
/// activation.
pub fn last_conv(space: &Space) -> ConvSpec {
    let size = space.final_size();
    conv(
        "conv",
        (space.final_channels(), space.last_channels),
        1,
        1,
        false,
        (size, size),
        space.family.activation(),
    )
}

/// The convs of one choice block, in execution order within each branch (see [`Space::wiring`]
/// for how they combine): `main.conv{j}` and, for ShuffleNetV2 at stride 2, `proj.conv{0,1}`.
/// The family module of the choice says which: [`shufflenet`] (SPOS units) or [`mobilenet`]
/// (MBConv).
pub fn block_convs(b: &BlockShape, choice: Choice) -> Vec<ConvSpec> {
    match choice.family() {
        Family::ShufflenetV2 => shufflenet::block_convs(b, choice),
        Family::MobilenetV2 => mobilenet::block_convs(b, choice),
    }
}

/// Cost of block `index` running `choice`, with affine-free BN (weights only, as in the supernet).
///
/// # Panics
/// If `index` is not a block of `space` (callers index with positions of a checked arch).
pub fn block_cost(space: &Space, index: usize, choice: Choice) -> Cost {
    let b = space.blocks()[index];
    block_convs(&b, choice).iter().map(|c| c.cost(false)).sum()
}

/// Cost of the parts every arch shares: stem convs, last conv and classifier (weights only).
pub fn fixed_cost(space: &Space) -> Cost {
    stem_convs(space)
        .iter()
        .map(|c| c.cost(false))
        .sum::<Cost>()
        + last_conv(space).cost(false)
        + classifier_cost(space)
}

/// Cost of the bias-free classifier `last_channels → classes`.
pub fn classifier_cost(space: &Space) -> Cost {
    let n = (space.last_channels * space.classes) as u64;
    Cost {
        flops: n,
        params: n,
    }
}

/// FLOPs (multiply-adds) of `arch` for one image.
///
/// # Panics
/// If `arch` does not fit `space` (check it with [`Space::check_arch`] first).
pub fn arch_flops(space: &Space, arch: &Arch) -> u64 {
    arch_breakdown(space, arch).total.flops
}

/// FLOPs and parameters of `arch` as a standalone subnet, **including the affine BN parameters**
/// (γ, β: 2 per BN channel) a retrained subnet has.
///
/// # Panics
/// If `arch` does not fit `space` (check it with [`Space::check_arch`] first).
pub fn arch_cost(space: &Space, arch: &Arch) -> Cost {
    arch_breakdown(space, arch).total
}

/// Parameters of the whole supernet: every choice of every block plus the fixed part, conv and
/// classifier weights only (its BN has no affine parameters).
pub fn supernet_params(space: &Space) -> u64 {
    let blocks: u64 = space
        .blocks()
        .iter()
        .flat_map(|b| {
            space
                .choices
                .iter()
                .flat_map(move |&c| block_convs(b, c))
                .map(|c| c.weights())
        })
        .sum();
    blocks + fixed_cost(space).params
}

/// Cost of one block of an arch, as a standalone subnet (affine BN counted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockCost {
    /// 0-based block index.
    pub index: usize,
    /// The choice the arch makes here.
    pub choice: Choice,
    /// Stride of the block.
    pub stride: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Output height = width.
    pub out_size: usize,
    /// Multiply-adds.
    pub flops: u64,
    /// Parameters, affine BN included.
    pub params: u64,
}

/// Per-part costs of an arch as a standalone subnet (affine BN counted), for tables and JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchCost {
    /// The space's name.
    pub space: String,
    /// The arch's digits.
    pub arch: String,
    /// Stem convs + BNs (with MobileNetV2's fixed first block).
    pub stem: Cost,
    /// Every choice block, in order.
    pub blocks: Vec<BlockCost>,
    /// Last conv + BN.
    pub last: Cost,
    /// Bias-free classifier.
    pub classifier: Cost,
    /// Sum of all parts.
    pub total: Cost,
}

/// The cost of every part of `arch` as a standalone subnet (affine BN counted).
///
/// # Panics
/// If `arch` does not fit `space` (check it with [`Space::check_arch`] first).
pub fn arch_breakdown(space: &Space, arch: &Arch) -> ArchCost {
    let shapes = space.blocks();
    assert_eq!(
        arch.len(),
        shapes.len(),
        "arch {arch} does not fit space {}",
        space.name
    );
    let blocks: Vec<BlockCost> = shapes
        .iter()
        .map(|b| {
            let choice = space.choice(arch, b.index);
            let c: Cost = block_convs(b, choice).iter().map(|c| c.cost(true)).sum();
            BlockCost {
                index: b.index,
                choice,
                stride: b.stride,
                in_channels: b.in_channels,
                out_channels: b.out_channels,
                out_size: b.out_size,
                flops: c.flops,
                params: c.params,
            }
        })
        .collect();
    let stem = stem_convs(space).iter().map(|c| c.cost(true)).sum();
    let last = last_conv(space).cost(true);
    let classifier = classifier_cost(space);
    let total = stem
        + last
        + classifier
        + blocks
            .iter()
            .map(|b| Cost {
                flops: b.flops,
                params: b.params,
            })
            .sum();
    ArchCost {
        space: space.name.clone(),
        arch: arch.to_string(),
        stem,
        blocks,
        last,
        classifier,
        total,
    }
}
