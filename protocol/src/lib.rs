//! Host ↔ agent wire types: one definition for `shiftnas` and `shiftnas-agent`.
//!
//! # Wire format (`shiftnas-agent serve`)
//!
//! The host writes one [`Request`] per line on the agent's stdin; the agent answers each with exactly
//! one [`Response`] line on stdout. Every line is a JSON object whose `"type"` field names the
//! message (kebab-case); the other fields sit beside it. Nothing else is ever printed on stdout in
//! serve mode (diagnostics go to stderr). Use [`encode_line`] / [`decode_line`] on both sides.
//!
//! | request (`type`) | fields | response |
//! |---|---|---|
//! | `hello` | `protocol_version` (u32) | `hello` {`protocol_version`, `agent_version`} or `error` |
//! | `info` | – | `info` (a [`BoardInfo`], flattened) |
//! | `load` | `name`, `sha256` (hex), `model_b64` (the `.onnx` bytes, standard base64) | `loaded` {`sha256`, `input_name`, `input_shape`, `backend`} |
//! | `bench` | `sha256` (a loaded model), `spec` (a [`BenchSpec`]) | `bench` (a [`BenchReport`], flattened) |
//! | `bench-set` | `sha256s` (loaded models), `reference` (a loaded model's sha256, not in `sha256s`), `spec` (a [`BenchSetSpec`]) | `bench-set` (a [`BenchSetReport`], flattened) |
//! | `run` | `sha256`, `input` (a [`TensorF32`]) | `output` (a [`TensorF32`], flattened) |
//! | `quit` | – | `bye`, then the agent exits 0 |
//!
//! Any request may instead be answered by `{"type": "error", "message": "…"}`; the agent keeps
//! serving after an error. That includes lines that are not requests: invalid UTF-8, malformed
//! JSON, lines longer than [`MAX_LINE_BYTES`], a model over [`MAX_MODEL_BYTES`], and a `spec`
//! outside the bounds of [`BenchSpec::check`] or [`BenchSetSpec::check`]. Empty lines are ignored. `hello` must be the first exchange: the agent answers every other request
//! with an error until the versions have been checked. A version mismatch is an error on both
//! sides, naming both versions ([`VersionMismatch`]).
//!
//! `bench` measures one model alone (warm-up, then ≥ `runs` runs and ≥ `min_seconds`);
//! `bench-set` measures a set interleaved with a reference model, in rounds, and reports each
//! model's drift-corrected estimate with its confidence interval (see [`BenchSetReport`]).
//!
//! ```text
//! > {"type":"hello","protocol_version":2}
//! < {"type":"hello","protocol_version":2,"agent_version":"0.1.0"}
//! > {"type":"load","name":"a.onnx","sha256":"9f…","model_b64":"CAgSB…"}
//! < {"type":"loaded","sha256":"9f…","input_name":"input","input_shape":[1,3,32,32],"backend":{"name":"ort","version":"1.23.2"}}
//! > {"type":"bench","sha256":"9f…","spec":{"threads":1,"cores":[4,5,6,7],"warmup":10,"runs":50,"min_seconds":1.0,"spin":true,"seed":0}}
//! < {"type":"bench","samples_ms":[…],"p50_ms":3.1,…}
//! > {"type":"bench-set","sha256s":["9f…","3c…"],"reference":"e0…","spec":{"cores":[4,5,6,7],"precision":0.01}}
//! < {"type":"bench-set","models":[{"sha256":"9f…","estimate_ms":3.12,"ratio":0.94,…},…],"reference":{…},"rounds_done":14,"stop":"precise",…}
//! > {"type":"quit"}
//! < {"type":"bye"}
//! ```
//!
//! # Example
//!
//! ```
//! use shiftnas_protocol::{decode_line, encode_line, Request, PROTOCOL_VERSION};
//! let line = encode_line(&Request::Hello { protocol_version: PROTOCOL_VERSION }).unwrap();
//! assert_eq!(line, format!("{{\"type\":\"hello\",\"protocol_version\":{PROTOCOL_VERSION}}}"));
//! let back: Request = decode_line(&line).unwrap();
//! assert_eq!(back, Request::Hello { protocol_version: PROTOCOL_VERSION });
//! ```
#![deny(missing_docs)]

mod bench;
mod bench_set;
pub mod npy;
mod stats;
mod system;

pub use bench::{
    Backend, BackendName, BenchReport, BenchSpec, MAX_MIN_SECONDS, MAX_RUNS, MAX_THREADS,
    MAX_WARMUP, TensorF32, Warning,
};
pub use bench_set::{
    BUDGET_SECONDS_PER_MODEL, BenchSetReport, BenchSetSpec, Bounds, MAX_BUDGET_SECONDS,
    MAX_RUNS_PER_SLICE, MAX_SET_MODELS, SetEstimate, SetReference, SetRound, SetStopReason,
};
pub use stats::{Summary, percentile};
pub use system::{BoardInfo, CoreInfo, CoreState, DevfreqState, SystemSnapshot, ThermalZone};

use serde::{Deserialize, Serialize};

/// Version of this wire format; bump it on any incompatible change to the messages below.
/// Version 2 added `bench-set`.
pub const PROTOCOL_VERSION: u32 = 2;

/// Models one agent session keeps loaded. Both sides evict the oldest load beyond it (the agent
/// frees its bytes; the host sends that model again when it next needs it), so a long search
/// neither fills a small board's memory nor asks for a model the agent dropped.
pub const MAX_LOADED_MODELS: usize = 64;

/// Largest model a `load` request may carry, in decoded bytes (256 MiB).
pub const MAX_MODEL_BYTES: usize = 256 << 20;

/// Longest request line the agent reads: a `load` of a [`MAX_MODEL_BYTES`] model in base64 plus
/// 64 KiB for the other fields. The agent reads a longer line only to skip it (it never holds more
/// than this much of it) and answers it with an error.
pub const MAX_LINE_BYTES: usize = MAX_MODEL_BYTES.div_ceil(3) * 4 + (64 << 10);

/// A message from the host to the agent (one JSON line, tagged by `"type"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Request {
    /// First exchange: the host's protocol version; the agent answers with its own.
    Hello {
        /// The host's [`PROTOCOL_VERSION`].
        protocol_version: u32,
    },
    /// Describe the board: CPU, cores, kernel, governors, runtime ([`BoardInfo`]).
    Info,
    /// Load a model sent inline; the agent verifies its SHA-256 and keeps the session by hash.
    Load {
        /// A display name (usually the file name); never used as a path by the agent.
        name: String,
        /// Lower-case hex SHA-256 of the model bytes.
        sha256: String,
        /// The `.onnx` bytes, standard base64 with padding.
        model_b64: String,
    },
    /// Measure the latency of a loaded model under `spec`.
    Bench {
        /// Hash of a model sent by an earlier `load`.
        sha256: String,
        /// How to measure.
        spec: BenchSpec,
    },
    /// Measure loaded models interleaved with a loaded reference model, in rounds, until every
    /// estimate is precise enough or the budget or round limit is reached.
    BenchSet {
        /// Hashes of the set's models (each sent by an earlier `load`, no duplicates).
        sha256s: Vec<String>,
        /// Hash of the reference model (loaded, not one of `sha256s`).
        reference: String,
        /// How to measure.
        spec: BenchSetSpec,
    },
    /// Run a loaded model once on the given input (for output checks, not timing).
    Run {
        /// Hash of a model sent by an earlier `load`.
        sha256: String,
        /// The input tensor; its shape must equal the model's input shape.
        input: TensorF32,
    },
    /// End the session: the agent answers `bye` and exits.
    Quit,
}

/// A message from the agent to the host (one JSON line, tagged by `"type"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
// One value per protocol line, built once per measurement: boxing the report would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Response {
    /// Answer to [`Request::Hello`] when the versions match.
    Hello {
        /// The agent's [`PROTOCOL_VERSION`].
        protocol_version: u32,
        /// The agent's crate version (`CARGO_PKG_VERSION`).
        agent_version: String,
    },
    /// Answer to [`Request::Info`].
    Info(BoardInfo),
    /// Answer to [`Request::Load`]: the model is ready to bench.
    Loaded {
        /// Hash of the loaded model (as verified by the agent).
        sha256: String,
        /// The model's (single) input name, as the runtime reports it.
        input_name: String,
        /// The model's static input shape.
        input_shape: Vec<usize>,
        /// The runtime that holds the session.
        backend: Backend,
    },
    /// Answer to [`Request::Bench`].
    Bench(BenchReport),
    /// Answer to [`Request::BenchSet`].
    BenchSet(BenchSetReport),
    /// Answer to [`Request::Run`]: the model's first output.
    Output(TensorF32),
    /// Any request failed; the agent keeps serving.
    Error {
        /// What went wrong and, where possible, what to do.
        message: String,
    },
    /// Answer to [`Request::Quit`].
    Bye,
}

/// The two sides speak different protocol versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionMismatch {
    /// The host's version.
    pub host: u32,
    /// The agent's version.
    pub agent: u32,
}

impl std::fmt::Display for VersionMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "protocol version mismatch: host speaks v{}, agent speaks v{}; redeploy the \
             shiftnas-agent built from the same shiftnas release as the host (`shiftnas board \
             check BOARD` uploads it to an SSH board whose agent differs; a local board runs the \
             agent next to `shiftnas` or `--agent`)",
            self.host, self.agent
        )
    }
}

impl std::error::Error for VersionMismatch {}

/// Checks that the host's and the agent's protocol versions agree.
///
/// # Errors
/// [`VersionMismatch`] naming both versions when they differ.
pub fn check_version(host: u32, agent: u32) -> Result<(), VersionMismatch> {
    if host == agent {
        Ok(())
    } else {
        Err(VersionMismatch { host, agent })
    }
}

/// Serialises one message as a single JSON line (without the trailing newline).
///
/// # Errors
/// Only if a field cannot be represented in JSON (e.g. a NaN inside a [`BenchReport`] float).
pub fn encode_line<T: Serialize>(msg: &T) -> serde_json::Result<String> {
    serde_json::to_string(msg)
}

/// Parses one JSON line (surrounding whitespace allowed) into a message.
///
/// # Errors
/// The serde error for malformed JSON or an unknown `type`.
pub fn decode_line<T: serde::de::DeserializeOwned>(line: &str) -> serde_json::Result<T> {
    serde_json::from_str(line.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_use_the_documented_envelope() {
        let r = Request::Load {
            name: "a.onnx".into(),
            sha256: "ab".into(),
            model_b64: "AA==".into(),
        };
        let v: serde_json::Value = serde_json::from_str(&encode_line(&r).unwrap()).unwrap();
        assert_eq!(v["type"], "load");
        assert_eq!(v["model_b64"], "AA==");
        assert_eq!(encode_line(&Request::Quit).unwrap(), r#"{"type":"quit"}"#);
        assert_eq!(encode_line(&Request::Info).unwrap(), r#"{"type":"info"}"#);
        let b: Request =
            decode_line(r#" {"type":"bench","sha256":"ab","spec":{"threads":2}} "#).unwrap();
        let Request::Bench { spec, .. } = b else {
            panic!("not bench: {b:?}")
        };
        assert_eq!(spec.threads, 2);
        assert_eq!(
            spec.runs,
            BenchSpec::default().runs,
            "missing spec fields take defaults"
        );
    }

    #[test]
    fn responses_round_trip() {
        let msgs = vec![
            Response::Hello {
                protocol_version: 1,
                agent_version: "0.1.0".into(),
            },
            Response::Error {
                message: "boom".into(),
            },
            Response::Bye,
            Response::Output(TensorF32 {
                shape: vec![1, 2],
                data: vec![0.1, -3.5e-7],
            }),
            Response::Loaded {
                sha256: "ab".into(),
                input_name: "input".into(),
                input_shape: vec![1, 3, 8, 8],
                backend: Backend {
                    name: BackendName::Ort,
                    version: "1.23.2".into(),
                },
            },
        ];
        for m in msgs {
            let line = encode_line(&m).unwrap();
            assert!(!line.contains('\n'));
            assert_eq!(decode_line::<Response>(&line).unwrap(), m, "{line}");
        }
        let e = encode_line(&Response::Error {
            message: "x".into(),
        })
        .unwrap();
        assert_eq!(e, r#"{"type":"error","message":"x"}"#);
    }

    #[test]
    fn unknown_type_is_an_error() {
        assert!(decode_line::<Request>(r#"{"type":"reboot"}"#).is_err());
        assert!(decode_line::<Request>("not json").is_err());
    }

    #[test]
    fn version_mismatch_names_both_versions_and_the_fix() {
        assert!(check_version(3, 3).is_ok());
        let msg = check_version(1, 2).unwrap_err().to_string();
        assert!(
            msg.contains("v1") && msg.contains("v2") && msg.contains("redeploy"),
            "{msg}"
        );
    }
}
