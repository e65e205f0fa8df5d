//! `shiftnas-agent serve`: the JSON-lines loop the host drives over SSH (wire format in
//! `shiftnas_protocol`'s crate doc).
//!
//! Every failure becomes `Response::Error` and the loop goes on; only `quit` or end of input stop
//! it. stdout carries nothing but response lines. Models live in memory, keyed by SHA-256; nothing
//! is written to disk, so the agent touches no file outside its work dir.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, Write};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use shiftnas_protocol::{
    MAX_LOADED_MODELS, PROTOCOL_VERSION, Request, Response, check_version, decode_line, encode_line,
};

use crate::bench::{self, BenchEnv};
use crate::runtime::{self, Backend, BackendChoice, SessionOptions};

/// Largest model accepted inline (base64 text), to refuse a runaway line early.
pub const MAX_MODEL_BYTES: usize = 512 << 20;

/// The models of a session by SHA-256, at most [`MAX_LOADED_MODELS`], oldest load evicted first.
#[derive(Default)]
struct Models {
    bytes: HashMap<String, Vec<u8>>,
    order: VecDeque<String>,
}

impl Models {
    fn get(&self, sha256: &str) -> Option<&[u8]> {
        self.bytes.get(sha256).map(Vec::as_slice)
    }

    fn insert(&mut self, sha256: String, model: Vec<u8>) {
        if self.bytes.insert(sha256.clone(), model).is_none() {
            self.order.push_back(sha256);
        }
        while self.order.len() > MAX_LOADED_MODELS {
            if let Some(old) = self.order.pop_front() {
                self.bytes.remove(&old);
            }
        }
    }
}

/// State of one serve session.
pub struct Server {
    choice: BackendChoice,
    backend: Option<Box<dyn Backend>>,
    models: Models,
    greeted: bool,
    env: BenchEnv,
}

impl Server {
    /// A server that loads its runtime on the first `load` (so `hello` and `info` work without one).
    pub fn new(choice: BackendChoice, env: BenchEnv) -> Server {
        Server {
            choice,
            backend: None,
            models: Models::default(),
            greeted: false,
            env,
        }
    }

    fn backend(&mut self) -> Result<&dyn Backend> {
        if self.backend.is_none() {
            self.backend = Some(runtime::load(&self.choice)?);
        }
        Ok(self.backend.as_deref().expect("backend was just set"))
    }

    fn model(&self, sha256: &str) -> Result<&[u8]> {
        self.models.get(sha256).with_context(|| {
            format!(
                "no model with sha256 {sha256} is loaded in this session; send a load request first"
            )
        })
    }

    /// Answers one request; the bool says whether the session should end.
    pub fn handle(&mut self, req: Request) -> (Response, bool) {
        if let Request::Quit = req {
            return (Response::Bye, true);
        }
        match self.try_handle(req) {
            Ok(r) => (r, false),
            Err(e) => (
                Response::Error {
                    message: format!("{e:#}"),
                },
                false,
            ),
        }
    }

    fn try_handle(&mut self, req: Request) -> Result<Response> {
        if let Request::Hello { protocol_version } = req {
            check_version(protocol_version, PROTOCOL_VERSION)?;
            self.greeted = true;
            return Ok(Response::Hello {
                protocol_version: PROTOCOL_VERSION,
                agent_version: env!("CARGO_PKG_VERSION").to_string(),
            });
        }
        if !self.greeted {
            bail!("the first request must be hello (protocol version {PROTOCOL_VERSION})");
        }
        match req {
            Request::Hello { .. } | Request::Quit => unreachable!("handled above"),
            Request::Info => Ok(Response::Info(crate::board_info(
                &self.choice,
                &self.env.root,
            ))),
            Request::Load {
                name,
                sha256,
                model_b64,
            } => {
                anyhow::ensure!(
                    model_b64.len() / 4 * 3 <= MAX_MODEL_BYTES,
                    "model {name:?} is larger than {MAX_MODEL_BYTES} bytes"
                );
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(model_b64.trim())
                    .with_context(|| format!("model {name:?}: model_b64 is not valid base64"))?;
                let actual = hex::encode(Sha256::digest(&bytes));
                anyhow::ensure!(
                    actual.eq_ignore_ascii_case(sha256.trim()),
                    "model {name:?}: sha256 mismatch: request says {sha256}, the bytes hash to {actual}; the upload was corrupted or the hash is stale"
                );
                let backend = self.backend()?;
                let m = backend
                    .open(&bytes, SessionOptions::default())
                    .with_context(|| format!("model {name:?}"))?;
                let resp = Response::Loaded {
                    sha256: actual.clone(),
                    input_name: m.input_name().to_string(),
                    input_shape: m.input_shape().to_vec(),
                    backend: backend.id(),
                };
                self.models.insert(actual, bytes);
                Ok(resp)
            }
            Request::Bench { sha256, spec } => {
                let sha = sha256.trim().to_ascii_lowercase();
                self.model(&sha)?;
                self.backend()?;
                let (backend, model) = (
                    self.backend.as_deref().expect("loaded above"),
                    self.models.get(&sha).expect("checked above"),
                );
                Ok(Response::Bench(bench::measure(
                    backend, model, &sha, &spec, &self.env,
                )?))
            }
            Request::Run { sha256, input } => {
                let sha = sha256.trim().to_ascii_lowercase();
                self.model(&sha)?;
                self.backend()?;
                let (backend, model) = (
                    self.backend.as_deref().expect("loaded above"),
                    self.models.get(&sha).expect("checked above"),
                );
                let mut m = backend.open(model, SessionOptions::default())?;
                anyhow::ensure!(
                    input.shape == m.input_shape(),
                    "input shape {:?} does not match the model's {:?}",
                    input.shape,
                    m.input_shape()
                );
                m.set_input(input.data)?;
                Ok(Response::Output(m.run_output()?))
            }
        }
    }
}

/// Runs the loop over `input` / `output` until `quit` or end of input.
///
/// # Errors
/// Only I/O errors on the streams themselves.
pub fn serve(server: &mut Server, input: impl BufRead, mut output: impl Write) -> Result<()> {
    for line in input.lines() {
        let line = line.context("reading a request from stdin")?;
        if line.trim().is_empty() {
            continue;
        }
        let (resp, quit) = match decode_line::<Request>(&line) {
            Ok(req) => server.handle(req),
            Err(e) => (
                Response::Error {
                    message: format!("malformed request: {e}"),
                },
                false,
            ),
        };
        let text = encode_line(&resp).unwrap_or_else(|e| {
            encode_line(&Response::Error {
                message: format!("cannot encode the response: {e}"),
            })
            .expect("an error response always encodes")
        });
        writeln!(output, "{text}").context("writing a response to stdout")?;
        output.flush().context("flushing stdout")?;
        if quit {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_lines(lines: &[&str]) -> Vec<Response> {
        let mut server = Server::new(
            BackendChoice {
                ort_lib: Some("/nonexistent/libonnxruntime.so".into()),
            },
            BenchEnv::default(),
        );
        let mut out = Vec::new();
        serve(&mut server, lines.join("\n").as_bytes(), &mut out).unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| decode_line(l).unwrap())
            .collect()
    }

    #[test]
    fn a_session_keeps_the_newest_loads_only() {
        let mut m = Models::default();
        for i in 0..MAX_LOADED_MODELS + 3 {
            m.insert(format!("{i:064}"), vec![i as u8]);
        }
        m.insert(format!("{:064}", MAX_LOADED_MODELS + 2), vec![0]); // a reload adds nothing
        assert_eq!(
            (m.bytes.len(), m.order.len()),
            (MAX_LOADED_MODELS, MAX_LOADED_MODELS)
        );
        assert!((0..3).all(|i| m.get(&format!("{i:064}")).is_none()));
        assert_eq!(m.get(&format!("{:064}", 3)), Some(&[3u8][..]));
    }

    #[test]
    fn protocol_errors_keep_the_loop_going() {
        let r = run_lines(&[
            r#"{"type":"info"}"#,
            r#"{"type":"hello","protocol_version":999}"#,
            r#"{"type":"hello","protocol_version":1}"#,
            "not json",
            r#"{"type":"bench","sha256":"00","spec":{}}"#,
            r#"{"type":"load","name":"m","sha256":"00","model_b64":"AAAA"}"#,
            r#"{"type":"quit"}"#,
            r#"{"type":"info"}"#,
        ]);
        assert_eq!(r.len(), 7, "stops after quit: {r:?}");
        let msg = |i: usize| match &r[i] {
            Response::Error { message } => message.clone(),
            other => panic!("response {i} is not an error: {other:?}"),
        };
        assert!(msg(0).contains("first request must be hello"));
        assert!(
            msg(1).contains("v999") && msg(1).contains("v1") && msg(1).contains("redeploy"),
            "{}",
            msg(1)
        );
        assert!(matches!(
            r[2],
            Response::Hello {
                protocol_version: PROTOCOL_VERSION,
                ..
            }
        ));
        assert!(msg(3).contains("malformed request"));
        assert!(msg(4).contains("no model with sha256 00"));
        assert!(msg(5).contains("sha256 mismatch"), "{}", msg(5));
        assert_eq!(r[6], Response::Bye);
    }
}
