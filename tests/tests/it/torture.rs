//! `kill -9` torture: `train` and `search` are killed at random instants and at their renames,
//! renameats, fsyncs and writes (strace's fault injector: `-e inject=SYSCALL:signal=KILL:when=N`
//! kills the process when it enters its N-th such call), resumed after every kill, and must end
//! with the weights and archive of an uninterrupted run with the same seed.
//!
//! Each phase starts a fresh run dir and repeats "start or resume, get killed" with N = 1, 2, 3…
//! (a process killed at its N-th call gets further than the one before it) until a process
//! finishes; then the results are compared. A run killed before its `config.toml` exists is
//! started again with the same command (`RunDir::create` takes over what it left), any later one
//! is continued with `--resume`.
//!
//! strace is apt `strace`; without it the strace phases are skipped with a note, except under
//! `CI=true`, where a missing strace fails the test.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use candle_core::Device;
use rand::{Rng, SeedableRng};
use shiftnas_models::Supernet;
use shiftnas_tests::{TestDir, bin};

/// One run kind: its fresh command (ending in `--out DIR`) and how to resume it.
struct Kind {
    name: &'static str,
    /// Arguments of a fresh run, without `--out`.
    args: Vec<String>,
}

impl Kind {
    /// The arguments that start or continue the run in `dir`.
    fn command(&self, dir: &Path) -> Vec<String> {
        let sub = self.args[0].clone();
        if dir.join("config.toml").is_file() {
            vec![sub, "--resume".into(), dir.display().to_string()]
        } else {
            let mut v = self.args.clone();
            v.extend(["--out".into(), dir.display().to_string()]);
            v
        }
    }
}

/// How a process is run: plainly, or under strace killing it at its `when`-th call of `syscalls`.
#[derive(Clone, Copy)]
enum Mode {
    Plain,
    Strace { syscalls: &'static str, when: usize },
}

fn strace_available() -> bool {
    let found = Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "strace is missing; install it (apt-get install -y strace, scripts/setup.d) — CI must \
             run the kill -9 torture test in full"
        );
        eprintln!("strace is missing (apt-get install -y strace): only random-instant kills run");
    }
    found
}

/// Starts `kind` in `dir` (fresh or resumed) in `mode`; stderr goes to `log`.
fn spawn(kind: &Kind, dir: &Path, mode: Mode, log: &Path) -> std::process::Child {
    let args = kind.command(dir);
    let mut cmd = match mode {
        Mode::Plain => Command::new(bin("shiftnas")),
        Mode::Strace { syscalls, when } => {
            let mut c = Command::new("strace");
            c.args(["-f", "-qq", "-o", "/dev/null", "-e"])
                .arg(format!("trace={syscalls}"))
                .arg("-e")
                .arg(format!("inject={syscalls}:signal=KILL:when={when}"))
                .arg(bin("shiftnas"));
            c
        }
    };
    cmd.arg("--no-progress")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// What became of one process.
fn outcome(kind: &Kind, status: ExitStatus, log: &Path, what: &str) -> bool {
    if status.signal() == Some(libc::SIGKILL) {
        return false;
    }
    assert!(
        status.success(),
        "{} ({what}) failed with {status}: {}",
        kind.name,
        std::fs::read_to_string(log).unwrap_or_default()
    );
    true
}

/// Kills `kind` in a fresh `dir` at the `when`-th call of `syscalls` for when = first, first +
/// stride, …, resuming after each kill until a process finishes; returns the kills.
fn strace_phase(
    kind: &Kind,
    dir: &Path,
    syscalls: &'static str,
    first: usize,
    stride: usize,
) -> usize {
    let log = dir.with_extension("stderr");
    let mut kills = 0;
    for when in (first..).step_by(stride) {
        let mode = Mode::Strace { syscalls, when };
        let status = spawn(kind, dir, mode, &log).wait().unwrap();
        if outcome(kind, status, &log, &format!("{syscalls} #{when}")) {
            return kills;
        }
        kills += 1;
        assert!(
            kills < 200,
            "{}: {syscalls} kills never let it finish",
            kind.name
        );
    }
    unreachable!()
}

/// Kills `kind` in a fresh `dir` `count` times after a random delay in `0..max`, resuming after
/// each kill, then lets it finish; returns the kills.
///
/// A run that finishes before its kill is checked with `check` and started over in an empty
/// `dir`, so every kill lands in a live run.
fn random_phase(
    kind: &Kind,
    dir: &Path,
    count: usize,
    max: Duration,
    seed: u64,
    check: &dyn Fn(&Path),
) -> usize {
    let log = dir.with_extension("stderr");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut kills, mut tries) = (0, 0);
    while kills < count {
        tries += 1;
        assert!(
            tries < 10 * count,
            "{}: the random kills kept missing",
            kind.name
        );
        let mut child = spawn(kind, dir, Mode::Plain, &log);
        let delay = max.mul_f64(rng.random_range(0.0..1.0));
        let t0 = Instant::now();
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break Some(st);
            }
            if t0.elapsed() >= delay {
                break None;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        match status {
            Some(st) => {
                if outcome(kind, st, &log, "random kill") {
                    check(dir);
                    std::fs::remove_dir_all(dir).unwrap();
                }
            }
            None => {
                child.kill().unwrap();
                let st = child.wait().unwrap();
                if !outcome(kind, st, &log, &format!("kill after {delay:?}")) {
                    kills += 1;
                }
            }
        }
    }
    let status = spawn(kind, dir, Mode::Plain, &log).wait().unwrap();
    assert!(outcome(kind, status, &log, "final resume"));
    kills
}

/// A safetensors file as (header JSON, tensor bytes): the header's maps compare regardless of
/// their key order (the metadata is written from a hash map), the tensor data byte for byte.
fn safetensors(path: &Path) -> (serde_json::Value, Vec<u8>) {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    let header = serde_json::from_slice(&b[8..8 + n]).unwrap();
    (header, b[8 + n..].to_vec())
}

fn read(p: PathBuf) -> String {
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Requires `dir` to hold what the uninterrupted `reference` holds: equal weights (and, for
/// `files`, equal bytes).
fn assert_same(kind: &Kind, dir: &Path, reference: &Path, weights: &[&str], files: &[&str]) {
    for w in weights {
        let (a, b) = (
            dir.join("checkpoint").join(w),
            reference.join("checkpoint").join(w),
        );
        assert!(
            safetensors(&a) == safetensors(&b),
            "{}: {} differs from the uninterrupted run's",
            kind.name,
            a.display()
        );
    }
    for f in files {
        assert_eq!(
            read(dir.join(f)),
            read(reference.join(f)),
            "{}: {f}",
            kind.name
        );
    }
}

/// Runs every phase on `kind`; `check` compares a finished run dir with the reference.
fn torture(kind: &Kind, t: &TestDir, seed: u64, check: &dyn Fn(&Path)) -> usize {
    let reference = t.join(format!("{}-reference", kind.name));
    let log = reference.with_extension("stderr");
    let t0 = Instant::now();
    let status = spawn(kind, &reference, Mode::Plain, &log).wait().unwrap();
    assert!(outcome(kind, status, &log, "uninterrupted run"));
    let took = t0.elapsed();
    let mut kills = 0;
    let mut phase = |name: &str, run: &dyn Fn(&Path) -> usize| {
        let dir = t.join(format!("{}-{name}", kind.name));
        let k = run(&dir);
        check(&dir);
        eprintln!(
            "{}: {k} kills at {name}, resumed to the reference result",
            kind.name
        );
        kills += k;
    };
    if strace_available() {
        phase("renames", &|d| {
            strace_phase(kind, d, "rename,renameat", 1, 1)
        });
        phase("fsyncs", &|d| strace_phase(kind, d, "fsync", 1, 2));
        phase("writes", &|d| strace_phase(kind, d, "write", 3, 11));
    }
    phase("random", &|d| random_phase(kind, d, 8, took, seed, check));
    kills
}

#[test]
fn train_and_search_killed_anywhere_resume_to_the_uninterrupted_result() {
    let t = TestDir::new();
    let train = Kind {
        name: "train",
        args: "train --space tiny --data builtin:fashion-mnist --steps 12 --batch 16 \
               --checkpoint-every 2 --log-every 1 --proxy-size 200 --seed 1"
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
    };
    let kills = torture(&train, &t, 1, &|dir| {
        let reference = t.join("train-reference");
        assert_same(
            &train,
            dir,
            &reference,
            &["supernet.safetensors", "optimizer.safetensors"],
            &["config.toml"],
        );
        // Every step logged exactly once, in order.
        let steps: Vec<u64> = read(dir.join("log.jsonl"))
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(steps, (1..=12).collect::<Vec<_>>(), "{}", dir.display());
    });
    assert!(kills >= 20, "train was killed only {kills} times");

    // The search shifts a small supernet of its own (random weights are enough to rank archs).
    let space = shiftnas::train::space_for("tiny", 10).unwrap();
    let ckpt = t.join("supernet.safetensors");
    Supernet::new(&space, &Device::Cpu, 1)
        .unwrap()
        .save(&ckpt, 7)
        .unwrap();
    let search = Kind {
        name: "search",
        args: format!(
            "search --space tiny --data builtin:fashion-mnist --latency flops --pop 4 --gens 3 \
             --proxy-size 100 --shift-samples 32 --shift-batch 32 --bn-images 32 --seed 1 \
             --supernet {}",
            ckpt.display()
        )
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect(),
    };
    let kills = torture(&search, &t, 2, &|dir| {
        let reference = t.join("search-reference");
        assert_same(
            &search,
            dir,
            &reference,
            &["supernet.safetensors"],
            &["archive.jsonl", "pareto.csv", "hypervolume.csv"],
        );
    });
    assert!(kills >= 20, "search was killed only {kills} times");
}
