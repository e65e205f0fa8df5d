//! Supernet training: path sampling (uniform with warm-up, FLOPs-binned, fair, GreedyNAS,
//! AttentiveNAS), SGD with momentum, BN calibration and scoring of archs with supernet weights;
//! standalone retraining.

pub mod attentive;
pub mod engine;
pub mod evaluate;
pub mod greedy;
pub mod r#loop;
pub mod retrain;
pub mod sampling;
pub mod schedule;
pub mod sgd;

pub use evaluate::{Accuracy, BnMode, BnSource, calibrate_bn, evaluate, smoothed_cross_entropy};
pub use r#loop::{
    PreparedData, StepReport, TrainConfig, TrainState, arch_loss_and_grads, batch_loss_and_grads,
    logits_loss_and_grads, path_losses, prepare_data, space_and_data, space_for, train,
    train_until,
};
pub use sampling::{
    FlopsBins, MultiPath, PathSampler, Sampling, StepPaths, fair_paths, warmup_arch, warmup_bases,
};
pub use schedule::LinearDecay;
pub use sgd::{Gradients, Sgd, SgdConfig};

#[cfg(test)]
pub(crate) mod tests;
