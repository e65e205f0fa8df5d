//! Calibration on synthetic data whose generating model is known (see `common/mod.rs`).

mod common;

use common::{Gen, Truth, provenance};
use shiftnas_calibration::Predictor;
use shiftnas_calibration::fit::{self, FitOptions, Proxy};
use shiftnas_calibration::predictor::{FeatureSet, Kind, LinearPredictor};
use shiftnas_calibration::stats::Report;

#[test]
fn additive_latency_is_recovered_by_both_predictors() {
    let mut g = Gen::new(1);
    let truth = Truth::new(&mut g);
    // 2 % measurement noise on whole subnets, 1 % on the block table.
    let samples = truth.samples(&mut g, 250, 0.02, |x| x);
    let table = truth.measured_table(&mut g, 0.01);
    let (file, report) =
        fit::calibrate(&samples, Some(table), &FitOptions::default(), provenance()).unwrap();
    assert_eq!((report.n_train, report.n_holdout), (200, 50));
    let lut = report.lut.as_ref().unwrap();
    // The best any predictor can rank: the noise-free truth against the noisy measurements of
    // the same held-out subnets (the split is public and deterministic).
    let (_, hold) = fit::split(samples.len(), 0.2, 0).unwrap();
    let truth_pred: Vec<f64> = hold
        .iter()
        .map(|&i| truth.additive_ms(&samples[i].0.choices))
        .collect();
    let meas: Vec<f64> = hold.iter().map(|&i| samples[i].1).collect();
    let ceiling = Report::compute(&truth_pred, &meas).unwrap();
    for (name, r) in [("lut", &lut.holdout), ("linear", &report.linear.holdout)] {
        assert!(r.within_10pct >= 0.95, "{name}: {r:?}");
        assert!(
            r.rmspe_pct < ceiling.rmspe_pct * 1.5,
            "{name}: {r:?} vs truth {ceiling:?}"
        );
        let (tau, best) = (r.kendall_tau_b.unwrap(), ceiling.kendall_tau_b.unwrap());
        assert!(tau > best - 0.1, "{name}: tau {tau} vs truth's {best}");
    }
    // The correction has nothing to fix: a ≈ 1, b ≈ 0.
    assert!((lut.a - 1.0).abs() < 0.1 && lut.b.abs() < 1.0, "{lut:?}");
    assert_eq!(file.predictor.kind(), report.chosen);
    assert_eq!(file.holdout, report);
}

#[test]
fn one_hot_ridge_recovers_the_block_table() {
    let mut g = Gen::new(2);
    let truth = Truth::new(&mut g);
    let samples = truth.samples(&mut g, 400, 0.0, |x| x);
    let p = LinearPredictor::fit(&samples, FeatureSet::OneHot, 1e-9).unwrap();
    // Noise-free additive data: predictions exact up to the tiny ridge bias.
    for (f, y) in samples.iter().take(20) {
        assert!(
            (p.predict(f) - y).abs() < 1e-4 * y,
            "{} vs {y}",
            p.predict(f)
        );
    }
    // Differences within a block are identified: coef[i][c] − coef[i][0] = table[i][c] − table[i][0].
    for i in 0..20 {
        for c in 1..4 {
            let got = p.coef[i * 4 + c] - p.coef[i * 4];
            let want = truth.block_ms[i][c] - truth.block_ms[i][0];
            assert!(
                (got - want).abs() < 1e-4,
                "block {i} choice {c}: {got} vs {want}"
            );
        }
    }
}

#[test]
fn nonlinear_latency_shows_the_lut_correction_helping() {
    let mut g = Gen::new(3);
    let truth = Truth::new(&mut g);
    // Whole subnets run faster than their isolated blocks (cache reuse) plus a fixed runtime
    // overhead, with a mild superlinear term: 0.65·x + 3 + 0.004·x².
    let samples = truth.samples(&mut g, 200, 0.02, |x| 0.65 * x + 3.0 + 0.004 * x * x);
    let table = truth.measured_table(&mut g, 0.01);
    let (_, report) =
        fit::calibrate(&samples, Some(table), &FitOptions::default(), provenance()).unwrap();
    let lut = report.lut.unwrap();
    assert!(
        lut.holdout.rmspe_pct * 3.0 < lut.holdout_uncorrected.rmspe_pct,
        "corrected {} % vs bare sum {} %",
        lut.holdout.rmspe_pct,
        lut.holdout_uncorrected.rmspe_pct
    );
    assert!(lut.holdout.within_10pct >= 0.95, "{:?}", lut.holdout);
    assert!(lut.holdout_uncorrected.within_10pct < 0.5);
}

#[test]
fn calibration_is_deterministic_for_a_seed() {
    let mut g = Gen::new(4);
    let truth = Truth::new(&mut g);
    let samples = truth.samples(&mut g, 60, 0.03, |x| x);
    let table = truth.measured_table(&mut g, 0.02);
    let opts = FitOptions {
        seed: 11,
        ..FitOptions::default()
    };
    let run = |o: &FitOptions| {
        fit::calibrate(&samples, Some(table.clone()), o, provenance())
            .unwrap()
            .0
            .to_json()
    };
    assert_eq!(run(&opts), run(&opts));
    let other = FitOptions {
        seed: 12,
        ..opts.clone()
    };
    assert_ne!(run(&opts), run(&other));
}

#[test]
fn without_a_table_the_linear_model_is_chosen() {
    let mut g = Gen::new(5);
    let truth = Truth::new(&mut g);
    let samples = truth.samples(&mut g, 80, 0.02, |x| x);
    let (file, report) =
        fit::calibrate(&samples, None, &FitOptions::default(), provenance()).unwrap();
    assert!(report.lut.is_none());
    assert_eq!(report.chosen, Kind::Linear);
    assert_eq!(file.predictor.kind(), Kind::Linear);
    // Every (feature set, λ) candidate was scored.
    assert_eq!(
        report.linear.cv.len(),
        2 * FitOptions::default().lambdas.len()
    );
}

#[test]
fn proxy_tau_ranks_flops_above_params() {
    let mut g = Gen::new(6);
    let truth = Truth::new(&mut g);
    let samples = truth.samples(&mut g, 120, 0.02, |x| x);
    let flops = fit::proxy_tau(&samples, Proxy::Flops).unwrap();
    let params = fit::proxy_tau(&samples, Proxy::Params).unwrap();
    assert!(
        flops > 0.5 && flops > params,
        "flops {flops}, params {params}"
    );
    let taus = fit::proxy_taus(&samples).unwrap();
    assert_eq!(taus.flops, Some(flops));
}

#[test]
fn calibrate_rejects_bad_samples() {
    let mut g = Gen::new(7);
    let truth = Truth::new(&mut g);
    let mut samples = truth.samples(&mut g, 30, 0.02, |x| x);
    samples[3].1 = 0.0;
    let e = fit::calibrate(&samples, None, &FitOptions::default(), provenance()).unwrap_err();
    assert!(e.to_string().contains("sample 3"), "{e}");
    samples[3].1 = 1.0;
    samples[5].0.block_flops.pop();
    let e = fit::calibrate(&samples, None, &FitOptions::default(), provenance()).unwrap_err();
    assert!(e.to_string().contains("sample 5"), "{e}");
    let e = fit::calibrate(&samples[..4], None, &FitOptions::default(), provenance()).unwrap_err();
    assert!(e.to_string().contains("needs at least"), "{e}");
}

#[test]
fn block_table_fit_recovers_a_known_affine_correction() {
    let mut g = Gen::new(7);
    let truth = Truth::new(&mut g);
    // Whole subnets take 0.8 × the exact table sum + 1.5 ms, with 0.5 % measurement noise.
    let (a, b) = (0.8, 1.5);
    let samples = truth.samples(&mut g, 300, 0.005, |x| a * x + b);
    let table = truth.measured_table(&mut g, 0.0);
    let c =
        fit::calibrate_all(&samples, Some(table), &FitOptions::default(), provenance()).unwrap();
    let lut = c.lut.as_ref().unwrap();
    // The sum spans ~12–17 ms, so 0.5 % noise leaves a to ~±0.02 and b to ~±0.3 ms.
    assert!((lut.a - a).abs() < 0.02, "a = {} (want {a})", lut.a);
    assert!((lut.b - b).abs() < 0.3, "b = {} (want {b})", lut.b);
    let fit = c.report.lut.as_ref().unwrap();
    assert_eq!((fit.a, fit.b), (lut.a, lut.b));
    // Both candidates come back, scored on exactly the reported split.
    assert_eq!((c.train.len(), c.holdout.len()), (240, 60));
    assert_eq!(
        (c.train.clone(), c.holdout.clone()),
        fit::split(300, 0.2, 0).unwrap()
    );
    let hold: Vec<_> = c.holdout.iter().map(|&i| samples[i].clone()).collect();
    let score = |p: &dyn Predictor| {
        let pred: Vec<f64> = hold.iter().map(|(f, _)| p.predict(f)).collect();
        let meas: Vec<f64> = hold.iter().map(|(_, m)| *m).collect();
        Report::compute(&pred, &meas).unwrap()
    };
    assert_eq!(score(lut), fit.holdout);
    assert_eq!(score(&c.linear), c.report.linear.holdout);
    // With an exact table the block table wins and is the file's model.
    assert_eq!(c.report.chosen, Kind::Lut);
    assert_eq!(c.file.predictor.kind(), Kind::Lut);
}
