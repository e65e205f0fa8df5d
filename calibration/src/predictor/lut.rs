//! Block table predictor: measured latency per (block position, choice), summed, then a linear
//! correction `a·sum + b` fitted on measured whole subnets.
//!
//! Summing per-op latencies is nn-Meter's kernel-level model (Zhang et al., MobiSys 2021, §4)
//! at block granularity. The sum misses what a whole network adds or saves — per-op dispatch
//! overheads, cache reuse between neighbouring blocks, the runtime's fixed cost — which is close
//! to affine in the sum; the least-squares correction absorbs it.

use serde::{Deserialize, Serialize};

use super::{ArchFeatures, Predictor, check_finite};
use crate::error::{Error, Result};

/// Measured latencies of the parts of a subnet, in ms.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockTable {
    /// Latency of everything that is not a searchable block (stem, head, classifier).
    pub stem_head_ms: f64,
    /// `blocks[i][c]`: latency of block `i` with choice `c`.
    pub blocks: Vec<Vec<f64>>,
}

impl BlockTable {
    /// stem + head + Σᵢ blocks[i][choice i]; a missing entry counts as 0 (see [`Predictor::check`]).
    pub fn sum(&self, f: &ArchFeatures) -> f64 {
        let blocks: f64 = f
            .choices
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                self.blocks
                    .get(i)
                    .and_then(|row| row.get(c as usize))
                    .copied()
                    .unwrap_or(0.0)
            })
            .sum();
        self.stem_head_ms + blocks
    }

    /// Errors on an empty table, an empty row, or a non-finite or negative latency.
    pub fn validate(&self) -> Result<()> {
        check_finite("table.stem_head_ms", &[self.stem_head_ms])?;
        if self.blocks.is_empty() {
            return Err(Error::Field {
                field: "table.blocks".into(),
                reason: "is empty; it needs one row of latencies per block".into(),
            });
        }
        for (i, row) in self.blocks.iter().enumerate() {
            let field = format!("table.blocks[{i}]");
            if row.is_empty() {
                return Err(Error::Field {
                    field,
                    reason: "has no choices".into(),
                });
            }
            check_finite(&field, row)?;
            if let Some(c) = row.iter().position(|&v| v < 0.0) {
                return Err(Error::Field {
                    field: format!("{field}[{c}]"),
                    reason: format!("latency {} ms is negative", row[c]),
                });
            }
        }
        Ok(())
    }

    /// Errors unless `f` has one choice per table row, each within the row.
    pub fn check(&self, f: &ArchFeatures) -> Result<()> {
        f.validate()?;
        if f.n_blocks() != self.blocks.len() {
            return Err(Error::Features(format!(
                "arch has {} blocks but the block table has {}; was it made for another space?",
                f.n_blocks(),
                self.blocks.len()
            )));
        }
        for (i, (&c, row)) in f.choices.iter().zip(&self.blocks).enumerate() {
            if c as usize >= row.len() {
                return Err(Error::Features(format!(
                    "block {i} has choice {c} but the block table has {} choices there",
                    row.len()
                )));
            }
        }
        Ok(())
    }
}

/// Block table sum with a fitted affine correction: `a·table.sum(f) + b`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LutPredictor {
    /// The measured per-block table.
    pub table: BlockTable,
    /// Slope of the correction.
    pub a: f64,
    /// Offset of the correction (ms).
    pub b: f64,
}

impl LutPredictor {
    /// The plain table sum, without correction (a = 1, b = 0).
    pub fn uncorrected(table: BlockTable) -> Self {
        LutPredictor {
            table,
            a: 1.0,
            b: 0.0,
        }
    }

    /// Fits `a`, `b` by ordinary least squares of measured latency on the table sum over
    /// `samples` (arch, measured ms). With fewer than two distinct sums only the offset is fitted
    /// (a = 1).
    pub fn fit(table: BlockTable, samples: &[(ArchFeatures, f64)]) -> Result<Self> {
        table.validate()?;
        if samples.is_empty() {
            return Err(Error::TooFew {
                what: "block table correction",
                need: 1,
                got: 0,
            });
        }
        let mut xs = Vec::with_capacity(samples.len());
        for (i, (f, m)) in samples.iter().enumerate() {
            table
                .check(f)
                .map_err(|e| Error::Features(format!("sample {i}: {e}")))?;
            if !m.is_finite() {
                return Err(Error::NonFinite {
                    series: "measured",
                    index: i,
                    value: *m,
                });
            }
            xs.push(table.sum(f));
        }
        let n = samples.len() as f64;
        let mx = xs.iter().sum::<f64>() / n;
        let my = samples.iter().map(|(_, m)| m).sum::<f64>() / n;
        let (mut sxy, mut sxx) = (0.0, 0.0);
        for (x, (_, y)) in xs.iter().zip(samples) {
            sxy += (x - mx) * (y - my);
            sxx += (x - mx) * (x - mx);
        }
        let a = if sxx > 1e-12 * mx.abs().max(1.0).powi(2) {
            sxy / sxx
        } else {
            1.0
        };
        Ok(LutPredictor {
            table,
            a,
            b: my - a * mx,
        })
    }

    /// Checks the table and that the coefficients are finite.
    pub fn validate(&self) -> Result<()> {
        self.table.validate()?;
        check_finite("a", &[self.a])?;
        check_finite("b", &[self.b])
    }
}

impl Predictor for LutPredictor {
    fn predict(&self, f: &ArchFeatures) -> f64 {
        self.a * self.table.sum(f) + self.b
    }

    fn check(&self, f: &ArchFeatures) -> Result<()> {
        self.table.check(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feats(choices: &[u8]) -> ArchFeatures {
        ArchFeatures {
            choices: choices.to_vec(),
            block_flops: vec![0; choices.len()],
            stage_of_block: vec![0; choices.len()],
            total_flops: 0,
            params: 0,
        }
    }

    #[test]
    fn sum_and_exact_affine_correction() {
        let table = BlockTable {
            stem_head_ms: 1.0,
            blocks: vec![vec![1.0, 2.0], vec![3.0, 5.0]],
        };
        assert_eq!(table.sum(&feats(&[1, 0])), 6.0);
        // measured = 2·sum − 1 exactly.
        let samples: Vec<_> = [[0, 0], [0, 1], [1, 0], [1, 1]]
            .iter()
            .map(|c| (feats(c), 2.0 * table.sum(&feats(c)) - 1.0))
            .collect();
        let p = LutPredictor::fit(table, &samples).unwrap();
        assert!(
            (p.a - 2.0).abs() < 1e-12 && (p.b + 1.0).abs() < 1e-12,
            "{p:?}"
        );
    }

    #[test]
    fn check_names_the_block() {
        let p = LutPredictor::uncorrected(BlockTable {
            stem_head_ms: 0.0,
            blocks: vec![vec![1.0, 2.0], vec![3.0]],
        });
        let e = p.check(&feats(&[0, 1])).unwrap_err().to_string();
        assert!(e.contains("block 1 has choice 1"), "{e}");
        let e = p.check(&feats(&[0])).unwrap_err().to_string();
        assert!(e.contains("1 blocks but the block table has 2"), "{e}");
    }
}
