//! A search's checkpoint (`checkpoint/` in the run dir, written after every generation): the
//! shifted supernet, the shifting optimizer's buffers and `state.json` ([`SearchState`]: RNGs,
//! shifting data cursor, algorithm state, archive length, hypervolumes so far).
//!
//! On resume the archive is cut back to the checkpointed length ([`archive::truncate_to`]): a run
//! killed mid-generation leaves that generation's first records behind, and the resumed run
//! writes them again.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use candle_core::Device;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use shiftnas_models::{Space, Supernet};

use super::algorithm::{ArchSearch, ArchSearchState};
use super::arch_problem::ArchProblem;
use crate::archive;
use crate::data::BatcherPosition;
use crate::run_dir::{RunDir, STATE_FILE, write_atomic};

/// The supernet's file in a checkpoint folder.
const SUPERNET_FILE: &str = "supernet.safetensors";
/// The shifting optimizer's buffers in a checkpoint folder.
const OPTIMIZER_FILE: &str = "optimizer.safetensors";

/// `state.json` of a search checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchState {
    /// Completed generations.
    pub generation: usize,
    /// The algorithm's RNG.
    pub rng: ChaCha8Rng,
    /// The shifting batches' RNG.
    pub shift_rng: ChaCha8Rng,
    /// Where the shifting batches continue.
    pub batcher: BatcherPosition,
    /// Shifting SGD steps taken.
    pub shift_steps: u64,
    /// Training step of the supernet the search started from.
    pub base_step: u64,
    /// Records in `archive.jsonl` at this checkpoint.
    pub archive_len: usize,
    /// Hypervolume after each generation.
    pub hypervolume: Vec<f64>,
    /// The algorithm's state.
    pub algorithm: ArchSearchState,
}

/// Writes the checkpoint after a generation (atomically replacing the previous one).
///
/// # Errors
/// I/O or tensor failures, naming the file.
pub fn save(
    run: &RunDir,
    problem: &ArchProblem<'_>,
    rng: &ChaCha8Rng,
    algorithm: &ArchSearch,
    hypervolume: &[f64],
    generation: usize,
) -> Result<()> {
    let archive_path = run.join("archive.jsonl");
    let archive_len = if archive_path.is_file() {
        archive::read(&archive_path)?.len()
    } else {
        0
    };
    let state = SearchState {
        generation,
        rng: rng.clone(),
        shift_rng: problem.rng.clone(),
        batcher: problem.batcher.position(),
        shift_steps: problem.shifter.steps_taken,
        base_step: problem.base_step,
        archive_len,
        hypervolume: hypervolume.to_vec(),
        algorithm: algorithm.state(),
    };
    run.swap_checkpoint(|tmp| {
        problem.net.save(tmp.join(SUPERNET_FILE), problem.step())?;
        problem
            .shifter
            .sgd
            .save_buffers(&tmp.join(OPTIMIZER_FILE))?;
        write_atomic(&tmp.join(STATE_FILE), &serde_json::to_vec_pretty(&state)?)
    })
}

/// The state and supernet of the checkpoint folder `dir`, for `space` on `device`.
///
/// # Errors
/// An unreadable `state.json` or supernet, naming the file.
pub fn load(dir: &Path, space: &Space, device: &Device) -> Result<(SearchState, Supernet)> {
    let state_path = dir.join(STATE_FILE);
    let state: SearchState = serde_json::from_slice(
        &fs::read(&state_path).with_context(|| format!("reading {}", state_path.display()))?,
    )
    .with_context(|| format!("parsing {}", state_path.display()))?;
    let (net, _) = Supernet::load_for(dir.join(SUPERNET_FILE), space, device)
        .with_context(|| format!("loading {}", dir.display()))?;
    Ok((state, net))
}

/// The shifting optimizer's buffers of the checkpoint folder `dir`.
pub fn optimizer_file(dir: &Path) -> std::path::PathBuf {
    dir.join(OPTIMIZER_FILE)
}
