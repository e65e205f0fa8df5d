//! ONNX export checked against an independent runtime: every preset's subnets (every choice at
//! every stride, ShuffleNetV2 and MobileNetV2) are exported with random weights, run in ONNX Runtime, and compared with the
//! candle reference `Subnet::forward`; the files also pass `onnx.checker` (full check).

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use candle_core::{Device, Tensor};
use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shiftnas_models::onnx::{self, ExportOptions, SplitStyle};
use shiftnas_models::subnet::Subnet;
use shiftnas_models::{Arch, Space};

/// Max |ORT − candle| on logits of magnitude ~1–3 (the bound). Measured well below it for
/// every preset and arch here (docs/export.md): `Subnet::random` draws BN β > 0, which keeps the
/// random nets well conditioned in f32 (its doc comment says why).
const TOLERANCE: f32 = 1e-4;

/// The largest |logit| must be at least this, so that [`TOLERANCE`] is small relative to the
/// logits and not a bound any near-zero output would meet.
const MIN_LOGIT_SCALE: f32 = 0.3;

/// The ONNX Runtime environment, loaded once from `ORT_DYLIB_PATH`.
pub(crate) fn environment() -> &'static Environment {
    static ENV: OnceLock<Result<Environment, String>> = OnceLock::new();
    let r = ENV.get_or_init(|| {
        let path = std::env::var("ORT_DYLIB_PATH").unwrap_or_default();
        if path.is_empty() {
            return Err(
                "ORT_DYLIB_PATH is not set: run ./scripts/test, which sets ORT_DYLIB_PATH".into(),
            );
        }
        ort::init_from(&path)
            .map_err(|e| format!("loading ONNX Runtime from {path}: {e}"))?
            .with_name("shiftnas-tests")
            .build()
            .map_err(|e| format!("creating the ONNX Runtime environment: {e}"))
    });
    match r {
        Ok(env) => env,
        Err(e) => panic!("{e}"),
    }
}

pub(crate) fn session(model: &[u8]) -> Session {
    Session::builder(environment())
        .unwrap()
        .with_optimization_level(GraphOptimizationLevel::All)
        .unwrap()
        .with_intra_threads(1)
        .unwrap()
        .commit_from_memory(model)
        .unwrap()
}

/// Runs `model` in ORT on `x` (`shape`) and returns the logits.
fn run_ort(sess: &mut Session, shape: [usize; 4], x: &[f32]) -> Vec<f32> {
    let input = ort::value::Tensor::from_array((shape.map(|d| d as i64), x.to_vec())).unwrap();
    let out = sess.run(ort::inputs![onnx::INPUT_NAME => input]).unwrap();
    let (_, y) = out[onnx::OUTPUT_NAME].try_extract_tensor::<f32>().unwrap();
    y.to_vec()
}

/// Max |ORT − candle| over the logits of a random batch.
fn max_diff(space: &Space, arch: &str, options: &ExportOptions, batch: usize, seed: u64) -> f32 {
    let arch: Arch = space.parse_arch(arch).unwrap();
    let sub = Subnet::random(space, &arch, seed).unwrap();
    let model = onnx::export(&sub, options).unwrap();
    let n = space.input_size;
    let shape = [batch, space.input_channels, n, n];
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let x: Vec<f32> = (0..shape.iter().product::<usize>())
        .map(|_| rng.random_range(-2.0..2.0))
        .collect();
    let reference = sub
        .forward(&Tensor::from_vec(x.clone(), shape.to_vec(), &Device::Cpu).unwrap())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let got = run_ort(&mut session(&model), shape, &x);
    assert_eq!(got.len(), reference.len(), "{} {arch}", space.name);
    assert!(
        reference.iter().any(|v| v.abs() > 1e-3),
        "degenerate logits for {} {arch}: {reference:?}",
        space.name
    );
    let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(scale < 100.0, "{} {arch}: logits up to {scale}", space.name);
    assert!(
        scale >= MIN_LOGIT_SCALE,
        "{} {arch}: logits only up to {scale}, too small for an absolute tolerance of {TOLERANCE}",
        space.name
    );
    let d = got
        .iter()
        .zip(&reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    // Shown with --nocapture: the margins recorded in docs/export.md.
    eprintln!(
        "{} {arch} batch {batch}: max |ORT - candle| {d:.2e}, max |logit| {scale:.2}",
        space.name
    );
    d
}

/// All-k3, all-k5, all-k7, all-Xception and two mixed archs: every choice at every stride.
const ARCHS: [&str; 6] = [
    "00000000000000000000",
    "11111111111111111111",
    "22222222222222222222",
    "33333333333333333333",
    "01230123012301230123",
    "32103210321032103210",
];

fn check_space(space: &Space, archs: &[&str]) {
    for (i, arch) in archs.iter().enumerate() {
        let d = max_diff(space, arch, &ExportOptions::default(), 1, i as u64);
        assert!(
            d <= TOLERANCE,
            "{} arch {arch}: ORT differs from candle by {d}",
            space.name
        );
    }
}

#[test]
fn ort_matches_candle_tiny_every_choice() {
    check_space(&Space::tiny(), &ARCHS);
}

#[test]
fn ort_matches_candle_spos_cifar_every_choice() {
    check_space(&Space::spos_cifar(), &ARCHS);
}

#[test]
fn ort_matches_candle_spos_imagenet_published_arch() {
    check_space(&Space::spos_imagenet(), &["21012020202300003233"]);
}

/// MobileNetV2 spaces: every MBConv choice (k3/k5/k7 × e3/e6) uniformly, so each runs at stride
/// 2, at stride 1 with the residual `Add` and at stride 1 without it (a stage's channel change),
/// plus two mixed archs.
const MBV2_ARCHS: [&str; 8] = [
    "0000000000000000000",
    "1111111111111111111",
    "2222222222222222222",
    "3333333333333333333",
    "4444444444444444444",
    "5555555555555555555",
    "0123450123450123450",
    "5432105432105432105",
];

#[test]
fn ort_matches_candle_mbv2_tiny_every_choice() {
    let space = Space::mbv2_tiny();
    // The archs cover every (choice, wiring) pair of the space.
    for b in space.blocks() {
        assert!(b.stride == 2 || b.stride == 1, "block {}", b.index);
    }
    let kinds: std::collections::BTreeSet<(usize, bool)> = space
        .blocks()
        .iter()
        .map(|b| (b.stride, b.in_channels == b.out_channels))
        .collect();
    assert_eq!(
        kinds.len(),
        3,
        "stride 2, stride 1 residual, stride 1 widening: {kinds:?}"
    );
    check_space(&space, &MBV2_ARCHS);
}

#[test]
fn ort_matches_candle_mbv2_cifar_every_choice() {
    check_space(&Space::mbv2_cifar(), &MBV2_ARCHS);
}

#[test]
fn ort_matches_candle_mbv2_imagenet_and_depth_multiplied() {
    check_space(&Space::mbv2_imagenet(), &["0123450123450123450"]);
    let deep = Space::mbv2_tiny().with_depth_mult(1.5);
    let arch: String = (0..deep.num_blocks())
        .map(|i| char::from(b'0' + (i % 6) as u8))
        .collect();
    check_space(&deep, &[arch.as_str()]);
}

#[test]
fn ort_matches_candle_with_symbolic_batch_and_both_split_styles() {
    for split in [SplitStyle::StridedSlice, SplitStyle::ReshapeSplit] {
        let options = ExportOptions {
            batch: None,
            split,
            ..Default::default()
        };
        let d = max_diff(&Space::tiny(), "01230123012301230123", &options, 3, 11);
        assert!(d <= TOLERANCE, "{split:?}: ORT differs from candle by {d}");
    }
}

/// ONNX checker on MobileNetV2 exports (the `Clip` and `Add` nodes), fixed and symbolic batch.
#[test]
fn mbv2_exports_pass_the_onnx_checker() {
    let python = std::env::var("SHIFTNAS_PYTHON")
        .expect("SHIFTNAS_PYTHON is not set: run ./scripts/test, which sets it");
    let dir = tempfile::tempdir().unwrap();
    let mut paths: Vec<PathBuf> = Vec::new();
    for (space, arch) in [
        (Space::mbv2_tiny(), "0123450123450123450"),
        (Space::mbv2_cifar(), "5432105432105432105"),
    ] {
        for batch in [Some(1), None] {
            let arch = space.parse_arch(arch).unwrap();
            let sub = Subnet::random(&space, &arch, 0).unwrap();
            let options = ExportOptions {
                batch,
                ..Default::default()
            };
            let path = dir
                .path()
                .join(format!("{}-{arch}-{}.onnx", space.name, batch.is_some()));
            std::fs::write(&path, onnx::export(&sub, &options).unwrap()).unwrap();
            paths.push(path);
        }
    }
    let script = "import sys, onnx\n\
                  for p in sys.argv[1:]:\n    \
                  m = onnx.load(p)\n    \
                  onnx.checker.check_model(m, full_check=True)\n\
                  print('ok', len(sys.argv) - 1)\n";
    let out = Command::new(&python)
        .arg("-c")
        .arg(script)
        .args(&paths)
        .output()
        .unwrap_or_else(|e| panic!("running {python}: {e}"));
    assert!(
        out.status.success(),
        "onnx.checker rejected an export:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok 4");
}

#[test]
fn exported_models_pass_the_onnx_checker() {
    let python = std::env::var("SHIFTNAS_PYTHON")
        .expect("SHIFTNAS_PYTHON is not set: run ./scripts/test, which sets it");
    let dir = tempfile::tempdir().unwrap();
    let mut paths: Vec<PathBuf> = Vec::new();
    for (space, arch) in [
        (Space::tiny(), "01230123012301230123"),
        (Space::spos_cifar(), "32103210321032103210"),
        (Space::spos_imagenet(), "21012020202300003233"),
    ] {
        for (split, batch) in [
            (SplitStyle::StridedSlice, Some(1)),
            (SplitStyle::ReshapeSplit, None),
        ] {
            let arch = space.parse_arch(arch).unwrap();
            let sub = Subnet::random(&space, &arch, 0).unwrap();
            let options = ExportOptions {
                batch,
                split,
                class_names: Some((0..space.classes).map(|c| format!("class {c}")).collect()),
                ..Default::default()
            };
            let path = dir
                .path()
                .join(format!("{}-{arch}-{split:?}.onnx", space.name));
            std::fs::write(&path, onnx::export(&sub, &options).unwrap()).unwrap();
            paths.push(path);
        }
    }
    let script = "import sys, onnx\n\
                  for p in sys.argv[1:]:\n    \
                  m = onnx.load(p)\n    \
                  onnx.checker.check_model(m, full_check=True)\n    \
                  assert m.ir_version == 8 and m.opset_import[0].version == 17, p\n\
                  print('ok', len(sys.argv) - 1)\n";
    let out = Command::new(&python)
        .arg("-c")
        .arg(script)
        .args(&paths)
        .output()
        .unwrap_or_else(|e| panic!("running {python}: {e}"));
    assert!(
        out.status.success(),
        "onnx.checker rejected an export:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok 6");
}
