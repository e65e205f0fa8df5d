//! The board agent end to end: the x86-64 `shiftnas-agent` (bench, serve, run) against ONNX
//! Runtime, and the aarch64 agent under qemu-user with the aarch64 `libonnxruntime.so` from PyPI.
//!
//! Binaries: the tests run `$CARGO build -p shiftnas-agent [--target aarch64-unknown-linux-gnu]`
//! once (a no-op when up to date) in the same target dir and use the result, unless
//! `SHIFTNAS_AGENT_X86` / `SHIFTNAS_AGENT_AARCH64` name prebuilt binaries.
//! Libraries: `ORT_DYLIB_PATH` (x86-64) and `SHIFTNAS_ORT_AARCH64`, `SHIFTNAS_QEMU_AARCH64`
//! (exported by `scripts/setup.d/20-aarch64.sh`). Without them the tests print why and skip, so a
//! bare `cargo test` needs no aarch64 toolchain; under `CI=true` they fail instead
//! ([`shiftnas_tests::missing`]). `scripts/test` provides them all, and points
//! `SHIFTNAS_AGENT_AARCH64` at the release agent of `scripts/build-agent-aarch64` (glibc 2.28).
//!
//! Why the bind mount: ONNX Runtime parses `/proc/cpuinfo` at load and segfaults on the host's x86
//! text under qemu-user, so the aarch64 agent runs in a private mount namespace where
//! `/proc/cpuinfo` is `tests/fixtures/agent/cpuinfo-rk3588` (4× Cortex-A55 + 4× Cortex-A76).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use base64::Engine as _;
use sha2::{Digest, Sha256};
use shiftnas_protocol::{
    BackendName, BenchReport, BenchSpec, PROTOCOL_VERSION, Request, Response, decode_line,
    encode_line,
};

/// `tests/fixtures/agent/<name>`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/agent")
        .join(name)
}

fn target_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(d);
    }
    // The test binary lives in <target>/<profile>/deps/.
    let exe = std::env::current_exe().expect("the test binary has a path");
    exe.ancestors()
        .nth(3)
        .expect("test binary is inside <target>/<profile>/deps")
        .to_path_buf()
}

fn cargo_build_agent(target: Option<&str>) -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-q", "-p", "shiftnas-agent"])
        .env("CARGO_TARGET_DIR", target_dir());
    cmd.current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
    if let Some(t) = target {
        cmd.args(["--target", t]);
    }
    let out = cmd.output().map_err(|e| format!("running cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo build -p shiftnas-agent {target:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let dir = match target {
        Some(t) => target_dir().join(t).join("debug"),
        None => target_dir().join("debug"),
    };
    Ok(dir.join("shiftnas-agent"))
}

/// The x86-64 agent binary (built on first use).
pub fn x86_agent() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| match std::env::var_os("SHIFTNAS_AGENT_X86") {
        Some(p) => PathBuf::from(p),
        None => cargo_build_agent(None).unwrap_or_else(|e| panic!("{e}")),
    })
    .clone()
}

/// Why the x86 agent tests cannot run here, if so.
pub fn x86_skip() -> Option<String> {
    match std::env::var_os("ORT_DYLIB_PATH") {
        Some(p) if Path::new(&p).is_file() => None,
        Some(p) if !p.is_empty() => Some(format!(
            "ORT_DYLIB_PATH={} is not a file",
            p.to_string_lossy()
        )),
        _ => Some("ORT_DYLIB_PATH is empty or unset".into()),
    }
}

/// How to get what [`x86_skip`] misses.
pub const X86_FIX: &str = "run `source scripts/setup-deps`, which installs onnxruntime from \
    scripts/requirements-test.txt into the test venv and exports ORT_DYLIB_PATH";

/// How to get what [`aarch64`] misses.
pub(crate) const AARCH64_FIX: &str = "run `source scripts/setup-deps` (scripts/setup.d/20-aarch64.sh \
    installs qemu-user-static and the aarch64 onnxruntime wheel from PyPI, and exports the \
    SHIFTNAS_*_AARCH64 variables)";

/// Everything the aarch64 tests need: agent binary, qemu, aarch64 ORT; or why it is missing.
#[derive(Debug, Clone)]
pub(crate) struct Aarch64 {
    pub(crate) agent: PathBuf,
    pub(crate) qemu: PathBuf,
    pub(crate) ort: PathBuf,
    pub(crate) sysroot: PathBuf,
}

pub(crate) fn aarch64() -> Result<&'static Aarch64, String> {
    static SETUP: OnceLock<Result<Aarch64, String>> = OnceLock::new();
    SETUP
        .get_or_init(|| {
            let var = |k: &str| {
                std::env::var_os(k)
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            };
            let ort = var("SHIFTNAS_ORT_AARCH64").ok_or(
                "SHIFTNAS_ORT_AARCH64 is empty or unset: no aarch64 libonnxruntime.so (the \
                 aarch64 onnxruntime wheel was not downloaded)",
            )?;
            let qemu = var("SHIFTNAS_QEMU_AARCH64")
                .ok_or("SHIFTNAS_QEMU_AARCH64 is empty or unset: qemu-aarch64-static is missing")?;
            for (k, p) in [
                ("SHIFTNAS_ORT_AARCH64", &ort),
                ("SHIFTNAS_QEMU_AARCH64", &qemu),
            ] {
                if !p.is_file() {
                    return Err(format!("{k}={} is not a file", p.display()));
                }
            }
            let sysroot =
                var("SHIFTNAS_AARCH64_SYSROOT").unwrap_or_else(|| "/usr/aarch64-linux-gnu".into());
            let agent = match var("SHIFTNAS_AGENT_AARCH64") {
                Some(p) => p,
                // The setup script provided qemu and ORT, so a failed cross build is a failure.
                None => cargo_build_agent(Some("aarch64-unknown-linux-gnu"))
                    .unwrap_or_else(|e| panic!("{e}")),
            };
            Ok(Aarch64 {
                agent,
                qemu,
                ort,
                sysroot,
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Runs a command, returning stdout; panics with stderr on failure.
pub(crate) fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} exited {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("agent stdout is UTF-8")
}

/// The aarch64 agent command: qemu in a private mount namespace with the fake ARM cpuinfo.
pub(crate) fn qemu_agent(a: &Aarch64, args: &[&str]) -> Command {
    let mut script = String::from(
        "mount --bind \"$0\" /proc/cpuinfo && exec \"$1\" -L \"$2\" \"$3\" --ort-lib \"$4\"",
    );
    for i in 0..args.len() {
        script.push_str(&format!(" \"${{{}}}\"", i + 5));
    }
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-c", &script]);
    cmd.arg(fixture("cpuinfo-rk3588"))
        .arg(&a.qemu)
        .arg(&a.sysroot)
        .arg(&a.agent)
        .arg(&a.ort)
        .args(args);
    cmd
}

/// Checks the invariants every report must hold.
fn check_report(report: &BenchReport, runs: usize, model: &Path) {
    let r = &report.summary;
    assert!(
        report.samples_ms.len() >= runs,
        "{} samples < {runs} runs",
        report.samples_ms.len()
    );
    assert!(
        r.min_ms > 0.0
            && r.min_ms <= r.p50_ms
            && r.p50_ms <= r.p90_ms
            && r.p90_ms <= r.p99_ms
            && r.p99_ms <= r.max_ms,
        "{r:?}"
    );
    assert!(r.min_ms <= r.mean_ms && r.mean_ms <= r.max_ms);
    let sorted = {
        let mut s = report.samples_ms.clone();
        s.sort_by(f64::total_cmp);
        s
    };
    assert_eq!((sorted[0], *sorted.last().unwrap()), (r.min_ms, r.max_ms));
    assert_eq!(report.backend.name, BackendName::Ort);
    assert!(
        report.backend.version.starts_with("1."),
        "ORT version {:?}",
        report.backend.version
    );
    let sha = hex::encode(Sha256::digest(std::fs::read(model).unwrap()));
    assert_eq!(report.model_sha256, sha);
}

#[test]
fn x86_bench_json_is_sane() {
    shiftnas_tests::skip_unless!(x86_skip(), X86_FIX);
    let model = fixture("conv_m.onnx");
    let out = run_ok(Command::new(x86_agent()).arg("bench").arg(&model).args([
        "--runs",
        "30",
        "--warmup",
        "3",
        "--min-seconds",
        "0.1",
        "--threads",
        "1",
        "--cores",
        "0",
        "--json",
    ]));
    let r: BenchReport =
        serde_json::from_str(out.trim()).expect("bench --json prints one BenchReport");
    check_report(&r, 30, &model);
    assert_eq!(
        (r.threads, r.cores.clone(), r.input_shape.clone()),
        (1, vec![0], vec![1, 3, 32, 32])
    );
}

/// Out-of-bounds flags exit 2 at once with the flag named, before any model or runtime is loaded
/// (they used to abort in `Vec::with_capacity`, hang creating threads, or fill memory).
#[test]
fn x86_bench_refuses_out_of_bounds_flags_at_once() {
    for (flag, value, want) in [
        (
            "--runs",
            "18446744073709551615",
            "runs must be between 1 and 1000000",
        ),
        ("--threads", "100000", "threads must be between 1 and 64"),
        ("--warmup", "100000000", "warmup must be at most 10000"),
        (
            "--min-seconds",
            "1e300",
            "min_seconds must be between 0 and 600",
        ),
        ("--cores", "0-99999999999", "beyond the 1024 CPUs"),
    ] {
        let agent = x86_agent(); // built (or waited for) outside the timed part
        let t0 = std::time::Instant::now();
        let out = Command::new(agent)
            .args([
                "bench",
                "--ort-lib",
                "/nonexistent/libonnxruntime.so",
                flag,
                value,
            ])
            .arg(fixture("conv_s.onnx"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {err}");
        assert!(err.contains(want), "{flag} {value}: {err}");
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(10),
            "{flag} {value} took {:?}",
            t0.elapsed()
        );
    }
}

#[test]
fn x86_bench_refuses_dynamic_shapes_and_missing_libraries() {
    shiftnas_tests::skip_unless!(x86_skip(), X86_FIX);
    let out = Command::new(x86_agent())
        .arg("bench")
        .arg(fixture("dynamic_batch.onnx"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("dynamic shape") && err.contains("fixed input shape"),
        "{err}"
    );
    let out = Command::new(x86_agent())
        .args(["bench", "--ort-lib", "/nonexistent/libonnxruntime.so"])
        .arg(fixture("conv_s.onnx"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/libonnxruntime.so (not found)")
            && err.contains("ORT_DYLIB_PATH"),
        "{err}"
    );
    // info still works without a runtime and says why there is none.
    let info = run_ok(Command::new(x86_agent()).args([
        "info",
        "--json",
        "--ort-lib",
        "/nonexistent/libonnxruntime.so",
    ]));
    let v: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(v["backend"]["name"], "none");
    assert!(
        v["backend_error"]
            .as_str()
            .unwrap()
            .contains("/nonexistent")
    );
}

/// A serve session over pipes: one request per line, one response per line.
struct Session {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Session {
    fn start(mut cmd: Command) -> Session {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Session {
            child,
            stdin,
            stdout,
        }
    }

    fn send_raw(&mut self, line: &str) -> Response {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
        let mut resp = String::new();
        self.stdout.read_line(&mut resp).unwrap();
        decode_line(&resp)
            .unwrap_or_else(|e| panic!("agent printed a non-protocol line {resp:?}: {e}"))
    }

    fn send(&mut self, req: &Request) -> Response {
        self.send_raw(&encode_line(req).unwrap())
    }
}

fn load_request(model: &Path) -> Request {
    let bytes = std::fs::read(model).unwrap();
    Request::Load {
        name: model.file_name().unwrap().to_string_lossy().into_owned(),
        sha256: hex::encode(Sha256::digest(&bytes)),
        model_b64: base64::engine::general_purpose::STANDARD.encode(&bytes),
    }
}

fn error_message(r: Response) -> String {
    match r {
        Response::Error { message } => message,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// hello → load → bench → a bad request → bench again → quit, on any agent command.
fn serve_session(cmd: Command, model: &Path) -> BenchReport {
    let mut s = Session::start(cmd);
    // A mismatched version is refused with both versions named; the loop goes on.
    let msg = error_message(s.send(&Request::Hello {
        protocol_version: PROTOCOL_VERSION + 1,
    }));
    assert!(
        msg.contains(&format!("v{}", PROTOCOL_VERSION + 1))
            && msg.contains(&format!("v{PROTOCOL_VERSION}"))
            && msg.contains("redeploy"),
        "{msg}"
    );
    let hello = s.send(&Request::Hello {
        protocol_version: PROTOCOL_VERSION,
    });
    assert!(
        matches!(
            hello,
            Response::Hello {
                protocol_version: PROTOCOL_VERSION,
                ..
            }
        ),
        "{hello:?}"
    );
    let load = load_request(model);
    let Request::Load { sha256, .. } = &load else {
        unreachable!()
    };
    let sha256 = sha256.clone();
    match s.send(&load) {
        Response::Loaded {
            sha256: got,
            input_shape,
            backend,
            ..
        } => {
            assert_eq!(got, sha256);
            assert_eq!(input_shape.len(), 4);
            assert_eq!(backend.name, BackendName::Ort);
        }
        other => panic!("load failed: {other:?}"),
    }
    assert!(
        error_message(s.send_raw(r#"{"type":"bench","sha256":"#)).contains("malformed request")
    );
    assert!(error_message(s.send_raw(r#"{"type":"reboot"}"#)).contains("malformed request"));
    let spec = BenchSpec {
        runs: 20,
        warmup: 2,
        min_seconds: 0.0,
        ..BenchSpec::default()
    };
    let r = match s.send(&Request::Bench {
        sha256: sha256.clone(),
        spec,
    }) {
        Response::Bench(r) => r,
        other => panic!("bench failed: {other:?}"),
    };
    check_report(&r, 20, model);
    let bad = Request::Bench {
        sha256: "0".repeat(64),
        spec: BenchSpec::default(),
    };
    assert!(error_message(s.send(&bad)).contains("send a load request first"));
    assert!(matches!(s.send(&Request::Info), Response::Info(_)));
    assert_eq!(s.send(&Request::Quit), Response::Bye);
    drop(s.stdin);
    assert!(s.child.wait().unwrap().success());
    r
}

#[test]
fn x86_serve_session() {
    shiftnas_tests::skip_unless!(x86_skip(), X86_FIX);
    let mut cmd = Command::new(x86_agent());
    cmd.arg("serve");
    serve_session(cmd, &fixture("conv_s.onnx"));
}

fn write_input(dir: &Path, shape: &[usize]) -> PathBuf {
    // A float32 .npy written by hand (header per numpy's format spec, padded to 64 bytes).
    let n: usize = shape.iter().product();
    let dims = shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({dims}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for i in 0..n {
        bytes.extend_from_slice(&(((i * 37 % 101) as f32) / 50.0 - 1.0).to_le_bytes());
    }
    let p = dir.join("x.npy");
    std::fs::write(&p, bytes).unwrap();
    p
}

fn read_npy_f32(p: &Path) -> Vec<f32> {
    let b = std::fs::read(p).unwrap();
    let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
    b[10 + hlen..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn aarch64_agent_under_qemu_matches_x86() {
    shiftnas_tests::skip_unless!(x86_skip(), X86_FIX);
    shiftnas_tests::skip_unless!(aarch64().err(), AARCH64_FIX);
    let a = aarch64().expect("checked above");
    let model = fixture("conv_m.onnx");
    // bench: sane JSON, and the agent sees the fake RK3588 cpuinfo.
    let out = run_ok(&mut qemu_agent(
        a,
        &[
            "bench",
            model.to_str().unwrap(),
            "--runs",
            "5",
            "--warmup",
            "1",
            "--min-seconds",
            "0",
            "--json",
        ],
    ));
    let r: BenchReport = serde_json::from_str(out.trim()).unwrap();
    check_report(&r, 5, &model);
    let info = run_ok(&mut qemu_agent(a, &["info", "--json"]));
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["cpu_model"], "4x Cortex-A55 + 4x Cortex-A76");
    assert_eq!(info["arch"], "aarch64");
    // run: the aarch64 ORT output equals the x86 ORT output on the same input within 1e-5.
    let dir = tempfile::tempdir().unwrap();
    let x = write_input(dir.path(), &[1, 3, 32, 32]);
    let (y86, yarm) = (dir.path().join("y86.npy"), dir.path().join("yarm.npy"));
    run_ok(
        Command::new(x86_agent())
            .arg("run")
            .arg(&model)
            .arg("--input")
            .arg(&x)
            .arg("--output")
            .arg(&y86),
    );
    run_ok(&mut qemu_agent(
        a,
        &[
            "run",
            model.to_str().unwrap(),
            "--input",
            x.to_str().unwrap(),
            "--output",
            yarm.to_str().unwrap(),
        ],
    ));
    let (y86, yarm) = (read_npy_f32(&y86), read_npy_f32(&yarm));
    assert_eq!(y86.len(), 10);
    for (i, (p, q)) in y86.iter().zip(&yarm).enumerate() {
        assert!(
            (p - q).abs() <= 1e-5 * p.abs().max(1.0),
            "logit {i}: x86 {p} vs aarch64 {q}"
        );
    }
}

#[test]
fn aarch64_serve_session_under_qemu() {
    shiftnas_tests::skip_unless!(x86_skip(), X86_FIX);
    shiftnas_tests::skip_unless!(aarch64().err(), AARCH64_FIX);
    let a = aarch64().expect("checked above");
    let r = serve_session(qemu_agent(a, &["serve"]), &fixture("conv_s.onnx"));
    assert_eq!(r.input_shape, vec![1, 3, 16, 16]);
}
