"""Expected values for calibration/tests/stats.rs, computed independently with numpy + scipy.

Run:  source scripts/setup-deps && $SHIFTNAS_PYTHON calibration/tests/reference.py
and paste the printed Rust constants into calibration/tests/stats.rs.
Each case is (predicted, measured); correlations take (predicted, measured) as (x, y).
"""
import numpy as np
from scipy import stats

CASES = {
    "NO_TIES": ([1.2, 3.4, 2.2, 5.0, 4.1, 0.7, 6.3, 2.9], [1.0, 3.9, 2.5, 4.4, 4.8, 0.9, 5.7, 2.4]),
    "TIES": ([1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 4.0, 5.0], [2.0, 1.0, 2.0, 2.0, 4.0, 3.0, 5.0, 5.0]),
    "NEGATIVE": ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [10.0, 8.0, 9.0, 5.0, 4.0, 1.0]),
    "N2": ([1.0, 2.0], [2.0, 1.5]),
}


def within(p, m, tol):
    return float(np.mean(np.abs(p - m) <= tol * np.abs(m)))


for name, (p, m) in CASES.items():
    p, m = np.asarray(p), np.asarray(m)
    tau = stats.kendalltau(p, m, variant="b").statistic
    rho = stats.spearmanr(p, m).statistic
    r = stats.pearsonr(p, m).statistic
    rmse = np.sqrt(np.mean((p - m) ** 2))
    rmspe = 100.0 * np.sqrt(np.mean(((p - m) / m) ** 2))
    vals = [tau, rho, r, rmse, rmspe, rmse / np.mean(m), np.mean(np.abs(p - m)),
            within(p, m, 0.05), within(p, m, 0.10), within(p, m, 0.15)]
    print(f"// {name}: tau_b, rho, r, rmse, rmspe_pct, rmse_over_mean, mae, within 5/10/15 %")
    print(f"const {name}_EXPECTED: [f64; 10] = [{', '.join(repr(float(v)) for v in vals)}];")
