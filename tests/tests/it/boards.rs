//! Boards over SSH against a real, throwaway sshd: host keys, deploy, the pool with the real agent,
//! a board lost mid-run, the glibc check, the cache, and config errors through the CLI.

use std::process::Command;
use std::sync::Arc;

use shiftnas::boards::config::BoardsFile;
use shiftnas::boards::deploy::deploy;
use shiftnas::boards::glibc::{GlibcVersion, elf_max_glibc};
use shiftnas::boards::ssh::SshConn;
use shiftnas::boards::{Board, Job, Pool, PoolEvent, PoolOptions, SshBoard};
use shiftnas::latency::cache::Cache;
use shiftnas::latency::cached::{Protocol, measure_cached};
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
    let first = measure_cached(&mut pool, &mut cache, &js, false, Protocol::Single).unwrap();
    assert!(first.iter().all(|l| l.board.is_some()));
    let second = measure_cached(&mut pool, &mut cache, &js, false, Protocol::Single).unwrap();
    assert!(
        second.iter().all(|l| l.board.is_none()),
        "second run came from the cache"
    );
    for (x, y) in first.iter().zip(&second) {
        assert_eq!(x.p50_ms, y.p50_ms);
    }
    let again = measure_cached(&mut pool, &mut cache, &js[..1], true, Protocol::Single).unwrap();
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
        let key = shiftnas::latency::cache::CacheKey {
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

/// Starts `cache_writer_child` on `path`, its stderr into `stderr`.
fn spawn_writer(path: &std::path::Path, stderr: &std::path::Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "boards::cache_writer_child",
            "--ignored",
            "--nocapture",
        ])
        .env("SHIFTNAS_IT_CACHE_WRITER", path)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(stderr).unwrap())
        .spawn()
        .unwrap()
}

/// Waits until the cache at `path` holds 50 rows. A writer that stops by itself (a failed open
/// or put) or no 50 rows within 60 s fail the test with the writers' messages.
fn wait_for_rows(
    path: &std::path::Path,
    writers: &mut [(std::process::Child, std::path::PathBuf)],
) {
    let t0 = std::time::Instant::now();
    loop {
        let seen = Cache::open(path).and_then(|c| c.stats());
        if seen.as_ref().is_ok_and(|s| s.entries >= 50) {
            return;
        }
        for (child, stderr) in writers.iter_mut() {
            let exited = child.try_wait().unwrap();
            assert!(
                exited.is_none() && t0.elapsed().as_secs() < 60,
                "a writer of {} wrote fewer than 50 rows (exit {exited:?}; read: {:?}): {}",
                path.display(),
                seen.as_ref().map(|s| s.entries),
                std::fs::read_to_string(stderr).unwrap_or_default()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Several processes opening a new cache at once all get it. SQLite can refuse the switch to WAL
/// with `SQLITE_BUSY` without calling the busy handler, which `Cache::open` retries. Without the
/// retry about 1 in 100 such opens failed (2 of 180 writers started 6 at a time), and one run in
/// four of this test (20 rounds of 6 writers); with it, 0 of 360 writers.
#[test]
fn a_new_cache_opened_by_several_processes_at_once() {
    let t = TestDir::new();
    for round in 0..20 {
        let path = t.join(format!("latency-{round}.sqlite"));
        let mut writers: Vec<_> = (0..6)
            .map(|i| {
                let stderr = t.join(format!("writer-{round}-{i}.stderr"));
                (spawn_writer(&path, &stderr), stderr)
            })
            .collect();
        wait_for_rows(&path, &mut writers);
        std::thread::sleep(std::time::Duration::from_millis(50));
        for (child, stderr) in &mut writers {
            let exited = child.try_wait().unwrap();
            child.kill().ok();
            child.wait().unwrap();
            assert!(
                exited.is_none(),
                "round {round}: a writer stopped ({exited:?}): {}",
                std::fs::read_to_string(&*stderr).unwrap_or_default()
            );
        }
    }
}

#[test]
fn cache_survives_kill_9_of_a_writer() {
    let t = TestDir::new();
    let path = t.join("latency.sqlite");
    let stderr = t.join("writer.stderr");
    let mut writers = [(spawn_writer(&path, &stderr), stderr)];
    // Let it commit some rows, then kill it without warning.
    wait_for_rows(&path, &mut writers);
    let child = &mut writers[0].0;
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
    let key = shiftnas::latency::cache::CacheKey {
        model_sha256: "after".into(),
        board_fingerprint: "fp".into(),
        threads: 1,
        cores: String::new(),
        input_shape: "x".into(),
    };
    cache.put(&key, 1.0, "{}").unwrap();
    assert_eq!(cache.stats().unwrap().entries, n + 1);
}

/// A relative `workdir` is relative to the login directory for the upload and for the start
/// alike (it used to be applied twice when starting the agent).
#[test]
fn a_relative_workdir_is_used_once() {
    let t = TestDir::new();
    let sshd = Sshd::start(&t.join("sshd")).unwrap();
    let rel = format!(".cache/shiftnas-it-relative-{}", std::process::id());
    let text = sshd
        .board_toml("rk", std::path::Path::new("PLACEHOLDER"), &agent_extra())
        .replace("PLACEHOLDER", &rel);
    let cfg = BoardsFile::parse(&text, "test boards.toml")
        .unwrap()
        .boards
        .remove(0);
    // The login directory of the sshd's user (root) from its passwd entry, as sshd sees it.
    let conn = SshConn::connect(&cfg).unwrap();
    let home = conn.exec_ok("pwd").unwrap().trim().to_string();
    drop(conn);
    let abs = std::path::Path::new(&home).join(&rel);
    let mut board = SshBoard::new(cfg);
    let info = board.info();
    drop(board);
    let uploaded = abs.join("shiftnas-agent").is_file();
    let doubled = abs.join(&rel).exists();
    std::fs::remove_dir_all(&abs).ok();
    let info = info.unwrap();
    assert!(!info.arch.is_empty());
    assert!(uploaded, "the agent is in {}", abs.display());
    assert!(!doubled, "nothing under {rel}/{rel}");
}

/// A board whose glibc is older than the agent needs is refused with one line naming both
/// versions and the build that fixes it, before anything is uploaded. The board here is the
/// test machine; the agent is the real x86 agent with one of its glibc needs raised to 9.9.9.
#[test]
fn a_board_with_an_old_glibc_is_refused_before_deploying() {
    let t = TestDir::new();
    let sshd = Sshd::start(&t.join("sshd")).unwrap();
    let mut bytes = std::fs::read(bin("shiftnas-agent")).unwrap();
    let from = b"GLIBC_2.2.5\0";
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .expect("an x86-64 glibc binary needs GLIBC_2.2.5");
    bytes[at..at + from.len()].copy_from_slice(b"GLIBC_9.9.9\0");
    let agent = t.write("new-agent", &bytes);
    assert_eq!(
        elf_max_glibc(&bytes).unwrap(),
        Some("9.9.9".parse().unwrap())
    );
    let workdir = t.join("w");
    let boards = t.write(
        "boards.toml",
        sshd.board_toml(
            "rk",
            &workdir,
            &format!("agent = \"{}\"\n{QUICK}", agent.display()),
        ),
    );
    let out = Command::new(bin("shiftnas"))
        .args(["board", "check", "--boards"])
        .arg(&boards)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let line = err
        .lines()
        .find(|l| l.contains("glibc"))
        .unwrap_or_else(|| panic!("no glibc line: {err}"));
    let host = Command::new("ldd").arg("--version").output().unwrap();
    let host = shiftnas::boards::glibc::parse_ldd_version(&String::from_utf8_lossy(&host.stdout))
        .expect("the test machine has glibc");
    assert!(
        line.contains(&format!("glibc is {host}")) && line.contains("GLIBC_9.9.9"),
        "{line}"
    );
    assert!(line.contains("scripts/build-agent-aarch64"), "{line}");
    assert!(
        !workdir.join("shiftnas-agent").exists(),
        "nothing was deployed"
    );
}

/// The ELF reader on the real aarch64 agent agrees with `readelf -V` (binutils). Needs the
/// aarch64 toolchain of scripts/setup.d/20-aarch64.sh (skipped, saying so, without it).
#[test]
fn the_aarch64_agent_glibc_need_matches_readelf() {
    if std::env::var_os("SHIFTNAS_AARCH64_SYSROOT").is_none() {
        eprintln!("skipped: SHIFTNAS_AARCH64_SYSROOT is not set (scripts/setup.d/20-aarch64.sh)");
        return;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = shiftnas_tests::repo_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let st = Command::new(cargo)
        .args(["build", "-q", "-p", "shiftnas-agent", "--target"])
        .arg("aarch64-unknown-linux-gnu")
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(&root)
        .status()
        .unwrap();
    assert!(
        st.success(),
        "cargo build --target aarch64-unknown-linux-gnu failed"
    );
    let agent = target.join("aarch64-unknown-linux-gnu/debug/shiftnas-agent");
    let ours = elf_max_glibc(&std::fs::read(&agent).unwrap()).unwrap();
    let out = Command::new("readelf")
        .arg("-V")
        .arg(&agent)
        .output()
        .unwrap();
    let theirs = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("GLIBC_")?.parse::<GlibcVersion>().ok())
        .max();
    assert!(ours.is_some());
    assert_eq!(ours, theirs);
}

#[test]
fn board_check_with_a_missing_boards_file_fails_naming_it() {
    let t = TestDir::new();
    let missing = t.join("no/such.toml");
    let out = Command::new(bin("shiftnas"))
        .args(["board", "check", "--boards"])
        .arg(&missing)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains(&missing.display().to_string()), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("local"));
}

#[test]
fn cache_commands_on_a_missing_path_create_nothing() {
    let t = TestDir::new();
    let path = t.join("no/such/dir/latency.sqlite");
    for args in [&["stats"][..], &["export", "--csv"], &["prune"]] {
        let out = Command::new(bin("shiftnas"))
            .arg("cache")
            .args(args)
            .arg("--cache")
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(
            err.contains("no latency cache at") && err.contains(&path.display().to_string()),
            "{args:?}: {err}"
        );
        assert!(!t.join("no").exists(), "{args:?} made folders");
    }
}

/// `board measure` with a cache on a read-only mount fails naming the cache before any board is
/// contacted: the agent here is a script that leaves a mark when started.
#[test]
fn board_measure_refuses_a_read_only_cache_before_measuring() {
    let t = TestDir::new();
    let ro = t.join("ro");
    std::fs::create_dir_all(&ro).unwrap();
    let cache = ro.join("latency.sqlite");
    Cache::open(&cache).unwrap();
    let mark = t.join("agent-started");
    let agent = t.write(
        "agent.sh",
        format!("#!/bin/sh\ntouch '{}'\nexit 1\n", mark.display()),
    );
    std::fs::set_permissions(&agent, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let model = t.write("m.onnx", tiny_model(0));
    let inner = format!(
        "mount --bind '{r}' '{r}' && mount -o remount,bind,ro '{r}' && exec '{bin}' board \
         --boards '{b}' --agent '{a}' measure local '{m}' --cache '{c}'",
        r = ro.display(),
        bin = bin("shiftnas").display(),
        b = t.join("none.toml").display(),
        a = agent.display(),
        m = model.display(),
        c = cache.display()
    );
    std::fs::write(t.join("none.toml"), "").unwrap();
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &inner])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains(&cache.display().to_string()), "{err}");
    assert!(!err.contains("mount:"), "the read-only mount failed: {err}");
    assert!(
        !mark.exists(),
        "the agent was started before the cache was checked"
    );
}

/// `board noise` on the built-in `local` board with a few `tiny` subnets and no gap: both passes
/// measure every subnet as interleaved sets with intervals, the figures are shares and
/// correlations; then `board measure` measures two of the subnets as one set.
#[test]
fn board_noise_and_measure_on_the_local_board_use_interleaved_sets() {
    let t = TestDir::new();
    let boards = t.write(
        "boards.toml",
        "[[board]]\nname = \"local\"\nkind = \"local\"\nthreads = 1\nwarmup = 1\nruns = 3\nmin_seconds = 0.0\n",
    );
    let run = |args: &[&str]| {
        Command::new(bin("shiftnas"))
            .args(["--json", "--no-progress", "board", "--boards"])
            .arg(&boards)
            .arg("--agent")
            .arg(bin("shiftnas-agent"))
            .env("ORT_DYLIB_PATH", ort_lib())
            .args(args)
            .output()
            .unwrap()
    };
    let noise = |n: &str| {
        run(&[
            "noise",
            "local",
            "--space",
            "tiny",
            "--gap-minutes",
            "0",
            "--seed",
            "3",
            "--budget-seconds",
            "2",
            "-n",
            n,
        ])
    };
    let out = noise("4");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["type"], "board_noise", "{r}");
    assert_eq!(r["protocol"], "interleaved-set");
    let archs: Vec<&str> = r["archs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(archs.len(), 4, "{r}");
    for pass in ["first", "second"] {
        let e = r[pass]["ratios"].as_array().unwrap();
        assert_eq!(e.len(), 4, "{r}");
        for e in e {
            let (lo, x, hi) = (
                e["low"].as_f64(),
                e["estimate"].as_f64(),
                e["high"].as_f64(),
            );
            assert!(lo <= x && x <= hi && lo > Some(0.0), "{r}");
        }
        assert!(r[pass]["reference_ms"].as_f64().unwrap() > 0.0, "{r}");
    }
    let rt = &r["retest"];
    assert_eq!(rt["n"], 4);
    for k in [
        "within_1pct",
        "within_2pct",
        "within_5pct",
        "second_in_first",
        "first_in_second",
    ] {
        let v = rt[k].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v), "{k}: {r}");
    }
    assert!(rt["within_1pct"].as_f64() <= rt["within_2pct"].as_f64());
    assert!(r["fit_for_search"].is_boolean());
    assert!(r["noise_floor"][0].as_f64().unwrap() >= 0.0, "{r}");
    // Too few subnets for a ranking: refused, naming the flag.
    let out = noise("1");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--subnets 1"),
        "{err}"
    );
    // Two subnets through `board measure`: one set, each with an interval, in the order given.
    let cache = t.join("latency.sqlite");
    let out = run(&[
        "measure",
        "local",
        "--space",
        "tiny",
        "--budget-seconds",
        "1",
        "--cache",
        cache.to_str().unwrap(),
        "--arch",
        archs[0],
        "--arch",
        archs[1],
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for (row, arch) in rows.iter().zip(&archs) {
        assert_eq!(row["model"], *arch);
        assert_eq!(row["report"]["set_models"], 2, "{row}");
        assert!(
            row["interval"]["low"].as_f64() <= row["p50_ms"].as_f64(),
            "{row}"
        );
    }
}
