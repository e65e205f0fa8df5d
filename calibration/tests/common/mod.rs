//! Synthetic calibration data with a known generating model, shared by the integration tests.
#![allow(dead_code)]

use shiftnas_calibration::predictor::{ArchFeatures, BlockTable};
use shiftnas_calibration::{Provenance, Runtime};

/// SPOS-like layout: 20 blocks in stages of 4, 4, 8, 4; 4 choices.
pub const STAGES: [usize; 4] = [4, 4, 8, 4];
pub const N_CHOICES: usize = 4;

/// SplitMix64 + Box–Muller, independent of the crate's own generator.
pub struct Gen(u64);

impl Gen {
    pub fn new(seed: u64) -> Gen {
        Gen(seed ^ 0x5EED)
    }
    pub fn u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn unit(&mut self) -> f64 {
        (self.u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.unit().max(1e-300), self.unit());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// The ground truth: per-(block, choice) latency, stem+head latency, FLOPs per block choice.
pub struct Truth {
    pub stem_head_ms: f64,
    pub block_ms: Vec<Vec<f64>>,
    pub block_flops: Vec<Vec<u64>>,
    pub stage_of_block: Vec<usize>,
}

impl Truth {
    pub fn new(g: &mut Gen) -> Truth {
        let stage_of_block: Vec<usize> = STAGES
            .iter()
            .enumerate()
            .flat_map(|(s, &n)| std::iter::repeat_n(s, n))
            .collect();
        let stage_ms = [0.9, 0.6, 0.45, 0.35];
        let choice_factor = [1.0, 1.3, 1.7, 1.45];
        let (mut block_ms, mut block_flops) = (vec![], vec![]);
        for &s in &stage_of_block {
            let ms: Vec<f64> = (0..N_CHOICES)
                .map(|c| stage_ms[s] * choice_factor[c] * (1.0 + 0.2 * g.unit()))
                .collect();
            // FLOPs roughly follow latency, with 30 % scatter: a proxy, not the truth.
            block_flops.push(
                ms.iter()
                    .map(|m| (m * 2e7 * (0.7 + 0.6 * g.unit())) as u64)
                    .collect(),
            );
            block_ms.push(ms);
        }
        Truth {
            stem_head_ms: 2.0,
            block_ms,
            block_flops,
            stage_of_block,
        }
    }

    pub fn features(&self, choices: &[u8]) -> ArchFeatures {
        let block_flops: Vec<u64> = choices
            .iter()
            .enumerate()
            .map(|(i, &c)| self.block_flops[i][c as usize])
            .collect();
        let total = block_flops.iter().sum::<u64>() + 40_000_000;
        ArchFeatures {
            choices: choices.to_vec(),
            block_flops,
            stage_of_block: self.stage_of_block.clone(),
            total_flops: total,
            params: 1_000_000 + choices.iter().map(|&c| c as u64 * 1000).sum::<u64>(),
        }
    }

    /// stem + Σ block latencies of the true table.
    pub fn additive_ms(&self, choices: &[u8]) -> f64 {
        self.stem_head_ms
            + choices
                .iter()
                .enumerate()
                .map(|(i, &c)| self.block_ms[i][c as usize])
                .sum::<f64>()
    }

    /// The block table as a board would measure it: each entry with `noise` relative scatter.
    pub fn measured_table(&self, g: &mut Gen, noise: f64) -> BlockTable {
        BlockTable {
            stem_head_ms: self.stem_head_ms * (1.0 + noise * g.normal()),
            blocks: self
                .block_ms
                .iter()
                .map(|row| row.iter().map(|m| m * (1.0 + noise * g.normal())).collect())
                .collect(),
        }
    }

    /// `n` random archs with latency `f(additive) · (1 + noise·N(0,1))`.
    pub fn samples(
        &self,
        g: &mut Gen,
        n: usize,
        noise: f64,
        f: impl Fn(f64) -> f64,
    ) -> Vec<(ArchFeatures, f64)> {
        (0..n)
            .map(|_| {
                let ch: Vec<u8> = (0..self.block_ms.len())
                    .map(|_| (g.u64() % N_CHOICES as u64) as u8)
                    .collect();
                let y = f(self.additive_ms(&ch)) * (1.0 + noise * g.normal());
                (self.features(&ch), y)
            })
            .collect()
    }
}

pub fn provenance() -> Provenance {
    Provenance {
        board_fingerprint: "rk3588/aarch64/ubuntu-22.04/performance".into(),
        runtime: Runtime {
            name: "onnxruntime".into(),
            version: "1.22.0".into(),
        },
        threads: 4,
        cores: vec![4, 5, 6, 7],
        space: "spos-imagenet".into(),
    }
}
