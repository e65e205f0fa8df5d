//! `shiftnas train` as a process: Ctrl-C finishes the step, writes the checkpoint and exits 130.

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
