//! `trait Board`: what the pool needs from a board, and the JSON-lines agent session (with the
//! [`AgentBoard`] that starts it and starts it again) that the SSH and local boards share.
//!
//! Like hyperfine's `Executor` trait, the clock sits behind a trait so that the pool's logic
//! (retry, quarantine, thermal re-measure) is tested with a scripted board (`scripted.rs`, built
//! only for tests).

use std::collections::VecDeque;
use std::io::Write;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use shiftnas_protocol::{
    BenchReport, BenchSetReport, BenchSetSpec, BenchSpec, BoardInfo, MAX_LOADED_MODELS,
    PROTOCOL_VERSION, Request, Response, check_version, decode_line, encode_line,
};

use super::config::{BoardConfig, parse_cores};

/// The agent answered a request with an error: the board is healthy, the request (usually the
/// model) is at fault. The pool does not count these against a board.
#[derive(Debug, Clone, thiserror::Error)]
#[error("board {board:?}: the agent refused: {message}")]
pub struct AgentError {
    /// The board's name.
    pub board: String,
    /// The agent's message.
    pub message: String,
}

/// A board the pool can measure on.
pub trait Board: Send {
    /// The board's name in boards.toml.
    fn name(&self) -> &str;

    /// Its configuration (threads, cores, thermal limit, cool-down, timeout).
    fn config(&self) -> &BoardConfig;

    /// Connects (again): drops any old connection, deploys if needed, starts the agent session
    /// and checks the protocol version.
    ///
    /// # Errors
    /// The board cannot be reached or the agent cannot be started.
    fn reconnect(&mut self) -> Result<()>;

    /// The board's identity (connecting first if needed).
    ///
    /// # Errors
    /// Connection or agent errors.
    fn info(&mut self) -> Result<BoardInfo>;

    /// Sends a model to the agent (skipped when this session already holds that hash).
    ///
    /// # Errors
    /// [`AgentError`] when the agent refuses the model; anything else means the board failed.
    fn load(&mut self, name: &str, model: &[u8], sha256: &str) -> Result<()>;

    /// Measures a loaded model.
    ///
    /// # Errors
    /// [`AgentError`] when the agent refuses; anything else means the board failed (including
    /// the per-measurement timeout).
    fn bench(&mut self, sha256: &str, spec: &BenchSpec) -> Result<BenchReport>;

    /// Measures loaded models (`sha256s`) interleaved with a loaded `reference` model, in rounds
    /// (the agent's `bench-set`): drift-corrected estimates with their intervals.
    ///
    /// # Errors
    /// As [`Board::bench`].
    fn bench_set(
        &mut self,
        sha256s: &[String],
        reference: &str,
        spec: &BenchSetSpec,
    ) -> Result<BenchSetReport>;
}

/// The measurement spec a board's configuration asks for (threads, cores, warm-up and runs from boards.toml).
pub fn spec_for(cfg: &BoardConfig) -> BenchSpec {
    BenchSpec {
        threads: cfg.threads as usize,
        cores: cfg
            .cores
            .as_deref()
            .and_then(|c| parse_cores(c).ok())
            .unwrap_or_default()
            .into_iter()
            .map(|c| c as usize)
            .collect(),
        warmup: cfg.warmup,
        runs: cfg.runs,
        min_seconds: cfg.min_seconds,
        ..BenchSpec::default()
    }
}

/// One line in, one line out, with a timeout on the answer.
pub trait LineTransport: Send {
    /// Writes one line (a newline is appended) and flushes.
    ///
    /// # Errors
    /// The board went away.
    fn send(&mut self, line: &str) -> Result<()>;

    /// Reads the next line, waiting at most `timeout`.
    ///
    /// # Errors
    /// EOF, I/O errors or the timeout.
    fn recv(&mut self, timeout: Duration) -> Result<String>;

    /// The last lines the agent wrote on stderr (for error messages).
    fn stderr_tail(&self) -> String;
}

/// A JSON-lines session with `shiftnas-agent serve` over any transport.
pub struct AgentSession {
    transport: Box<dyn LineTransport>,
    board: String,
    timeout: Duration,
    loaded: VecDeque<String>,
}

impl AgentSession {
    /// Opens a session and does the hello/version exchange.
    ///
    /// # Errors
    /// No answer, or a protocol version mismatch (naming both versions).
    pub fn start(
        transport: Box<dyn LineTransport>,
        board: &str,
        timeout: Duration,
    ) -> Result<AgentSession> {
        let mut s = AgentSession {
            transport,
            board: board.to_string(),
            timeout,
            loaded: VecDeque::new(),
        };
        let hello = s.call(&Request::Hello {
            protocol_version: PROTOCOL_VERSION,
        });
        match hello {
            Ok(Response::Hello {
                protocol_version, ..
            }) => check_version(PROTOCOL_VERSION, protocol_version)
                .map_err(|e| anyhow!("board {board:?}: {e}"))?,
            // An agent of another version refuses our hello: not a request the board can serve
            // later, so no `AgentError` (the pool must not keep the board).
            Err(e) if e.downcast_ref::<AgentError>().is_some() => bail!(
                "board {board:?}: the agent refused the hello of protocol v{PROTOCOL_VERSION} \
                 ({}); redeploy the shiftnas-agent built from the same shiftnas release as the \
                 host (`shiftnas board check {board}` uploads it to an SSH board whose agent \
                 differs; a local board runs the agent next to `shiftnas` or `--agent`)",
                e.downcast_ref::<AgentError>()
                    .map_or("", |a| a.message.as_str())
            ),
            Err(e) => return Err(e),
            Ok(other) => bail!("board {board:?}: expected hello from the agent, got {other:?}"),
        }
        Ok(s)
    }

    /// Sends one request and reads its response; agent errors become [`AgentError`].
    ///
    /// # Errors
    /// Transport errors (the board failed) or [`AgentError`].
    pub fn call(&mut self, req: &Request) -> Result<Response> {
        let timeout = self.timeout;
        self.call_within(req, timeout)
    }

    /// [`AgentSession::call`] waiting at most `timeout` for the answer.
    fn call_within(&mut self, req: &Request, timeout: Duration) -> Result<Response> {
        let line = encode_line(req)?;
        let board = self.board.clone();
        let with_tail = |e: anyhow::Error, t: &dyn LineTransport| {
            let tail = t.stderr_tail();
            if tail.is_empty() {
                e.context(format!("board {board:?}: agent session"))
            } else {
                e.context(format!(
                    "board {board:?}: agent session (agent stderr: {})",
                    tail.trim()
                ))
            }
        };
        if let Err(e) = self.transport.send(&line) {
            return Err(with_tail(e, self.transport.as_ref()));
        }
        let answer = match self.transport.recv(timeout) {
            Ok(a) => a,
            Err(e) => return Err(with_tail(e, self.transport.as_ref())),
        };
        match decode_line::<Response>(&answer) {
            Ok(Response::Error { message }) => Err(AgentError { board, message }.into()),
            Ok(r) => Ok(r),
            Err(e) => Err(anyhow!(
                "board {board:?}: the agent sent a line that is not a response ({e}): {:.200}",
                answer
            )),
        }
    }

    /// `info`.
    ///
    /// # Errors
    /// As [`AgentSession::call`].
    pub fn info(&mut self) -> Result<BoardInfo> {
        match self.call(&Request::Info)? {
            Response::Info(i) => Ok(i),
            other => bail!("board {:?}: expected info, got {other:?}", self.board),
        }
    }

    /// `load`, skipped when this session already holds the hash.
    ///
    /// # Errors
    /// As [`AgentSession::call`].
    pub fn load(&mut self, name: &str, model: &[u8], sha256: &str) -> Result<()> {
        if self.loaded.iter().any(|h| h == sha256) {
            return Ok(());
        }
        let r = self.call(&Request::Load {
            name: name.to_string(),
            sha256: sha256.to_string(),
            model_b64: base64(model),
        })?;
        match r {
            Response::Loaded { .. } => {
                if self.loaded.len() >= MAX_LOADED_MODELS {
                    self.loaded.pop_front();
                }
                self.loaded.push_back(sha256.to_string());
                Ok(())
            }
            other => bail!("board {:?}: expected loaded, got {other:?}", self.board),
        }
    }

    /// `bench`.
    ///
    /// # Errors
    /// As [`AgentSession::call`].
    pub fn bench(&mut self, sha256: &str, spec: &BenchSpec) -> Result<BenchReport> {
        match self.call(&Request::Bench {
            sha256: sha256.to_string(),
            spec: spec.clone(),
        })? {
            Response::Bench(r) => Ok(r),
            other => bail!("board {:?}: expected bench, got {other:?}", self.board),
        }
    }

    /// `bench-set`. It waits for the answer up to the session's per-measurement timeout for each
    /// model and the reference (their warm-up and the last round's overrun) plus the set's time
    /// budget.
    ///
    /// # Errors
    /// As [`AgentSession::call`].
    pub fn bench_set(
        &mut self,
        sha256s: &[String],
        reference: &str,
        spec: &BenchSetSpec,
    ) -> Result<BenchSetReport> {
        let timeout = set_timeout(self.timeout, sha256s.len(), spec);
        let req = Request::BenchSet {
            sha256s: sha256s.to_vec(),
            reference: reference.to_string(),
            spec: spec.clone(),
        };
        match self.call_within(&req, timeout)? {
            Response::BenchSet(r) => Ok(r),
            other => bail!("board {:?}: expected bench-set, got {other:?}", self.board),
        }
    }

    /// Says goodbye (best effort; the agent exits).
    pub fn quit(&mut self) {
        if self.transport.send(r#"{"type":"quit"}"#).is_ok() {
            let _ = self.transport.recv(Duration::from_secs(2));
        }
    }
}

/// How long to wait for a `bench-set` of `models` models: `per_model` (the timeout of one
/// single-model bench) for each model and the reference, plus the set's budget.
pub fn set_timeout(per_model: Duration, models: usize, spec: &BenchSetSpec) -> Duration {
    let budget = spec.budget_for(models);
    let budget = if budget.is_finite() && budget > 0.0 {
        Duration::from_secs_f64(budget.min(shiftnas_protocol::MAX_BUDGET_SECONDS))
    } else {
        Duration::ZERO
    };
    per_model.saturating_mul(models.saturating_add(1).min(u32::MAX as usize) as u32) + budget
}

/// Writes `line` and a newline to an agent's input and flushes (the transports' `send`).
pub(super) fn write_line(w: &mut impl Write, line: &str) -> Result<()> {
    w.write_all(line.as_bytes())?;
    w.write_all(b"\n")?;
    w.flush()?;
    Ok(())
}

/// How an [`AgentBoard`] reaches its agent: over SSH ([`super::deploy::SshLink`]) or as a child
/// process of the host ([`super::local::LocalLink`]).
pub trait AgentLink: Send {
    /// Starts the agent and opens its session (hello and protocol version checked).
    ///
    /// # Errors
    /// The board cannot be reached or the agent cannot be started (naming the board).
    fn start(&mut self, cfg: &BoardConfig) -> Result<AgentSession>;

    /// Drops the connection that carried the session (after the session itself is dropped).
    fn disconnect(&mut self);
}

/// A board measured through one `shiftnas-agent serve` session: started on first use, and
/// started again (with a new connection) after a transport failure. An [`AgentError`] keeps the
/// session: the request was at fault, not the board.
pub struct AgentBoard<L> {
    cfg: BoardConfig,
    // Field order matters: the agent session (its channel) is dropped before the link's
    // connection.
    session: Option<AgentSession>,
    link: L,
}

impl<L: AgentLink> AgentBoard<L> {
    /// A board that connects over `link` on first use.
    pub(super) fn with_link(cfg: BoardConfig, link: L) -> AgentBoard<L> {
        AgentBoard {
            cfg,
            session: None,
            link,
        }
    }

    /// How the agent is reached (for an SSH board: what the last connect deployed).
    pub fn link(&self) -> &L {
        &self.link
    }

    /// The open session, or a new one.
    fn session(&mut self) -> Result<&mut AgentSession> {
        match self.session {
            Some(ref mut s) => Ok(s),
            None => self.start(),
        }
    }

    /// Drops the session and its connection, then starts a new one.
    fn start(&mut self) -> Result<&mut AgentSession> {
        self.session = None;
        self.link.disconnect();
        let session = self.link.start(&self.cfg)?;
        Ok(self.session.insert(session))
    }

    /// Runs `f` on the session; a transport failure drops the connection so the next call
    /// reconnects.
    fn with_session<T>(&mut self, f: impl FnOnce(&mut AgentSession) -> Result<T>) -> Result<T> {
        let r = f(self.session()?);
        if let Err(e) = &r
            && e.downcast_ref::<AgentError>().is_none()
        {
            self.session = None;
            self.link.disconnect();
        }
        r
    }
}

impl<L: AgentLink> Board for AgentBoard<L> {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn config(&self) -> &BoardConfig {
        &self.cfg
    }

    fn reconnect(&mut self) -> Result<()> {
        self.start().map(|_| ())
    }

    fn info(&mut self) -> Result<BoardInfo> {
        self.with_session(|s| s.info())
    }

    fn load(&mut self, name: &str, model: &[u8], sha256: &str) -> Result<()> {
        self.with_session(|s| s.load(name, model, sha256))
    }

    fn bench(&mut self, sha256: &str, spec: &BenchSpec) -> Result<BenchReport> {
        self.with_session(|s| s.bench(sha256, spec))
    }

    fn bench_set(
        &mut self,
        sha256s: &[String],
        reference: &str,
        spec: &BenchSetSpec,
    ) -> Result<BenchSetReport> {
        self.with_session(|s| s.bench_set(sha256s, reference, spec))
    }
}

impl<L> Drop for AgentBoard<L> {
    fn drop(&mut self) {
        if let Some(s) = &mut self.session {
            s.quit();
        }
    }
}

/// Standard base64 with padding (RFC 4648 §4).
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// Whether a report must be discarded for heat: the agent said throttled, or a thermal zone
/// before or after the runs reached `limit_c`.
pub fn too_hot(report: &BenchReport, limit_c: f64) -> Option<String> {
    if let Some(z) = report
        .before
        .thermal
        .iter()
        .chain(&report.after.thermal)
        .find(|z| z.temp_c >= limit_c)
    {
        return Some(format!(
            "thermal zone {} ({}) at {:.1} °C ≥ {limit_c:.0} °C",
            z.zone, z.kind, z.temp_c
        ));
    }
    report
        .throttled
        .then(|| "the agent reported throttling (a zone hot or a clock dropped)".to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        // RFC 4648 §10 test vectors.
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    use crate::boards::scripted::ScriptedTransport;

    fn session(replies: &[&str]) -> (Result<AgentSession>, Arc<Mutex<Vec<String>>>) {
        let t = ScriptedTransport::new(replies);
        let sent = Arc::clone(&t.sent);
        let s = AgentSession::start(Box::new(t), "rk1", Duration::from_secs(1));
        (s, sent)
    }

    #[test]
    fn host_refuses_a_v1_agent_naming_both_versions_and_the_redeploy() {
        // A v1 agent that answers hello with its own version…
        let (s, sent) =
            session(&[r#"{"type":"hello","protocol_version":1,"agent_version":"0.1.0"}"#]);
        let e = format!("{:#}", s.err().expect("a v1 agent must be refused"));
        assert!(
            e.contains("host speaks v2, agent speaks v1")
                && e.contains("redeploy")
                && e.contains("shiftnas board check BOARD"),
            "{e}"
        );
        assert_eq!(
            sent.lock().unwrap().as_slice(),
            [r#"{"type":"hello","protocol_version":2}"#]
        );
        // …and one that refuses our hello, as the v1 agent does (its message, verbatim).
        let (s, _) = session(&[
            r#"{"type":"error","message":"protocol version mismatch: host speaks v2, agent speaks v1; redeploy the shiftnas-agent built from the same shiftnas release as the host"}"#,
        ]);
        let e = s.err().expect("a refused hello must fail the session");
        assert!(
            e.downcast_ref::<AgentError>().is_none(),
            "a version mismatch is the board's fault, not the request's: {e:#}"
        );
        let e = format!("{e:#}");
        assert!(
            e.contains("refused the hello of protocol v2")
                && e.contains("agent speaks v1")
                && e.contains("shiftnas board check rk1"),
            "{e}"
        );
        let (s, _) = session(&[r#"{"type":"hello","protocol_version":2,"agent_version":"0.1.0"}"#]);
        assert!(s.is_ok());
    }

    #[test]
    fn bench_set_sends_the_set_and_reads_its_report() {
        let spec = BenchSetSpec {
            cores: vec![4],
            ..BenchSetSpec::default()
        };
        let sets = vec!["aa".to_string(), "bb".to_string()];
        let report =
            crate::boards::scripted::fake_set_report(&sets, "cc", &spec, &[2.0, 3.0], 40.0);
        let reply = encode_line(&Response::BenchSet(report.clone())).unwrap();
        let (s, sent) = session(&[
            r#"{"type":"hello","protocol_version":2,"agent_version":"0.1.0"}"#,
            &reply,
            r#"{"type":"error","message":"no model with sha256 dd is loaded"}"#,
        ]);
        let mut s = s.unwrap();
        assert_eq!(s.bench_set(&sets, "cc", &spec).unwrap(), report);
        let req: Request = decode_line(&sent.lock().unwrap()[1]).unwrap();
        assert_eq!(
            req,
            Request::BenchSet {
                sha256s: sets.clone(),
                reference: "cc".into(),
                spec: spec.clone()
            }
        );
        let e = s.bench_set(&["dd".into()], "cc", &spec).unwrap_err();
        assert!(e.downcast_ref::<AgentError>().is_some(), "{e:#}");
    }

    #[test]
    fn a_set_waits_for_each_model_and_the_budget() {
        let spec = BenchSetSpec::default();
        // 3 models + the reference at 10 s each, plus the default budget of 4 s.
        assert_eq!(
            set_timeout(Duration::from_secs(10), 3, &spec),
            Duration::from_secs(44)
        );
        let spec = BenchSetSpec {
            budget_seconds: Some(0.5),
            ..spec
        };
        assert_eq!(
            set_timeout(Duration::from_secs(1), 1, &spec),
            Duration::from_millis(2500)
        );
    }

    #[test]
    fn spec_follows_config() {
        let mut c = BoardConfig::local(None);
        c.threads = 4;
        c.cores = Some("4-7".into());
        let s = spec_for(&c);
        assert_eq!((s.threads, s.cores, s.runs), (4, vec![4, 5, 6, 7], 50));
    }
}
