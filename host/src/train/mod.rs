//! Supernet training: uniform single-path sampling, SGD with momentum, BN calibration and
//! scoring of archs with supernet weights.

pub mod engine;
pub mod evaluate;
pub mod r#loop;
pub mod retrain;
pub mod schedule;
pub mod sgd;

pub use evaluate::{Accuracy, BnMode, BnSource, calibrate_bn, evaluate, smoothed_cross_entropy};
pub use r#loop::{
    PreparedData, Sampling, StepReport, TrainConfig, TrainState, arch_loss_and_grads,
    batch_loss_and_grads, prepare_data, resumable_checkpoint, space_for, train, train_until,
    warmup_arch, warmup_base,
};
pub use schedule::LinearDecay;
pub use sgd::{Gradients, Sgd, SgdConfig};

#[cfg(test)]
mod tests;
