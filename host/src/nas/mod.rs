//! The architecture search (NAS): the generic optimiser of [`crate::search`] applied to the archs
//! of a supernet, with Supernet Shifting, proxy scores, measured latency and run dirs.
//!
//! - [`driver`]: a whole run ([`driver::run_until`]): config, run dir, resume, the generation
//!   loop, the final front.
//! - [`arch_problem`]: archs as a [`Problem`](crate::search::problem::Problem): objectives (error,
//!   latency) and constraints, scored by [`evaluator`] while [`shifting`] trains the supernet.
//! - [`algorithm`]: `--algorithm` built over archs with the arch [`operators`].
//! - [`checkpoint`]: what a checkpoint holds and the archive truncation on resume.
//! - [`progress`]: hypervolume and progress reporting per generation.
//! - [`prescreen`]: keeping candidates clearly outside the front off the boards.
//! - [`transfer`]: starting from a supernet of another data set; [`warmup`]: its head warm-up.

pub mod algorithm;
pub mod arch_problem;
pub mod checkpoint;
pub mod driver;
pub mod evaluator;
pub mod npu_scoring;
pub mod operators;
pub mod prescreen;
pub mod progress;
pub mod shifting;
pub mod transfer;
pub mod warmup;

pub use algorithm::Algorithm;

#[cfg(test)]
mod prescreen_tests;
