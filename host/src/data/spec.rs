//! `--data` specs: `builtin:fashion-mnist`, `idx:DIR`, `cifar10:DIR`, `cifar100:DIR`, `folder:DIR`.
//!
//! Parsed once at the edge ([`FromStr`]) and stored in `config.toml` as the same string.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::Result;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{DataPair, cifar, embedded, folder, idx};

const FORMS: &str = "builtin:fashion-mnist, idx:DIR (MNIST-style IDX files, gzipped or not), \
cifar10:DIR (CIFAR-10 binary), cifar100:DIR (CIFAR-100 binary), folder:DIR (DIR/train/<class>/*.png|jpg and DIR/test/<class>/...)";

/// Where a run's images come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSpec {
    /// The Fashion-MNIST subset compiled into the binary (10,000 train, 2,000 test, 28×28×1).
    BuiltinFashionMnist,
    /// IDX files (`train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`, `t10k-*`).
    Idx(PathBuf),
    /// CIFAR-10 binary version (`data_batch_{1..5}.bin`, `test_batch.bin`, `batches.meta.txt`).
    Cifar10(PathBuf),
    /// CIFAR-100 binary version (`train.bin`, `test.bin`; fine labels).
    Cifar100(PathBuf),
    /// An image folder: `DIR/train/<class>/*.png|jpg` and `DIR/test/<class>/*`.
    Folder(PathBuf),
}

impl DataSpec {
    /// Reads the training and test sets into memory.
    ///
    /// `folder_size` is the side length folder images are resized to (the space's input size);
    /// the other formats keep their native size (see [`super::Dataset::conform`]).
    ///
    /// # Errors
    /// Missing or malformed files, naming the file, the byte offset and what was expected.
    pub fn load(&self, folder_size: usize) -> Result<DataPair> {
        match self {
            DataSpec::BuiltinFashionMnist => embedded::fashion_mnist(),
            DataSpec::Idx(dir) => idx::load_dir(dir),
            DataSpec::Cifar10(dir) => cifar::load_cifar10(dir),
            DataSpec::Cifar100(dir) => cifar::load_cifar100(dir),
            DataSpec::Folder(dir) => folder::load_dir(dir, folder_size),
        }
    }

    /// Whether the images are natural photos (random crop + flip by default) rather than
    /// centred, canonically oriented items like Fashion-MNIST.
    pub fn is_natural(&self) -> bool {
        matches!(
            self,
            DataSpec::Cifar10(_) | DataSpec::Cifar100(_) | DataSpec::Folder(_)
        )
    }
}

impl fmt::Display for DataSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataSpec::BuiltinFashionMnist => write!(f, "builtin:fashion-mnist"),
            DataSpec::Idx(p) => write!(f, "idx:{}", p.display()),
            DataSpec::Cifar10(p) => write!(f, "cifar10:{}", p.display()),
            DataSpec::Cifar100(p) => write!(f, "cifar100:{}", p.display()),
            DataSpec::Folder(p) => write!(f, "folder:{}", p.display()),
        }
    }
}

impl FromStr for DataSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<DataSpec, String> {
        let bad = |why: &str| format!("--data {s:?}: {why}; write one of: {FORMS}");
        let (kind, rest) = s
            .split_once(':')
            .ok_or_else(|| bad("missing the `KIND:` prefix"))?;
        let dir = || -> Result<PathBuf, String> {
            if rest.is_empty() {
                Err(bad(&format!("`{kind}:` needs a folder after the colon")))
            } else {
                Ok(PathBuf::from(rest))
            }
        };
        match kind {
            "builtin" => match rest {
                "fashion-mnist" => Ok(DataSpec::BuiltinFashionMnist),
                _ => Err(bad(&format!(
                    "unknown builtin {rest:?} (only fashion-mnist is embedded)"
                ))),
            },
            "idx" => Ok(DataSpec::Idx(dir()?)),
            "cifar10" => Ok(DataSpec::Cifar10(dir()?)),
            "cifar100" => Ok(DataSpec::Cifar100(dir()?)),
            "folder" => Ok(DataSpec::Folder(dir()?)),
            _ => Err(bad(&format!("unknown kind {kind:?}"))),
        }
    }
}

impl Serialize for DataSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DataSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<DataSpec, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_round_trips() {
        for s in [
            "builtin:fashion-mnist",
            "idx:/d/fm",
            "cifar10:data/c10",
            "cifar100:c100",
            "folder:/imgs",
        ] {
            let spec: DataSpec = s.parse().unwrap();
            assert_eq!(spec.to_string(), s);
            let json = serde_json::to_string(&spec).unwrap();
            assert_eq!(serde_json::from_str::<DataSpec>(&json).unwrap(), spec);
        }
    }

    #[test]
    fn bad_specs_name_the_spec_and_list_forms() {
        for s in ["mnist", "builtin:cifar", "imagenet:/x", "idx:"] {
            let err = s.parse::<DataSpec>().unwrap_err();
            assert!(err.contains(&format!("{s:?}")), "{err}");
            assert!(
                err.contains("cifar10:DIR") && err.contains("folder:DIR"),
                "{err}"
            );
        }
    }
}
