//! `shiftnas-agent serve`: the JSON-lines loop the host drives over SSH (wire format in
//! `shiftnas_protocol`'s crate doc).
//!
//! Every failure becomes `Response::Error` and the loop goes on; only `quit` or end of input stop
//! it. That covers lines that are no request at all: invalid UTF-8, lines over
//! [`MAX_LINE_BYTES`] (skipped while reading, never held whole), and requests whose handling
//! panics. stdout carries nothing but response lines. Models live in memory, keyed by SHA-256;
//! nothing is written to disk, so the agent touches no file outside its work dir.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, Write};
use std::panic::AssertUnwindSafe;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use shiftnas_protocol::{
    MAX_LINE_BYTES, MAX_LOADED_MODELS, MAX_MODEL_BYTES, PROTOCOL_VERSION, Request, Response,
    check_version, decode_line, encode_line,
};

use crate::bench::{self, BenchEnv};
use crate::interleaved;
use crate::runtime::{self, Backend, BackendChoice, SessionOptions};

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

    /// A loaded model as [`interleaved::measure_set`] takes it (checked loaded before).
    fn set_model<'a>(&'a self, sha256: &'a str) -> interleaved::SetModel<'a> {
        interleaved::SetModel {
            sha256,
            bytes: self
                .get(sha256)
                .expect("the caller checked that it is loaded"),
        }
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

    /// Answers one request; the bool says whether the session should end. A panic while
    /// handling it becomes an error response too (the session goes on).
    pub fn handle(&mut self, req: Request) -> (Response, bool) {
        if let Request::Quit = req {
            return (Response::Bye, true);
        }
        (answer(|| self.try_handle(req)), false)
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
                    model_b64.trim().len() / 4 * 3 <= MAX_MODEL_BYTES,
                    "model {name:?} is larger than the {MAX_MODEL_BYTES} bytes a load may carry"
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
                spec.check()
                    .map_err(anyhow::Error::msg)
                    .context("bench spec")?;
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
            Request::BenchSet {
                sha256s,
                reference,
                spec,
            } => {
                let norm = |s: &str| s.trim().to_ascii_lowercase();
                let shas: Vec<String> = sha256s.iter().map(|s| norm(s)).collect();
                let reference = norm(&reference);
                interleaved::check_request(&shas, &reference, &spec)?;
                for sha in std::iter::once(&reference).chain(&shas) {
                    self.model(sha)?;
                }
                self.backend()?;
                let backend = self.backend.as_deref().expect("loaded above");
                let set: Vec<_> = shas.iter().map(|s| self.models.set_model(s)).collect();
                Ok(Response::BenchSet(interleaved::measure_set(
                    backend,
                    self.models.set_model(&reference),
                    &set,
                    &spec,
                    &self.env,
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

fn error(message: String) -> Response {
    Response::Error { message }
}

/// The response of `f`: its value, its error, or an error naming its panic.
fn answer(f: impl FnOnce() -> Result<Response>) -> Response {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => error(format!("{e:#}")),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            error(format!(
                "internal error while handling the request: {what}; the session goes on, \
                 please report this with the request that caused it"
            ))
        }
    }
}

/// One line read by [`read_line_bounded`].
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// End of input, nothing read.
    Eof,
    /// A whole line (without its newline) is in the buffer.
    Read,
    /// The line had this many bytes, more than the limit; it was skipped up to its newline.
    TooLong(u64),
}

/// Reads one `\n`-terminated line into `buf` (cleared first), holding at most `max` bytes of it:
/// the rest of a longer line is consumed and dropped as it arrives. A last line without a newline
/// counts as a line.
fn read_line_bounded(
    input: &mut impl BufRead,
    max: usize,
    buf: &mut Vec<u8>,
) -> std::io::Result<Line> {
    buf.clear();
    let mut total: u64 = 0;
    let mut read_any = false;
    loop {
        let chunk = match input.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            break;
        }
        read_any = true;
        let (part, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], i + 1),
            None => (chunk, chunk.len()),
        };
        total += part.len() as u64;
        if total <= max as u64 {
            // Grow by doubling, but never past `max`.
            let want = (buf.len() + part.len())
                .max(buf.capacity().saturating_mul(2))
                .min(max);
            if want > buf.capacity() {
                buf.reserve_exact(want - buf.len());
            }
            buf.extend_from_slice(part);
        }
        let newline = done > part.len();
        input.consume(done);
        if newline {
            break;
        }
    }
    Ok(if !read_any {
        Line::Eof
    } else if total > max as u64 {
        buf.clear();
        Line::TooLong(total)
    } else {
        Line::Read
    })
}

/// Runs the loop over `input` / `output` until `quit` or end of input.
///
/// # Errors
/// Only I/O errors on the streams themselves.
pub fn serve(server: &mut Server, input: impl BufRead, output: impl Write) -> Result<()> {
    serve_bounded(server, input, output, MAX_LINE_BYTES)
}

fn serve_bounded(
    server: &mut Server,
    mut input: impl BufRead,
    mut output: impl Write,
    max_line: usize,
) -> Result<()> {
    let mut buf = Vec::new();
    loop {
        let line = read_line_bounded(&mut input, max_line, &mut buf)
            .context("reading a request from stdin")?;
        let (resp, quit) = match line {
            Line::Eof => break,
            Line::TooLong(n) => (
                error(format!(
                    "request line of {n} bytes is longer than the {max_line} bytes the agent reads \
                     (a model may have at most {MAX_MODEL_BYTES} bytes); it was skipped"
                )),
                false,
            ),
            Line::Read => match std::str::from_utf8(&buf) {
                Err(e) => (
                    error(format!(
                        "malformed request: the line is not UTF-8 (invalid byte at offset {})",
                        e.valid_up_to()
                    )),
                    false,
                ),
                Ok(text) if text.trim().is_empty() => continue,
                Ok(text) => match decode_line::<Request>(text) {
                    Ok(req) => server.handle(req),
                    Err(e) => (error(format!("malformed request: {e}")), false),
                },
            },
        };
        // A large load leaves a large buffer behind; give it back between requests.
        if buf.capacity() > 1 << 20 {
            buf = Vec::new();
        }
        let text = encode_line(&resp).unwrap_or_else(|e| {
            encode_line(&error(format!("cannot encode the response: {e}")))
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
        run_bytes(lines.join("\n").as_bytes(), MAX_LINE_BYTES, 8 << 10)
    }

    /// Serves `input` read through a buffer of `chunk` bytes, with lines limited to `max_line`.
    fn run_bytes(input: &[u8], max_line: usize, chunk: usize) -> Vec<Response> {
        let mut server = Server::new(
            BackendChoice {
                ort_lib: Some("/nonexistent/libonnxruntime.so".into()),
            },
            BenchEnv::default(),
        );
        let mut out = Vec::new();
        let reader = std::io::BufReader::with_capacity(chunk, input);
        serve_bounded(&mut server, reader, &mut out, max_line).unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| decode_line(l).unwrap())
            .collect()
    }

    fn message(r: &Response) -> &str {
        match r {
            Response::Error { message } => message,
            other => panic!("not an error: {other:?}"),
        }
    }

    #[test]
    fn bounded_reader_skips_long_lines_whole() {
        for chunk in [1, 3, 7, 64] {
            let mut input = std::io::BufReader::with_capacity(chunk, &b"abc\n0123456789\n\nxy"[..]);
            let mut buf = Vec::new();
            let mut got = Vec::new();
            loop {
                let l = read_line_bounded(&mut input, 5, &mut buf).unwrap();
                if l == Line::Eof {
                    break;
                }
                got.push((l, String::from_utf8(buf.clone()).unwrap()));
            }
            assert_eq!(
                got,
                vec![
                    (Line::Read, "abc".into()),
                    (Line::TooLong(10), String::new()),
                    (Line::Read, String::new()),
                    (Line::Read, "xy".into()),
                ],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn every_bad_line_gets_an_error_and_the_loop_goes_on() {
        let hello = format!(r#"{{"type":"hello","protocol_version":{PROTOCOL_VERSION}}}"#);
        let hello = hello.as_bytes();
        let mut input = Vec::new();
        for line in [
            hello,
            b"\xff\xfe not utf-8",
            &[b'x'; 300],
            b"",
            b"   ",
            br#"{"type":"bench","sha256":"00","spec":{"runs":18446744073709551615}}"#,
            br#"{"type":"bench","sha256":"00","spec":{"threads":100000}}"#,
            br#"{"type":"bench","sha256":"00","spec":{"runs":1e400}}"#,
            br#"{"type":"bench","sha256":"00","spec":{"min_seconds":1e300}}"#,
            br#"{"type":"load","name":7}"#,
            br#"{"type":"quit"}"#,
        ] {
            input.extend_from_slice(line);
            input.push(b'\n');
        }
        let r = run_bytes(&input, 200, 16);
        assert_eq!(r.len(), 9, "empty lines get no answer: {r:?}");
        assert!(matches!(r[0], Response::Hello { .. }));
        assert!(message(&r[1]).contains("not UTF-8"), "{:?}", r[1]);
        assert!(
            message(&r[2]).contains("line of 300 bytes is longer than the 200 bytes"),
            "{:?}",
            r[2]
        );
        assert!(message(&r[3]).contains("runs must be between 1 and 1000000"));
        assert!(message(&r[4]).contains("threads must be between 1 and 64"));
        assert!(message(&r[5]).contains("malformed request"));
        assert!(message(&r[6]).contains("min_seconds must be between 0 and 600"));
        assert!(message(&r[7]).contains("malformed request"));
        assert_eq!(r[8], Response::Bye);
    }

    #[test]
    fn bench_set_is_checked_before_models_are_looked_up() {
        let hello = format!(r#"{{"type":"hello","protocol_version":{PROTOCOL_VERSION}}}"#);
        let r = run_lines(&[
            &hello,
            r#"{"type":"bench-set","sha256s":["aa"],"reference":"bb","spec":{"runs_per_slice":0}}"#,
            r#"{"type":"bench-set","sha256s":["aa"],"reference":"bb","spec":{"min_rounds":3}}"#,
            r#"{"type":"bench-set","sha256s":["aa","AA "],"reference":"bb","spec":{}}"#,
            r#"{"type":"bench-set","sha256s":["aa"],"reference":"aa","spec":{}}"#,
            r#"{"type":"bench-set","sha256s":[],"reference":"bb","spec":{}}"#,
            r#"{"type":"bench-set","sha256s":["aa"],"reference":"bb","spec":{}}"#,
        ]);
        let msg = |i: usize| message(&r[i]).to_string();
        assert!(
            msg(1).contains("runs_per_slice must be between 1 and"),
            "{}",
            msg(1)
        );
        assert!(msg(2).contains("min_rounds"), "{}", msg(2));
        assert!(
            msg(3).contains("model aa is in the set twice"),
            "{}",
            msg(3)
        );
        assert!(
            msg(4).contains("model aa is the set's reference too"),
            "{}",
            msg(4)
        );
        assert!(
            msg(5).contains("a set must have between 1 and"),
            "{}",
            msg(5)
        );
        assert!(
            msg(6).contains("no model with sha256 bb is loaded"),
            "the reference is looked up first: {}",
            msg(6)
        );
    }

    #[test]
    fn a_panic_becomes_an_error_response() {
        let resp = answer(|| panic!("boom {}", 7));
        assert!(
            message(&resp).contains("internal error") && message(&resp).contains("boom 7"),
            "{resp:?}"
        );
        assert_eq!(answer(|| Ok(Response::Bye)), Response::Bye);
        assert_eq!(message(&answer(|| anyhow::bail!("no"))), "no");
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
            &format!(r#"{{"type":"hello","protocol_version":{PROTOCOL_VERSION}}}"#),
            "not json",
            r#"{"type":"bench","sha256":"00","spec":{}}"#,
            r#"{"type":"load","name":"m","sha256":"00","model_b64":"AAAA"}"#,
            r#"{"type":"quit"}"#,
            r#"{"type":"info"}"#,
        ]);
        assert_eq!(r.len(), 8, "stops after quit: {r:?}");
        let msg = |i: usize| match &r[i] {
            Response::Error { message } => message.clone(),
            other => panic!("response {i} is not an error: {other:?}"),
        };
        assert!(msg(0).contains("first request must be hello"));
        assert!(
            msg(1).contains("v999") && msg(1).contains("v2") && msg(1).contains("redeploy"),
            "{}",
            msg(1)
        );
        // A v1 host (before bench-set) is refused, with both versions named.
        assert!(
            msg(2).contains("host speaks v1, agent speaks v2") && msg(2).contains("redeploy"),
            "{}",
            msg(2)
        );
        assert!(matches!(
            r[3],
            Response::Hello {
                protocol_version: PROTOCOL_VERSION,
                ..
            }
        ));
        assert!(msg(4).contains("malformed request"));
        assert!(msg(5).contains("no model with sha256 00"));
        assert!(msg(6).contains("sha256 mismatch"), "{}", msg(6));
        assert_eq!(r[7], Response::Bye);
    }
}
