//! Latency sources for the search: one trait, three sources chosen by `--latency`:
//! `flops` (a proxy, always available), `predictor:FILE` (a calibrated predictor) and
//! `board:NAME[,NAME…]` (measured on boards through the pool).
//!
//! Every value carries the name of its source ([`LatencySource::describe`]), so an archive never
//! mixes numbers from different boards or runtimes silently.
//!
//! Measured numbers live in the SQLite latency [`cache`]; [`cached`] measures through it,
//! [`board`] is the board-backed source and [`calibrate`] measures a board to fit a predictor.
//! This module builds on [`crate::boards`]; `boards` knows nothing of latency.
//!
//! A number may come with a confidence [`Interval`] ([`Estimate`]): boards measure a batch as
//! one interleaved set against a reference model and fill it; the proxies, predictors and the
//! single-model protocol (`board measure --single`) leave it `None`.

pub mod board;
pub mod cache;
pub mod cached;
pub mod calibrate;
pub mod flops;
pub mod open;
pub mod predictor;

pub use self::board::BoardSource;
pub use self::open::{LatencyOptions, NpuCalibration, open};

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::Result;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use shiftnas_models::{Arch, Space};

/// A confidence interval of a latency, ms: the range the measuring protocol puts the true value
/// in (95 % for the interleaved protocol).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interval {
    /// Lower end.
    pub low: f64,
    /// Upper end.
    pub high: f64,
}

impl Interval {
    /// Whether `value` lies within the interval (ends included).
    pub fn contains(&self, value: f64) -> bool {
        self.low <= value && value <= self.high
    }

    /// Whether the two intervals share a point (ends included): then the latencies they belong
    /// to are not told apart.
    pub fn overlaps(&self, other: &Interval) -> bool {
        self.low <= other.high && other.low <= self.high
    }
}

/// One latency and, where the source measured it with one, its confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// The latency (or the proxy's number), in the source's unit.
    pub value: f64,
    /// Its confidence interval; `None` from sources that give none.
    pub interval: Option<Interval>,
}

impl Estimate {
    /// A number without an interval.
    pub fn point(value: f64) -> Estimate {
        Estimate {
            value,
            interval: None,
        }
    }
}

/// Gives the latency objective of archs.
pub trait LatencySource: Send {
    /// What the numbers are and where they come from, recorded with every archive entry:
    /// `flops`, `predictor:<board fingerprint>` or `board:<board fingerprint>`.
    fn describe(&self) -> String;

    /// The unit of the numbers (`ms`, or `MFLOPs` for the proxy).
    fn unit(&self) -> &'static str {
        "ms"
    }

    /// The latency of each arch, in order, with its interval where the source has one. Sources
    /// that can work in parallel (boards) get the whole batch at once.
    ///
    /// # Errors
    /// When no value can be had for some arch (every board down, predictor for another space…).
    fn estimates(&mut self, space: &Space, archs: &[Arch]) -> Result<Vec<Estimate>>;

    /// The numbers of [`LatencySource::estimates`] without their intervals.
    ///
    /// # Errors
    /// As [`LatencySource::estimates`].
    fn latencies(&mut self, space: &Space, archs: &[Arch]) -> Result<Vec<f64>> {
        Ok(self
            .estimates(space, archs)?
            .into_iter()
            .map(|e| e.value)
            .collect())
    }
}

/// `--latency` as typed: which source to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LatencySpec {
    /// Multiply-adds of the subnet, in millions.
    Flops,
    /// A predictor JSON written by `shiftnas calibrate`.
    Predictor(PathBuf),
    /// One or more boards of `boards.toml`, by name.
    Board(Vec<String>),
}

impl fmt::Display for LatencySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LatencySpec::Flops => write!(f, "flops"),
            LatencySpec::Predictor(p) => write!(f, "predictor:{}", p.display()),
            LatencySpec::Board(names) => write!(f, "board:{}", names.join(",")),
        }
    }
}

impl FromStr for LatencySpec {
    type Err = String;

    fn from_str(s: &str) -> Result<LatencySpec, String> {
        let usage = "write `flops`, `predictor:FILE` or `board:NAME[,NAME…]`";
        match s.split_once(':') {
            None if s == "flops" => Ok(LatencySpec::Flops),
            Some(("predictor", path)) if !path.is_empty() => {
                Ok(LatencySpec::Predictor(PathBuf::from(path)))
            }
            Some(("board", names)) => {
                let names: Vec<String> =
                    names.split(',').map(str::trim).map(String::from).collect();
                if names.iter().any(String::is_empty) {
                    return Err(format!(
                        "latency source {s:?} has an empty board name; {usage}"
                    ));
                }
                Ok(LatencySpec::Board(names))
            }
            _ => Err(format!("unknown latency source {s:?}; {usage}")),
        }
    }
}

impl Serialize for LatencySpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LatencySpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<LatencySpec, D::Error> {
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
        assert_eq!("flops".parse(), Ok(LatencySpec::Flops));
        assert_eq!(
            "predictor:p.json".parse(),
            Ok(LatencySpec::Predictor("p.json".into()))
        );
        assert_eq!(
            "board:rk1,rk2".parse(),
            Ok(LatencySpec::Board(vec!["rk1".into(), "rk2".into()]))
        );
        assert!(
            "board:rk1,"
                .parse::<LatencySpec>()
                .unwrap_err()
                .contains("empty board name")
        );
        assert!(
            "gpu"
                .parse::<LatencySpec>()
                .unwrap_err()
                .contains("predictor:FILE")
        );
        assert_eq!(
            "board:a,b".parse::<LatencySpec>().unwrap().to_string(),
            "board:a,b"
        );
    }

    #[test]
    fn intervals_contain_and_overlap_with_their_ends() {
        let a = Interval {
            low: 1.0,
            high: 2.0,
        };
        assert!(a.contains(1.0) && a.contains(2.0) && a.contains(1.5));
        assert!(!a.contains(0.999) && !a.contains(2.001));
        let touching = Interval {
            low: 2.0,
            high: 3.0,
        };
        let apart = Interval {
            low: 2.01,
            high: 3.0,
        };
        assert!(a.overlaps(&touching) && touching.overlaps(&a));
        assert!(!a.overlaps(&apart) && !apart.overlaps(&a));
        let inside = Interval {
            low: 1.2,
            high: 1.3,
        };
        assert!(a.overlaps(&inside) && inside.overlaps(&a));
    }
}
