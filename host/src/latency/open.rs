//! [`open`]: builds the latency source a `--latency` spec names.

use std::path::PathBuf;

use anyhow::Result;
use shiftnas_models::Space;

use super::board::{BoardSource, board_exporter, open_pool};
use super::cache::{Cache, default_path};
use super::predictor::PredictorSource;
use super::{LatencySource, LatencySpec};
use crate::boards::BoardsFile;

/// Everything besides the spec that building a source may need.
#[derive(Debug, Clone)]
pub struct LatencyOptions {
    /// The boards file (`--boards`, default `boards.toml`; missing means only `local`).
    pub boards: PathBuf,
    /// The agent for the built-in `local` board (`--agent`).
    pub agent: Option<PathBuf>,
    /// The latency cache (`--cache`, default `~/.cache/shiftnas/latency.sqlite`).
    pub cache: Option<PathBuf>,
    /// Measure again even when the cache has a number (`--remeasure`).
    pub remeasure: bool,
    /// Use a predictor calibrated on another board fingerprint (`--force-predictor`; only
    /// checked where a board is also in use, e.g. a prescreen).
    pub force_predictor: bool,
    /// Pool boards of different fingerprints (`--mix-boards`).
    pub mix_boards: bool,
    /// Seed of the random weights of exported subnets.
    pub export_seed: u64,
    /// Int8 calibration inputs for boards with `runtime = "rknn"`: the search's own images,
    /// loaded only when such a board is used (`None`: seeded random inputs).
    pub npu_calibration: Option<NpuCalibration>,
}

/// Loads int8 calibration images when an NPU board needs them.
#[derive(Clone)]
pub struct NpuCalibration(pub std::sync::Arc<dyn Fn() -> Result<crate::npu::Images> + Send + Sync>);

impl std::fmt::Debug for NpuCalibration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NpuCalibration(..)")
    }
}

impl Default for LatencyOptions {
    fn default() -> LatencyOptions {
        LatencyOptions {
            boards: PathBuf::from("boards.toml"),
            agent: None,
            cache: None,
            remeasure: false,
            force_predictor: false,
            mix_boards: false,
            export_seed: 0,
            npu_calibration: None,
        }
    }
}

/// Builds the source `spec` names for `space`.
///
/// # Errors
/// Unknown boards, an unreachable pool, an unreadable cache, or a predictor for another space.
pub fn open(
    spec: &LatencySpec,
    space: &Space,
    opts: &LatencyOptions,
) -> Result<Box<dyn LatencySource>> {
    Ok(match spec {
        LatencySpec::Flops => Box::new(super::flops::FlopsSource),
        LatencySpec::Predictor(path) => Box::new(PredictorSource::open(path, space)?),
        LatencySpec::Board(names) => {
            let file = BoardsFile::load(&opts.boards)?;
            // Before any board is touched: a measurement the cache cannot keep is lost.
            let mut cache = Cache::open(&opts.cache.clone().unwrap_or_else(default_path))?;
            cache.check_writable()?;
            let pool = open_pool(&file, names, opts.agent.as_deref(), opts.mix_boards)?;
            let export = board_exporter(
                pool.config(),
                opts.export_seed,
                opts.npu_calibration.as_ref(),
            )?;
            Box::new(BoardSource::new(pool, cache, export, opts.remeasure))
        }
    })
}
