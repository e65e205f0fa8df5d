//! `shiftnas search` and `shiftnas quickstart` as processes: Ctrl-C stops after the candidate in
//! flight with the last generation checkpointed, exits 130 naming the resume command, and that
//! command finishes the run (the search: with the archive of an uninterrupted run).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use candle_core::Device;
use shiftnas_models::Supernet;
use shiftnas_tests::bin;

/// Waits until `file` has at least `lines` lines (the child's progress), or fails after 5 min.
fn wait_for_lines(child: &mut Child, file: &Path, lines: usize) {
    let t0 = Instant::now();
    while std::fs::read_to_string(file).map_or(true, |s| s.lines().count() < lines) {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "exited ({status}) before {} had {lines} lines",
                file.display()
            );
        }
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "{} never got {lines} lines",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends SIGINT to `child` and collects it.
fn ctrl_c(child: Child) -> Output {
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    child.wait_with_output().unwrap()
}

fn spawn(args: &[String]) -> Child {
    Command::new(bin("shiftnas"))
        .args(args)
        .args(["--json", "--no-progress"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn run(args: &[String]) -> Output {
    spawn(args).wait_with_output().unwrap()
}

/// The last `--json` line of `out` (stdout), parsed.
fn last_json(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().expect("no JSON line")).unwrap()
}

fn read(p: PathBuf) -> String {
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn search_ctrl_c_exits_130_and_resume_ends_with_the_uninterrupted_archive() {
    let dir = tempfile::tempdir().unwrap();
    let space = shiftnas::train::space_for("tiny", 10).unwrap();
    let ckpt = dir.path().join("supernet.safetensors");
    Supernet::new(&space, &Device::Cpu, 1)
        .unwrap()
        .save(&ckpt, 7)
        .unwrap();
    let (pop, gens) = (4, 3);
    // Two archs followed through the search (--track): the same scores after the resume.
    let tracked = dir.path().join("tracked.txt");
    std::fs::write(
        &tracked,
        format!("{}\n{}\n", "0".repeat(20), "3".repeat(20)),
    )
    .unwrap();
    let search = |out: &Path| -> Vec<String> {
        let mut v: Vec<String> = ["search", "--space", "tiny", "--data"]
            .map(String::from)
            .to_vec();
        v.push("builtin:fashion-mnist".into());
        for (flag, value) in [
            ("--latency", "flops".to_string()),
            ("--pop", pop.to_string()),
            ("--gens", gens.to_string()),
            ("--proxy-size", "200".into()),
            ("--shift-samples", "64".into()),
            ("--shift-batch", "32".into()),
            ("--bn-images", "64".into()),
            ("--seed", "1".into()),
            ("--track", tracked.display().to_string()),
        ] {
            v.extend([flag.to_string(), value]);
        }
        v.extend(["--supernet".into(), ckpt.display().to_string()]);
        v.extend(["--out".into(), out.display().to_string()]);
        v
    };

    let reference = dir.path().join("reference");
    let out = run(&search(&reference));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let run_dir = dir.path().join("run");
    let mut child = spawn(&search(&run_dir));
    // Generation 1 is logged (and checkpointed): Ctrl-C lands in generation 2 or 3.
    wait_for_lines(&mut child, &run_dir.join("log.jsonl"), 1);
    let out = ctrl_c(child);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let resume = format!("shiftnas search --resume {}", run_dir.display());
    assert!(
        stderr.contains(&format!("continue with `{resume}`")),
        "{stderr}"
    );
    let line = last_json(&out);
    assert_eq!(line["type"], "interrupted", "{line}");
    assert_eq!(line["resume"], resume.as_str());
    let generation = line["generation"].as_u64().unwrap();
    assert!((1..gens as u64).contains(&generation), "{line}");
    // The checkpoint and the archive hold exactly the finished generations.
    let state: serde_json::Value =
        serde_json::from_str(&read(run_dir.join("checkpoint/state.json"))).unwrap();
    assert_eq!(state["generation"].as_u64(), Some(generation));
    let archive = read(run_dir.join("archive.jsonl"));
    assert_eq!(archive.lines().count() as u64, generation * pop as u64);
    assert!(!run_dir.join("pareto.csv").exists());

    let args: Vec<String> = resume.split(' ').skip(1).map(String::from).collect();
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(last_json(&out)["type"], "done");
    let track: Vec<String> = (0..=gens)
        .map(|g| format!("track/gen-{g:03}.csv"))
        .collect();
    for f in ["archive.jsonl", "pareto.csv", "hypervolume.csv"]
        .into_iter()
        .chain(track.iter().map(String::as_str))
    {
        assert_eq!(read(run_dir.join(f)), read(reference.join(f)), "{f}");
    }
    assert_eq!(read(reference.join("track/gen-003.csv")).lines().count(), 3);
}

#[test]
fn quickstart_ctrl_c_in_training_and_in_search_resumes_with_the_same_command() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("q");
    let mut args: Vec<String> = ["quickstart", "--latency", "flops", "--steps", "20"]
        .map(String::from)
        .to_vec();
    args.extend(["--pop", "4", "--gens", "2", "--out"].map(String::from));
    args.push(q.display().to_string());
    // The flags a stage not started yet needs, in the order the hint writes them.
    let resume = format!(
        "shiftnas quickstart --out {} --steps 20 --pop 4 --gens 2 --latency flops",
        q.display()
    );
    let interrupted = |out: &Output, stage_dir: &str| {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(130), "{stderr}");
        assert!(
            stderr.contains(&format!("continue with `{resume}`")),
            "{stderr}"
        );
        let line = last_json(out);
        assert_eq!(line["type"], "interrupted", "{line}");
        assert_eq!(line["resume"], resume.as_str());
        assert_eq!(line["run_dir"], q.join(stage_dir).display().to_string());
    };
    let again: Vec<String> = resume.split(' ').skip(1).map(String::from).collect();

    // Training: the first log line is step 10 of 20.
    let mut child = spawn(&args);
    wait_for_lines(&mut child, &q.join("train/log.jsonl"), 1);
    let out = ctrl_c(child);
    interrupted(&out, "train");
    assert!(!q.join("search").exists());

    // The same command again: training resumes; Ctrl-C after the search's generation 1.
    let mut child = spawn(&again);
    wait_for_lines(&mut child, &q.join("search/log.jsonl"), 1);
    let out = ctrl_c(child);
    interrupted(&out, "search");
    let train_log = read(q.join("train/log.jsonl"));
    let last: serde_json::Value = serde_json::from_str(train_log.lines().last().unwrap()).unwrap();
    assert_eq!(last["step"], 20, "training finished before the search");

    let out = run(&again);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done = last_json(&out);
    assert_eq!(done["type"], "quickstart", "{done}");
    assert_eq!(read(q.join("search/archive.jsonl")).lines().count(), 2 * 4);
    assert!(q.join("models/fastest.onnx").is_file());
}
