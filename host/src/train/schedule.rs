//! Learning-rate schedule: linear decay to 0 per step (SPOS: `LambdaLR(lambda s: 1 - s / total)`).

use serde::{Deserialize, Serialize};

/// `lr(step) = base · (1 − step / total)`, 0 from `total` on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LinearDecay {
    /// Learning rate at step 0.
    pub base_lr: f64,
    /// Step at which the rate reaches 0.
    pub total_steps: u64,
}

impl LinearDecay {
    /// The learning rate for (0-based) `step`.
    pub fn lr(&self, step: u64) -> f64 {
        if self.total_steps == 0 || step >= self.total_steps {
            return 0.0;
        }
        self.base_lr * (1.0 - step as f64 / self.total_steps as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_decay_hits_zero_at_total() {
        let s = LinearDecay {
            base_lr: 0.5,
            total_steps: 4,
        };
        let lrs: Vec<f64> = (0..6).map(|i| s.lr(i)).collect();
        assert_eq!(lrs, [0.5, 0.375, 0.25, 0.125, 0.0, 0.0]);
    }
}
