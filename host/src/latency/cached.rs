//! Measuring through the latency cache: look every job up, measure only the misses on the pool,
//! store what was measured. A key is never measured twice unless `remeasure` is set.
//!
//! The misses of one call are measured as one interleaved set against a reference model
//! ([`Protocol::Set`], [`Pool::measure_set`]), or each alone ([`Protocol::Single`]).
//!
//! A set measures ratios to the reference; milliseconds are a ratio times a scale. Every set on
//! one board (fingerprint, threads, cores, input shape) against one reference uses the same
//! scale, kept in the cache ([`Cache::scale`]): the median of the reference's timings in the
//! first set measured there. Sets measured minutes or days apart — a search's generations, a
//! calibration's batches — are then as comparable as the models of one set, whatever the
//! board's speed did in between. `--remeasure` measures the models again on that scale; the
//! scale goes when `shiftnas cache prune` removes the last entry measured on it.

use anyhow::{Result, anyhow};
use serde::Serialize;
use shiftnas_protocol::BenchSetSpec;

use super::Interval;
use super::cache::{Cache, CacheKey, NewEntry};
use crate::boards::board::spec_for;
use crate::boards::pool::SetMeasured;
use crate::boards::{Job, Pool};

/// How the cache misses are measured.
#[derive(Debug, Clone, Copy)]
pub enum Protocol<'a> {
    /// Each model alone (`bench`): a P50, no interval.
    Single,
    /// All misses as one interleaved set against `reference` (`bench-set`): a drift-corrected
    /// estimate with its interval.
    Set {
        /// The reference model timed in every round.
        reference: &'a Job,
        /// Rounds, precision, confidence, budget and seed (threads, cores and warm-up come from
        /// each board's configuration).
        spec: &'a BenchSetSpec,
    },
}

/// What one measured miss adds to the cache and the answer.
struct Fresh {
    p50_ms: f64,
    interval: Option<Interval>,
    reference_sha256: Option<String>,
    board: String,
    shape: Option<String>,
    json: String,
    /// The set's scale, ms (a set measurement only).
    scale_ms: Option<f64>,
}

/// The per-model record of a set measurement kept in the cache's `report_json`: the model's
/// estimate, the reference and how the set went, without the other models' raw rounds.
fn set_json(m: &SetMeasured) -> Result<String> {
    let r = &m.report;
    Ok(serde_json::to_string(&serde_json::json!({
        "protocol": "set",
        "estimate_ms": m.estimate_ms,
        "interval_ms": m.interval_ms,
        "scale_ms": m.scale_ms,
        "model": m.estimate,
        "reference": r.reference,
        "set_models": r.models.len(),
        "rounds_done": r.rounds_done,
        "stop": r.stop,
        "elapsed_seconds": r.elapsed_seconds,
        "spec": r.spec,
        "backend": r.backend,
        "throttled": r.throttled,
        "warnings": r.warnings,
    }))?)
}

/// Measures `batch` by `protocol`, one result per job in order; a set's estimates are on
/// `scale_ms` when given.
fn measure_batch(
    pool: &mut Pool,
    batch: &[Job],
    protocol: Protocol<'_>,
    scale_ms: Option<f64>,
) -> Vec<Result<Fresh>> {
    match protocol {
        Protocol::Single => pool
            .measure(batch)
            .into_iter()
            .map(|r| {
                let m = r?;
                Ok(Fresh {
                    p50_ms: m.report.summary.p50_ms,
                    interval: None,
                    reference_sha256: None,
                    shape: Some(shape_string(&m.report.input_shape)),
                    json: serde_json::to_string(&m.report)?,
                    board: m.board,
                    scale_ms: None,
                })
            })
            .collect(),
        Protocol::Set { reference, spec } => pool
            .measure_set(batch, reference, spec, scale_ms)
            .into_iter()
            .map(|r| {
                let m = r?;
                Ok(Fresh {
                    p50_ms: m.estimate_ms,
                    interval: m.interval_ms.map(|b| Interval {
                        low: b.low,
                        high: b.high,
                    }),
                    reference_sha256: Some(m.reference_sha256.clone()),
                    shape: None,
                    json: set_json(&m)?,
                    board: m.board,
                    scale_ms: Some(m.scale_ms),
                })
            })
            .collect(),
    }
}

/// One job's latency and where it came from.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// The job's name.
    pub name: String,
    /// Model SHA-256.
    pub model_sha256: String,
    /// The latency, ms: the drift-corrected estimate of a set measurement, or the P50 of the
    /// single-model protocol.
    pub p50_ms: f64,
    /// Its confidence interval, ms; `None` from the single-model protocol.
    pub interval: Option<Interval>,
    /// The board that measured it now, or `None` when it came from the cache.
    pub board: Option<String>,
    /// The fingerprint the number belongs to.
    pub board_fingerprint: String,
    /// The agent's report as JSON text.
    pub report_json: String,
}

fn shape_string(shape: &[usize]) -> String {
    shape
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join("x")
}

/// The cache key of `job` on this pool (`None` when its input shape is not known in advance).
pub fn key_for(pool: &Pool, job: &Job, input_shape: &str) -> CacheKey {
    let spec = spec_for(pool.config());
    CacheKey {
        model_sha256: job.sha256.clone(),
        board_fingerprint: pool.fingerprint().to_string(),
        threads: spec.threads as u32,
        cores: pool.config().cores.clone().unwrap_or_default(),
        input_shape: input_shape.to_string(),
    }
}

/// Latencies of `jobs`, in order: from the cache where possible, else measured on `pool` by
/// `protocol` and stored (one transaction per batch). A set measurement stores only the jobs
/// whose input shape is known beforehand (an arch's; a bare `.onnx` file's is not), since the
/// shape is part of the key; its estimates are on the board's scale for that reference, which
/// the first set stores (see the module documentation).
///
/// # Errors
/// A job that no board could measure (naming it), or cache errors.
pub fn measure_cached(
    pool: &mut Pool,
    cache: &mut Cache,
    jobs: &[Job],
    remeasure: bool,
    protocol: Protocol<'_>,
) -> Result<Vec<Latency>> {
    let mut out: Vec<Option<Latency>> = vec![None; jobs.len()];
    let mut todo = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        if !remeasure
            && let Some(shape) = &job.input_shape
            && let Some(hit) = cache.get(&key_for(pool, job, shape))?
        {
            out[i] = Some(Latency {
                name: job.name.clone(),
                model_sha256: job.sha256.clone(),
                p50_ms: hit.p50_ms,
                interval: hit.interval,
                board: None,
                board_fingerprint: hit.key.board_fingerprint,
                report_json: hit.report_json,
            });
            continue;
        }
        // The same model twice in one batch is measured once.
        if !todo.iter().any(|&t: &usize| jobs[t].sha256 == job.sha256) {
            todo.push(i);
        }
    }
    let batch: Vec<Job> = todo.iter().map(|&i| jobs[i].clone()).collect();
    let scale_key = match protocol {
        Protocol::Set { reference, .. } if !batch.is_empty() => reference
            .input_shape
            .as_ref()
            .map(|shape| key_for(pool, reference, shape)),
        _ => None,
    };
    let scale_ms = match &scale_key {
        Some(key) => cache.scale(key)?,
        None => None,
    };
    let results = measure_batch(pool, &batch, protocol, scale_ms);
    let mut rows = Vec::new();
    let mut first_err = None;
    let mut results_scale = None;
    for (&i, r) in todo.iter().zip(results) {
        match r {
            Ok(f) => {
                results_scale = results_scale.or(f.scale_ms);
                if let Some(shape) = f.shape.as_ref().or(jobs[i].input_shape.as_ref()) {
                    rows.push(NewEntry {
                        interval: f.interval,
                        reference_sha256: f.reference_sha256.clone(),
                        ..NewEntry::single(key_for(pool, &jobs[i], shape), f.p50_ms, f.json.clone())
                    });
                }
                out[i] = Some(Latency {
                    name: jobs[i].name.clone(),
                    model_sha256: jobs[i].sha256.clone(),
                    p50_ms: f.p50_ms,
                    interval: f.interval,
                    board: Some(f.board),
                    board_fingerprint: pool.fingerprint().to_string(),
                    report_json: f.json,
                });
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    // The first set on this board sets the scale of every later one (stored before the rows
    // measured on it, so no row is ever on a scale the cache lacks).
    if let (Some(key), None, Some(scale)) = (&scale_key, scale_ms, results_scale)
        && scale.is_finite()
        && scale > 0.0
    {
        cache.put_scale(key, scale)?;
    }
    cache.put_many(&rows)?;
    if let Some(e) = first_err {
        return Err(e);
    }
    // Duplicates within the batch take their twin's number.
    for i in 0..jobs.len() {
        if out[i].is_none() {
            let twin = out
                .iter()
                .flatten()
                .find(|l| l.model_sha256 == jobs[i].sha256)
                .cloned();
            out[i] = twin.map(|mut l| {
                l.name = jobs[i].name.clone();
                l
            });
        }
    }
    out.into_iter()
        .zip(jobs)
        .map(|(l, j)| l.ok_or_else(|| anyhow!("{}: no latency", j.name)))
        .collect()
}
