//! Latency statistics over raw samples: percentiles (numpy's default "linear" method), mean and
//! sample standard deviation. Agent and host compute them with this one code.

use serde::{Deserialize, Serialize};

/// Summary statistics of latency samples, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Median (the search objective).
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Arithmetic mean.
    pub mean_ms: f64,
    /// Sample standard deviation (n − 1 in the denominator; 0 for one sample).
    pub std_ms: f64,
    /// Fastest sample.
    pub min_ms: f64,
    /// Slowest sample.
    pub max_ms: f64,
}

impl Summary {
    /// Summarises `samples_ms`; `None` when there are no samples or one is not finite.
    pub fn from_samples(samples_ms: &[f64]) -> Option<Summary> {
        if samples_ms.is_empty() || samples_ms.iter().any(|x| !x.is_finite()) {
            return None;
        }
        let mut sorted = samples_ms.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len() as f64;
        let mean = sorted.iter().sum::<f64>() / n;
        let var = if sorted.len() > 1 {
            sorted.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        Some(Summary {
            p50_ms: percentile_sorted(&sorted, 50.0),
            p90_ms: percentile_sorted(&sorted, 90.0),
            p99_ms: percentile_sorted(&sorted, 99.0),
            mean_ms: mean,
            std_ms: var.sqrt(),
            min_ms: sorted[0],
            max_ms: sorted[sorted.len() - 1],
        })
    }
}

/// The `q`-th percentile (0–100) of `samples`, linearly interpolated between closest ranks
/// (numpy's default `method="linear"`, Hyndman & Fan type 7); `None` when empty or `q` is out of
/// range.
pub fn percentile(samples: &[f64], q: f64) -> Option<f64> {
    if samples.is_empty() || !(0.0..=100.0).contains(&q) {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some(percentile_sorted(&sorted, q))
}

fn percentile_sorted(sorted: &[f64], q: f64) -> f64 {
    let pos = q / 100.0 * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1.0)
    }

    #[test]
    fn matches_numpy() {
        // numpy 2.3.5:
        //   x = [3.2, 1.0, 4.5, 2.25, 9.0, 1.5, 7.75]
        //   np.percentile(x, [50, 90, 99]) -> [3.2, 8.25, 8.924999999999999]
        //   np.mean(x) -> 4.171428571428572; np.std(x, ddof=1) -> 3.1107149691104166
        let x = [3.2, 1.0, 4.5, 2.25, 9.0, 1.5, 7.75];
        let s = Summary::from_samples(&x).unwrap();
        assert!(close(s.p50_ms, 3.2), "{s:?}");
        assert!(close(s.p90_ms, 8.25), "{s:?}");
        assert!(close(s.p99_ms, 8.925), "{s:?}");
        assert!(close(s.mean_ms, 4.171428571428572), "{s:?}");
        assert!(close(s.std_ms, 3.1107149691104166), "{s:?}");
        assert_eq!((s.min_ms, s.max_ms), (1.0, 9.0));
        // np.percentile([1, 2, 3, 4], 50) -> 2.5; 25 -> 1.75
        assert_eq!(percentile(&[4.0, 1.0, 3.0, 2.0], 50.0), Some(2.5));
        assert_eq!(percentile(&[4.0, 1.0, 3.0, 2.0], 25.0), Some(1.75));
    }

    #[test]
    fn edge_cases() {
        assert!(Summary::from_samples(&[]).is_none());
        assert!(Summary::from_samples(&[1.0, f64::NAN]).is_none());
        let one = Summary::from_samples(&[2.5]).unwrap();
        assert_eq!((one.p50_ms, one.p99_ms, one.std_ms), (2.5, 2.5, 0.0));
        assert_eq!(percentile(&[1.0], 101.0), None);
        assert_eq!(percentile(&[1.0, 2.0], 100.0), Some(2.0));
        assert_eq!(percentile(&[1.0, 2.0], 0.0), Some(1.0));
    }
}
