//! `shiftnas-agent serve` under random and adversarial input: every non-empty line gets exactly
//! one protocol response, the agent never exits before `quit`, and its peak memory (VmHWM) stays
//! bounded even for a line far longer than the agent reads.
//!
//! The agent runs without a runtime (`--ort-lib` names a missing file): parsing, bounds and error
//! paths are what is tested; loads answer with the runtime error.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shiftnas_protocol::{MAX_LINE_BYTES, PROTOCOL_VERSION, Response, decode_line};

use super::agent::x86_agent;

/// Random lines per run (each answered within the time limit on a loaded 2-core machine).
const RANDOM_LINES: usize = 400;
/// The whole session must end within this.
const TIME_LIMIT: Duration = Duration::from_secs(120);
/// Peak resident memory allowed: the longest line the agent holds plus 96 MiB for the process.
const MEMORY_LIMIT_BYTES: u64 = MAX_LINE_BYTES as u64 + (96 << 20);

/// Hand-written lines that once crashed, hung or ended a session, or come close to a bound.
fn adversarial() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = [
        r#"{"type":"info"}"#, // before hello
        r#"{"type":"hello","protocol_version":2}"#,
        r#"{"type":"bench","sha256":"00","spec":{"runs":18446744073709551615}}"#,
        r#"{"type":"bench","sha256":"00","spec":{"runs":1000001}}"#,
        r#"{"type":"bench","sha256":"00","spec":{"threads":100000}}"#,
        r#"{"type":"bench","sha256":"00","spec":{"warmup":18446744073709551615}}"#,
        r#"{"type":"bench","sha256":"00","spec":{"min_seconds":1e308}}"#,
        r#"{"type":"bench","sha256":"00","spec":{"min_seconds":-0.5}}"#,
        r#"{"type":"bench","sha256":"00","spec":{"runs":1e999}}"#,
        r#"{"type":"bench","sha256":"00","spec":{"runs":-1}}"#,
        r#"{"type":"bench","sha256":"00","spec":{"runs":"50"}}"#,
        r#"{"type":"bench","sha256":"00","spec":{"cores":[18446744073709551615]}}"#,
        r#"{"type":"bench","sha256":"00","spec":null}"#,
        r#"{"type":"bench-set","sha256s":[],"reference":"00","spec":{}}"#,
        r#"{"type":"bench-set","sha256s":["00"],"reference":"00","spec":{"runs_per_slice":1e999}}"#,
        r#"{"type":"bench-set","sha256s":["00"],"reference":"01","spec":{"max_rounds":18446744073709551615}}"#,
        r#"{"type":"bench-set","sha256s":["00"],"reference":"01","spec":{"budget_seconds":-1}}"#,
        r#"{"type":"run","sha256":"00","input":{"shape":[4294967296,4294967296],"data":[]}}"#,
        r#"{"type":"load","name":"m","sha256":"00","model_b64":"!!!!"}"#,
        r#"{"type":"load","name":"m","sha256":"00","model_b64":"AAAA"}"#,
        r#"{"type":"load","name":["x"],"sha256":1,"model_b64":null}"#,
        r#"{"type":"hello","protocol_version":4294967296}"#,
        r#"{"type":"hello","protocol_version":"1"}"#,
        r#"{"type":"bench","sha256":"#,
        r#"{"type":"#,
        r#"{"#,
        r#"""#,
        "null",
        "[]",
        "42",
        "\u{0}",
        "\u{feff}{\"type\":\"info\"}",
        "",
        "   \t ",
        "\r",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    v.push(b"\xff\xfe\xfd".to_vec());
    v.push(b"{\"type\":\"info\",\"x\":\"\xc3\x28\"}".to_vec());
    v.push("[".repeat(100_000).into_bytes());
    v.push(format!("{{\"type\":\"load\",\"name\":\"{}\"}}", "n".repeat(1 << 20)).into_bytes());
    v
}

/// A random line: raw bytes, a mutated request, or a request cut short.
fn random_line(rng: &mut StdRng) -> Vec<u8> {
    const VALID: [&str; 6] = [
        r#"{"type":"hello","protocol_version":2}"#,
        r#"{"type":"bench-set","sha256s":["ab"],"reference":"cd","spec":{"runs_per_slice":1,"max_rounds":1}}"#,
        r#"{"type":"info"}"#,
        r#"{"type":"bench","sha256":"ab","spec":{"threads":2,"runs":5,"min_seconds":0}}"#,
        r#"{"type":"run","sha256":"ab","input":{"shape":[1,2],"data":[0.5,1.5]}}"#,
        r#"{"type":"load","name":"a","sha256":"ab","model_b64":"AAAA"}"#,
    ];
    let base = VALID[rng.random_range(0..VALID.len())].as_bytes();
    let mut line: Vec<u8> = match rng.random_range(0..4) {
        0 => (0..rng.random_range(0..200))
            .map(|_| rng.random::<u8>())
            .collect(),
        1 => base[..rng.random_range(0..base.len())].to_vec(),
        2 => {
            let mut l = base.to_vec();
            for _ in 0..rng.random_range(1..4) {
                let i = rng.random_range(0..l.len());
                l[i] = rng.random();
            }
            l
        }
        _ => {
            // A number field replaced by a huge or odd literal.
            let odd = [
                "1e999",
                "-1",
                "18446744073709551616",
                "NaN",
                "0.5",
                "true",
                "[]",
            ];
            String::from_utf8_lossy(base)
                .replacen("1", odd[rng.random_range(0..odd.len())], 1)
                .into_bytes()
        }
    };
    line.retain(|&b| b != b'\n');
    line
}

/// Whether the agent answers this line (it ignores lines that are empty after trimming).
fn answered(line: &[u8]) -> bool {
    line.len() > MAX_LINE_BYTES || std::str::from_utf8(line).map_or(true, |s| !s.trim().is_empty())
}

/// Peak resident memory of a process, from `/proc/PID/status`.
fn vm_hwm_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/status: {e}"));
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kb * 1024
}

#[test]
fn serve_answers_every_line_and_stays_bounded() {
    let mut child = Command::new(x86_agent())
        .args(["serve", "--ort-lib", "/nonexistent/libonnxruntime.so"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting shiftnas-agent serve");
    let pid = child.id();
    let mut stdin = child.stdin.take().expect("piped stdin");
    let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));

    // A watchdog kills a stalled agent, so the test fails instead of hanging.
    let done = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let done = done.clone();
        std::thread::spawn(move || {
            let t0 = Instant::now();
            while !done.load(Ordering::Relaxed) {
                if t0.elapsed() > TIME_LIMIT {
                    // SAFETY: plain kill(2) of our own child.
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                    return true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            false
        })
    };

    // Responses are read on their own thread so a full pipe never blocks the writer.
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in stdout.lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let mut rng = StdRng::seed_from_u64(0x5eed);
    let mut lines = adversarial();
    lines.extend((0..RANDOM_LINES).map(|_| random_line(&mut rng)));
    let mut expected = 0usize;
    let check = |n: usize, what: &str| {
        for _ in 0..n {
            let resp = rx.recv_timeout(TIME_LIMIT).unwrap_or_else(|_| {
                panic!("no response after {what}: the agent exited or stalled")
            });
            let r: Response = decode_line(&resp)
                .unwrap_or_else(|e| panic!("after {what}: not a protocol line {resp:?}: {e}"));
            assert!(
                matches!(
                    r,
                    Response::Error { .. } | Response::Hello { .. } | Response::Info(_)
                ),
                "after {what}: unexpected {r:?}"
            );
        }
    };
    for (i, line) in lines.iter().enumerate() {
        stdin.write_all(line).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
        let n = usize::from(answered(line));
        expected += n;
        check(
            n,
            &format!(
                "line {i} ({:?})",
                String::from_utf8_lossy(&line[..line.len().min(80)])
            ),
        );
    }

    // A line far longer than the agent reads, written in 1 MiB pieces and never held whole.
    let long = MAX_LINE_BYTES * 7 / 4;
    let piece = vec![b'a'; 1 << 20];
    let mut left = long;
    stdin
        .write_all(b"{\"type\":\"load\",\"model_b64\":\"")
        .unwrap();
    while left > 0 {
        let n = left.min(piece.len());
        stdin.write_all(&piece[..n]).unwrap();
        left -= n;
    }
    stdin.write_all(b"\n").unwrap();
    stdin.flush().unwrap();
    let resp = rx
        .recv_timeout(TIME_LIMIT)
        .expect("an answer to the long line");
    let msg = match decode_line::<Response>(&resp).unwrap() {
        Response::Error { message } => message,
        other => panic!("long line: {other:?}"),
    };
    assert!(
        msg.contains("is longer than") && msg.contains("skipped"),
        "{msg}"
    );
    expected += 1;

    // Still serving: hello works, then quit ends the session cleanly.
    writeln!(
        stdin,
        "{{\"type\":\"hello\",\"protocol_version\":{PROTOCOL_VERSION}}}"
    )
    .unwrap();
    let hello = decode_line::<Response>(&rx.recv_timeout(TIME_LIMIT).unwrap()).unwrap();
    assert!(matches!(hello, Response::Hello { .. }), "{hello:?}");
    assert!(child.try_wait().unwrap().is_none(), "the agent exited");
    let hwm = vm_hwm_bytes(pid);
    eprintln!(
        "agent_fuzz: {expected} lines answered, peak memory {} MiB",
        hwm >> 20
    );
    writeln!(stdin, "{{\"type\":\"quit\"}}").unwrap();
    let bye = decode_line::<Response>(&rx.recv_timeout(TIME_LIMIT).unwrap()).unwrap();
    assert_eq!(bye, Response::Bye);
    drop(stdin);
    let status = child.wait().unwrap();
    done.store(true, Ordering::Relaxed);
    assert!(
        !watchdog.join().unwrap(),
        "the session took over {TIME_LIMIT:?}"
    );
    reader.join().unwrap();
    assert!(status.success(), "agent exit status {status}");
    assert!(
        hwm < MEMORY_LIMIT_BYTES,
        "agent peak memory {} MiB over {} MiB ({expected} lines answered)",
        hwm >> 20,
        MEMORY_LIMIT_BYTES >> 20
    );
    assert!(rx.try_recv().is_err(), "no response beyond one per line");
}
