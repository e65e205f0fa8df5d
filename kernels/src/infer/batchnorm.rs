//! Train-mode batch norm on channels-last rows, for BN calibration on the inference kernels: the
//! per-channel sums of a conv's raw output (f64), then the normalisation with the batch
//! statistics and the activation, in place.
//!
//! Each function works on a range of rows; the caller splits a batch into row ranges, runs them
//! in parallel (each right after the conv that wrote its rows, while they are in cache) and
//! merges the partial [`Moments`] in a fixed order.

use super::Activation;

fn check(x_len: usize, rows: usize, rs: usize, c: usize, what: &str) {
    assert!(
        rows == 0 || (rs >= c && (rows - 1) * rs + c <= x_len),
        "{what}: {x_len} values are too few for {rows}×{c} (row stride {rs})"
    );
}

/// Per channel, `Σ_r x[r * rs + ch]` over `rows` rows of `c` channels, in f64.
///
/// # Panics
/// When `x` is too small for the shape.
pub fn channel_sums(x: &[f32], rows: usize, rs: usize, c: usize) -> Vec<f64> {
    check(x.len(), rows, rs, c, "channel_sums");
    let mut s = vec![0f64; c];
    for r in 0..rows {
        for (a, &v) in s.iter_mut().zip(&x[r * rs..r * rs + c]) {
            *a += f64::from(v);
        }
    }
    s
}

/// Per channel, `Σ_r (x[r * rs + ch] − mean[ch])²` in f64 (the second pass of a two-pass
/// variance, around the rounded f32 mean the normalisation uses).
///
/// # Panics
/// When `x` is too small for the shape.
pub fn channel_sq_devs(x: &[f32], rows: usize, rs: usize, mean: &[f32]) -> Vec<f64> {
    let c = mean.len();
    check(x.len(), rows, rs, c, "channel_sq_devs");
    let mut s = vec![0f64; c];
    for r in 0..rows {
        for ((a, &v), &m) in s.iter_mut().zip(&x[r * rs..r * rs + c]).zip(mean) {
            let d = f64::from(v - m);
            *a += d * d;
        }
    }
    s
}

/// Count, per-channel mean and sum of squared deviations of some rows, in f64: what two-pass
/// variances of row ranges merge into (Chan et al.'s pairwise update, exact up to rounding).
#[derive(Debug, Clone, PartialEq)]
pub struct Moments {
    /// Rows.
    pub n: usize,
    /// Per-channel mean.
    pub mean: Vec<f64>,
    /// Per-channel `Σ (x − mean)²`.
    pub m2: Vec<f64>,
}

impl Moments {
    /// The moments of `rows` rows of `c` channels (row stride `rs`): a sum pass, then the squared
    /// deviations around the rounded f32 mean.
    ///
    /// # Panics
    /// When `x` is too small for the shape.
    pub fn of(x: &[f32], rows: usize, rs: usize, c: usize) -> Moments {
        let sums = channel_sums(x, rows, rs, c);
        let mean32: Vec<f32> = sums.iter().map(|s| (s / rows as f64) as f32).collect();
        let sq = channel_sq_devs(x, rows, rs, &mean32);
        // Σ (x − m)² around the f64 mean from the one around the f32 mean.
        let mean: Vec<f64> = sums.iter().map(|s| s / rows as f64).collect();
        let m2 = sq
            .iter()
            .zip(mean.iter().zip(&mean32))
            .map(|(&q, (&m, &m32))| {
                let d = m - f64::from(m32);
                (q - rows as f64 * d * d).max(0.0)
            })
            .collect();
        Moments { n: rows, mean, m2 }
    }

    /// The moments of both sets of rows together.
    pub fn merge(self, o: Moments) -> Moments {
        if self.n == 0 {
            return o;
        }
        if o.n == 0 {
            return self;
        }
        let (na, nb) = (self.n as f64, o.n as f64);
        let n = na + nb;
        let (mut mean, mut m2) = (self.mean, self.m2);
        for ch in 0..mean.len() {
            let d = o.mean[ch] - mean[ch];
            mean[ch] += d * nb / n;
            m2[ch] += o.m2[ch] + d * d * na * nb / n;
        }
        Moments {
            n: self.n + o.n,
            mean,
            m2,
        }
    }
}

/// `x ← act(((x − mean) · invstd) · gamma + beta)` per channel on `rows` rows of `mean.len()`
/// channels, row stride `rs` (the expression and rounding of the training-mode BN op).
///
/// # Panics
/// When a buffer does not match the shapes given.
#[allow(clippy::too_many_arguments)]
pub fn normalize_act(
    x: &mut [f32],
    rows: usize,
    rs: usize,
    mean: &[f32],
    invstd: &[f32],
    gamma: &[f32],
    beta: &[f32],
    act: Activation,
) {
    let c = mean.len();
    assert!(
        invstd.len() == c && gamma.len() == c && beta.len() == c,
        "normalize_act: {c} means but {} invstd, {} gamma, {} beta",
        invstd.len(),
        gamma.len(),
        beta.len()
    );
    check(x.len(), rows, rs, c, "normalize_act");
    for r in 0..rows {
        let row = &mut x[r * rs..r * rs + c];
        let per_channel = mean.iter().zip(invstd).zip(gamma.iter().zip(beta));
        for (v, ((&m, &is), (&g, &b))) in row.iter_mut().zip(per_channel) {
            *v = act.apply(((*v - m) * is) * g + b);
        }
    }
}
