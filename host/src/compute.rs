//! Where candle runs: `cpu` or `cuda:N` (`--compute`).

use std::fmt;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use candle_core::Device;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The compute a run uses, as typed on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compute {
    /// The host CPU.
    #[default]
    Cpu,
    /// CUDA GPU number `N` (needs the `cuda` feature).
    Cuda(usize),
}

impl Compute {
    /// The candle device for this compute.
    ///
    /// # Errors
    /// When CUDA was asked for but is not compiled in or the GPU cannot be opened.
    pub fn device(self) -> Result<Device> {
        match self {
            Compute::Cpu => Ok(Device::Cpu),
            Compute::Cuda(n) => {
                if !candle_core::utils::cuda_is_available() {
                    bail!(
                        "--compute cuda:{n}: this shiftnas was built without CUDA; rebuild with `--features cuda` (see scripts/cuda-env) or use --compute cpu"
                    );
                }
                Device::new_cuda(n).with_context(|| {
                    format!(
                        "--compute cuda:{n}: cannot open GPU {n}; check the driver and `nvidia-smi`"
                    )
                })
            }
        }
    }
}

impl fmt::Display for Compute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compute::Cpu => write!(f, "cpu"),
            Compute::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl FromStr for Compute {
    type Err = String;

    fn from_str(s: &str) -> Result<Compute, String> {
        match s {
            "cpu" => Ok(Compute::Cpu),
            "cuda" => Ok(Compute::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Compute::Cuda)
                .ok_or_else(|| {
                    format!("unknown compute {s:?}; write `cpu` or `cuda:N` (e.g. cuda:0)")
                }),
        }
    }
}

impl Serialize for Compute {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Compute {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Compute, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_spelling() {
        assert_eq!("cpu".parse(), Ok(Compute::Cpu));
        assert_eq!("cuda".parse(), Ok(Compute::Cuda(0)));
        assert_eq!("cuda:1".parse(), Ok(Compute::Cuda(1)));
        assert!("gpu".parse::<Compute>().unwrap_err().contains("cuda:N"));
        assert!("cuda:x".parse::<Compute>().is_err());
    }
}
