//! The agent on an SSH board: [`SshBoard`] checks the board's glibc, deploys the agent and its
//! ONNX Runtime library into the board's `workdir` when their SHA-256 differs from what is
//! already there, and starts `shiftnas-agent serve` over one channel of the connection
//! ([`super::ssh`]).
//!
//! One `sha256sum` exec compares both files (an exec costs ~200 ms, an upload of the agent far
//! more); changed files are uploaded under a temporary name and renamed into place, so a board
//! never runs a half-written agent.

use std::collections::VecDeque;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use sha2::{Digest, Sha256};
use ssh2::Session;

use super::board::{AgentBoard, AgentLink, AgentSession, LineTransport, write_line};
use super::config::BoardConfig;
use super::glibc::check_board_glibc;
use super::ssh::SshConn;
use crate::paths::expand_tilde;

/// The agent's file name in `workdir`.
pub const AGENT_NAME: &str = "shiftnas-agent";
/// The ORT library's file name in `workdir`.
pub const ORT_NAME: &str = "libonnxruntime.so";

/// What a deployment did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeployOutcome {
    /// Files uploaded (names in `workdir`); empty when everything was up to date.
    pub uploaded: Vec<String>,
    /// Files whose hash already matched.
    pub up_to_date: Vec<String>,
}

/// SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Quotes `s` for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Parses `sha256sum` output into (file name, hash) pairs.
fn parse_sha256sum(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| {
            let (h, name) = l.split_once(char::is_whitespace)?;
            let name = name.trim_start().trim_start_matches('*');
            let base = name.rsplit('/').next().unwrap_or(name);
            (h.len() == 64).then(|| (base.to_string(), h.to_string()))
        })
        .collect()
}

fn read_local(cfg: &BoardConfig, field: &str, p: &Path) -> Result<Vec<u8>> {
    let p = expand_tilde(p);
    std::fs::read(&p).with_context(|| {
        format!(
            "board {:?}: reading `{field}` = {}; build it (for the agent: cargo build --release -p \
             shiftnas-agent --target <the board's target>) or fix the path in boards.toml",
            cfg.name,
            p.display()
        )
    })
}

/// Makes `workdir` hold the current agent (and ORT library, when `ort_lib` is set).
///
/// # Errors
/// Missing local files, SSH/SFTP errors, or a hash that does not match after upload.
pub fn deploy(conn: &SshConn, cfg: &BoardConfig) -> Result<DeployOutcome> {
    let workdir = cfg.workdir.as_deref().unwrap_or("/tmp/shiftnas");
    let mut files: Vec<(&str, Vec<u8>)> = Vec::new();
    if let Some(agent) = &cfg.agent {
        files.push((AGENT_NAME, read_local(cfg, "agent", agent)?));
    }
    if let Some(lib) = &cfg.ort_lib {
        files.push((ORT_NAME, read_local(cfg, "ort_lib", lib)?));
    }
    let w = shell_quote(workdir);
    let names: Vec<String> = files.iter().map(|(n, _)| shell_quote(n)).collect();
    // `|| true`: a missing file is just "needs upload"; mkdir failing still shows in stderr below.
    let (code, out, err) = conn.exec(&format!(
        "mkdir -p {w} && cd {w} && {{ sha256sum {} 2>/dev/null || true; }}",
        names.join(" ")
    ))?;
    if code != 0 {
        anyhow::bail!(
            "board {:?}: cannot use workdir {workdir}: {}; fix `workdir` in boards.toml",
            cfg.name,
            err.trim()
        );
    }
    let remote = parse_sha256sum(&out);
    let mut outcome = DeployOutcome {
        uploaded: Vec::new(),
        up_to_date: Vec::new(),
    };
    for (name, bytes) in &files {
        let want = sha256_hex(bytes);
        if remote.iter().any(|(n, h)| n == name && *h == want) {
            outcome.up_to_date.push(name.to_string());
            continue;
        }
        let tmp = format!("{workdir}/.{name}.{}.tmp", std::process::id());
        conn.upload(bytes, &tmp)?;
        let fin = format!("{workdir}/{name}");
        let got = conn.exec_ok(&format!(
            "chmod 755 {t} && mv -f {t} {f} && sha256sum {f}",
            t = shell_quote(&tmp),
            f = shell_quote(&fin)
        ))?;
        let ok = parse_sha256sum(&got)
            .iter()
            .any(|(n, h)| n == name && *h == want);
        if !ok {
            anyhow::bail!(
                "board {:?}: {fin} does not have the uploaded SHA-256 {want} after upload (got {:?}); \
                 is the board's disk full?",
                cfg.name,
                got.trim()
            );
        }
        outcome.uploaded.push(name.to_string());
    }
    Ok(outcome)
}

/// The agent's stdout (with stderr merged in) over one SSH channel.
struct ChannelTransport {
    channel: ssh2::Channel,
    session: Session,
    buf: Vec<u8>,
    tail: VecDeque<String>,
}

impl LineTransport for ChannelTransport {
    fn send(&mut self, line: &str) -> Result<()> {
        write_line(&mut self.channel, line)
    }

    fn recv(&mut self, timeout: Duration) -> Result<String> {
        self.session
            .set_timeout(timeout.as_millis().min(u32::MAX as u128) as u32);
        loop {
            while let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                let line = String::from_utf8_lossy(&line).trim().to_string();
                // stderr is merged into this stream: JSON objects are answers, the rest is the
                // agent's diagnostics, kept for error messages.
                if line.starts_with('{') {
                    return Ok(line);
                }
                if !line.is_empty() {
                    if self.tail.len() >= 8 {
                        self.tail.pop_front();
                    }
                    self.tail.push_back(line);
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self.channel.read(&mut chunk).map_err(|e| {
                if e.kind() == std::io::ErrorKind::TimedOut {
                    anyhow!(
                        "no answer from the agent within {:.0} s (timeout_s)",
                        timeout.as_secs_f64()
                    )
                } else {
                    anyhow!(e)
                }
            })?;
            if n == 0 {
                bail!("the agent closed its session (exited or the connection dropped)");
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn stderr_tail(&self) -> String {
        self.tail.iter().cloned().collect::<Vec<_>>().join(" | ")
    }
}

/// A board over SSH: deploys the agent when its hash changed, then keeps one
/// `shiftnas-agent serve` session alive over one channel.
pub type SshBoard = AgentBoard<SshLink>;

impl SshBoard {
    /// A board that connects on first use.
    pub fn new(cfg: BoardConfig) -> SshBoard {
        AgentBoard::with_link(
            cfg,
            SshLink {
                conn: None,
                last_deploy: None,
            },
        )
    }
}

/// How an [`SshBoard`] reaches its agent: an SSH connection, the agent deployed over it.
pub struct SshLink {
    conn: Option<SshConn>,
    /// What the last connect deployed.
    pub last_deploy: Option<DeployOutcome>,
}

/// The shell command that starts the agent in `workdir`. After `cd` the files are named through
/// `$PWD`, so a relative `workdir` (relative to the login directory, like the upload) is not
/// applied twice.
pub fn agent_command(cfg: &BoardConfig) -> String {
    let w = cfg.workdir.as_deref().unwrap_or("/tmp/shiftnas");
    let mut cmd = format!("cd {} && ", shell_quote(w));
    let mut ort = String::new();
    if cfg.ort_lib.is_some() {
        let lib = format!("\"$PWD\"/{}", shell_quote(ORT_NAME));
        cmd += &format!("ORT_DYLIB_PATH={lib} ");
        ort = format!(" --ort-lib {lib}");
    }
    cmd += "exec ";
    if let Some(p) = &cfg.command_prefix {
        cmd += p;
        cmd += " ";
    }
    let runtime: String = cfg
        .runtime_args()
        .iter()
        .map(|a| format!(" {}", shell_quote(a)))
        .collect();
    cmd += &format!(
        "\"$PWD\"/{}{ort}{runtime} serve --thermal-limit {}",
        shell_quote(AGENT_NAME),
        cfg.thermal_limit_c
    );
    cmd
}

impl AgentLink for SshLink {
    fn start(&mut self, cfg: &BoardConfig) -> Result<AgentSession> {
        let conn = SshConn::connect(cfg)?;
        // Before anything is uploaded: a board whose glibc is too old for this agent.
        if let Some(agent) = &cfg.agent {
            check_board_glibc(&conn, cfg, &read_local(cfg, "agent", agent)?)?;
        }
        self.last_deploy = Some(deploy(&conn, cfg)?);
        let cmd = agent_command(cfg);
        let ctx = || format!("board {:?}: starting the agent (`{cmd}`)", cfg.name);
        let mut channel = conn.session.channel_session().with_context(ctx)?;
        channel
            .handle_extended_data(ssh2::ExtendedData::Merge)
            .with_context(ctx)?;
        channel.exec(&cmd).with_context(ctx)?;
        let transport = ChannelTransport {
            channel,
            session: conn.session.clone(),
            buf: Vec::new(),
            tail: VecDeque::new(),
        };
        let timeout = Duration::from_secs_f64(cfg.timeout_s);
        let session =
            AgentSession::start(Box::new(transport), &cfg.name, timeout).with_context(ctx)?;
        self.conn = Some(conn);
        Ok(session)
    }

    fn disconnect(&mut self) {
        self.conn = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_abc() {
        // FIPS 180-2, appendix B.1.
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn parses_sha256sum_lines() {
        let h = "a".repeat(64);
        let out = format!("{h}  shiftnas-agent\n{h} *libonnxruntime.so\ngarbage\n");
        let p = parse_sha256sum(&out);
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].0, "libonnxruntime.so");
    }

    /// The agent is started from `workdir` by its `$PWD` path, so a relative workdir is used
    /// once (it used to become `w/w/shiftnas-agent`).
    #[test]
    fn agent_command_names_files_once() {
        let mut cfg = BoardConfig::local(None);
        cfg.workdir = Some("shiftnas work".into());
        cfg.ort_lib = Some("lib.so".into());
        cfg.thermal_limit_c = 75.0;
        assert_eq!(
            agent_command(&cfg),
            "cd 'shiftnas work' && ORT_DYLIB_PATH=\"$PWD\"/libonnxruntime.so exec \
             \"$PWD\"/shiftnas-agent --ort-lib \"$PWD\"/libonnxruntime.so serve --thermal-limit 75"
        );
        cfg.ort_lib = None;
        cfg.command_prefix = Some("nice -n 5".into());
        assert_eq!(
            agent_command(&cfg),
            "cd 'shiftnas work' && exec nice -n 5 \"$PWD\"/shiftnas-agent serve --thermal-limit 75"
        );
        cfg.command_prefix = None;
        cfg.runtime = crate::boards::config::Runtime::Rknn;
        cfg.npu_core_mask = Some("0-2".into());
        cfg.rknn_lib = Some("/opt/rk lib/librknnrt.so".into());
        assert_eq!(
            agent_command(&cfg),
            "cd 'shiftnas work' && exec \"$PWD\"/shiftnas-agent --runtime rknn --npu-core-mask 0-2 \
             --rknn-lib '/opt/rk lib/librknnrt.so' serve --thermal-limit 75"
        );
    }

    #[test]
    fn quotes() {
        assert_eq!(shell_quote("/tmp/a-b"), "/tmp/a-b");
        assert_eq!(shell_quote("a b'c"), "'a b'\\''c'");
    }
}
