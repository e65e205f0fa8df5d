//! The agent's RKNN runtime (`--runtime rknn`) without an NPU:
//!
//! - against the **stand-in** `librknnrt.so` built from `tests/fixtures/rknn_standin/` (x86-64 with
//!   gcc, and aarch64 with the cross gcc under qemu): it implements `rknn_api.h`'s calls with the
//!   header's struct layouts, busy-waits a known time per `rknn_run`, reports that time as
//!   `RKNN_QUERY_PERF_RUN`, and logs and checks what the agent passes. It proves the agent's side of
//!   the ABI and the timing/statistics loop, not the NPU or Rockchip's runtime;
//! - against rknn-toolkit2's real x86 `librknn_api.so` (same C API, a proxy to a board over adb):
//!   with no board it refuses a real `.rknn` with `RKNN_ERR_DEVICE_UNAVAILABLE`, which the agent
//!   must name.
//!
//! Without gcc, the cross gcc/qemu or the toolkit venv the tests skip, except under `CI=true`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use shiftnas_protocol::{BackendName, BenchReport, TensorF32, npy};

use crate::agent::{AARCH64_FIX, aarch64, qemu_agent, run_ok, x86_agent};

/// NPU time the stand-in busy-waits and reports per run, in µs.
const RUN_US: u64 = 3000;

/// Builds the stand-in with `cc` once per test process into a kept temp dir.
fn standin(cc: &str, apt: &str) -> Option<PathBuf> {
    static BUILT: OnceLock<tempfile::TempDir> = OnceLock::new();
    let cc_path = shiftnas_tests::require_tool(cc, apt)?;
    let dir = BUILT.get_or_init(|| tempfile::tempdir().expect("a temp dir"));
    let out = dir.path().join(format!("librknnrt-standin-{cc}.so"));
    if !out.is_file() {
        let src = shiftnas_tests::repo_root().join("tests/fixtures/rknn_standin/rknn_standin.c");
        run_ok(
            Command::new(cc_path)
                .args(["-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o"])
                .arg(&out)
                .arg(&src),
        );
    }
    Some(out)
}

fn x86_standin() -> Option<PathBuf> {
    standin("gcc", "gcc")
}

/// The stand-in's call log, `RKNN_STANDIN_LOG`, read back.
fn log_lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"))
}

/// A bench report of the stand-in: NPU time exactly its busy-wait, wall times at least that,
/// NCHW input shape, and a clean call log.
fn check_standin_report(r: &BenchReport, log: &[String], runs: usize, cores: &str, mask: u32) {
    let want_ms = RUN_US as f64 / 1000.0;
    let npu = r.npu_ms.as_ref().expect("the stand-in reports PERF_RUN");
    for v in [npu.p50_ms, npu.min_ms, npu.max_ms, npu.mean_ms] {
        assert_eq!(v, want_ms, "npu_ms {npu:?}");
    }
    assert_eq!(npu.std_ms, 0.0);
    assert!(r.samples_ms.len() >= runs);
    assert!(
        r.samples_ms.iter().all(|&w| w >= want_ms),
        "a wall time below the stand-in's {want_ms} ms busy-wait: {:?}",
        r.samples_ms
    );
    assert_eq!(r.backend.name, BackendName::Rknn);
    assert_eq!(
        r.backend.version,
        format!("0.0.0 (stand-in), driver 0.0.0-stand-in, npu cores {cores}")
    );
    // The stand-in reports NHWC [1, 32, 32, 3]; the agent speaks NCHW.
    assert_eq!(
        (r.input_name.as_str(), &r.input_shape[..]),
        ("input", &[1, 3, 32, 32][..])
    );
    let bad: Vec<&String> = log.iter().filter(|l| l.starts_with("bad:")).collect();
    assert!(bad.is_empty(), "the stand-in refused: {bad:?}");
    let count = |p: &str| log.iter().filter(|l| l.starts_with(p)).count();
    assert_eq!(count("init size="), 1);
    assert!(
        log.contains(&"init size=4096 flag=0 extend=null".to_string()),
        "{log:?}"
    );
    assert_eq!(count("set_core_mask"), 1);
    assert!(log.contains(&format!("set_core_mask {mask}")), "{log:?}");
    // One float32 NCHW input of 1·3·32·32·4 bytes per run, warm-up included.
    assert_eq!(
        count("inputs_set n=1 index=0 size=12288 pass_through=0 type=0 fmt=0"),
        r.samples_ms.len() + r.warmup
    );
    assert_eq!(count("query cmd=4 size=8"), r.samples_ms.len() + r.warmup);
    assert_eq!(count("destroy"), 1, "the context is destroyed once");
}

fn bench_args<'a>(model: &'a str, cores: &'a str) -> Vec<&'a str> {
    vec![
        "--runtime",
        "rknn",
        "--npu-core-mask",
        cores,
        "bench",
        model,
        "--runs",
        "12",
        "--warmup",
        "2",
        "--min-seconds",
        "0",
        "--json",
    ]
}

#[test]
fn standin_bench_reports_npu_time_core_mask_and_nchw_input() {
    let Some(lib) = x86_standin() else { return };
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.rknn");
    std::fs::write(&model, vec![7u8; 4096]).unwrap();
    let log = dir.path().join("calls.log");
    let out = run_ok(
        Command::new(x86_agent())
            .arg("--rknn-lib")
            .arg(&lib)
            .args(bench_args(model.to_str().unwrap(), "0-2"))
            .env("RKNN_STANDIN_RUN_US", RUN_US.to_string())
            .env("RKNN_STANDIN_LOG", &log),
    );
    let r: BenchReport = serde_json::from_str(out.trim()).unwrap();
    check_standin_report(&r, &log_lines(&log), 12, "0-2", 7);
}

#[test]
fn standin_run_returns_what_it_computed_from_our_input() {
    let Some(lib) = x86_standin() else { return };
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.rknn");
    std::fs::write(&model, b"any bytes").unwrap();
    let x = TensorF32 {
        shape: vec![1, 3, 32, 32],
        data: (0..3072).map(|i| i as f32 * 0.5 - 7.0).collect(),
    };
    let (input, out) = (dir.path().join("x.npy"), dir.path().join("y.npy"));
    std::fs::write(&input, npy::encode(&x).unwrap()).unwrap();
    run_ok(
        Command::new(x86_agent())
            .args(["--runtime", "rknn", "--rknn-lib"])
            .arg(&lib)
            .arg("run")
            .arg(&model)
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(&out),
    );
    // The stand-in's output is the first 10 input values in the order it received them: NCHW.
    let y = npy::decode(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(y.shape, vec![1, 10]);
    assert_eq!(y.data, x.data[..10].to_vec());
}

#[test]
fn refused_model_names_the_code_and_both_versions() {
    let Some(lib) = x86_standin() else { return };
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("old.rknn");
    // The model JSON rknn-toolkit2 writes at the end of a .rknn file.
    let mut bytes = b"RKNN\0\0\0\0".to_vec();
    bytes.extend_from_slice(
        br#"{"ori_network_platform":"ONNX","output_num":1,"target_platform":["rk3568"],"version":"1.6.0","virtual_tensor":[]}"#,
    );
    std::fs::write(&model, bytes).unwrap();
    let out = output(
        Command::new(x86_agent())
            .args(["--runtime", "rknn", "--rknn-lib"])
            .arg(&lib)
            .arg("bench")
            .arg(&model)
            .env("RKNN_STANDIN_INIT_RC", "-13"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for want in [
        "rknn_init returned -13 (RKNN_ERR_TARGET_PLATFORM_UNMATCH)",
        "librknnrt 0.0.0 (stand-in)",
        "built by rknn-toolkit2 1.6.0 for rk3568",
        "convert it with the rknn-toolkit2 version matching",
        "old.rknn",
    ] {
        assert!(err.contains(want), "missing {want:?} in: {err}");
    }
}

#[test]
fn missing_runtime_library_lists_the_paths_tried() {
    let out = output(
        Command::new(x86_agent())
            .args(["--runtime", "rknn", "bench", "/nonexistent/m.rknn"])
            .env("LIBRKNNRT_PATH", "/nonexistent/env/librknnrt.so"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    // The model is read first: a missing model is the first thing to fix.
    assert!(err.contains("/nonexistent/m.rknn"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.rknn");
    std::fs::write(&model, b"x").unwrap();
    let out = output(
        Command::new(x86_agent())
            .args(["--runtime", "rknn", "bench"])
            .arg(&model)
            .env("LIBRKNNRT_PATH", "/nonexistent/env/librknnrt.so"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for want in [
        "/nonexistent/env/librknnrt.so (not found)",
        "/usr/lib/librknnrt.so",
        "--rknn-lib",
    ] {
        assert!(err.contains(want), "missing {want:?} in: {err}");
    }
}

/// rknn-toolkit2's x86 `librknn_api.so` and a real `.rknn` converted by the host's conversion
/// path, or why not (a skip outside CI).
fn real_x86_api() -> Option<(PathBuf, tempfile::TempDir, PathBuf)> {
    let toolkit = match shiftnas::npu::Toolkit::from_env() {
        Ok(t) => t,
        Err(e) => {
            shiftnas_tests::missing(
                &format!("no rknn-toolkit2: {e:#}"),
                "run `source scripts/rknn-env`",
            );
            return None;
        }
    };
    let dir = run_ok(Command::new(&toolkit.python).args([
        "-c",
        "import os, rknn.api; print(os.path.dirname(rknn.api.__file__))",
    ]));
    let lib = PathBuf::from(dir.trim()).join("lib/linux-x86_64/librknn_api.so");
    assert!(
        lib.is_file(),
        "rknn-toolkit2 {} has no {}",
        toolkit.version,
        lib.display()
    );
    let cache = tempfile::tempdir().unwrap();
    let converter = shiftnas::npu::Converter {
        toolkit,
        cache_dir: cache.path().to_path_buf(),
    };
    let onnx = std::fs::read(crate::agent::fixture("conv_s.onnx")).unwrap();
    let conv = converter
        .convert(
            "conv_s",
            &onnx,
            &shiftnas::npu::ConvertConfig::rk3588(shiftnas::npu::Dtype::Fp16),
        )
        .expect("converting tests/fixtures/agent/conv_s.onnx to .rknn");
    Some((lib, cache, conv.rknn))
}

#[test]
fn real_x86_librknn_api_says_no_npu_is_reachable() {
    let Some((lib, _cache, model)) = real_x86_api() else {
        return;
    };
    let out = output(
        Command::new(x86_agent())
            .args(["--runtime", "rknn", "--rknn-lib"])
            .arg(&lib)
            .arg("bench")
            .arg(&model),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for want in [
        "rknn_init returned -3 (RKNN_ERR_DEVICE_UNAVAILABLE)",
        "no NPU device is reachable",
        "librknn_api.so",
    ] {
        assert!(err.contains(want), "missing {want:?} in: {err}");
    }
}

#[test]
fn aarch64_agent_under_qemu_with_the_aarch64_standin() {
    shiftnas_tests::skip_unless!(aarch64().err(), AARCH64_FIX);
    let a = aarch64().expect("checked above");
    let Some(lib) = standin("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.rknn");
    std::fs::write(&model, vec![7u8; 4096]).unwrap();
    let log = dir.path().join("calls.log");
    let lib_s = lib.to_str().unwrap();
    let mut args = vec!["--rknn-lib", lib_s];
    args.extend(bench_args(model.to_str().unwrap(), "1"));
    let out = run_ok(
        qemu_agent(a, &args)
            .env("RKNN_STANDIN_RUN_US", RUN_US.to_string())
            .env("RKNN_STANDIN_LOG", &log),
    );
    let r: BenchReport = serde_json::from_str(out.trim()).unwrap();
    check_standin_report(&r, &log_lines(&log), 12, "1", 2);
    // Without a library: the clear error, listing the default path.
    let out = output(&mut qemu_agent(
        a,
        &["--runtime", "rknn", "bench", model.to_str().unwrap()],
    ));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("/usr/lib/librknnrt.so (not found)"), "{err}");
}

/// A board with `runtime = "rknn"` end to end, on the stand-in: `shiftnas board measure` exports
/// each arch for the NPU, converts it with the real rknn-toolkit2 (int8, the board's default) and
/// measures the `.rknn` files as one interleaved set through `shiftnas-agent --runtime rknn`. The
/// stand-in's `rknn_run` takes [`RUN_US`] for every model, which each model's NPU time reports
/// exactly (wall times vary with the machine's load, so they are only checked against their
/// intervals). A pool mixing NPU and CPU boards
/// is refused, and so is `board noise` on an NPU board.
#[test]
fn an_npu_board_measures_converted_candidates_as_a_set() {
    let Some(lib) = x86_standin() else { return };
    if let Err(e) = shiftnas::npu::Toolkit::from_env() {
        shiftnas_tests::missing(
            &format!("no rknn-toolkit2: {e:#}"),
            "run `source scripts/rknn-env`",
        );
        return;
    }
    let dir = shiftnas_tests::TestDir::new();
    dir.write(
        "boards.toml",
        format!(
            "[[board]]\nname = \"npu\"\nkind = \"local\"\nruntime = \"rknn\"\nnpu_core_mask = \"0-2\"\n\
             rknn_lib = \"{}\"\n\n[[board]]\nname = \"cpu\"\nkind = \"local\"\n",
            lib.display()
        ),
    );
    let shiftnas = |args: &[&str]| {
        Command::new(shiftnas_tests::bin("shiftnas"))
            .arg("--json")
            .args(args)
            .current_dir(dir.path()) // boards.toml is read from there
            .env("XDG_CACHE_HOME", dir.join("xdg"))
            .env("RKNN_STANDIN_RUN_US", RUN_US.to_string())
            .env("RKNN_STANDIN_LOG", dir.join("standin.log"))
            .output()
            .unwrap()
    };
    let archs = ["00000000000000000000", "01230123012301230123"];
    let mut args = vec!["board", "measure", "npu", "--space", "tiny", "--cache"];
    let cache = dir.join("latency.sqlite").display().to_string();
    args.push(&cache);
    for a in &archs {
        args.extend(["--arch", a]);
    }
    let out = shiftnas(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), archs.len(), "{rows:?}");
    let npu_ms = RUN_US as f64 / 1000.0;
    for (row, arch) in rows.iter().zip(archs) {
        assert_eq!(row["model"], arch);
        assert_eq!(row["report"]["backend"]["name"], "rknn", "{row}");
        // The NPU's own time (PERF_RUN) of every timed run travels with the set's estimate.
        assert_eq!(row["report"]["model"]["npu_ms"]["p50_ms"], npu_ms, "{row}");
        // Wall times vary with the machine's load; the NPU time the stand-in reports does not.
        let ms = row["p50_ms"].as_f64().unwrap();
        let iv = &row["interval"];
        assert!(
            iv["low"].as_f64().unwrap() <= ms && ms <= iv["high"].as_f64().unwrap(),
            "{row}"
        );
    }
    // The agent loaded .rknn files with the board's core mask (0-2 = 7), not ONNX.
    let log = log_lines(&dir.join("standin.log"));
    assert!(log.iter().any(|l| l == "set_core_mask 7"), "{log:?}");

    // A search on the NPU board: its candidates are converted (int8 calibrated on the search's
    // own images) and measured like any board's, each latency inside its interval.
    let run = dir.join("supernet").display().to_string();
    let out = shiftnas(&[
        "train",
        "--space",
        "tiny",
        "--data",
        "builtin:fashion-mnist",
        "--steps",
        "12",
        "--batch",
        "16",
        "--out",
        &run,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let search = dir.join("search").display().to_string();
    let out = shiftnas(&[
        "search",
        "--supernet",
        &run,
        "--data",
        "builtin:fashion-mnist",
        "--space",
        "tiny",
        "--latency",
        "board:npu",
        "--pop",
        "4",
        "--gens",
        "1",
        "--shift",
        "off",
        "--bn-images",
        "64",
        "--out",
        &search,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let archive = std::fs::read_to_string(dir.join("search/archive.jsonl")).unwrap();
    for line in archive.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        let ms = r["latency"].as_f64().unwrap();
        let iv = &r["latency_interval"];
        // The board's fingerprint names the NPU runtime and the core mask it measured with.
        let source = r["latency_source"].as_str().unwrap();
        assert!(
            source.contains("rknn") && source.ends_with("npu cores 0-2"),
            "{r}"
        );
        assert!(
            iv["low"].as_f64().unwrap() <= ms && ms <= iv["high"].as_f64().unwrap(),
            "{r}"
        );
    }

    let out = shiftnas(&[
        "board", "measure", "npu,cpu", "--space", "tiny", "--arch", archs[0],
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("must share runtime and dtype"),
        "{err}"
    );
    let out = shiftnas(&["board", "noise", "npu", "--space", "tiny", "--subnets", "4"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("board noise does not measure NPU boards yet"),
        "{err}"
    );
}
