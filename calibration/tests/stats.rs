//! Statistics against numpy/scipy. The expected constants were printed by
//! `calibration/tests/reference.py` (scipy 1.16.3, numpy 2.3.5):
//! `source scripts/setup-deps && $SHIFTNAS_PYTHON calibration/tests/reference.py`.

use shiftnas_calibration::stats::{self, Report};

// NO_TIES: tau_b, rho, r, rmse, rmspe_pct, rmse_over_mean, mae, within 5/10/15 %
const NO_TIES_EXPECTED: [f64; 10] = [
    0.8571428571428571,
    0.9523809523809524,
    0.9621411718013999,
    0.4847679857416328,
    16.37699543447497,
    0.15148999554426024,
    0.44999999999999996,
    0.0,
    0.0,
    0.625,
];
// TIES: tau_b, rho, r, rmse, rmspe_pct, rmse_over_mean, mae, within 5/10/15 %
const TIES_EXPECTED: [f64; 10] = [
    0.7500000000000001,
    0.8481012658227849,
    0.8339078479367938,
    0.7905694150420949,
    44.75628447492039,
    0.26352313834736496,
    0.625,
    0.375,
    0.375,
    0.375,
];
// NEGATIVE: tau_b, rho, r, rmse, rmspe_pct, rmse_over_mean, mae, within 5/10/15 %
const NEGATIVE_EXPECTED: [f64; 10] = [
    -0.8666666666666666,
    -0.942857142857143,
    -0.950537133290682,
    5.477225575051661,
    211.81534585751982,
    0.8881987419002694,
    4.666666666666667,
    0.0,
    0.0,
    0.0,
];
// N2: tau_b, rho, r, rmse, rmspe_pct, rmse_over_mean, mae, within 5/10/15 %
const N2_EXPECTED: [f64; 10] = [
    -1.0,
    -0.9999999999999999,
    -1.0,
    0.7905694150420949,
    42.49182927993987,
    0.45175395145262565,
    0.75,
    0.0,
    0.0,
    0.0,
];

const NO_TIES: ([f64; 8], [f64; 8]) = (
    [1.2, 3.4, 2.2, 5.0, 4.1, 0.7, 6.3, 2.9],
    [1.0, 3.9, 2.5, 4.4, 4.8, 0.9, 5.7, 2.4],
);
const TIES: ([f64; 8], [f64; 8]) = (
    [1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 4.0, 5.0],
    [2.0, 1.0, 2.0, 2.0, 4.0, 3.0, 5.0, 5.0],
);
const NEGATIVE: ([f64; 6], [f64; 6]) = (
    [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
    [10.0, 8.0, 9.0, 5.0, 4.0, 1.0],
);
const N2: ([f64; 2], [f64; 2]) = ([1.0, 2.0], [2.0, 1.5]);

fn close(got: f64, want: f64, what: &str, case: &str) {
    assert!(
        (got - want).abs() <= 1e-12 * want.abs().max(1.0),
        "{case} {what}: got {got}, scipy/numpy says {want}"
    );
}

fn check(case: &str, p: &[f64], m: &[f64], e: &[f64; 10]) {
    let got = [
        stats::kendall_tau_b(p, m).unwrap(),
        stats::spearman_rho(p, m).unwrap(),
        stats::pearson_r(p, m).unwrap(),
        stats::rmse(p, m).unwrap(),
        stats::rmspe(p, m).unwrap(),
        stats::rmse_over_mean(p, m).unwrap(),
        stats::mae(p, m).unwrap(),
        stats::share_within(p, m, 0.05).unwrap(),
        stats::share_within(p, m, 0.10).unwrap(),
        stats::share_within(p, m, 0.15).unwrap(),
    ];
    let names = [
        "tau_b",
        "rho",
        "r",
        "rmse",
        "rmspe",
        "rmse/mean",
        "mae",
        "w5",
        "w10",
        "w15",
    ];
    for i in 0..10 {
        close(got[i], e[i], names[i], case);
    }
    let r = Report::compute(p, m).unwrap();
    let from_report = [
        r.kendall_tau_b.unwrap(),
        r.spearman_rho.unwrap(),
        r.pearson_r.unwrap(),
        r.rmse,
        r.rmspe_pct,
        r.rmse_over_mean,
        r.mae,
        r.within_5pct,
        r.within_10pct,
        r.within_15pct,
    ];
    assert_eq!(
        from_report, got,
        "{case}: Report disagrees with the functions"
    );
    assert_eq!(r.n, p.len());
}

#[test]
fn stats_match_scipy_without_ties() {
    check("NO_TIES", &NO_TIES.0, &NO_TIES.1, &NO_TIES_EXPECTED);
}

#[test]
fn stats_match_scipy_with_ties() {
    check("TIES", &TIES.0, &TIES.1, &TIES_EXPECTED);
}

#[test]
fn stats_match_scipy_negative_correlation() {
    check("NEGATIVE", &NEGATIVE.0, &NEGATIVE.1, &NEGATIVE_EXPECTED);
}

#[test]
fn stats_match_scipy_two_points() {
    check("N2", &N2.0, &N2.1, &N2_EXPECTED);
}

#[test]
fn kendall_is_symmetric_and_scale_free() {
    let (x, y) = TIES;
    let t = stats::kendall_tau_b(&x, &y).unwrap();
    assert_eq!(stats::kendall_tau_b(&y, &x).unwrap(), t);
    let x3: Vec<f64> = x.iter().map(|v| 3.0 * v + 1.0).collect();
    assert_eq!(stats::kendall_tau_b(&x3, &y).unwrap(), t);
}

#[test]
fn report_round_trips_through_json() {
    let r = Report::compute(&NO_TIES.0, &NO_TIES.1).unwrap();
    let back: Report = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    // serde_json without `float_roundtrip` may parse the last digit 1 ulp off.
    close(
        back.spearman_rho.unwrap(),
        r.spearman_rho.unwrap(),
        "rho",
        "json",
    );
    close(back.mae, r.mae, "mae", "json");
    assert_eq!((back.n, back.within_15pct), (r.n, r.within_15pct));
}
