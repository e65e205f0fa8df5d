//! `shiftnas calibrate` end to end on the built-in `local` board (the agent on this machine,
//! ONNX Runtime from `ORT_DYLIB_PATH`, 1 thread pinned to one core).

use std::process::Command;

use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shiftnas_models::onnx::parts::PART_OUTPUT_NAME;
use shiftnas_models::onnx::{self, ExportOptions, Part, PartBank};
use shiftnas_models::{Arch, Space};
use shiftnas_tests::{TestDir, bin};

use crate::export_ort::session;

/// A boards file with the local board on 1 thread, pinned, and a short measurement.
fn local_boards(t: &TestDir, runs: usize) -> std::path::PathBuf {
    t.write(
        "boards.toml",
        format!(
            "[[board]]\nname = \"local\"\nkind = \"local\"\nthreads = 1\ncores = \"1\"\nwarmup = 5\nruns = {runs}\nmin_seconds = 0.0\n"
        ),
    )
}

/// Runs `shiftnas --json calibrate` and returns its JSON summary.
fn calibrate(t: &TestDir, space: &str, subnets: usize, runs: usize) -> serde_json::Value {
    calibrate_with(t, space, subnets, runs, &[])
}

/// [`calibrate`] with extra arguments.
fn calibrate_with(
    t: &TestDir,
    space: &str,
    subnets: usize,
    runs: usize,
    extra: &[&str],
) -> serde_json::Value {
    let boards = local_boards(t, runs);
    let out = Command::new(bin("shiftnas"))
        .args([
            "--json",
            "--no-progress",
            "calibrate",
            "--board",
            "local",
            "--space",
            space,
        ])
        .args([
            "--subnets",
            &subnets.to_string(),
            "--holdout",
            "0.25",
            "--seed",
            "1",
        ])
        .arg("--out")
        .arg(t.join("predictor.json"))
        .arg("--cache")
        .arg(t.join("latency.sqlite"))
        .arg("--boards")
        .arg(&boards)
        .arg("--agent")
        .arg(bin("shiftnas-agent"))
        .args(extra)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "calibrate failed: {err}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {err}"))
}

#[test]
fn calibrate_writes_a_predictor_plot_and_csv_the_predictor_source_reads() {
    let t = TestDir::new();
    let s = calibrate(&t, "tiny", 12, 10);
    assert_eq!(
        s["n_train"].as_u64().unwrap() + s["n_holdout"].as_u64().unwrap(),
        12
    );
    assert!(s["holdout"]["rmspe_pct"].as_f64().unwrap().is_finite());
    // Both candidates are scored; the summary's `holdout` is the kept one's.
    let chosen = s["chosen"].as_str().unwrap();
    assert!(["lut", "linear"].contains(&chosen), "{s}");
    assert_eq!(s["holdout"], s[chosen]["holdout"], "{s}");
    for kind in ["lut", "linear"] {
        assert!(
            s[kind]["holdout"]["kendall_tau_b"].is_number()
                || s[kind]["holdout"]["kendall_tau_b"].is_null(),
            "{s}"
        );
        assert!(
            s[kind]["holdout"]["within_10pct"].as_f64().unwrap() >= 0.0,
            "{s}"
        );
    }
    assert_eq!(s["block_table"]["models"], 20 * 4 + 2, "{s}");
    let svg = std::fs::read_to_string(t.join("calibration.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("kept"));
    let csv = std::fs::read_to_string(t.join("calibration.csv")).unwrap();
    assert_eq!(csv.lines().count(), 13, "{csv}");
    assert_eq!(csv.lines().filter(|l| l.contains(",holdout,")).count(), 3);
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    assert_eq!(
        header,
        [
            "arch",
            "measured_ms",
            "predicted_ms",
            "split",
            "flops",
            "params",
            "lut_ms",
            "linear_ms",
            "table_sum_ms"
        ]
    );
    // Every row has both candidates' predictions.
    for line in csv.lines().skip(1) {
        let cols: Vec<&str> = line.split(',').collect();
        for c in &cols[6..] {
            assert!(c.parse::<f64>().unwrap().is_finite(), "{line}");
        }
    }
    // The file is a predictor the `predictor:FILE` source opens for the same space only.
    let space = shiftnas_models::Space::by_name("tiny").unwrap();
    let spec = format!("predictor:{}", t.join("predictor.json").display());
    let mut src = shiftnas::latency::open(
        &spec.parse().unwrap(),
        &space,
        &shiftnas::latency::LatencyOptions::default(),
    )
    .unwrap();
    let arch = shiftnas_models::Arch::uniform(space.num_blocks(), 0);
    let ms = src.latencies(&space, &[arch]).unwrap();
    assert!(ms[0] > 0.0 && ms[0].is_finite());
    let other = shiftnas_models::Space::by_name("spos-cifar").unwrap();
    let err = shiftnas::latency::open(
        &spec.parse().unwrap(),
        &other,
        &shiftnas::latency::LatencyOptions::default(),
    )
    .err()
    .unwrap();
    assert!(
        format!("{err:#}").contains("calibrated for space"),
        "{err:#}"
    );
}

#[test]
fn without_a_block_table_only_the_ridge_is_fitted() {
    let t = TestDir::new();
    let s = calibrate_with(&t, "tiny", 8, 5, &["--no-block-table"]);
    assert_eq!(s["chosen"], "linear", "{s}");
    assert!(s["lut"].is_null() && s["block_table"].is_null(), "{s}");
    assert_eq!(s["holdout"], s["linear"]["holdout"], "{s}");
    let csv = std::fs::read_to_string(t.join("calibration.csv")).unwrap();
    let row: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(
        (row[6], row[8]),
        ("", ""),
        "no table, no lut_ms or table_sum_ms"
    );
    assert!(row[7].parse::<f64>().is_ok(), "{csv}");
}

/// Runs a part's model in ONNX Runtime on `x` of its declared input shape; returns the output
/// and its shape.
fn run_part(model: &[u8], part: Part, shape: &[usize], x: &[f32]) -> (Vec<f32>, Vec<usize>) {
    let mut sess = session(model);
    let input = ort::value::Tensor::from_array((
        shape.iter().map(|&d| d as i64).collect::<Vec<_>>(),
        x.to_vec(),
    ))
    .unwrap();
    let out = sess
        .run(ort::inputs![onnx::INPUT_NAME => input])
        .unwrap_or_else(|e| panic!("{part}: ORT rejected the input shape {shape:?}: {e}"));
    let name = if part == Part::Head {
        onnx::OUTPUT_NAME
    } else {
        PART_OUTPUT_NAME
    };
    let (s, y) = out[name].try_extract_tensor::<f32>().unwrap();
    (y.to_vec(), s.iter().map(|&d| d as usize).collect())
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Every part of spos-cifar (stem, each block with each choice, head) runs in ONNX Runtime with
/// its declared input shape, returns the block's real output shape, and matches candle's
/// forward of the same folded layers.
#[test]
fn block_table_parts_run_in_ort_with_their_real_shapes() {
    let space = Space::spos_cifar();
    let bank = PartBank::random(&space, 5).unwrap();
    let opts = ExportOptions::default();
    let mut rng = StdRng::seed_from_u64(5);
    let mut random = |shape: &[usize]| -> (Vec<f32>, Tensor) {
        let x: Vec<f32> = (0..shape.iter().product::<usize>())
            .map(|_| rng.random_range(-2.0..2.0))
            .collect();
        let t = Tensor::from_vec(x.clone(), shape, &Device::Cpu).unwrap();
        (x, t)
    };
    let flat = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let mut parts = vec![(Part::Stem, 0u8), (Part::Head, 0)];
    for b in space.blocks() {
        parts.extend((0..space.choices.len() as u8).map(|d| (Part::Block(b.index), d)));
    }
    for (part, d) in parts {
        let ((c, s), (co, so)) = part.io(&space).unwrap();
        let shape = [1, c, s, s];
        let (x, xt) = random(&shape);
        let (model, reference) = match part {
            Part::Stem => {
                let sub = bank.subnet_with(0, 0).unwrap();
                (
                    bank.export_part(part, &opts).unwrap(),
                    flat(sub.stem().forward(&xt).unwrap()),
                )
            }
            Part::Block(i) => {
                let sub = bank.subnet_with(i, d).unwrap();
                (
                    bank.export_block(i, d, &opts).unwrap(),
                    flat(sub.blocks()[i].forward(&xt).unwrap()),
                )
            }
            Part::Head => {
                let sub = bank.subnet_with(0, 0).unwrap();
                let h = sub.last().forward(&xt).unwrap().mean((2, 3)).unwrap();
                let logits = h.matmul(&sub.classifier().t().unwrap()).unwrap();
                (bank.export_part(part, &opts).unwrap(), flat(logits))
            }
        };
        let (got, got_shape) = run_part(&model, part, &shape, &x);
        let want_shape = if part == Part::Head {
            vec![1, co]
        } else {
            vec![1, co, so, so]
        };
        assert_eq!(got_shape, want_shape, "{part} choice {d}");
        let scale = reference.iter().fold(1f32, |m, v| m.max(v.abs()));
        let diff = max_abs_diff(&got, &reference);
        assert!(
            diff <= 1e-4 * scale,
            "{part} choice {d}: ORT differs from candle by {diff} (scale {scale})"
        );
    }
}

/// A subnet spliced from the bank runs in ONNX Runtime and its logits equal the chain of the
/// parts' outputs (stem → blocks → head), each part run on its own.
#[test]
fn spliced_subnet_equals_its_parts_chained_in_ort() {
    let space = Space::tiny();
    let bank = PartBank::random(&space, 2).unwrap();
    let opts = ExportOptions::default();
    let arch: Arch = space.parse_arch("32103210321032103210").unwrap();
    let n = space.input_size;
    let shape = [1, space.input_channels, n, n];
    let mut rng = StdRng::seed_from_u64(2);
    let x: Vec<f32> = (0..shape.iter().product::<usize>())
        .map(|_| rng.random_range(-2.0..2.0))
        .collect();
    let (whole, _) = run_part(
        &bank.export_arch(&arch, &opts).unwrap(),
        Part::Head,
        &shape,
        &x,
    );
    let (mut h, mut hs) = run_part(
        &bank.export_part(Part::Stem, &opts).unwrap(),
        Part::Stem,
        &shape,
        &x,
    );
    for (i, &d) in arch.genes().iter().enumerate() {
        let part = Part::Block(i);
        (h, hs) = run_part(&bank.export_block(i, d, &opts).unwrap(), part, &hs, &h);
    }
    let (chained, _) = run_part(
        &bank.export_part(Part::Head, &opts).unwrap(),
        Part::Head,
        &hs,
        &h,
    );
    let diff = max_abs_diff(&whole, &chained);
    assert!(diff < 1e-4, "whole vs chained parts: {diff}");
}

/// Issue 7's bar: ≥ 90 % of held-out spos-cifar subnets within ±10 %, for the kept predictor
/// (block table or ridge, whichever held out better), which must also rank better than FLOPs.
#[test]
#[ignore = "measurement noise on the shared, loaded 2-core dev machine decides it: met once \
            (1000 subnets, load ~8: block table 94.8 %), missed in a 200-subnet rerun (load ~5: \
            72 %; the same subnets re-measured agree at tau-b 0.13 and 79.5 % within 10 %), and a \
            constant predictor gets 86-93 % there (docs/benchmarks.md); takes ~2 min; run with \
            --ignored on a quiet machine"]
fn local_predictor_for_spos_cifar_puts_90_percent_of_holdout_within_10_percent() {
    let t = TestDir::new();
    let s = calibrate(&t, "spos-cifar", 200, 50);
    // `holdout` is the kept predictor's (lower held-out RMSPE).
    let within = s["holdout"]["within_10pct"].as_f64().unwrap();
    assert!(within >= 0.9, "{s}");
    let tau = s["holdout"]["kendall_tau_b"].as_f64().unwrap();
    assert!(tau > s["flops_tau_b"].as_f64().unwrap(), "{s}");
}

/// A `--boards` file that does not exist is an error naming it (not a silent `local` board).
#[test]
fn calibrate_with_a_missing_boards_file_fails_naming_it() {
    let t = TestDir::new();
    let missing = t.join("no/such.toml");
    let out = Command::new(bin("shiftnas"))
        .args(["calibrate", "--board", "local", "--space", "tiny", "--out"])
        .arg(t.join("p.json"))
        .arg("--cache")
        .arg(t.join("l.sqlite"))
        .arg("--boards")
        .arg(&missing)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains(&missing.display().to_string()), "{err}");
    assert!(!t.join("p.json").exists());
}
