//! Search spaces: plain data describing a weight-sharing supernet.
//!
//! A [`Space`] fixes the input, the stem, the stages of choice blocks, the last conv and the
//! classifier. Every choice block offers the same [`Choice`]s; an [`Arch`] picks one per block.
//! [`Space::blocks`] derives each block's channels, stride and spatial size once, so the supernet,
//! the cost model and the ONNX exporter all read the same numbers.
//!
//! **Families.** What a block *is* depends on the space's [`Family`]: the SPOS ShuffleNetV2 units
//! ([`shufflenet`]) or MobileNetV2 inverted residuals ([`mobilenet`]). The family is an enum, not
//! a trait object, because a space is plain serialisable data (it travels in checkpoints and ONNX
//! metadata) and the set of families is closed and small: each family module says how its blocks
//! are wired ([`Wiring`]), which convs each choice runs ([`crate::cost::block_convs`]), which
//! fixed convs follow the stem, and which block shapes it accepts. Everything downstream (cost,
//! supernet, standalone, subnet, ONNX) is written once against those answers. A third family is a
//! new [`Family`] variant, its [`Choice`]s and a module answering the same questions; the
//! compiler lists every `match` that needs an arm.
//!
//! **Depth.** [`Space::depth_mult`] scales every stage's block count (`ceil(repeats × mult)`, as
//! EfficientNet's `round_repeats`); the extra blocks are stride-1 blocks of the stage, so the
//! arch grows and FLOPs/params follow from [`Space::blocks`].

pub mod mobilenet;
mod presets;
pub mod shufflenet;

use serde::{Deserialize, Serialize};

use crate::arch::Arch;
use crate::error::{ArchError, Error, Result};

/// The block family of a space: what its choice blocks are and how they are wired.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// SPOS ShuffleNetV2 units (channel split, branch, concat); see [`shufflenet`].
    #[default]
    ShufflenetV2,
    /// MobileNetV2 inverted residuals (MBConv) with ReLU6; see [`mobilenet`].
    MobilenetV2,
}

impl Family {
    /// Every choice this family offers, in the presets' digit order.
    pub fn choices(self) -> &'static [Choice] {
        match self {
            Family::ShufflenetV2 => &Choice::ALL,
            Family::MobilenetV2 => &Choice::MBCONV,
        }
    }

    /// Human name: `ShuffleNetV2`, `MobileNetV2`.
    pub fn name(self) -> &'static str {
        match self {
            Family::ShufflenetV2 => "ShuffleNetV2",
            Family::MobilenetV2 => "MobileNetV2",
        }
    }

    /// Channels are rounded to a multiple of this after the width multiplier (4 in SPOS, 8 in
    /// MobileNetV2's `_make_divisible`).
    pub fn channel_divisor(self) -> usize {
        match self {
            Family::ShufflenetV2 => 4,
            Family::MobilenetV2 => 8,
        }
    }

    /// The activation after the stem, the last conv and every non-linear block conv.
    pub fn activation(self) -> crate::cost::Act {
        match self {
            Family::ShufflenetV2 => crate::cost::Act::Relu,
            Family::MobilenetV2 => crate::cost::Act::Relu6,
        }
    }

    /// How a block of this family with shape `b` combines its convs.
    pub fn wiring(self, b: &BlockShape) -> Wiring {
        match self {
            Family::ShufflenetV2 => Wiring::Shuffle,
            Family::MobilenetV2 => mobilenet::wiring(b),
        }
    }

    /// Why block `b` cannot be built in this family, if it cannot.
    fn check_block(self, b: &BlockShape) -> Option<String> {
        match self {
            Family::ShufflenetV2 => shufflenet::check_block(b),
            Family::MobilenetV2 => mobilenet::check_block(b),
        }
    }
}

/// How a choice block combines the convs of [`crate::cost::block_convs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Wiring {
    /// ShuffleNetV2 unit: at stride 1 the even channels pass through and the odd ones feed the
    /// `main.*` convs; at stride 2 the whole input feeds both the `proj.*` and the `main.*` convs;
    /// the two halves are concatenated (pass-through/projection first).
    Shuffle,
    /// The `main.*` convs in sequence, plus the block's input when `residual` (stride 1 and equal
    /// in/out channels, as MobileNetV2's `use_res_connect`).
    InvertedResidual {
        /// Whether the input is added to the output.
        residual: bool,
    },
}

/// One of the operations a choice block can run. Its digit in an arch is its position in the
/// space's [`Space::choices`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Choice {
    /// ShuffleNetV2 unit with a 3×3 depthwise conv (digit 0).
    ShuffleK3,
    /// ShuffleNetV2 unit with a 5×5 depthwise conv (digit 1).
    ShuffleK5,
    /// ShuffleNetV2 unit with a 7×7 depthwise conv (digit 2).
    ShuffleK7,
    /// Xception unit: three 3×3 depthwise + pointwise pairs (digit 3).
    Xception,
    /// MBConv, 3×3 depthwise, expansion 3.
    MbK3E3,
    /// MBConv, 3×3 depthwise, expansion 6.
    MbK3E6,
    /// MBConv, 5×5 depthwise, expansion 3.
    MbK5E3,
    /// MBConv, 5×5 depthwise, expansion 6.
    MbK5E6,
    /// MBConv, 7×7 depthwise, expansion 3.
    MbK7E3,
    /// MBConv, 7×7 depthwise, expansion 6.
    MbK7E6,
}

impl Choice {
    /// The ShuffleNetV2 choices, in the SPOS digit order.
    pub const ALL: [Choice; 4] = [
        Choice::ShuffleK3,
        Choice::ShuffleK5,
        Choice::ShuffleK7,
        Choice::Xception,
    ];

    /// The MobileNetV2 choices, in the presets' digit order (kernel-major, as FairNAS numbers
    /// them): k3e3, k3e6, k5e3, k5e6, k7e3, k7e6.
    pub const MBCONV: [Choice; 6] = [
        Choice::MbK3E3,
        Choice::MbK3E6,
        Choice::MbK5E3,
        Choice::MbK5E6,
        Choice::MbK7E3,
        Choice::MbK7E6,
    ];

    /// The ShuffleNetV2 choice written as `digit` in a SPOS arch string.
    pub fn from_digit(digit: u8) -> Option<Choice> {
        Self::ALL.get(digit as usize).copied()
    }

    /// The digit that writes this choice in its family's default order ([`Family::choices`]).
    pub fn digit(self) -> u8 {
        let all = self.family().choices();
        all.iter()
            .position(|&c| c == self)
            .expect("a choice is in its family") as u8
    }

    /// The family whose blocks this choice is.
    pub fn family(self) -> Family {
        match self {
            Choice::ShuffleK3 | Choice::ShuffleK5 | Choice::ShuffleK7 | Choice::Xception => {
                Family::ShufflenetV2
            }
            _ => Family::MobilenetV2,
        }
    }

    /// Kernel size of the depthwise convs (also of the stride-2 projection branch).
    pub fn kernel(self) -> usize {
        match self {
            Choice::ShuffleK3 | Choice::Xception | Choice::MbK3E3 | Choice::MbK3E6 => 3,
            Choice::ShuffleK5 | Choice::MbK5E3 | Choice::MbK5E6 => 5,
            Choice::ShuffleK7 | Choice::MbK7E3 | Choice::MbK7E6 => 7,
        }
    }

    /// Expansion ratio of an MBConv choice (hidden = input channels × ratio), `None` otherwise.
    pub fn expansion(self) -> Option<usize> {
        match self {
            Choice::MbK3E3 | Choice::MbK5E3 | Choice::MbK7E3 => Some(3),
            Choice::MbK3E6 | Choice::MbK5E6 | Choice::MbK7E6 => Some(6),
            _ => None,
        }
    }

    /// Short name used in tables and errors: `k3`, `k5`, `k7`, `xception`, `k3e3` … `k7e6`.
    pub fn short_name(self) -> &'static str {
        match self {
            Choice::ShuffleK3 => "k3",
            Choice::ShuffleK5 => "k5",
            Choice::ShuffleK7 => "k7",
            Choice::Xception => "xception",
            Choice::MbK3E3 => "k3e3",
            Choice::MbK3E6 => "k3e6",
            Choice::MbK5E3 => "k5e3",
            Choice::MbK5E6 => "k5e6",
            Choice::MbK7E3 => "k7e3",
            Choice::MbK7E6 => "k7e6",
        }
    }
}

/// The first convolution: `kernel`×`kernel`, `stride`, `input_channels → channels`, BN and the
/// family's activation; in MobileNetV2 spaces followed by a fixed block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stem {
    /// Kernel size (square).
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Output channels before the width multiplier.
    pub channels: usize,
    /// Output channels (before the width multiplier) of the fixed block after the stem conv:
    /// MobileNetV2's expansion-1 3×3 inverted residual (dw 3×3 → BN → ReLU6 → pw → BN), which
    /// FairNAS and ProxylessNAS keep out of the search. `None` (ShuffleNetV2): no such block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_channels: Option<usize>,
}

/// A stage: `repeats` choice blocks producing `channels`; the first has stride `stride`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    /// Number of choice blocks.
    pub repeats: usize,
    /// Output channels before the width multiplier.
    pub channels: usize,
    /// Stride of the stage's first block (the others have stride 1).
    pub stride: usize,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

fn one() -> f64 {
    1.0
}

fn is_one(v: &f64) -> bool {
    *v == 1.0
}

/// A search space preset: everything needed to build the supernet of one arch family.
///
/// `family` and `depth_mult` are left out of the JSON at their defaults (ShuffleNetV2, 1), so
/// spaces written before they existed read back unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Space {
    /// Preset name, e.g. `spos-imagenet`.
    pub name: String,
    /// What the choice blocks are (see the module doc).
    #[serde(default, skip_serializing_if = "is_default")]
    pub family: Family,
    /// Input height and width (square), in pixels.
    pub input_size: usize,
    /// Input channels (3 for RGB, 1 for grayscale).
    pub input_channels: usize,
    /// The first convolution.
    pub stem: Stem,
    /// The stages of choice blocks.
    pub stages: Vec<Stage>,
    /// Channels of the last 1×1 conv (not scaled by the width multiplier).
    pub last_channels: usize,
    /// Number of classes of the bias-free classifier.
    pub classes: usize,
    /// Multiplier applied to the stem and stage channels (rounded to a multiple of
    /// [`Family::channel_divisor`]).
    pub width_mult: f64,
    /// Multiplier applied to every stage's block count (`ceil(repeats × depth_mult)`).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub depth_mult: f64,
    /// Dropout before the classifier while training.
    pub dropout: f64,
    /// The operations every choice block offers, in digit order.
    pub choices: Vec<Choice>,
}

/// The derived shape of one choice block: channels, stride and spatial size.
///
/// `branch_in`, `mid` and `branch_out` are the ShuffleNetV2 split (SPOS): a stride-1 block sends
/// half its input through unchanged and the other half (`branch_in`) through the main branch; a
/// stride-2 block feeds its whole input to both the main branch and the projection branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockShape {
    /// 0-based block index, the arch position.
    pub index: usize,
    /// 0-based stage index.
    pub stage: usize,
    /// Channels of the block's input tensor.
    pub in_channels: usize,
    /// Channels of the block's output tensor.
    pub out_channels: usize,
    /// 1 or 2.
    pub stride: usize,
    /// Input height = width.
    pub in_size: usize,
    /// Output height = width.
    pub out_size: usize,
}

impl BlockShape {
    /// Channels entering the main branch (half the input at stride 1, all of it at stride 2).
    pub fn branch_in(&self) -> usize {
        if self.stride == 1 {
            self.in_channels / 2
        } else {
            self.in_channels
        }
    }

    /// Hidden channels of the main branch (`out_channels / 2`).
    pub fn mid(&self) -> usize {
        self.out_channels / 2
    }

    /// Channels the main branch produces (`out_channels - branch_in`).
    pub fn branch_out(&self) -> usize {
        self.out_channels - self.branch_in()
    }
}

/// Output size of a square `kernel` conv with padding `kernel / 2` and `stride`.
pub fn conv_out_size(size: usize, kernel: usize, stride: usize) -> usize {
    (size + 2 * (kernel / 2) - kernel) / stride + 1
}

fn scale_channels(channels: usize, mult: f64, divisor: usize) -> usize {
    if mult == 1.0 {
        return channels;
    }
    let d = divisor as f64;
    (((channels as f64 * mult) / d).round() as usize).max(1) * divisor
}

impl Space {
    /// The preset called `name`, optionally scaled by suffixes `@w<mult>` (width,
    /// [`Self::with_width_mult`]) and `@d<mult>` (depth, [`Self::with_depth_mult`]), e.g.
    /// `spos-cifar@d1.5`: the names those methods give, so every space's name reads back.
    ///
    /// # Errors
    /// [`Error::UnknownSpace`] listing the presets and the suffixes.
    pub fn by_name(name: &str) -> Result<Space> {
        let unknown = || Error::UnknownSpace {
            name: name.to_string(),
            known: format!(
                "{} (scale with @w<mult> for width, @d<mult> for depth, e.g. spos-cifar@d1.5)",
                Self::preset_names().join(", ")
            ),
        };
        let mut parts = name.split('@');
        let base = parts.next().unwrap_or_default();
        let mut space = Self::presets()
            .into_iter()
            .find(|s| s.name == base)
            .ok_or_else(unknown)?;
        for part in parts {
            let mult = part
                .get(1..)
                .and_then(|m| m.parse::<f64>().ok())
                .filter(|m| m.is_finite() && *m > 0.0)
                .ok_or_else(unknown)?;
            space = match &part[..1] {
                "w" => space.with_width_mult(mult),
                "d" => space.with_depth_mult(mult),
                _ => return Err(unknown()),
            };
        }
        Ok(space)
    }

    /// All presets.
    pub fn presets() -> Vec<Space> {
        vec![
            Space::spos_imagenet(),
            Space::spos_cifar(),
            Space::tiny(),
            Space::mbv2_imagenet(),
            Space::mbv2_cifar(),
            Space::mbv2_tiny(),
        ]
    }

    /// Names of all presets.
    pub fn preset_names() -> Vec<String> {
        Self::presets().into_iter().map(|s| s.name).collect()
    }

    /// The same space with another width multiplier (name suffixed `@w<mult>`).
    pub fn with_width_mult(mut self, mult: f64) -> Space {
        if mult != 1.0 {
            self.name = format!("{}@w{mult}", self.name);
        }
        self.width_mult = mult;
        self
    }

    /// The same space with every stage's block count scaled by `mult` (`ceil(repeats × mult)`;
    /// name suffixed `@d<mult>`), as the depth multipliers of the Supernet Shifting paper's
    /// Fig. 4. Arch strings get one digit per block of the scaled space.
    pub fn with_depth_mult(mut self, mult: f64) -> Space {
        if mult != 1.0 {
            self.name = format!("{}@d{mult}", self.name);
        }
        self.depth_mult = mult;
        self
    }

    /// The same space with another class count (only the classifier changes).
    pub fn with_classes(mut self, classes: usize) -> Space {
        self.classes = classes;
        self
    }

    /// The same space with another number of input channels (only the stem changes).
    pub fn with_input_channels(mut self, channels: usize) -> Space {
        self.input_channels = channels;
        self
    }

    fn scale(&self, channels: usize) -> usize {
        scale_channels(channels, self.width_mult, self.family.channel_divisor())
    }

    /// Stem conv output channels after the width multiplier.
    pub fn stem_channels(&self) -> usize {
        self.scale(self.stem.channels)
    }

    /// Channels the stem part hands to the first choice block: the fixed block's output when the
    /// stem has one ([`Stem::block_channels`]), else [`Space::stem_channels`].
    pub fn stem_out_channels(&self) -> usize {
        self.stem
            .block_channels
            .map_or(self.stem_channels(), |c| self.scale(c))
    }

    /// Spatial size after the stem.
    pub fn stem_out_size(&self) -> usize {
        conv_out_size(self.input_size, self.stem.kernel, self.stem.stride)
    }

    /// Output channels of stage `i` after the width multiplier.
    pub fn stage_channels(&self, i: usize) -> usize {
        self.scale(self.stages[i].channels)
    }

    /// Number of blocks of stage `i` after the depth multiplier: `ceil(repeats × depth_mult)`.
    pub fn stage_repeats(&self, i: usize) -> usize {
        let r = self.stages[i].repeats;
        if self.depth_mult == 1.0 {
            return r;
        }
        // The small epsilon keeps 4 × 1.5 = 6.000000001 from becoming 7.
        ((r as f64 * self.depth_mult) - 1e-9).ceil().max(0.0) as usize
    }

    /// Number of choice blocks, i.e. the length of an arch.
    pub fn num_blocks(&self) -> usize {
        (0..self.stages.len()).map(|i| self.stage_repeats(i)).sum()
    }

    /// How block `b` of this space combines its convs.
    pub fn wiring(&self, b: &BlockShape) -> Wiring {
        self.family.wiring(b)
    }

    /// Spatial size entering the last conv (= the global pool's input).
    pub fn final_size(&self) -> usize {
        self.blocks()
            .last()
            .map_or(self.stem_out_size(), |b| b.out_size)
    }

    /// Channels entering the last conv.
    pub fn final_channels(&self) -> usize {
        self.blocks()
            .last()
            .map_or(self.stem_out_channels(), |b| b.out_channels)
    }

    /// The shape of every choice block, in arch order.
    pub fn blocks(&self) -> Vec<BlockShape> {
        let mut out = Vec::with_capacity(self.num_blocks());
        let mut channels = self.stem_out_channels();
        let mut size = self.stem_out_size();
        for (s, stage) in self.stages.iter().enumerate() {
            let oup = self.stage_channels(s);
            for r in 0..self.stage_repeats(s) {
                let stride = if r == 0 { stage.stride } else { 1 };
                let out_size = conv_out_size(size, 3, stride);
                out.push(BlockShape {
                    index: out.len(),
                    stage: s,
                    in_channels: channels,
                    out_channels: oup,
                    stride,
                    in_size: size,
                    out_size,
                });
                channels = oup;
                size = out_size;
            }
        }
        out
    }

    /// Checks that the numbers can build a network: choices of the space's family, a stem block
    /// exactly where the family has one, and block shapes the family accepts (even channels and
    /// wider outputs at stride 2 for ShuffleNetV2, …).
    ///
    /// # Errors
    /// [`Error::InvalidSpace`] naming the block and what to change.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| {
            Err(Error::InvalidSpace {
                space: self.name.clone(),
                reason,
            })
        };
        if self.choices.is_empty() || self.choices.len() > 10 {
            return bad(format!(
                "{} choices; a space needs 1 to 10 (one digit each)",
                self.choices.len()
            ));
        }
        if let Some(c) = self.choices.iter().find(|c| c.family() != self.family) {
            let allowed: Vec<&str> = self
                .family
                .choices()
                .iter()
                .map(|c| c.short_name())
                .collect();
            return bad(format!(
                "choice {} is a {} block, but the space is {}; its choices are {}",
                c.short_name(),
                c.family().name(),
                self.family.name(),
                allowed.join(", ")
            ));
        }
        if self.input_size == 0
            || self.input_channels == 0
            || self.classes == 0
            || self.stages.is_empty()
        {
            return bad(
                "input size, input channels, classes and stages must all be non-zero".into(),
            );
        }
        if !(self.depth_mult.is_finite() && self.depth_mult > 0.0) {
            return bad(format!(
                "depth multiplier {} must be a positive number",
                self.depth_mult
            ));
        }
        if let Some(i) = (0..self.stages.len()).find(|&i| self.stage_repeats(i) == 0) {
            return bad(format!(
                "stage {i} has no blocks; give it at least one repeat"
            ));
        }
        if self.stem.kernel.is_multiple_of(2) || self.stem.stride == 0 {
            return bad(format!(
                "stem kernel {} must be odd and stride non-zero",
                self.stem.kernel
            ));
        }
        match (self.family, self.stem.block_channels) {
            (Family::MobilenetV2, None) => {
                return bad(
                    "a MobileNetV2 space needs stem.block_channels (the fixed first block)".into(),
                );
            }
            (Family::ShufflenetV2, Some(_)) => {
                return bad(
                    "a ShuffleNetV2 space has no fixed stem block; remove stem.block_channels"
                        .into(),
                );
            }
            _ => {}
        }
        for b in self.blocks() {
            if b.stride != 1 && b.stride != 2 {
                return bad(format!(
                    "block {} has stride {}; only 1 and 2 are supported",
                    b.index, b.stride
                ));
            }
            if let Some(reason) = self.family.check_block(&b) {
                return bad(reason);
            }
        }
        Ok(())
    }

    /// Checks that `arch` has one valid digit per block of this space.
    ///
    /// # Errors
    /// [`ArchError::Length`] or [`ArchError::Digit`], naming the position.
    pub fn check_arch(&self, arch: &Arch) -> Result<(), ArchError> {
        if arch.len() != self.num_blocks() {
            return Err(ArchError::Length {
                arch: arch.to_string(),
                found: arch.len(),
                expected: self.num_blocks(),
                space: self.name.clone(),
            });
        }
        let max = (self.choices.len() - 1) as u8;
        if let Some((position, &d)) = arch.genes().iter().enumerate().find(|(_, d)| **d > max) {
            let names: Vec<String> = (self.choices.iter().enumerate())
                .map(|(i, c)| format!("{i}={}", c.short_name()))
                .collect();
            let stage = self.blocks().get(position).map_or(0, |b| b.stage);
            return Err(ArchError::Digit {
                arch: arch.to_string(),
                position,
                found: (b'0' + d) as char,
                max,
                allowed: format!(
                    " (block {position}, stage {stage} of space {:?}: {})",
                    self.name,
                    names.join(" ")
                ),
            });
        }
        Ok(())
    }

    /// Parses an arch string and checks it against this space.
    ///
    /// # Errors
    /// As [`Arch::from_str`](std::str::FromStr) and [`Space::check_arch`].
    pub fn parse_arch(&self, s: &str) -> Result<Arch, ArchError> {
        let arch: Arch = s.parse()?;
        self.check_arch(&arch)?;
        Ok(arch)
    }

    /// The choice `arch` picks for block `index`.
    pub fn choice(&self, arch: &Arch, index: usize) -> Choice {
        self.choices[arch.genes()[index] as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_names_read_back_as_the_scaled_space() {
        let s = Space::by_name("spos-cifar@d1.5").unwrap();
        assert_eq!(s, Space::spos_cifar().with_depth_mult(1.5));
        assert_eq!(Space::by_name(&s.name).unwrap(), s);
        let m = Space::mbv2_tiny().with_width_mult(0.5).with_depth_mult(2.0);
        assert_eq!(Space::by_name(&m.name).unwrap(), m);
        for bad in [
            "spos-cifar@x2",
            "spos-cifar@d",
            "spos-cifar@d-1",
            "spos-cifar@",
            "nope@d2",
        ] {
            let e = Space::by_name(bad).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("@d<mult>"), "{e}");
        }
    }

    #[test]
    fn presets_validate_and_have_twenty_blocks() {
        for s in Space::presets() {
            s.validate().unwrap();
            let blocks = match s.family {
                Family::ShufflenetV2 => 20,
                Family::MobilenetV2 => 19,
            };
            assert_eq!(s.num_blocks(), blocks, "{}", s.name);
        }
    }

    #[test]
    fn imagenet_shapes_follow_spos() {
        let s = Space::spos_imagenet();
        let b = s.blocks();
        assert_eq!(s.stem_out_size(), 112);
        assert_eq!(
            (
                b[0].in_channels,
                b[0].out_channels,
                b[0].stride,
                b[0].out_size
            ),
            (16, 64, 2, 56)
        );
        assert_eq!(
            (b[0].branch_in(), b[0].mid(), b[0].branch_out()),
            (16, 32, 48)
        );
        assert_eq!(
            (b[1].branch_in(), b[1].mid(), b[1].branch_out()),
            (32, 32, 32)
        );
        assert_eq!(s.final_size(), 7);
    }

    #[test]
    fn bad_width_is_rejected_with_the_block() {
        let mut s = Space::tiny();
        s.stages[0].channels = 10;
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("block 0"), "{err}");
    }

    #[test]
    fn arch_checked_against_space() {
        let s = Space::tiny();
        assert!(matches!(
            s.parse_arch("0123"),
            Err(ArchError::Length {
                expected: 20,
                found: 4,
                ..
            })
        ));
        let mut s3 = s.clone();
        s3.choices.truncate(3);
        let e = s3.parse_arch("00000000000000000003").unwrap_err();
        assert!(
            matches!(
                e,
                ArchError::Digit {
                    position: 19,
                    max: 2,
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn unknown_space_lists_presets() {
        let e = Space::by_name("nope").unwrap_err().to_string();
        assert!(e.contains("spos-imagenet") && e.contains("tiny"), "{e}");
    }
}
