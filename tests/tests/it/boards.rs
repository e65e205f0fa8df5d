//! Boards over SSH against a real, throwaway sshd: host keys, deploy, the pool with the real agent,
//! a board lost mid-run, the cache, and config errors through the CLI.

use std::process::Command;
use std::sync::Arc;

use shiftnas::boards::cached::measure_cached;
use shiftnas::boards::config::BoardsFile;
use shiftnas::boards::deploy::deploy;
use shiftnas::boards::ssh::SshConn;
use shiftnas::boards::{Board, Job, Pool, PoolEvent, PoolOptions, SshBoard};
use shiftnas::cache::Cache;
use shiftnas_tests::{Sshd, TestDir, bin, kill_exe_under, ort_lib, tiny_model};

/// Fast measurements: the pool's behaviour is under test, not the latency.
const QUICK: &str = "warmup = 1\nruns = 3\nmin_seconds = 0.0\ntimeout_s = 30\ncool_down_s = 0";

fn board_cfg(
    sshd: &Sshd,
    name: &str,
    workdir: &std::path::Path,
    extra: &str,
) -> shiftnas::boards::BoardConfig {
    let text = sshd.board_toml(name, workdir, extra);
    BoardsFile::parse(&text, "test boards.toml")
        .unwrap()
        .boards
        .remove(0)
}

fn agent_extra() -> String {
    format!(
        "agent = \"{}\"\nort_lib = \"{}\"\n{QUICK}",
        bin("shiftnas-agent").display(),
        ort_lib().display()
    )
}

#[test]
fn host_key_mismatch_is_refused_with_the_fix() {
    let t = TestDir::new();
    let sshd = Sshd::start(&t.join("sshd")).unwrap();
    // A known_hosts entry for this host and port with some other key.
    let other = Sshd::start(&t.join("other")).unwrap();
    let kh = t.write(
        "kh",
        format!("[127.0.0.1]:{} {}\n", sshd.port, other.host_pub),
    );
    let mut cfg = board_cfg(&sshd, "rk", &t.join("w"), "agent = \"/x\"");
    cfg.known_hosts = Some(kh.clone());
    let e = format!("{:#}", SshConn::connect(&cfg).err().unwrap());
    assert!(e.contains("does NOT match"), "{e}");
    assert!(e.contains(&format!("port {}", sshd.port)), "{e}");
    assert!(
        e.contains(&kh.display().to_string()) && e.contains("ssh-keygen -R"),
        "{e}"
    );
    // Even accept-new refuses a changed key.
    cfg.host_key = shiftnas::boards::config::HostKeyPolicy::AcceptNew;
    assert!(SshConn::connect(&cfg).is_err());
}

#[test]
fn unknown_host_is_refused_unless_accept_new_which_appends_it() {
    let t = TestDir::new();
    let sshd = Sshd::start(&t.join("sshd")).unwrap();
    let mut cfg = board_cfg(&sshd, "rk", &t.join("w"), "agent = \"/x\"");
    cfg.known_hosts = Some(t.join("empty_known_hosts"));
    let e = format!("{:#}", SshConn::connect(&cfg).err().unwrap());
    assert!(e.contains("is not in") && e.contains("accept-new"), "{e}");
    cfg.host_key = shiftnas::boards::config::HostKeyPolicy::AcceptNew;
    let conn = SshConn::connect(&cfg).unwrap();
    assert_eq!(conn.exec_ok("echo hi").unwrap(), "hi\n");
    let kh = std::fs::read_to_string(t.join("empty_known_hosts")).unwrap();
    assert_eq!(
        kh.trim(),
        format!("[127.0.0.1]:{} {}", sshd.port, sshd.host_pub)
    );
    // Now strict checking accepts it (libssh2 parses what we appended).
    cfg.host_key = shiftnas::boards::config::HostKeyPolicy::Strict;
    SshConn::connect(&cfg).unwrap();
}

#[test]
fn deploy_is_skipped_when_hashes_match() {
    let t = TestDir::new();
    let sshd = Sshd::start(&t.join("sshd")).unwrap();
    let agent = t.write("agent.bin", b"#!/bin/sh\necho fake agent\n");
    let lib = t.write("libort.so", vec![7u8; 100_000]);
    let extra = format!(
        "agent = \"{}\"\nort_lib = \"{}\"",
        agent.display(),
        lib.display()
    );
    let cfg = board_cfg(&sshd, "rk", &t.join("board/work dir"), &extra);
    let conn = SshConn::connect(&cfg).unwrap();
    let first = deploy(&conn, &cfg).unwrap();
    assert_eq!(first.uploaded, vec!["shiftnas-agent", "libonnxruntime.so"]);
    assert_eq!(
        std::fs::read(t.join("board/work dir/libonnxruntime.so")).unwrap(),
        vec![7u8; 100_000]
    );
    let second = deploy(&conn, &cfg).unwrap();
    assert!(second.uploaded.is_empty(), "{second:?}");
    assert_eq!(second.up_to_date.len(), 2);
    // A changed agent is uploaded again, alone.
    std::fs::write(&agent, b"#!/bin/sh\necho new agent\n").unwrap();
    let third = deploy(&conn, &cfg).unwrap();
    assert_eq!(third.uploaded, vec!["shiftnas-agent"]);
}

fn jobs(n: u64) -> Vec<Job> {
    (0..n)
        .map(|i| {
            let mut j = Job::new(format!("model{i}"), tiny_model(i));
            j.input_shape = None;
            j
        })
        .collect()
}

#[test]
fn two_ssh_boards_share_20_models_each_measured_once_then_cached() {
    let t = TestDir::new();
    let a = Sshd::start(&t.join("sshd-a")).unwrap();
    let b = Sshd::start(&t.join("sshd-b")).unwrap();
    let boards: Vec<Box<dyn Board>> = vec![
        Box::new(SshBoard::new(board_cfg(
            &a,
            "a",
            &t.join("wa"),
            &agent_extra(),
        ))),
        Box::new(SshBoard::new(board_cfg(
            &b,
            "b",
            &t.join("wb"),
            &agent_extra(),
        ))),
    ];
    let mut pool = Pool::new(boards, PoolOptions::default()).unwrap();
    let js = jobs(20);
    let res = pool.measure(&js);
    let mut per_board = std::collections::HashMap::new();
    for (j, r) in js.iter().zip(&res) {
        let m = r.as_ref().unwrap();
        assert_eq!(m.attempts, 1);
        assert_eq!(
            m.report.model_sha256, j.sha256,
            "the agent measured what was sent"
        );
        *per_board.entry(m.board.clone()).or_insert(0) += 1;
    }
    assert_eq!(per_board.values().sum::<i32>(), 20);
    assert_eq!(per_board.len(), 2, "both boards worked: {per_board:?}");
    assert!(pool.events().is_empty(), "{:?}", pool.events());

    // Through the cache: the first run stores, the second measures nothing.
    let mut cache = Cache::open(&t.join("latency.sqlite")).unwrap();
    let mut js = jobs(4);
    for j in &mut js {
        j.input_shape = Some(
            res[0]
                .as_ref()
                .unwrap()
                .report
                .input_shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("x"),
        );
    }
    let first = measure_cached(&mut pool, &mut cache, &js, false).unwrap();
    assert!(first.iter().all(|l| l.board.is_some()));
    let second = measure_cached(&mut pool, &mut cache, &js, false).unwrap();
    assert!(
        second.iter().all(|l| l.board.is_none()),
        "second run came from the cache"
    );
    for (x, y) in first.iter().zip(&second) {
        assert_eq!(x.p50_ms, y.p50_ms);
    }
    let again = measure_cached(&mut pool, &mut cache, &js[..1], true).unwrap();
    assert!(again[0].board.is_some(), "--remeasure measures again");
    assert_eq!(cache.stats().unwrap().entries, 4);
}

#[test]
fn a_board_killed_mid_run_costs_only_its_in_flight_model() {
    let t = TestDir::new();
    let a = Sshd::start(&t.join("sshd-a")).unwrap();
    let mut b = Sshd::start(&t.join("sshd-b")).unwrap();
    let slow = format!(
        "{}\nruns = 20\nmin_seconds = 0.3",
        agent_extra().replace("runs = 3\nmin_seconds = 0.0\n", "")
    );
    let wb = t.join("wb");
    let boards: Vec<Box<dyn Board>> = vec![
        Box::new(SshBoard::new(board_cfg(&a, "a", &t.join("wa"), &slow))),
        Box::new(SshBoard::new(board_cfg(&b, "b", &wb, &slow))),
    ];
    let opts = PoolOptions {
        reconnect_wait: std::time::Duration::from_millis(100),
        max_reconnects: 2,
        ..PoolOptions::default()
    };
    let mut pool = Pool::new(boards, opts).unwrap();
    let js = Arc::new(jobs(12));
    let killer = {
        let wb = wb.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(1200));
            kill_exe_under(&wb)
        })
    };
    // Stop b's listener too, so it cannot come back.
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(1100));
        b.stop();
        b
    });
    let res = pool.measure(&js);
    let killed = killer.join().unwrap();
    drop(stopper.join().unwrap());
    assert!(killed >= 1, "the agent on b was running");
    for r in &res {
        assert!(r.is_ok(), "{r:?}");
    }
    let ev = pool.events();
    assert!(
        ev.iter()
            .any(|e| matches!(e, PoolEvent::Failed { board, .. } if board == "b")),
        "{ev:?}"
    );
    let failed = ev
        .iter()
        .filter(|e| matches!(e, PoolEvent::Failed { .. }))
        .count();
    assert_eq!(failed, 1, "only b's in-flight model failed once: {ev:?}");
}

#[test]
fn bad_board_config_fields_give_clear_errors() {
    let t = TestDir::new();
    let cases = [
        (
            "password = \"hunter2\"",
            "use a key (identity) or ssh-agent",
        ),
        ("thread = 4", "thread"),
        ("threads = \"four\"", "field `threads`"),
        ("cores = \"7-4\"", "field `cores`"),
    ];
    for (line, want) in cases {
        let f = t.write(
            "boards.toml",
            format!("[[board]]\nname = \"rk1\"\nhost = \"h\"\nuser = \"u\"\nworkdir = \"/tmp/w\"\nagent = \"a\"\n{line}\n"),
        );
        let out = Command::new(bin("shiftnas"))
            .args(["board", "check", "--boards"])
            .arg(&f)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("board \"rk1\"") && err.contains(want),
            "{line}: {err}"
        );
    }
}

/// The writer half of `cache_survives_kill_9`: loops putting rows until killed.
#[test]
#[ignore = "helper: run by cache_survives_kill_9 as a child process"]
fn cache_writer_child() {
    let Some(path) = std::env::var_os("SHIFTNAS_IT_CACHE_WRITER") else {
        return;
    };
    let mut cache = Cache::open(std::path::Path::new(&path)).unwrap();
    for i in 0u64.. {
        let key = shiftnas::cache::CacheKey {
            model_sha256: format!("{i:064x}"),
            board_fingerprint: "fp".into(),
            threads: 1,
            cores: String::new(),
            input_shape: "1x3x8x8".into(),
        };
        cache
            .put(
                &key,
                i as f64,
                "{\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}",
            )
            .unwrap();
    }
}

#[test]
fn cache_survives_kill_9_of_a_writer() {
    let t = TestDir::new();
    let path = t.join("latency.sqlite");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "boards::cache_writer_child",
            "--ignored",
            "--nocapture",
        ])
        .env("SHIFTNAS_IT_CACHE_WRITER", &path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Let it commit some rows, then kill it without warning.
    let t0 = std::time::Instant::now();
    while Cache::open(&path)
        .and_then(|c| c.stats())
        .map_or(true, |s| s.entries < 50)
    {
        assert!(t0.elapsed().as_secs() < 60, "the writer wrote nothing");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let mut cache = Cache::open(&path).unwrap();
    let n = cache.stats().unwrap().entries;
    assert!(n >= 50);
    // Every committed row is whole: row i holds p50 = i.
    for e in cache.entries().unwrap() {
        assert_eq!(
            e.p50_ms,
            u64::from_str_radix(&e.key.model_sha256, 16).unwrap() as f64
        );
    }
    let key = shiftnas::cache::CacheKey {
        model_sha256: "after".into(),
        board_fingerprint: "fp".into(),
        threads: 1,
        cores: String::new(),
        input_shape: "x".into(),
    };
    cache.put(&key, 1.0, "{}").unwrap();
    assert_eq!(cache.stats().unwrap().entries, n + 1);
}
