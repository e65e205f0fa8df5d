//! `PredictorSource`: the `predictor:FILE` latency source — a fitted predictor from
//! `shiftnas calibrate`, fed with [`features`] computed from `models::cost`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use shiftnas_calibration::{ArchFeatures, PredictorFile};
use shiftnas_models::{Arch, Space, cost};

use super::{Estimate, LatencySource};

/// What the predictor sees of `arch`: choices, per-block FLOPs, stage of each block, total FLOPs
/// and parameters (as a standalone subnet).
///
/// # Errors
/// An arch that does not fit `space`.
pub fn features(space: &Space, arch: &Arch) -> Result<ArchFeatures> {
    space
        .check_arch(arch)
        .with_context(|| format!("arch {arch} does not fit space {}", space.name))?;
    let blocks = space.blocks();
    let block_flops = arch
        .genes()
        .iter()
        .enumerate()
        .map(|(i, &g)| cost::block_cost(space, i, space.choices[g as usize]).flops)
        .collect();
    let total = cost::arch_cost(space, arch);
    Ok(ArchFeatures {
        choices: arch.genes().to_vec(),
        block_flops,
        stage_of_block: blocks.iter().map(|b| b.stage).collect(),
        total_flops: total.flops,
        params: total.params,
    })
}

/// Latencies predicted by a calibrated predictor file.
pub struct PredictorSource {
    file: PredictorFile,
    path: PathBuf,
}

impl PredictorSource {
    /// Reads `path` and checks that it was calibrated for `space`.
    ///
    /// # Errors
    /// Unreadable or invalid file, or a predictor for another space.
    pub fn open(path: &Path, space: &Space) -> Result<PredictorSource> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading predictor {}", path.display()))?;
        let file = PredictorFile::from_json(&text).with_context(|| {
            format!("predictor {} is not a valid predictor file", path.display())
        })?;
        if file.space != space.name {
            bail!(
                "predictor {} was calibrated for space {:?}, not {:?}; run `shiftnas calibrate --space {}`",
                path.display(),
                file.space,
                space.name,
                space.name
            );
        }
        Ok(PredictorSource {
            file,
            path: path.to_path_buf(),
        })
    }

    /// The predictor file.
    pub fn file(&self) -> &PredictorFile {
        &self.file
    }

    /// Checks the predictor against a board's fingerprint (`force` overrides a mismatch).
    ///
    /// # Errors
    /// Different fingerprint without `force`.
    pub fn check_board(&self, fingerprint: &str, force: bool) -> Result<()> {
        self.file
            .check_board(fingerprint, force)
            .with_context(|| format!("predictor {}", self.path.display()))
    }

    /// The predicted latency of one arch, in ms.
    ///
    /// # Errors
    /// An arch that does not fit the space or the predictor.
    pub fn predict(&self, space: &Space, arch: &Arch) -> Result<f64> {
        let f = features(space, arch)?;
        self.file
            .predict_checked(&f)
            .with_context(|| format!("predicting arch {arch} with {}", self.path.display()))
    }
}

impl LatencySource for PredictorSource {
    fn describe(&self) -> String {
        format!("predictor:{}", self.file.board_fingerprint)
    }

    fn estimates(&mut self, space: &Space, archs: &[Arch]) -> Result<Vec<Estimate>> {
        archs
            .iter()
            .map(|a| self.predict(space, a).map(Estimate::point))
            .collect()
    }
}
