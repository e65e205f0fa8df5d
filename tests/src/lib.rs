//! Fixtures shared by the integration tests: temporary dirs, the built binaries, sshd boards.
//! One integration-test binary; each module covers one area across crates.
//!
//! # Binaries
//! Tests run the real `shiftnas` and `shiftnas-agent`. `cargo test --workspace` (what
//! `scripts/test` runs) builds every member's binaries before any test runs, so they are found
//! under `$CARGO_TARGET_DIR/debug/` (or `target/debug/`); [`bin`] looks there, next to the test
//! executable's own directory. When running only this crate (`cargo test -p shiftnas-tests`),
//! build them first: `cargo build -p shiftnas -p shiftnas-agent`.
//!
//! # sshd boards
//! [`Sshd`] starts the system's `/usr/sbin/sshd` (apt `openssh-server`, installed by
//! `scripts/setup.d/30-sshd.sh`) on 127.0.0.1 at a free port, with throwaway host and user keys
//! and its own `sshd_config`, in a private mount namespace whose `/run` is a tmpfs (sshd needs
//! `/run/sshd`; the machine's own sshd and `/run` are never touched). It is killed on drop.
//!
//! # Missing tools under CI
//! A test that needs something a bare machine may lack (an ONNX Runtime library, qemu, strace, the
//! aarch64 agent, a data set) calls [`missing`]: outside CI it prints `skipped: …` and the test
//! returns; with `CI=true` (as `.ci/run` is run) it fails, naming what is missing and how to
//! install it, so CI cannot pass by skipping.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A temporary directory removed on drop.
pub struct TestDir {
    dir: tempfile::TempDir,
}

impl TestDir {
    /// A fresh directory.
    pub fn new() -> TestDir {
        TestDir {
            dir: tempfile::Builder::new()
                .prefix("shiftnas-it-")
                .tempdir()
                .expect("creating a temporary directory"),
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside it.
    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(p)
    }

    /// Writes `bytes` to `name` inside it and returns the path.
    pub fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let p = self.join(name);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).expect("creating a fixture directory");
        }
        std::fs::write(&p, bytes).expect("writing a fixture file");
        p
    }
}

impl Default for TestDir {
    fn default() -> Self {
        TestDir::new()
    }
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository")
        .to_path_buf()
}

/// A built binary of the workspace (`shiftnas`, `shiftnas-agent`); see the module docs.
///
/// # Panics
/// When it is not built, saying how to build it.
pub fn bin(name: &str) -> PathBuf {
    let mut dirs = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        // target/debug/deps/it-HASH → target/debug
        dirs.extend(exe.ancestors().skip(1).take(2).map(Path::to_path_buf));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    dirs.push(target.join("debug"));
    for d in &dirs {
        let p = d.join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "{name} is not built (looked in {dirs:?}); run `cargo build -p shiftnas -p shiftnas-agent`"
    )
}

/// Whether this is a CI run (`CI=true` or `CI=1`): there a missing prerequisite fails the test.
pub fn in_ci() -> bool {
    matches!(
        std::env::var("CI")
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Ok("true" | "1")
    )
}

/// Reports a missing prerequisite `what`, with `fix` saying how to install it. Under CI
/// ([`in_ci`]) it panics; otherwise it prints `skipped: …` and the caller returns.
///
/// # Panics
/// Under CI, always.
pub fn missing(what: &str, fix: &str) {
    if in_ci() {
        panic!(
            "{what}; {fix} (CI=true: a missing prerequisite fails the test instead of skipping it)"
        );
    }
    eprintln!("skipped: {what}; {fix}");
}

/// Returns early from a test when `$why` (an `Option` of a message) is `Some`, via [`missing`]
/// with the fix `$fix`: a skip locally, a failure under CI.
#[macro_export]
macro_rules! skip_unless {
    ($why:expr, $fix:expr) => {
        if let Some(why) = $why {
            $crate::missing(&why, $fix);
            return;
        }
    };
}

/// The path of `tool` on `PATH`, if any.
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    })
}

/// The path of `tool` on `PATH`, or `None` after [`missing`] (which fails under CI), naming the
/// Debian package `apt_package` that provides it.
pub fn require_tool(tool: &str, apt_package: &str) -> Option<PathBuf> {
    let found = find_tool(tool);
    if found.is_none() {
        missing(
            &format!("{tool} is not on PATH"),
            &format!(
                "install it with `apt-get install {apt_package}` (`source scripts/setup-deps` does)"
            ),
        );
    }
    found
}

/// The x86-64 `libonnxruntime.so` of the test venv (`ORT_DYLIB_PATH`, set by `scripts/setup-deps`).
///
/// # Panics
/// When unset, saying to source the setup script.
pub fn ort_lib() -> PathBuf {
    match std::env::var_os("ORT_DYLIB_PATH") {
        Some(p) if Path::new(&p).is_file() => PathBuf::from(p),
        _ => panic!(
            "ORT_DYLIB_PATH is not set to a libonnxruntime.so; run `source scripts/setup-deps` first"
        ),
    }
}

/// A small ONNX model from `tests/fixtures/agent/`, made unique by `variant`: an unknown field
/// (number 1000, varint `variant`) is appended to the ModelProto, which protobuf parsers skip, so
/// each variant has its own SHA-256 but the same graph.
pub fn tiny_model(variant: u64) -> Vec<u8> {
    let mut b = std::fs::read(repo_root().join("tests/fixtures/agent/conv_s.onnx"))
        .expect("reading tests/fixtures/agent/conv_s.onnx");
    // Key of field 1000, wire type 0: (1000 << 3) | 0 = 8000 = varint C0 3E.
    b.extend_from_slice(&[0xC0, 0x3E]);
    let mut v = variant;
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            b.push(byte);
            break;
        }
        b.push(byte | 0x80);
    }
    b
}

/// A free TCP port on 127.0.0.1 (bound and released; fine for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral port")
}

/// A throwaway sshd on 127.0.0.1 (see the module docs). Killed on drop.
pub struct Sshd {
    child: Option<Child>,
    /// Its port.
    pub port: u16,
    /// The directory holding its keys and config.
    pub dir: PathBuf,
    /// The user key that it accepts (private key file).
    pub user_key: PathBuf,
    /// A known_hosts file holding its host key.
    pub known_hosts: PathBuf,
    /// The host key's public line (`ssh-ed25519 AAAA…`).
    pub host_pub: String,
}

fn keygen(path: &Path) -> Result<()> {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .context("running ssh-keygen (apt openssh-client)")?;
    if !st.success() {
        bail!("ssh-keygen failed for {}", path.display());
    }
    Ok(())
}

impl Sshd {
    /// Starts an sshd with fresh keys in `dir` (which it fills).
    ///
    /// # Errors
    /// sshd missing (run `source scripts/setup-deps`) or not listening within 10 s.
    pub fn start(dir: &Path) -> Result<Sshd> {
        if !Path::new("/usr/sbin/sshd").exists() {
            bail!(
                "/usr/sbin/sshd is missing; run `source scripts/setup-deps` (apt openssh-server)"
            );
        }
        std::fs::create_dir_all(dir)?;
        let host_key = dir.join("host_ed25519");
        let user_key = dir.join("user_ed25519");
        keygen(&host_key)?;
        keygen(&user_key)?;
        let auth = dir.join("authorized_keys");
        std::fs::copy(dir.join("user_ed25519.pub"), &auth)?;
        let host_pub = std::fs::read_to_string(dir.join("host_ed25519.pub"))?;
        let host_pub = host_pub
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        let port = free_port();
        let known_hosts = dir.join("known_hosts");
        std::fs::write(&known_hosts, format!("[127.0.0.1]:{port} {host_pub}\n"))?;
        let cfg = dir.join("sshd_config");
        std::fs::write(
            &cfg,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile {pid}\nUsePAM no\n\
                 StrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PubkeyAuthentication yes\nPermitRootLogin yes\nAuthorizedKeysFile {auth}\n\
                 Subsystem sftp internal-sftp\nMaxSessions 50\nMaxStartups 50\n",
                hk = host_key.display(),
                pid = dir.join("sshd.pid").display(),
                auth = auth.display()
            ),
        )?;
        let log = std::fs::File::create(dir.join("sshd.log"))?;
        let inner = format!(
            "mount -t tmpfs tmpfs /run && mkdir -p /run/sshd && exec /usr/sbin/sshd -D -e -f {}",
            cfg.display()
        );
        let child = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &inner])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting sshd under unshare (util-linux)")?;
        let mut sshd = Sshd {
            child: Some(child),
            port,
            dir: dir.to_path_buf(),
            user_key,
            known_hosts,
            host_pub,
        };
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(c) = &mut sshd.child
                && let Ok(Some(st)) = c.try_wait()
            {
                let log = std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default();
                bail!("sshd exited ({st}): {log}");
            }
            if t0.elapsed() > Duration::from_secs(10) {
                bail!("sshd did not listen on port {port} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(sshd)
    }

    /// A `[[board]]` table for this sshd (user root, its key and known_hosts), plus `extra` lines.
    pub fn board_toml(&self, name: &str, workdir: &Path, extra: &str) -> String {
        format!(
            "[[board]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"root\"\n\
             identity = \"{}\"\nknown_hosts = \"{}\"\nworkdir = \"{}\"\n{extra}\n",
            self.port,
            self.user_key.display(),
            self.known_hosts.display(),
            workdir.display()
        )
    }

    /// Stops the listener (existing sessions are left alone; see [`kill_exe_under`]).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Kills (SIGKILL) every process whose executable lies under `dir` (e.g. the agent a board
/// runs from its workdir); returns how many.
pub fn kill_exe_under(dir: &Path) -> usize {
    let mut n = 0;
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return 0;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(exe) = std::fs::read_link(e.path().join("exe"))
            && exe.starts_with(dir)
            && Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status()
                .is_ok_and(|s| s.success())
        {
            n += 1;
        }
    }
    n
}
