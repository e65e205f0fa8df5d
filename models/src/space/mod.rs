//! Search spaces: plain data describing the SPOS ShuffleNetV2 supernet.
//!
//! A [`Space`] fixes the input, the stem, the stages of choice blocks, the last conv and the
//! classifier. Every choice block offers the same four [`Choice`]s; an [`Arch`] picks one per block.
//! [`Space::blocks`] derives each block's channels, stride and spatial size once, so the supernet,
//! the cost model and the ONNX exporter all read the same numbers.

mod presets;

use serde::{Deserialize, Serialize};

use crate::arch::Arch;
use crate::error::{ArchError, Error, Result};

/// One of the four operations a choice block can run (the digit of an arch).
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
}

impl Choice {
    /// All choices, in digit order.
    pub const ALL: [Choice; 4] = [
        Choice::ShuffleK3,
        Choice::ShuffleK5,
        Choice::ShuffleK7,
        Choice::Xception,
    ];

    /// The choice written as `digit` in an arch string.
    pub fn from_digit(digit: u8) -> Option<Choice> {
        Self::ALL.get(digit as usize).copied()
    }

    /// The digit that writes this choice in an arch string.
    pub fn digit(self) -> u8 {
        self as u8
    }

    /// Kernel size of the depthwise convs (also of the stride-2 projection branch).
    pub fn kernel(self) -> usize {
        match self {
            Choice::ShuffleK3 | Choice::Xception => 3,
            Choice::ShuffleK5 => 5,
            Choice::ShuffleK7 => 7,
        }
    }

    /// Short name used in tables and ONNX node names: `k3`, `k5`, `k7`, `xception`.
    pub fn short_name(self) -> &'static str {
        match self {
            Choice::ShuffleK3 => "k3",
            Choice::ShuffleK5 => "k5",
            Choice::ShuffleK7 => "k7",
            Choice::Xception => "xception",
        }
    }
}

/// The first convolution: `kernel`×`kernel`, `stride`, `input_channels → channels`, BN, ReLU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stem {
    /// Kernel size (square).
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Output channels before the width multiplier.
    pub channels: usize,
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

/// A search space preset: everything needed to build the supernet of one arch family.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Space {
    /// Preset name, e.g. `spos-imagenet`.
    pub name: String,
    /// Input height and width (square), in pixels.
    pub input_size: usize,
    /// Input channels (3 for RGB, 1 for grayscale).
    pub input_channels: usize,
    /// The first convolution.
    pub stem: Stem,
    /// The stages of choice blocks.
    pub stages: Vec<Stage>,
    /// Channels of the last 1×1 conv (not scaled by the width multiplier, as in ShuffleNetV2).
    pub last_channels: usize,
    /// Number of classes of the bias-free classifier.
    pub classes: usize,
    /// Multiplier applied to the stem and stage channels (rounded to a multiple of 4).
    pub width_mult: f64,
    /// Dropout before the classifier while training.
    pub dropout: f64,
    /// The operations every choice block offers, in digit order.
    pub choices: Vec<Choice>,
}

/// The derived shape of one choice block: channels, stride and spatial size.
///
/// Channel split follows SPOS: a stride-1 block sends half its input through unchanged and the
/// other half (`branch_in`) through the main branch; a stride-2 block feeds its whole input to both
/// the main branch and the projection branch.
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

fn scale_channels(channels: usize, mult: f64) -> usize {
    if mult == 1.0 {
        return channels;
    }
    (((channels as f64 * mult) / 4.0).round() as usize).max(1) * 4
}

impl Space {
    /// The preset called `name`.
    ///
    /// # Errors
    /// [`Error::UnknownSpace`] listing the presets.
    pub fn by_name(name: &str) -> Result<Space> {
        Self::presets()
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| Error::UnknownSpace {
                name: name.to_string(),
                known: Self::preset_names().join(", "),
            })
    }

    /// All presets.
    pub fn presets() -> Vec<Space> {
        vec![Space::spos_imagenet(), Space::spos_cifar(), Space::tiny()]
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

    /// Stem output channels after the width multiplier.
    pub fn stem_channels(&self) -> usize {
        scale_channels(self.stem.channels, self.width_mult)
    }

    /// Spatial size after the stem.
    pub fn stem_out_size(&self) -> usize {
        conv_out_size(self.input_size, self.stem.kernel, self.stem.stride)
    }

    /// Output channels of stage `i` after the width multiplier.
    pub fn stage_channels(&self, i: usize) -> usize {
        scale_channels(self.stages[i].channels, self.width_mult)
    }

    /// Number of choice blocks, i.e. the length of an arch.
    pub fn num_blocks(&self) -> usize {
        self.stages.iter().map(|s| s.repeats).sum()
    }

    /// Spatial size entering the last conv (= the global pool's input).
    pub fn final_size(&self) -> usize {
        self.blocks()
            .last()
            .map_or(self.stem_out_size(), |b| b.out_size)
    }

    /// The shape of every choice block, in arch order.
    pub fn blocks(&self) -> Vec<BlockShape> {
        let mut out = Vec::with_capacity(self.num_blocks());
        let mut channels = self.stem_channels();
        let mut size = self.stem_out_size();
        for (s, stage) in self.stages.iter().enumerate() {
            let oup = self.stage_channels(s);
            for r in 0..stage.repeats {
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

    /// Checks that the numbers can build a network (even channels, wider outputs at stride 2, …).
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
        if self.input_size == 0
            || self.input_channels == 0
            || self.classes == 0
            || self.stages.is_empty()
        {
            return bad(
                "input size, input channels, classes and stages must all be non-zero".into(),
            );
        }
        if self.stem.kernel.is_multiple_of(2) || self.stem.stride == 0 {
            return bad(format!(
                "stem kernel {} must be odd and stride non-zero",
                self.stem.kernel
            ));
        }
        for b in self.blocks() {
            if b.stride != 1 && b.stride != 2 {
                return bad(format!(
                    "block {} has stride {}; only 1 and 2 are supported",
                    b.index, b.stride
                ));
            }
            if b.stride == 1 && (b.in_channels != b.out_channels || b.in_channels % 2 != 0) {
                return bad(format!(
                    "block {} (stride 1) needs equal, even in/out channels, got {} → {}; give stage {} stride 2",
                    b.index, b.in_channels, b.out_channels, b.stage
                ));
            }
            if b.out_channels <= b.branch_in() || b.out_channels % 2 != 0 {
                return bad(format!(
                    "block {}: {} → {} channels leaves an empty branch; stage {} needs more than {} even output channels",
                    b.index,
                    b.in_channels,
                    b.out_channels,
                    b.stage,
                    b.branch_in()
                ));
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
            return Err(ArchError::Digit {
                arch: arch.to_string(),
                position,
                found: (b'0' + d) as char,
                max,
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
    fn presets_validate_and_have_twenty_blocks() {
        for s in Space::presets() {
            s.validate().unwrap();
            assert_eq!(s.num_blocks(), 20, "{}", s.name);
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
