//! The predictor file: a fitted [`Model`] plus where it was measured and how well it held out.
//!
//! JSON, written by `shiftnas calibrate` and read by `--latency predictor:FILE`. Format 1:
//!
//! ```json
//! {
//!   "format_version": 1,
//!   "created_by": "shiftnas-calibration 0.1.0",
//!   "board_fingerprint": "rk3588/ubuntu-22.04/…",
//!   "runtime": { "name": "onnxruntime", "version": "1.22.0" },
//!   "threads": 4,
//!   "cores": [4, 5, 6, 7],
//!   "space": "spos-imagenet",
//!   "predictor": { "kind": "lut", "table": { "stem_head_ms": 3.1, "blocks": [[..], ..] }, "a": 1.02, "b": 0.4 },
//!   "holdout": { "chosen": "lut", "lut": { "rmspe_pct": 3.2, .. }, "linear": { .. }, .. }
//! }
//! ```
//!
//! `predictor` is a [`Model`]: `"kind": "lut"` with [`LutPredictor`](crate::predictor::LutPredictor)'s
//! fields, or `"kind": "linear"` with [`LinearPredictor`](crate::predictor::LinearPredictor)'s.
//! `holdout` is the [`FitReport`]. Unknown fields are rejected; every parse error names the
//! field (`predictor.coef: invalid type …`).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::fit::FitReport;
use crate::predictor::{ArchFeatures, Model, Predictor};

/// The format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The inference runtime a predictor's measurements came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runtime {
    /// Runtime name, e.g. `onnxruntime`.
    pub name: String,
    /// Runtime version.
    pub version: String,
}

/// Where and how the measurements behind a predictor were taken.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// The board's fingerprint (SoC, OS, governor…), compared by [`PredictorFile::check_board`].
    pub board_fingerprint: String,
    /// The runtime and its version.
    pub runtime: Runtime,
    /// Intra-op threads used when measuring.
    pub threads: u32,
    /// CPU core ids the runtime was pinned to; empty when not pinned.
    pub cores: Vec<u32>,
    /// Search-space name (`spos-imagenet`, …).
    pub space: String,
}

/// A calibrated latency predictor as stored on disk.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PredictorFile {
    /// Always [`FORMAT_VERSION`] when written by this build.
    pub format_version: u32,
    /// `shiftnas-calibration <version>` of the writer.
    pub created_by: String,
    /// See [`Provenance::board_fingerprint`].
    pub board_fingerprint: String,
    /// See [`Provenance::runtime`].
    pub runtime: Runtime,
    /// See [`Provenance::threads`].
    pub threads: u32,
    /// See [`Provenance::cores`].
    pub cores: Vec<u32>,
    /// See [`Provenance::space`].
    pub space: String,
    /// The fitted predictor.
    pub predictor: Model,
    /// How the predictor was chosen and how it scored on held-out subnets.
    pub holdout: FitReport,
}

/// Takes fields out of a JSON object one by one so that errors can name them.
struct Fields {
    obj: Map<String, Value>,
    prefix: &'static str,
}

impl Fields {
    fn new(v: Value, prefix: &'static str) -> Result<Fields> {
        match v {
            Value::Object(obj) => Ok(Fields { obj, prefix }),
            other => Err(Error::Field {
                field: prefix.trim_end_matches('.').into(),
                reason: format!("expected a JSON object, found {}", kind_of(&other)),
            }),
        }
    }

    fn name(&self, f: &str) -> String {
        format!("{}{f}", self.prefix)
    }

    fn raw(&mut self, f: &str) -> Result<Value> {
        self.obj.remove(f).ok_or_else(|| Error::Field {
            field: self.name(f),
            reason: "is missing".into(),
        })
    }

    fn take<T: DeserializeOwned>(&mut self, f: &str) -> Result<T> {
        let v = self.raw(f)?;
        serde_json::from_value(v).map_err(|e| Error::Field {
            field: self.name(f),
            reason: e.to_string(),
        })
    }

    fn finish(self) -> Result<()> {
        match self.obj.keys().next() {
            Some(k) => Err(Error::Field {
                field: format!("{}{k}", self.prefix),
                reason: "is not a known field (written by a newer shiftnas?)".into(),
            }),
            None => Ok(()),
        }
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn parse_model(v: Value) -> Result<Model> {
    let mut f = Fields::new(v, "predictor.")?;
    let kind: String = f.take("kind")?;
    let model = match kind.as_str() {
        "lut" => Model::Lut(crate::predictor::LutPredictor {
            table: f.take("table")?,
            a: f.take("a")?,
            b: f.take("b")?,
        }),
        "linear" => Model::Linear(crate::predictor::LinearPredictor {
            features: f.take("features")?,
            layout: f.take("layout")?,
            lambda: f.take("lambda")?,
            intercept: f.take("intercept")?,
            coef: f.take("coef")?,
        }),
        other => {
            return Err(Error::Field {
                field: "predictor.kind".into(),
                reason: format!("unknown kind `{other}`, expected `lut` or `linear`"),
            });
        }
    };
    f.finish()?;
    model.validate().map_err(|e| match e {
        Error::Field { field, reason } => Error::Field {
            field: format!("predictor.{field}"),
            reason,
        },
        e => e,
    })?;
    Ok(model)
}

impl PredictorFile {
    /// Assembles a file from a fitted model, its provenance and its fit report.
    pub fn new(predictor: Model, provenance: Provenance, holdout: FitReport) -> PredictorFile {
        PredictorFile {
            format_version: FORMAT_VERSION,
            created_by: format!("shiftnas-calibration {}", env!("CARGO_PKG_VERSION")),
            board_fingerprint: provenance.board_fingerprint,
            runtime: provenance.runtime,
            threads: provenance.threads,
            cores: provenance.cores,
            space: provenance.space,
            predictor,
            holdout,
        }
    }

    /// Pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a PredictorFile always serialises")
    }

    /// Parses and validates a file; errors name the field at fault, and a different
    /// `format_version` says which versions are involved.
    pub fn from_json(text: &str) -> Result<PredictorFile> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| Error::Parse(format!("not valid JSON: {e}")))?;
        if !v.is_object() {
            return Err(Error::Parse(format!(
                "expected a JSON object, found {}",
                kind_of(&v)
            )));
        }
        let mut f = Fields::new(v, "")?;
        let format_version: u32 = f.take("format_version")?;
        if format_version != FORMAT_VERSION {
            return Err(Error::Field {
                field: "format_version".into(),
                reason: format!(
                    "is {format_version}, but this build reads version {FORMAT_VERSION}; \
                     use a matching shiftnas or recalibrate"
                ),
            });
        }
        let file = PredictorFile {
            format_version,
            created_by: f.take("created_by")?,
            board_fingerprint: f.take("board_fingerprint")?,
            runtime: f.take("runtime")?,
            threads: f.take("threads")?,
            cores: f.take("cores")?,
            space: f.take("space")?,
            predictor: parse_model(f.raw("predictor")?)?,
            holdout: f.take("holdout")?,
        };
        f.finish()?;
        Ok(file)
    }

    /// Errors, naming both fingerprints, when the file was calibrated on another board, unless
    /// `force` (then the caller should warn).
    pub fn check_board(&self, fingerprint: &str, force: bool) -> Result<()> {
        if force || self.board_fingerprint == fingerprint {
            Ok(())
        } else {
            Err(Error::BoardMismatch {
                file: self.board_fingerprint.clone(),
                given: fingerprint.to_string(),
            })
        }
    }

    /// Checks `features` against the predictor, then predicts (ms).
    pub fn predict_checked(&self, features: &ArchFeatures) -> Result<f64> {
        self.predictor.check(features)?;
        Ok(self.predictor.predict(features))
    }
}

impl Predictor for PredictorFile {
    fn predict(&self, features: &ArchFeatures) -> f64 {
        self.predictor.predict(features)
    }

    fn check(&self, features: &ArchFeatures) -> Result<()> {
        self.predictor.check(features)
    }
}
