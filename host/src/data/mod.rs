//! Datasets: readers (IDX, CIFAR, image folders, the embedded Fashion-MNIST subset), splits,
//! augmentation and batching.
//!
//! A [`DataSpec`] (`--data builtin:fashion-mnist | idx:DIR | cifar10:DIR | cifar100:DIR |
//! folder:DIR`) is parsed once; [`DataSpec::load`] reads the training and test sets into memory as
//! `u8` images laid out `[n, c, h, w]` ([`Dataset`]). [`Dataset::conform`] then fits them to a
//! space's input (channel conversion and resizing only when asked for), [`split::Splits`] holds out
//! a fixed, class-balanced proxy set, and [`batch::Batcher`] turns index lists into normalised,
//! augmented `f32` tensors with a resumable position.

pub mod batch;
pub mod cifar;
pub mod embedded;
pub mod folder;
pub mod idx;
pub mod spec;
pub mod split;
pub mod transform;

use anyhow::{Result, bail};

pub use batch::{Augment, Batch, Batcher, BatcherPosition, Normalize};
pub use spec::DataSpec;
pub use split::Splits;
pub use transform::ConformOptions;

/// Images in memory as `u8` `[n, c, h, w]`, with their labels and class names.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Where it came from, for messages (e.g. `cifar10:/data/c10 (train)`).
    pub name: String,
    /// Channels per image (1 or 3).
    pub channels: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
    /// Pixels, `n * channels * height * width` bytes, image-major then channel-major, rows.
    pub images: Vec<u8>,
    /// One label per image, each `< class_names.len()`.
    pub labels: Vec<u32>,
    /// Class names, indexed by label.
    pub class_names: Vec<String>,
}

impl Dataset {
    /// Builds a dataset after checking that sizes and labels agree.
    ///
    /// # Errors
    /// When the pixel count does not match `labels.len()` images, or a label has no class name.
    pub fn new(
        name: impl Into<String>,
        (channels, height, width): (usize, usize, usize),
        images: Vec<u8>,
        labels: Vec<u32>,
        class_names: Vec<String>,
    ) -> Result<Dataset> {
        let name = name.into();
        let per = channels * height * width;
        if per == 0 || images.len() != labels.len() * per {
            bail!(
                "{name}: {} pixel bytes do not make {} images of {channels}x{height}x{width}",
                images.len(),
                labels.len()
            );
        }
        if let Some((i, &l)) = labels
            .iter()
            .enumerate()
            .find(|&(_, &l)| l as usize >= class_names.len())
        {
            bail!(
                "{name}: image {i} has label {l}, but there are only {} classes",
                class_names.len()
            );
        }
        Ok(Dataset {
            name,
            channels,
            height,
            width,
            images,
            labels,
            class_names,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// Bytes per image (`c * h * w`).
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The pixels of image `i`, `[c, h, w]`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// How many images each class has.
    pub fn class_histogram(&self) -> Vec<usize> {
        let mut h = vec![0; self.num_classes()];
        for &l in &self.labels {
            h[l as usize] += 1;
        }
        h
    }
}

/// The training and test sets of one [`DataSpec`].
#[derive(Debug, Clone, PartialEq)]
pub struct DataPair {
    /// Training images (the proxy split is held out from these).
    pub train: Dataset,
    /// Test images (final reports only).
    pub test: Dataset,
}

/// Fashion-MNIST class names (label order of the official release).
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// A malformed input file: which file, where, and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: at byte {offset}: {what}")]
pub struct FormatError {
    /// The file (with `.gz` when it was compressed; offsets are then in the decompressed bytes).
    pub path: String,
    /// Byte offset of the problem.
    pub offset: u64,
    /// What was expected and what was found.
    pub what: String,
}

impl FormatError {
    /// A format error at `offset` of `path`.
    pub fn new(path: impl Into<String>, offset: u64, what: impl Into<String>) -> FormatError {
        FormatError {
            path: path.into(),
            offset,
            what: what.into(),
        }
    }
}
