//! A small dense solver for the normal equations of ridge regression: Cholesky, f64.
//!
//! Matrices are row-major `Vec<f64>` of size n×n. The systems here have at most a few hundred
//! unknowns (20 blocks × 4 choices), so a textbook O(n³) factorisation is plenty.

use crate::error::{Error, Result};

/// Solves A·x = b for a symmetric positive-definite A (row-major n×n) by Cholesky A = L·Lᵀ,
/// then forward and back substitution (Golub & Van Loan, *Matrix Computations*, 4th ed.,
/// Alg. 4.2.1). Errors when A is not positive definite (a pivot ≤ 0) or the sizes disagree.
pub fn cholesky_solve(a: &[f64], b: &[f64]) -> Result<Vec<f64>> {
    let n = b.len();
    if a.len() != n * n {
        return Err(Error::Solve(format!(
            "matrix has {} entries, expected {n}×{n}",
            a.len()
        )));
    }
    let mut l = vec![0.0; n * n];
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= l[j * n + k] * l[j * n + k];
        }
        if d <= 0.0 || !d.is_finite() {
            return Err(Error::Solve(format!(
                "matrix is not positive definite (pivot {j} is {d:e}); increase the ridge λ"
            )));
        }
        let djj = d.sqrt();
        l[j * n + j] = djj;
        for i in (j + 1)..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= l[i * n + k] * l[j * n + k];
            }
            l[i * n + j] = s / djj;
        }
    }
    // L·y = b
    let mut y = vec![0.0; n];
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= l[i * n + k] * y[k];
        }
        y[i] = s / l[i * n + i];
    }
    // Lᵀ·x = y
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let mut s = y[i];
        for k in (i + 1)..n {
            s -= l[k * n + i] * x[k];
        }
        x[i] = s / l[i * n + i];
    }
    Ok(x)
}

/// Ridge regression with an unpenalised intercept: minimises
/// (1/n)·Σ(yᵢ − β₀ − xᵢ·β)² + λ·Σ(sⱼβⱼ)², where sⱼ is column j's standard deviation, i.e. ridge on
/// standardised columns (Hastie, Tibshirani & Friedman, *ESL*, 2nd ed., §3.4.1), so λ is
/// unit-free. Columns without variation get β = 0. Returns (β₀, β) in the original units.
pub fn ridge(rows: &[Vec<f64>], y: &[f64], lambda: f64) -> Result<(f64, Vec<f64>)> {
    let n = rows.len();
    if n == 0 || n != y.len() {
        return Err(Error::Solve(format!(
            "ridge needs as many targets as rows (got {} rows, {} targets)",
            n,
            y.len()
        )));
    }
    if !lambda.is_finite() || lambda < 0.0 {
        return Err(Error::Solve(format!("ridge λ must be ≥ 0, got {lambda}")));
    }
    let p = rows[0].len();
    let nf = n as f64;
    let mut mean = vec![0.0; p];
    for r in rows {
        for j in 0..p {
            mean[j] += r[j] / nf;
        }
    }
    let mut sd = vec![0.0; p];
    for r in rows {
        for j in 0..p {
            sd[j] += (r[j] - mean[j]).powi(2) / nf;
        }
    }
    sd.iter_mut().for_each(|s| *s = s.sqrt());
    // Only columns that vary take part; the rest get a zero coefficient.
    let live: Vec<usize> = (0..p)
        .filter(|&j| sd[j] > 1e-12 * mean[j].abs().max(1.0))
        .collect();
    let ymean = y.iter().sum::<f64>() / nf;
    let q = live.len();
    let mut ata = vec![0.0; q * q];
    let mut atb = vec![0.0; q];
    let mut z = vec![0.0; q];
    for (r, yi) in rows.iter().zip(y) {
        for (a, &j) in live.iter().enumerate() {
            z[a] = (r[j] - mean[j]) / sd[j];
        }
        for a in 0..q {
            atb[a] += z[a] * (yi - ymean);
            for b in a..q {
                ata[a * q + b] += z[a] * z[b];
            }
        }
    }
    for a in 0..q {
        ata[a * q + a] += nf * lambda;
        for b in 0..a {
            ata[a * q + b] = ata[b * q + a];
        }
    }
    let w = cholesky_solve(&ata, &atb)?;
    let mut beta = vec![0.0; p];
    let mut b0 = ymean;
    for (a, &j) in live.iter().enumerate() {
        beta[j] = w[a] / sd[j];
        b0 -= beta[j] * mean[j];
    }
    Ok((b0, beta))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_solves_the_textbook_system() {
        // A = L·Lᵀ with L = [[2,0,0],[6,1,0],[-8,5,3]] (Wikipedia "Cholesky decomposition",
        // example); x = (1, 2, 3) gives b = A·x = (-20, -43, 192): 4+24−48, 12+74−129, −16−86+294.
        let a = [4.0, 12.0, -16.0, 12.0, 37.0, -43.0, -16.0, -43.0, 98.0];
        let x = cholesky_solve(&a, &[-20.0, -43.0, 192.0]).unwrap();
        for (got, want) in x.iter().zip([1.0, 2.0, 3.0]) {
            assert!((got - want).abs() < 1e-12, "{x:?}");
        }
    }

    #[test]
    fn cholesky_rejects_indefinite() {
        let e = cholesky_solve(&[1.0, 2.0, 2.0, 1.0], &[1.0, 1.0]).unwrap_err();
        assert!(e.to_string().contains("not positive definite"), "{e}");
    }

    #[test]
    fn ridge_without_penalty_recovers_an_exact_plane() {
        // y = 3 + 2·x₀ − 0.5·x₁ exactly; the constant column gets 0.
        let rows: Vec<Vec<f64>> = (0..12)
            .map(|i| vec![i as f64, ((i * 7) % 5) as f64, 1.0])
            .collect();
        let y: Vec<f64> = rows.iter().map(|r| 3.0 + 2.0 * r[0] - 0.5 * r[1]).collect();
        let (b0, b) = ridge(&rows, &y, 0.0).unwrap();
        assert!((b0 - 3.0).abs() < 1e-9 && (b[0] - 2.0).abs() < 1e-9);
        assert!((b[1] + 0.5).abs() < 1e-9 && b[2] == 0.0, "{b:?}");
    }

    #[test]
    fn ridge_shrinks_toward_the_mean() {
        let rows: Vec<Vec<f64>> = (0..10).map(|i| vec![i as f64]).collect();
        let y: Vec<f64> = (0..10).map(|i| 2.0 * i as f64).collect();
        // Standardised: slope on z is 2·sd·n/(n + nλ) = 2·sd/(1+λ), so β = 2/(1+λ).
        let (_, b) = ridge(&rows, &y, 1.0).unwrap();
        assert!((b[0] - 1.0).abs() < 1e-12, "{b:?}");
    }
}
