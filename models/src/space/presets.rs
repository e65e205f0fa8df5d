//! Named ShuffleNetV2 presets, as plain data (the MobileNetV2 ones are in [`super::mobilenet`]).
//! `shiftnas space show NAME` prints them.

use super::{Choice, Family, Space, Stage, Stem};

fn spos_stages(channels: [usize; 4]) -> Vec<Stage> {
    [4, 4, 8, 4]
        .into_iter()
        .zip(channels)
        .map(|(repeats, channels)| Stage {
            repeats,
            channels,
            stride: 2,
        })
        .collect()
}

impl Space {
    /// The SPOS ShuffleNetV2 space on ImageNet (the SPOS paper's): 224×224×3, stem 3×3 s2 → 16,
    /// stages [4, 4, 8, 4] × [64, 160, 320, 640], last conv 1024, 1000 classes.
    pub fn spos_imagenet() -> Space {
        Space {
            name: "spos-imagenet".into(),
            family: Family::ShufflenetV2,
            input_size: 224,
            input_channels: 3,
            stem: Stem {
                kernel: 3,
                stride: 2,
                channels: 16,
                block_channels: None,
            },
            stages: spos_stages([64, 160, 320, 640]),
            last_channels: 1024,
            classes: 1000,
            width_mult: 1.0,
            depth_mult: 1.0,
            dropout: 0.1,
            choices: Choice::ALL.to_vec(),
        }
    }

    /// The SPOS blocks and channels on 32×32×3 images (CIFAR): the stem keeps stride 1, so the
    /// stages run at 16, 8, 4 and 2 pixels; 10 classes.
    pub fn spos_cifar() -> Space {
        Space {
            name: "spos-cifar".into(),
            input_size: 32,
            stem: Stem {
                kernel: 3,
                stride: 1,
                channels: 16,
                block_channels: None,
            },
            classes: 10,
            ..Space::spos_imagenet()
        }
    }

    /// A small space for 28×28×1 images (Fashion-MNIST) used by CI and the quickstart: the SPOS
    /// layout and encoding (20 blocks) at a quarter of the channels, stem stride 1.
    pub fn tiny() -> Space {
        Space {
            name: "tiny".into(),
            family: Family::ShufflenetV2,
            input_size: 28,
            input_channels: 1,
            stem: Stem {
                kernel: 3,
                stride: 1,
                channels: 16,
                block_channels: None,
            },
            stages: spos_stages([32, 64, 128, 256]),
            last_channels: 512,
            classes: 10,
            width_mult: 1.0,
            depth_mult: 1.0,
            dropout: 0.1,
            choices: Choice::ALL.to_vec(),
        }
    }
}
