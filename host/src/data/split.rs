//! The fixed, class-balanced proxy split held out from the training data.
//!
//! Architectures are scored on the proxy split (never on the test set, which stays for final
//! reports), and the supernet never trains on it. Selection: for each class, its training indices
//! are shuffled with a `ChaCha8Rng` seeded by `seed` (one stream per class), and the first
//! `size / classes` are taken; the `size % classes` remaining slots go to the lowest class numbers.
//! Index lists are sorted, so the split depends only on the labels, `size` and `seed`.

use anyhow::{Result, bail};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::DataPair;

/// Default proxy size: 1,000 images, or 10 % of the training set when that is smaller.
pub fn default_proxy_size(train_len: usize) -> usize {
    1000.min(train_len / 10)
}

/// Index lists: `train` and `proxy` index the training set, `test` the test set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Splits {
    /// Images the supernet trains on (training set minus proxy), sorted.
    pub train: Vec<usize>,
    /// Class-balanced held-out images for scoring archs, sorted.
    pub proxy: Vec<usize>,
    /// The whole test set, in order.
    pub test: Vec<usize>,
}

impl Splits {
    /// Holds out `proxy_size` class-balanced training images, chosen by `seed`.
    ///
    /// # Errors
    /// When a class has too few images to give its share and still leave one for training.
    pub fn new(data: &DataPair, proxy_size: usize, seed: u64) -> Result<Splits> {
        let train = &data.train;
        let k = train.num_classes();
        let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); k];
        for (i, &l) in train.labels.iter().enumerate() {
            by_class[l as usize].push(i);
        }
        let mut proxy = Vec::with_capacity(proxy_size);
        for (c, idx) in by_class.iter_mut().enumerate() {
            let quota = proxy_size / k + usize::from(c < proxy_size % k);
            if quota == 0 {
                continue;
            }
            if idx.len() <= quota {
                bail!(
                    "{}: class {c} ({:?}) has {} training images, too few to hold out {quota} for the proxy split of {proxy_size}; pass a smaller --proxy-size",
                    train.name,
                    train.class_names[c],
                    idx.len()
                );
            }
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(c as u64);
            idx.shuffle(&mut rng);
            proxy.extend_from_slice(&idx[..quota]);
        }
        proxy.sort_unstable();
        let mut held = vec![false; train.len()];
        for &i in &proxy {
            held[i] = true;
        }
        let rest = (0..train.len()).filter(|&i| !held[i]).collect();
        Ok(Splits {
            train: rest,
            proxy,
            test: (0..data.test.len()).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Dataset;

    fn pair(labels: Vec<u32>, k: usize) -> DataPair {
        let n = labels.len();
        let names = (0..k).map(|i| i.to_string()).collect::<Vec<_>>();
        let d = Dataset::new("t", (1, 1, 1), vec![0; n], labels, names).unwrap();
        DataPair {
            train: d.clone(),
            test: d,
        }
    }

    #[test]
    fn proxy_split_is_balanced_disjoint_and_deterministic() {
        let labels: Vec<u32> = (0..1000).map(|i| (i * 7 % 10) as u32).collect();
        let p = pair(labels.clone(), 10);
        let s = Splits::new(&p, 105, 3).unwrap();
        assert_eq!(s.proxy.len(), 105);
        assert_eq!(s.train.len() + s.proxy.len(), 1000);
        let mut hist = [0; 10];
        for &i in &s.proxy {
            hist[labels[i] as usize] += 1;
        }
        assert_eq!(hist, [11, 11, 11, 11, 11, 10, 10, 10, 10, 10]);
        assert!(s.proxy.iter().all(|i| s.train.binary_search(i).is_err()));
        assert_eq!(s, Splits::new(&p, 105, 3).unwrap());
        assert_ne!(s.proxy, Splits::new(&p, 105, 4).unwrap().proxy);
        assert_eq!(s.test.len(), 1000);
    }

    #[test]
    fn too_small_class_is_an_error_naming_it() {
        let p = pair(vec![0, 0, 0, 1], 2);
        let err = Splits::new(&p, 2, 0).unwrap_err().to_string();
        assert!(
            err.contains("class 1") && err.contains("--proxy-size"),
            "{err}"
        );
    }

    #[test]
    fn embedded_proxy_is_100_per_class() {
        let p = crate::data::embedded::fashion_mnist().unwrap();
        let s = Splits::new(&p, default_proxy_size(p.train.len()), 0).unwrap();
        let mut hist = [0; 10];
        for &i in &s.proxy {
            hist[p.train.labels[i] as usize] += 1;
        }
        assert_eq!(hist, [100; 10]);
        assert_eq!(s.train.len(), 9000);
    }
}
