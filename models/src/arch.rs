//! Architectures: one choice digit per choice block, e.g. `21012020202300003233`.
//!
//! Parsing is strict and space-free ([`FromStr`] checks only that every character is a digit);
//! [`Space::check_arch`](crate::Space::check_arch) then checks length and digit range against a
//! space. The variation helpers take the RNG as an argument so every search is reproducible.

use std::fmt;
use std::str::FromStr;

use rand::Rng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::ArchError;

/// One architecture: the choice index of every block, in block order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Arch(Vec<u8>);

impl Arch {
    /// An arch from choice indices (each must be < 10 to be printable as a digit).
    pub fn new(genes: Vec<u8>) -> Arch {
        assert!(
            genes.iter().all(|&g| g < 10),
            "arch genes are single digits"
        );
        Arch(genes)
    }

    /// The same choice `choice` at all `blocks` blocks.
    pub fn uniform(blocks: usize, choice: u8) -> Arch {
        Arch::new(vec![choice; blocks])
    }

    /// Choice indices, in block order.
    pub fn genes(&self) -> &[u8] {
        &self.0
    }

    /// Number of blocks.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for the empty arch (never valid in a space).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A uniformly random arch of `blocks` blocks with `choices` options each.
    pub fn random(blocks: usize, choices: usize, rng: &mut impl Rng) -> Arch {
        Arch(
            (0..blocks)
                .map(|_| rng.random_range(0..choices) as u8)
                .collect(),
        )
    }

    /// Resamples each gene with probability `p` (uniformly over all `choices`, as SPOS does, so a
    /// gene may be redrawn to its own value).
    pub fn mutate(&self, p: f64, choices: usize, rng: &mut impl Rng) -> Arch {
        Arch(
            self.0
                .iter()
                .map(|&g| {
                    if rng.random_bool(p) {
                        rng.random_range(0..choices) as u8
                    } else {
                        g
                    }
                })
                .collect(),
        )
    }

    /// Uniform crossover: each gene from `self` or `other` with probability ½.
    ///
    /// # Panics
    /// If the two archs differ in length (an internal invariant: both come from one space).
    pub fn crossover(&self, other: &Arch, rng: &mut impl Rng) -> Arch {
        assert_eq!(
            self.len(),
            other.len(),
            "crossover of archs from different spaces"
        );
        Arch(
            self.0
                .iter()
                .zip(&other.0)
                .map(|(&a, &b)| if rng.random_bool(0.5) { a } else { b })
                .collect(),
        )
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for g in &self.0 {
            write!(f, "{g}")?;
        }
        Ok(())
    }
}

impl FromStr for Arch {
    type Err = ArchError;

    fn from_str(s: &str) -> Result<Arch, ArchError> {
        if s.is_empty() {
            return Err(ArchError::Empty);
        }
        s.chars()
            .enumerate()
            .map(|(position, c)| {
                c.to_digit(10).map(|d| d as u8).ok_or(ArchError::Digit {
                    arch: s.to_string(),
                    position,
                    found: c,
                    max: 9,
                    allowed: String::new(),
                })
            })
            .collect::<Result<Vec<u8>, _>>()
            .map(Arch)
    }
}

impl Serialize for Arch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Arch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Arch, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn round_trip() {
        let a: Arch = "21012020202300003233".parse().unwrap();
        assert_eq!(a.len(), 20);
        assert_eq!(a.to_string(), "21012020202300003233");
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            "\"21012020202300003233\""
        );
        let b: Arch = serde_json::from_str("\"0123\"").unwrap();
        assert_eq!(b.genes(), &[0, 1, 2, 3]);
    }

    #[test]
    fn bad_character_names_position() {
        let e = "012x3".parse::<Arch>().unwrap_err();
        assert_eq!(
            e,
            ArchError::Digit {
                arch: "012x3".into(),
                position: 3,
                found: 'x',
                max: 9,
                allowed: String::new(),
            }
        );
        assert!(e.to_string().contains("position 3"));
        assert_eq!("".parse::<Arch>().unwrap_err(), ArchError::Empty);
    }

    #[test]
    fn variation_is_seeded_and_in_range() {
        let mut r1 = ChaCha8Rng::seed_from_u64(7);
        let mut r2 = ChaCha8Rng::seed_from_u64(7);
        let a = Arch::random(20, 4, &mut r1);
        assert_eq!(a, Arch::random(20, 4, &mut r2));
        assert!(a.genes().iter().all(|&g| g < 4));
        let m = a.mutate(1.0, 4, &mut r1);
        assert!(m.genes().iter().all(|&g| g < 4));
        assert_eq!(a.mutate(0.0, 4, &mut r1), a);
        let b = Arch::uniform(20, 3);
        let c = a.crossover(&b, &mut r1);
        assert!(
            c.genes()
                .iter()
                .zip(a.genes().iter().zip(b.genes()))
                .all(|(g, (x, y))| g == x || g == y)
        );
    }
}
