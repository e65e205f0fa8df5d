//! `BoardSource`: the `board:NAME[,NAME…]` latency source of the search — export each arch to
//! ONNX, look it up in the cache, measure the misses on the pool.

use anyhow::{Context as _, Result};
use shiftnas_models::{Arch, Space};

use super::cached::measure_cached;
use super::pool::{Job, Pool};
use crate::cache::Cache;
use crate::latency::LatencySource;

/// Turns an arch into `.onnx` bytes (the subnet export; random weights are fine for latency).
pub type Exporter = Box<dyn Fn(&Space, &Arch) -> Result<Vec<u8>> + Send>;

/// Latencies measured on boards, through the cache.
pub struct BoardSource {
    pool: Pool,
    cache: Cache,
    export: Exporter,
    remeasure: bool,
}

impl BoardSource {
    /// A source over `pool`, storing in `cache`; `remeasure` ignores cached numbers.
    pub fn new(pool: Pool, cache: Cache, export: Exporter, remeasure: bool) -> BoardSource {
        BoardSource {
            pool,
            cache,
            export,
            remeasure,
        }
    }

    /// The pool (events, fingerprint).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

impl LatencySource for BoardSource {
    fn describe(&self) -> String {
        format!("board:{}", self.pool.fingerprint())
    }

    fn latencies(&mut self, space: &Space, archs: &[Arch]) -> Result<Vec<f64>> {
        let shape = format!("1x{}x{s}x{s}", space.input_channels, s = space.input_size);
        let mut jobs = Vec::with_capacity(archs.len());
        for a in archs {
            let bytes = (self.export)(space, a).with_context(|| format!("exporting arch {a}"))?;
            let mut j = Job::new(a.to_string(), bytes);
            j.input_shape = Some(shape.clone());
            jobs.push(j);
        }
        let l = measure_cached(&mut self.pool, &mut self.cache, &jobs, self.remeasure)?;
        Ok(l.into_iter().map(|l| l.p50_ms).collect())
    }
}
