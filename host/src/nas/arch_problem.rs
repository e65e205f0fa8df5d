//! The architecture search as a [`Problem`]: objectives (error %, latency) and constraints
//! (FLOPs, params, latency budget) of archs, with Supernet Shifting between scores.
//!
//! Each batch (a generation) is scored in order: `immediate` shifting trains a candidate's path
//! before its score; `accumulate` adds each candidate's loss gradient after its score and takes
//! the generation's one SGD step at the end. With [`ArchProblem::shares_bn`], the `accumulate`
//! forward comes first and also calibrates BN, and the score uses those statistics. Latencies
//! come after the generation's scores (one batch, so boards work in parallel), so a prescreen
//! ([`super::prescreen`]) can compare each candidate with the measured front. Every evaluation
//! becomes an [`ArchiveRecord`] in [`ArchProblem::records`] (the driver appends them to
//! `archive.jsonl`).

use std::time::Instant;

use anyhow::Result;
use rand_chacha::ChaCha8Rng;
use shiftnas_models::cost::arch_cost;
use shiftnas_models::{Arch, Space, Supernet};

use super::evaluator::Evaluator;
use super::prescreen::Prescreen;
use super::shifting::{ShiftMode, Shifter};
use crate::archive::ArchiveRecord;
use crate::data::Batcher;
use crate::latency::{Estimate, LatencySource};
use crate::search::problem::{Evaluation, Problem};
use crate::train::BnMode;

/// Caps turned into constraint violations (each normalised by its cap).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Constraints {
    /// Maximum multiply-adds.
    pub max_flops: Option<u64>,
    /// Maximum parameters.
    pub max_params: Option<u64>,
    /// Maximum latency in the source's unit.
    pub latency_budget: Option<f64>,
}

impl Constraints {
    /// Raw constraint values `g ≤ 0` for an arch with these costs.
    pub fn values(&self, flops: u64, params: u64, latency: f64) -> Vec<f64> {
        let mut g = Vec::new();
        if let Some(c) = self.max_flops {
            g.push(flops as f64 / c as f64 - 1.0);
        }
        if let Some(c) = self.max_params {
            g.push(params as f64 / c as f64 - 1.0);
        }
        if let Some(c) = self.latency_budget {
            g.push(latency / c - 1.0);
        }
        g
    }

    /// How many constraints are active.
    pub fn count(&self) -> usize {
        usize::from(self.max_flops.is_some())
            + usize::from(self.max_params.is_some())
            + usize::from(self.latency_budget.is_some())
    }
}

/// Where a search's wall time went, in seconds (this invocation only: a resumed run counts
/// from its resume).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct PhaseSeconds {
    /// Shifting: each candidate's forward and backward over its shift samples and the
    /// generation's SGD step (`immediate`: its SGD steps); with shared BN this forward also
    /// calibrates BN, and the time its last backward runs alongside the score is the score's.
    pub shifting: f64,
    /// Proxy scores, with their BN calibration when it is not shared.
    pub scoring: f64,
    /// Latency from the latency source (boards, predictor or FLOPs).
    pub latency: f64,
    /// Re-scoring the final front under the final weights.
    pub rescore: f64,
}

/// Adds the time `f` takes to `slot`.
pub(crate) fn timed<T>(slot: &mut f64, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let start = Instant::now();
    let out = f();
    *slot += start.elapsed().as_secs_f64();
    out
}

/// Archs scored by a (shifting) supernet.
pub struct ArchProblem<'a> {
    /// The supernet being searched (and shifted).
    pub net: &'a Supernet,
    /// Its space.
    pub space: Space,
    /// Scores with cache.
    pub evaluator: Evaluator<'a>,
    /// Shifting state.
    pub shifter: Shifter,
    /// Training batches for shifting.
    pub batcher: Batcher<'a>,
    /// Randomness of shifting batches (augmentation).
    pub rng: ChaCha8Rng,
    /// The latency objective.
    pub latency: Box<dyn LatencySource>,
    /// Caps.
    pub constraints: Constraints,
    /// Objectives: 2 (error, latency) or 1 (error only, for evolution).
    pub n_obj: usize,
    /// Supernet step of the checkpoint the search started from.
    pub base_step: u64,
    /// Generation being scored (1 = initial population).
    pub generation: usize,
    /// Records of the last `evaluate`.
    pub records: Vec<ArchiveRecord>,
    /// Share BN calibration with the shifting forward (only with `accumulate` and exact BN; see
    /// [`ArchProblem::shares_bn`]).
    pub share_bn: bool,
    /// Keeps candidates clearly outside the front off the boards (`--prescreen`).
    pub prescreen: Option<Prescreen>,
    /// Wall time by phase so far.
    pub seconds: PhaseSeconds,
}

impl ArchProblem<'_> {
    /// The supernet's current training step (checkpoint step + shifting steps).
    pub fn step(&self) -> u64 {
        self.base_step + self.shifter.steps_taken
    }

    /// Whether candidates' BN statistics come from their shifting forward: `share_bn` with
    /// `accumulate` shifting and exact BN calibration. Then each candidate's shift samples
    /// (`⌈shift_samples / shift_batch⌉ × shift_batch` training images, fresh for every candidate)
    /// calibrate its BN, and no separate calibration forward over `bn_images` runs.
    pub fn shares_bn(&self) -> bool {
        self.share_bn
            && self.shifter.config().mode == ShiftMode::Accumulate
            && self.evaluator.bn == BnMode::Exact
    }

    /// Latencies (with their intervals, where the source measured them with one) and their
    /// sources for `archs` scored `errors` (error %, step): from the latency source, whose board
    /// pool measures the batch as one interleaved set, except candidates the prescreen finds
    /// clearly outside the front, which keep their predicted latency and the predictor's label.
    fn latencies(
        &mut self,
        archs: &[Arch],
        errors: &[(f64, u64)],
    ) -> Result<(Vec<Estimate>, Vec<String>)> {
        let measured = self.latency.describe();
        let Some(p) = &self.prescreen else {
            let l = self.latency.estimates(&self.space, archs)?;
            return Ok((l, vec![measured; archs.len()]));
        };
        let mut lat = vec![Estimate::point(0.0); archs.len()];
        let mut src = vec![measured; archs.len()];
        let mut send = Vec::new();
        for (i, (arch, &(error, _))) in archs.iter().zip(errors).enumerate() {
            let predicted = p.predict(&self.space, arch)?;
            if p.is_clearly_out(error / 100.0, predicted, self.constraints.latency_budget) {
                lat[i] = Estimate::point(predicted);
                src[i] = p.label().to_string();
            } else {
                send.push(i);
            }
        }
        let to_measure: Vec<Arch> = send.iter().map(|&i| archs[i].clone()).collect();
        if !to_measure.is_empty() {
            let got = self.latency.estimates(&self.space, &to_measure)?;
            for (&i, l) in send.iter().zip(got) {
                lat[i] = l;
            }
        }
        Ok((lat, src))
    }

    /// Scores one arch at the current weights (no shifting), e.g. to re-score the final front.
    ///
    /// # Errors
    /// As [`Evaluator::error`].
    pub fn rescore(&mut self, arch: &Arch) -> Result<f64> {
        let step = self.step();
        timed(&mut self.seconds.rescore, || {
            self.evaluator.error(self.net, arch, step)
        })
    }

    /// [`ArchProblem::rescore`] without the score cache (`--track`: a tracked arch's score must
    /// not stand in for a candidate's); the time counts as re-scoring.
    pub fn score_outside(&mut self, arch: &Arch) -> Result<f64> {
        timed(&mut self.seconds.rescore, || {
            self.evaluator.error_uncached(self.net, arch)
        })
    }
}

impl Problem for ArchProblem<'_> {
    type Genome = Arch;

    fn n_obj(&self) -> usize {
        self.n_obj
    }

    fn n_constr(&self) -> usize {
        self.constraints.count()
    }

    fn evaluate(&mut self, archs: &[Arch]) -> Result<Vec<Evaluation>> {
        for a in archs {
            anyhow::ensure!(
                a.len() == self.space.num_blocks()
                    && a.genes()
                        .iter()
                        .all(|&g| (g as usize) < self.space.choices.len()),
                "arch {a} does not fit space {} ({} blocks, {} choices)",
                self.space.name,
                self.space.num_blocks(),
                self.space.choices.len()
            );
        }
        self.records.clear();
        let mut errors = Vec::with_capacity(archs.len());
        // Ctrl-C: stop once the candidate in flight is scored; the weights it shifted live only
        // in memory and the last checkpoint is the previous generation's, which resume reloads.
        let done = self.generation.saturating_sub(1);
        let stop = move || -> Result<()> {
            if crate::interrupt::requested() {
                return Err(crate::interrupt::SearchInterrupted::after(done).into());
            }
            Ok(())
        };
        for arch in archs {
            stop()?;
            let (error, step) = if self.shares_bn() {
                // One train-mode forward: exact BN statistics + the shifting loss, whose last
                // backward runs alongside the score.
                let step = self.step();
                let (net, evaluator) = (self.net, &mut self.evaluator);
                let start = Instant::now();
                let (error, scoring) = self.shifter.accumulate_calibrating(
                    net,
                    arch,
                    &mut self.batcher,
                    &mut self.rng,
                    || {
                        let start = Instant::now();
                        let e = evaluator.error_calibrated(net, arch, step)?;
                        Ok((e, start.elapsed().as_secs_f64()))
                    },
                )?;
                self.seconds.scoring += scoring;
                self.seconds.shifting += start.elapsed().as_secs_f64() - scoring;
                (error, step)
            } else {
                timed(&mut self.seconds.shifting, || {
                    self.shifter
                        .before_score(self.net, arch, &mut self.batcher, &mut self.rng)
                })?;
                let step = self.step();
                let error = timed(&mut self.seconds.scoring, || {
                    self.evaluator.error(self.net, arch, step)
                })?;
                timed(&mut self.seconds.shifting, || {
                    self.shifter
                        .accumulate(self.net, arch, &mut self.batcher, &mut self.rng)
                })?;
                (error, step)
            };
            errors.push((error, step));
        }
        stop()?;
        let start = Instant::now();
        let (latencies, sources) = self.latencies(archs, &errors)?;
        self.seconds.latency += start.elapsed().as_secs_f64();
        let mut evals = Vec::with_capacity(archs.len());
        for ((arch, &(error, step)), (est, source)) in archs
            .iter()
            .zip(&errors)
            .zip(latencies.into_iter().zip(sources))
        {
            let lat = est.value;
            let cost = arch_cost(&self.space, arch);
            let mut objectives = vec![error];
            if self.n_obj > 1 {
                objectives.push(lat);
            }
            let g = self.constraints.values(cost.flops, cost.params, lat);
            evals.push(Evaluation::with_constraints(objectives, &g));
            self.records.push(ArchiveRecord {
                generation: self.generation,
                arch: arch.clone(),
                error: error / 100.0,
                latency: lat,
                latency_source: source,
                latency_interval: est.interval,
                flops: cost.flops,
                params: cost.params,
                supernet_step: step,
            });
        }
        if let Some(p) = &mut self.prescreen {
            p.observe(&self.records);
        }
        timed(&mut self.seconds.shifting, || {
            self.shifter.end_generation(self.net)
        })?;
        Ok(evals)
    }
}
