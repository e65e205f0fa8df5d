//! The MobileNetV2 family: inverted-residual (MBConv) blocks with ReLU6, as in the FairNAS and
//! ProxylessNAS mobile search spaces, and the Supernet Shifting paper's supplementary space.
//!
//! Layout: a fixed stem (3×3 conv, BN, ReLU6) and a fixed first block (MBConv with expansion 1:
//! dw 3×3 → BN → ReLU6 → pw → BN, no residual since its channels change), then the searchable
//! MBConv blocks, then a 1×1 conv to `last_channels` (BN, ReLU6), global average pool and the
//! bias-free classifier. Every searchable block chooses a depthwise kernel of 3, 5 or 7 and an
//! expansion of 3 or 6 ([`Choice::MBCONV`], digits 0–5: k3e3 k3e6 k5e3 k5e6 k7e3 k7e6). A block
//! with expansion e on `c` input channels runs pw `c → e·c` (BN, ReLU6), dw k×k stride s (BN,
//! ReLU6), pw `e·c → out` (BN, linear bottleneck), and adds its input when stride is 1 and
//! in = out channels (MobileNetV2's `use_res_connect`).
//!
//! **No "skip" choice.** An identity choice only exists where input and output shapes match, so
//! stride-2 and channel-changing blocks would offer fewer choices than the others: the arch
//! encoding (one digit per block over one shared choice list, as every sampler, mutation and
//! latency table of the search assumes) and FairNAS's strict fairness (every choice of every
//! block trained equally often, by one permutation per block) both need the same choices at
//! every block. FairNAS's own space has no skip for the same reason; depth is explored with
//! [`Space::depth_mult`] instead.
//!
//! Presets (same 19 searchable blocks in 6 stages, so one arch string fits all three):
//! - `mbv2-imagenet`: 224×224×3, the FairNAS layout (Chu et al., "FairNAS: Rethinking Evaluation
//!   Fairness of Weight Sharing Neural Architecture Search", ICCV 2021, the ProxylessNAS mobile
//!   layout): stem 32 s2, first block 16, stages 32×2 s2, 40×4 s2, 80×4 s2, 96×4 s1, 192×4 s2,
//!   320×1 s1, last conv 1280, 1000 classes;
//! - `mbv2-cifar`: the same channels on 32×32×3 with the stem and the first stage at stride 1
//!   (as CIFAR ports of MobileNetV2 do), so the stages run at 32, 16, 8, 8, 4, 4 pixels; 10 classes;
//! - `mbv2-tiny`: 28×28×1 (Fashion-MNIST) at about half the channels (stem 16, block 8, stages
//!   16, 24, 40, 48, 96, 160, last 640), stem stride 1 and stage strides 2, 2, 2, 1, 2, 1 (14, 7,
//!   4, 4, 2, 2 pixels); 10 classes.

use super::{BlockShape, Choice, Family, Space, Stage, Stem, Wiring};
use crate::cost::{Act, ConvSpec, conv};

/// Inverted-residual wiring; the input is added at stride 1 with equal channels.
pub(crate) fn wiring(b: &BlockShape) -> Wiring {
    Wiring::InvertedResidual {
        residual: b.stride == 1 && b.in_channels == b.out_channels,
    }
}

/// Every shape with non-zero channels can be an MBConv block.
pub(crate) fn check_block(b: &BlockShape) -> Option<String> {
    (b.in_channels == 0 || b.out_channels == 0).then(|| {
        format!(
            "block {} has {} → {} channels; raise stage {}'s channels or the width multiplier",
            b.index, b.in_channels, b.out_channels, b.stage
        )
    })
}

/// The convs of one MBConv choice: `main.conv0` pw `in → e·in` (ReLU6), `main.conv1` dw k×k
/// stride s (ReLU6), `main.conv2` pw `e·in → out` (linear).
pub(crate) fn block_convs(b: &BlockShape, choice: Choice) -> Vec<ConvSpec> {
    let e = choice
        .expansion()
        .unwrap_or_else(|| unreachable!("{choice:?} is not an MBConv choice"));
    let (cin, hidden, cout, s) = (b.in_channels, b.in_channels * e, b.out_channels, b.stride);
    let (i, o, k) = (b.in_size, b.out_size, choice.kernel());
    vec![
        conv("main.conv0", (cin, hidden), 1, 1, false, (i, i), Act::Relu6),
        conv(
            "main.conv1",
            (hidden, hidden),
            k,
            s,
            true,
            (i, o),
            Act::Relu6,
        ),
        conv("main.conv2", (hidden, cout), 1, 1, false, (o, o), Act::None),
    ]
}

/// The fixed first block after the stem conv (expansion 1, k3, stride 1): `block.conv0` dw 3×3
/// on the stem's channels (ReLU6), `block.conv1` pw to [`Space::stem_out_channels`] (linear).
pub(crate) fn stem_block_convs(space: &Space) -> Vec<ConvSpec> {
    let (c0, c1, m) = (
        space.stem_channels(),
        space.stem_out_channels(),
        space.stem_out_size(),
    );
    vec![
        conv("block.conv0", (c0, c0), 3, 1, true, (m, m), Act::Relu6),
        conv("block.conv1", (c0, c1), 1, 1, false, (m, m), Act::None),
    ]
}

fn stages(channels: [usize; 6], strides: [usize; 6]) -> Vec<Stage> {
    [2, 4, 4, 4, 4, 1]
        .into_iter()
        .zip(channels.into_iter().zip(strides))
        .map(|(repeats, (channels, stride))| Stage {
            repeats,
            channels,
            stride,
        })
        .collect()
}

impl Space {
    /// The MobileNetV2 space on ImageNet, FairNAS's layout (see the [module doc](self)).
    pub fn mbv2_imagenet() -> Space {
        Space {
            name: "mbv2-imagenet".into(),
            family: Family::MobilenetV2,
            input_size: 224,
            input_channels: 3,
            stem: Stem {
                kernel: 3,
                stride: 2,
                channels: 32,
                block_channels: Some(16),
            },
            stages: stages([32, 40, 80, 96, 192, 320], [2, 2, 2, 1, 2, 1]),
            last_channels: 1280,
            classes: 1000,
            width_mult: 1.0,
            depth_mult: 1.0,
            dropout: 0.2,
            choices: Choice::MBCONV.to_vec(),
        }
    }

    /// The MobileNetV2 space on 32×32×3 images (CIFAR): FairNAS's channels with the stem and
    /// the first stage at stride 1.
    pub fn mbv2_cifar() -> Space {
        Space {
            name: "mbv2-cifar".into(),
            input_size: 32,
            stem: Stem {
                kernel: 3,
                stride: 1,
                channels: 32,
                block_channels: Some(16),
            },
            stages: stages([32, 40, 80, 96, 192, 320], [1, 2, 2, 1, 2, 1]),
            classes: 10,
            ..Space::mbv2_imagenet()
        }
    }

    /// A small MobileNetV2 space for 28×28×1 images (Fashion-MNIST): the 19-block layout at
    /// about half the channels, stem stride 1.
    pub fn mbv2_tiny() -> Space {
        Space {
            name: "mbv2-tiny".into(),
            input_size: 28,
            input_channels: 1,
            stem: Stem {
                kernel: 3,
                stride: 1,
                channels: 16,
                block_channels: Some(8),
            },
            stages: stages([16, 24, 40, 48, 96, 160], [2, 2, 2, 1, 2, 1]),
            last_channels: 640,
            classes: 10,
            dropout: 0.1,
            ..Space::mbv2_imagenet()
        }
    }
}
