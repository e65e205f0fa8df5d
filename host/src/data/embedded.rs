//! The Fashion-MNIST subset compiled into the binary (`builtin:fashion-mnist`).
//!
//! `host/data/fashion-mnist/` (MIT, Zalando SE; see its README and LICENSE): the first 1,000
//! training images of each class (10,000) and the first 200 test images of each class (2,000),
//! 28×28 grayscale, gzipped IDX. About 5 MB of the binary.

use anyhow::Result;

use super::{DataPair, FASHION_MNIST_CLASSES, idx};

const TRAIN_IMAGES: &[u8] = include_bytes!("../../data/fashion-mnist/train-images-idx3-ubyte.gz");
const TRAIN_LABELS: &[u8] = include_bytes!("../../data/fashion-mnist/train-labels-idx1-ubyte.gz");
const TEST_IMAGES: &[u8] = include_bytes!("../../data/fashion-mnist/t10k-images-idx3-ubyte.gz");
const TEST_LABELS: &[u8] = include_bytes!("../../data/fashion-mnist/t10k-labels-idx1-ubyte.gz");

/// Decodes the embedded Fashion-MNIST subset.
///
/// # Errors
/// Only if the embedded bytes were damaged at build time.
pub fn fashion_mnist() -> Result<DataPair> {
    let names = || {
        Some(
            FASHION_MNIST_CLASSES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        )
    };
    let train = idx::dataset_from_bytes(
        "builtin:fashion-mnist (train)",
        ("builtin train-images-idx3-ubyte.gz", TRAIN_IMAGES.to_vec()),
        ("builtin train-labels-idx1-ubyte.gz", TRAIN_LABELS.to_vec()),
        names(),
    )?;
    let test = idx::dataset_from_bytes(
        "builtin:fashion-mnist (test)",
        ("builtin t10k-images-idx3-ubyte.gz", TEST_IMAGES.to_vec()),
        ("builtin t10k-labels-idx1-ubyte.gz", TEST_LABELS.to_vec()),
        names(),
    )?;
    Ok(DataPair { train, test })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_fashion_mnist_counts_and_pixels() {
        let pair = fashion_mnist().unwrap();
        assert_eq!(pair.train.len(), 10_000);
        assert_eq!(pair.test.len(), 2_000);
        assert_eq!(pair.train.class_histogram(), vec![1000; 10]);
        assert_eq!(pair.test.class_histogram(), vec![200; 10]);
        assert_eq!(
            (pair.train.channels, pair.train.height, pair.train.width),
            (1, 28, 28)
        );
        assert_eq!(pair.train.class_names[9], "Ankle boot");
        // Expected values read with numpy from the source files:
        //   X = np.frombuffer(gzip.open('train-images-idx3-ubyte.gz').read(), np.uint8,
        //                     offset=16).reshape(-1, 28, 28)
        //   X[0,14,14] == 217, X[1,10,5] == 223, X[9999,20,13] == 211; labels y[:5] == [9,0,0,3,0]
        //   test: T[0,14,14] == 110
        assert_eq!(pair.train.image(0)[14 * 28 + 14], 217);
        assert_eq!(pair.train.image(1)[10 * 28 + 5], 223);
        assert_eq!(pair.train.image(9999)[20 * 28 + 13], 211);
        assert_eq!(pair.train.labels[..5], [9, 0, 0, 3, 0]);
        assert_eq!(pair.test.image(0)[14 * 28 + 14], 110);
    }
}
