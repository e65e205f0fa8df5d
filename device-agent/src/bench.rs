//! One latency measurement: pin, open the session, warm up, then time runs until both the run
//! count and the time budget are met (at most [`MAX_RUNS`] samples); snapshot clocks and
//! temperatures before and after.

use std::time::Instant;

use anyhow::Result;
use shiftnas_protocol::{BenchReport, BenchSpec, MAX_RUNS, Summary, SystemSnapshot, Warning};

use crate::affinity;
use crate::runtime::{Backend, Model, SessionOptions};
use crate::system::{self, SysRoot};

/// Default thermal limit in °C: at or above it a zone counts as throttling.
pub const DEFAULT_THERMAL_LIMIT_C: f64 = 80.0;

/// Seeded uniform values in [-1, 1) (SplitMix64; the agent avoids a `rand` dependency to stay
/// small). The same seed gives the same input on every board and backend.
pub fn random_input(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            // Top 24 bits → exactly representable f32 in [0, 1).
            ((z >> 40) as f32 / (1u32 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Context of a measurement that is not part of the request.
#[derive(Debug, Clone)]
pub struct BenchEnv {
    /// Where `/proc/cpuinfo` and `/sys` are read from.
    pub root: SysRoot,
    /// Thermal limit in °C (`--thermal-limit`).
    pub thermal_limit_c: f64,
}

impl Default for BenchEnv {
    fn default() -> Self {
        BenchEnv {
            root: SysRoot::default(),
            thermal_limit_c: DEFAULT_THERMAL_LIMIT_C,
        }
    }
}

/// Measures `model` (its bytes, and their SHA-256) under `spec`.
///
/// The calling thread is pinned to `spec.cores` *before* the session is created so the runtime's
/// intra-op threads inherit the mask; the previous mask is restored afterwards.
///
/// # Errors
/// A `spec` outside [`BenchSpec::check`]'s bounds, pinning refused, or a runtime error.
pub fn measure(
    backend: &dyn Backend,
    model: &[u8],
    sha256: &str,
    spec: &BenchSpec,
    env: &BenchEnv,
) -> Result<BenchReport> {
    spec.check().map_err(anyhow::Error::msg)?;
    pinned(&spec.cores, || {
        measure_pinned(backend, model, sha256, spec, env)
    })
}

/// Runs `f` with the calling thread pinned to `cores` (nothing pinned when empty), then restores
/// the previous mask. Sessions created inside `f` put their threads on `cores`.
///
/// # Errors
/// Pinning refused, or `f`'s error.
pub fn pinned<T>(cores: &[usize], f: impl FnOnce() -> Result<T>) -> Result<T> {
    let previous = affinity::current()?;
    if !cores.is_empty() {
        affinity::pin(cores)?;
    }
    let result = f();
    if !cores.is_empty() {
        affinity::pin(&previous)?;
    }
    result
}

/// Whether the warnings say the clocks were slowed (a hot zone or a dropped frequency).
pub fn throttled(warnings: &[Warning]) -> bool {
    warnings.iter().any(|w| {
        matches!(
            w,
            Warning::Throttled { .. } | Warning::FrequencyDropped { .. }
        )
    })
}

fn measure_pinned(
    backend: &dyn Backend,
    model: &[u8],
    sha256: &str,
    spec: &BenchSpec,
    env: &BenchEnv,
) -> Result<BenchReport> {
    let mut m = backend.open(
        model,
        SessionOptions {
            threads: spec.threads,
            spin: spec.spin,
        },
    )?;
    let n: usize = m.input_shape().iter().product();
    m.set_input(random_input(n, spec.seed))?;
    let used = used_cores(&spec.cores, &env.root);
    let before = system::snapshot(&env.root, &used);
    let samples_ms = time_runs(m.as_mut(), spec)?;
    let after = system::snapshot(&env.root, &used);
    let summary = Summary::from_samples(&samples_ms)
        .ok_or_else(|| anyhow::anyhow!("no valid timing samples"))?;
    let warnings = warnings(spec, &before, &after, env.thermal_limit_c);
    let throttled = throttled(&warnings);
    Ok(BenchReport {
        samples_ms,
        summary,
        threads: spec.threads,
        cores: spec.cores.clone(),
        warmup: spec.warmup,
        spin: spec.spin,
        seed: spec.seed,
        backend: backend.id(),
        model_sha256: sha256.to_string(),
        input_name: m.input_name().to_string(),
        input_shape: m.input_shape().to_vec(),
        before,
        after,
        throttled,
        warnings,
    })
}

/// The cores whose clocks a measurement watches: `cores`, or every core when not pinned.
pub fn used_cores(cores: &[usize], root: &SysRoot) -> Vec<usize> {
    if cores.is_empty() {
        system::cores(root).0.iter().map(|c| c.cpu).collect()
    } else {
        cores.to_vec()
    }
}

/// Warm-up, then timed runs until `runs` samples and `min_seconds` have both been reached, or
/// [`MAX_RUNS`] samples have been taken (so a fast model cannot fill memory in a long budget).
fn time_runs(m: &mut dyn Model, spec: &BenchSpec) -> Result<Vec<f64>> {
    for _ in 0..spec.warmup {
        m.run()?;
    }
    let mut samples = Vec::with_capacity(spec.runs.min(MAX_RUNS));
    let start = Instant::now();
    while samples.len() < MAX_RUNS
        && (samples.len() < spec.runs || start.elapsed().as_secs_f64() < spec.min_seconds)
    {
        let t = Instant::now();
        m.run()?;
        samples.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(samples)
}

/// Everything in the conditions that makes the number less trustworthy.
pub fn warnings(
    spec: &BenchSpec,
    before: &SystemSnapshot,
    after: &SystemSnapshot,
    limit_c: f64,
) -> Vec<Warning> {
    let mut w = Vec::new();
    if spec.cores.is_empty() {
        w.push(Warning::NotPinned);
    } else if spec.threads > spec.cores.len() {
        w.push(Warning::ThreadsExceedCores {
            threads: spec.threads,
            cores: spec.cores.len(),
        });
    }
    if before
        .cores
        .iter()
        .all(|c| c.governor.is_none() && c.freq_khz.is_none())
    {
        w.push(Warning::NoCpufreq);
    }
    for c in &before.cores {
        if let Some(g) = &c.governor
            && g != "userspace"
            && g != "performance"
        {
            w.push(Warning::GovernorNotFixed {
                cpu: c.cpu,
                governor: g.clone(),
            });
        }
    }
    for b in &before.cores {
        let a = after
            .cores
            .iter()
            .find(|a| a.cpu == b.cpu)
            .and_then(|a| a.freq_khz);
        if let (Some(before_khz), Some(after_khz)) = (b.freq_khz, a)
            && after_khz < before_khz
        {
            w.push(Warning::FrequencyDropped {
                cpu: b.cpu,
                before_khz,
                after_khz,
            });
        }
    }
    let mut hot: Vec<(u32, String, f64)> = Vec::new();
    for z in before.thermal.iter().chain(&after.thermal) {
        if z.temp_c >= limit_c {
            match hot.iter_mut().find(|h| h.0 == z.zone) {
                Some(h) => h.2 = h.2.max(z.temp_c),
                None => hot.push((z.zone, z.kind.clone(), z.temp_c)),
            }
        }
    }
    w.extend(
        hot.into_iter()
            .map(|(zone, kind, temp_c)| Warning::Throttled {
                zone,
                kind,
                temp_c,
                limit_c,
            }),
    );
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use shiftnas_protocol::{CoreState, ThermalZone};

    #[test]
    fn random_input_is_seeded_and_in_range() {
        let a = random_input(1000, 7);
        assert_eq!(a, random_input(1000, 7));
        assert_ne!(a, random_input(1000, 8));
        assert!(a.iter().all(|&x| (-1.0..1.0).contains(&x)));
        let mean = a.iter().sum::<f32>() / 1000.0;
        assert!(mean.abs() < 0.1, "mean {mean}");
    }

    fn snap(gov: &str, khz: u64, temp: f64) -> SystemSnapshot {
        SystemSnapshot {
            cores: vec![CoreState {
                cpu: 4,
                governor: Some(gov.into()),
                freq_khz: Some(khz),
            }],
            thermal: vec![ThermalZone {
                zone: 1,
                kind: "bigcore0-thermal".into(),
                temp_c: temp,
            }],
        }
    }

    #[test]
    fn clean_conditions_give_no_warnings() {
        let spec = BenchSpec {
            cores: vec![4],
            ..BenchSpec::default()
        };
        let s = snap("userspace", 2_256_000, 50.0);
        assert!(warnings(&spec, &s, &s, 80.0).is_empty());
    }

    #[test]
    fn each_bad_condition_is_named() {
        let spec = BenchSpec {
            cores: vec![4],
            threads: 2,
            ..BenchSpec::default()
        };
        let w = warnings(
            &spec,
            &snap("schedutil", 2_256_000, 79.0),
            &snap("schedutil", 1_800_000, 82.5),
            80.0,
        );
        assert!(w.contains(&Warning::ThreadsExceedCores {
            threads: 2,
            cores: 1
        }));
        assert!(w.contains(&Warning::GovernorNotFixed {
            cpu: 4,
            governor: "schedutil".into()
        }));
        assert!(w.contains(&Warning::FrequencyDropped {
            cpu: 4,
            before_khz: 2_256_000,
            after_khz: 1_800_000
        }));
        assert!(w.contains(&Warning::Throttled {
            zone: 1,
            kind: "bigcore0-thermal".into(),
            temp_c: 82.5,
            limit_c: 80.0
        }));
        let unpinned = warnings(
            &BenchSpec::default(),
            &SystemSnapshot::default(),
            &SystemSnapshot::default(),
            80.0,
        );
        assert_eq!(unpinned, vec![Warning::NotPinned, Warning::NoCpufreq]);
    }
}
