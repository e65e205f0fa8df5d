//! `shiftnas train` as a process: Ctrl-C finishes the step, writes the checkpoint and exits 130;
//! bad flags fail before the run dir exists.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shiftnas_tests::bin;

#[test]
fn ctrl_c_checkpoints_and_exits_130_then_resume_continues() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let child = Command::new(bin("shiftnas"))
        .args([
            "train",
            "--steps",
            "100000",
            "--log-every",
            "1",
            "--no-progress",
            "--out",
        ])
        .arg(&run)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = run.join("log.jsonl");
    let t0 = Instant::now();
    while std::fs::read_to_string(&log).map_or(true, |s| s.lines().count() < 2) {
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "training never logged"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("--resume"), "{stderr}");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("checkpoint/state.json")).unwrap())
            .unwrap();
    let step = state["step"].as_u64().unwrap();
    let logged = std::fs::read_to_string(&log).unwrap();
    let last: serde_json::Value = serde_json::from_str(logged.lines().last().unwrap()).unwrap();
    assert_eq!(
        last["step"].as_u64(),
        Some(step),
        "checkpoint = last logged step"
    );
    assert_eq!(last["checkpoint"], true);
    assert!((2..100000).contains(&step), "{step}");
}

/// A bad flag value is refused before anything is written, naming the flag, so the same command
/// with the value fixed runs into the same `--out`.
#[test]
fn bad_flags_fail_before_the_run_dir_exists() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    for (flag, value) in [
        ("--batch", "0"),
        ("--lr", "nan"),
        ("--lr", "-1"),
        ("--log-every", "0"),
    ] {
        let out = Command::new(bin("shiftnas"))
            .args([
                "train",
                "--steps",
                "1",
                "--no-progress",
                flag,
                value,
                "--out",
            ])
            .arg(&run)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(stderr.contains(flag), "{flag} {value}: {stderr}");
        assert!(!run.exists(), "{flag} {value} created {}", run.display());
    }
    let out = Command::new(bin("shiftnas"))
        .args([
            "train",
            "--steps",
            "1",
            "--batch",
            "8",
            "--no-progress",
            "--out",
        ])
        .arg(&run)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(run.join("checkpoint/supernet.safetensors").is_file());
}
