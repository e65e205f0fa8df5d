//! The `local` board: `shiftnas-agent serve` as a child process of the host, spoken to over its
//! stdin/stdout exactly like an SSH board's channel (the quickstart's board: no SSH).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};

use super::board::{AgentBoard, AgentLink, AgentSession, LineTransport, write_line};
use super::config::BoardConfig;
use crate::paths::expand_tilde;

/// Finds the agent for the local board: `explicit` (`--agent` or the board's `agent`), else
/// `shiftnas-agent` next to the running `shiftnas` binary.
///
/// # Errors
/// Names every place tried and how to build the agent.
pub fn find_local_agent(explicit: Option<&std::path::Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        let p = expand_tilde(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!(
            "the agent {} does not exist; build it with `cargo build --release -p shiftnas-agent`",
            p.display()
        );
    }
    let exe = std::env::current_exe().context("locating the shiftnas binary")?;
    let mut tried = Vec::new();
    // Tests run from target/debug/deps/, the binaries sit one level up.
    for dir in exe.ancestors().skip(1).take(2) {
        let c = dir.join("shiftnas-agent");
        if c.is_file() {
            return Ok(c);
        }
        tried.push(c.display().to_string());
    }
    bail!(
        "no shiftnas-agent next to shiftnas (tried {}); build it with `cargo build --release -p \
         shiftnas-agent` or pass --agent PATH",
        tried.join(", ")
    )
}

struct ChildTransport {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<std::io::Result<String>>,
    tail: Arc<Mutex<VecDeque<String>>>,
}

impl LineTransport for ChildTransport {
    fn send(&mut self, line: &str) -> Result<()> {
        write_line(&mut self.stdin, line)
    }

    fn recv(&mut self, timeout: Duration) -> Result<String> {
        match self.lines.recv_timeout(timeout) {
            Ok(Ok(l)) => Ok(l),
            Ok(Err(e)) => Err(e.into()),
            Err(RecvTimeoutError::Timeout) => {
                // A hung agent: kill it so the next connect starts clean.
                let _ = self.child.kill();
                Err(anyhow!(
                    "no answer from the agent within {:.0} s (timeout_s)",
                    timeout.as_secs_f64()
                ))
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait().ok();
                Err(anyhow!(
                    "the agent exited{}",
                    status.map(|s| format!(" ({s})")).unwrap_or_default()
                ))
            }
        }
    }

    fn stderr_tail(&self) -> String {
        self.tail
            .lock()
            .map(|t| t.iter().cloned().collect::<Vec<_>>().join(" | "))
            .unwrap_or_default()
    }
}

impl Drop for ChildTransport {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The agent as a child process of the host.
pub type LocalBoard = AgentBoard<LocalLink>;

impl LocalBoard {
    /// A local board running `agent` (see [`find_local_agent`]); starts on first use.
    pub fn new(cfg: BoardConfig, agent: PathBuf) -> LocalBoard {
        AgentBoard::with_link(cfg, LocalLink { agent })
    }
}

/// How a [`LocalBoard`] reaches its agent: `agent serve` spawned with piped stdin/stdout/stderr.
pub struct LocalLink {
    agent: PathBuf,
}

impl AgentLink for LocalLink {
    fn start(&mut self, cfg: &BoardConfig) -> Result<AgentSession> {
        let mut words: Vec<String> = cfg
            .command_prefix
            .as_deref()
            .map(|p| p.split_whitespace().map(String::from).collect())
            .unwrap_or_default();
        words.push(self.agent.display().to_string());
        let mut cmd = Command::new(&words[0]);
        cmd.args(&words[1..]);
        if let Some(lib) = &cfg.ort_lib {
            cmd.arg("--ort-lib").arg(expand_tilde(lib));
        }
        cmd.args(cfg.runtime_args());
        cmd.args(["serve", "--thermal-limit", &cfg.thermal_limit_c.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Its own process group: a terminal's Ctrl-C reaches only `shiftnas`, which finishes the
        // measurement in flight and stops in order (crate::interrupt); the agent exits at EOF.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("board {:?}: starting {}", cfg.name, self.agent.display()))?;
        let (stdin, stdout, stderr) =
            match (child.stdin.take(), child.stdout.take(), child.stderr.take()) {
                (Some(i), Some(o), Some(e)) => (i, o, e),
                _ => bail!("board {:?}: the agent's pipes were not set up", cfg.name),
            };
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let stop = line.is_err();
                if tx.send(line).is_err() || stop {
                    break;
                }
            }
        });
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let t2 = Arc::clone(&tail);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut t) = t2.lock() {
                    if t.len() >= 8 {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            }
        });
        let transport = ChildTransport {
            child,
            stdin,
            lines: rx,
            tail,
        };
        let timeout = Duration::from_secs_f64(cfg.timeout_s);
        AgentSession::start(Box::new(transport), &cfg.name, timeout)
    }

    fn disconnect(&mut self) {}
}
