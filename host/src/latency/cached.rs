//! Measuring through the latency cache: look every job up, measure only the misses on the pool,
//! store what was measured. A key is never measured twice unless `remeasure` is set.

use anyhow::{Result, anyhow};
use serde::Serialize;

use super::Interval;
use super::cache::{Cache, CacheKey, NewEntry};
use crate::boards::board::spec_for;
use crate::boards::{Job, Pool};

/// One job's latency and where it came from.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// The job's name.
    pub name: String,
    /// Model SHA-256.
    pub model_sha256: String,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// Its confidence interval, ms: from the cache when stored with one; `None` from the
    /// single-model protocol.
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

/// Latencies of `jobs`, in order: from the cache where possible, else measured on `pool` and
/// stored (one transaction per batch).
///
/// # Errors
/// A job that no board could measure (naming it), or cache errors.
pub fn measure_cached(
    pool: &mut Pool,
    cache: &mut Cache,
    jobs: &[Job],
    remeasure: bool,
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
    let results = pool.measure(&batch);
    let mut rows = Vec::new();
    let mut first_err = None;
    for (&i, r) in todo.iter().zip(results) {
        match r {
            Ok(m) => {
                let json = serde_json::to_string(&m.report)?;
                let shape = shape_string(&m.report.input_shape);
                rows.push(NewEntry::single(
                    key_for(pool, &jobs[i], &shape),
                    m.report.summary.p50_ms,
                    json.clone(),
                ));
                out[i] = Some(Latency {
                    name: jobs[i].name.clone(),
                    model_sha256: jobs[i].sha256.clone(),
                    p50_ms: m.report.summary.p50_ms,
                    interval: None,
                    board: Some(m.board),
                    board_fingerprint: pool.fingerprint().to_string(),
                    report_json: json,
                });
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
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
