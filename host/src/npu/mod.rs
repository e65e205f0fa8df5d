//! Converting exported ONNX models to `.rknn` for Rockchip NPUs (RK3588) with rknn-toolkit2.
//!
//! The toolkit is Python; the host runs `scripts/rknn/convert.py` (compiled into the binary)
//! with the Python named by `SHIFTNAS_RKNN_PYTHON` (`source scripts/rknn-env` installs a private
//! venv and sets it). [`Converter::convert`] builds fp16 or int8 models and caches them in a
//! folder per sha256(ONNX bytes) × dtype × target × toolkit version (× the calibration inputs'
//! bytes for int8); two builds of the same model differ in ~1.5 kB, so the `.rknn` bytes are
//! never a key. [`Converter::simulate`] runs the toolkit's simulator, for accuracy checks.
//!
//! An op that lands on the CPU is an error ([`NpuError::CpuOps`]) naming the model and each op:
//! on the RK3588 every such op costs an NPU → CPU → NPU round trip. The one CPU op tolerated is
//! the `Reshape` the toolkit itself appends to a classifier output (it rewrites the final `Gemm`
//! as a conv and reshapes `[1, n, 1, 1]` back to `[1, n]`); it is listed in
//! [`ConvertReport::output_reshapes`]. Export with [`export_options`] (`SplitStyle::ReshapeSplit`):
//! the default strided `Slice` split puts two `Slice` ops per stride-1 block on the CPU
//! (docs/npu.md).

mod npy;
pub mod quantized;
mod toolkit;

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use shiftnas_models::onnx::{ExportOptions, SplitStyle};

pub use npy::{read_f32 as read_npy, write_f32 as write_npy};
pub use quantized::{Images, QuantAccuracy, simulated_accuracy};
pub use toolkit::{CONVERT_PY, PYTHON_ENV, PlacedOp, Toolkit};

/// ONNX export options for models meant for the NPU: batch fixed to 1 and the
/// `Reshape → Split → Reshape` channel split, which the toolkit maps to the NPU (the default
/// strided `Slice` split lands on the CPU).
pub fn export_options() -> ExportOptions {
    npu_options(&ExportOptions::default())
}

/// `options` (their metadata: normalisation, class names) with the NPU's graph settings of
/// [`export_options`].
pub fn npu_options(options: &ExportOptions) -> ExportOptions {
    ExportOptions {
        batch: Some(1),
        split: SplitStyle::ReshapeSplit,
        ..options.clone()
    }
}

/// Converts candidates for a board with `runtime = "rknn"`: each ONNX export (made with
/// [`npu_options`]) becomes `.rknn` bytes in `dtype`, int8 calibrated on `calibration`. Conversions
/// come from the cache when their ONNX bytes were converted before, so the same arch gives the
/// same `.rknn` bytes (and latency-cache key) every time.
#[derive(Debug, Clone)]
pub struct BoardConversion {
    /// The toolkit and its cache.
    pub converter: Converter,
    /// The board's NPU format.
    pub dtype: Dtype,
    /// Int8 calibration images (unused for fp16).
    pub calibration: Images,
}

impl BoardConversion {
    /// The `.rknn` bytes of `onnx` (named `name` in errors).
    ///
    /// # Errors
    /// A conversion that fails or puts ops on the CPU ([`NpuError`], naming the ops), or I/O.
    pub fn convert(&self, name: &str, onnx: &[u8]) -> Result<Vec<u8>> {
        let conversion = quantized::with_config(self.dtype, Some(&self.calibration), |config| {
            self.converter.convert(name, onnx, config)
        })?;
        fs::read(&conversion.rknn).with_context(|| format!("reading {}", conversion.rknn.display()))
    }
}

/// The NPU number format of a conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// Float16 weights and activations: no calibration, near-fp32 outputs.
    Fp16,
    /// Int8 weights and activations (`w8a8`), calibrated on sample inputs.
    Int8,
}

impl Dtype {
    /// `fp16` / `int8`, as the toolkit script and boards.toml spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Dtype::Fp16 => "fp16",
            Dtype::Int8 => "int8",
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Dtype {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Dtype> {
        match s {
            "fp16" => Ok(Dtype::Fp16),
            "int8" => Ok(Dtype::Int8),
            _ => anyhow::bail!("unknown NPU dtype `{s}`: use `fp16` or `int8`"),
        }
    }
}

/// What to convert to.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvertConfig {
    /// The toolkit's `target_platform`, e.g. `rk3588`.
    pub target: String,
    /// fp16 or int8.
    pub dtype: Dtype,
    /// Int8 calibration inputs: NCHW float32 `.npy` files of the model's input shape, normalised as
    /// the model expects (write them with [`write_npy`]). Ignored for fp16.
    pub calibration: Vec<PathBuf>,
}

impl ConvertConfig {
    /// `rk3588` in `dtype`, without calibration inputs.
    pub fn rk3588(dtype: Dtype) -> ConvertConfig {
        ConvertConfig {
            target: "rk3588".into(),
            dtype,
            calibration: Vec::new(),
        }
    }
}

/// What a conversion reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConvertReport {
    /// rknn-toolkit2's version.
    pub toolkit_version: String,
    /// Target platform.
    pub target: String,
    /// fp16 or int8.
    pub dtype: Dtype,
    /// Seconds the toolkit took to load, build and export.
    pub seconds: f64,
    /// How many ops run on the NPU.
    pub npu_ops: u32,
    /// Ops on the CPU (the runtime's input/output operators aside).
    pub cpu_ops: Vec<PlacedOp>,
    /// CPU `Reshape`s the toolkit appends to an output (see the module docs); tolerated.
    pub output_reshapes: Vec<PlacedOp>,
}

/// A converted model.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversion {
    /// The `.rknn` file, in the cache.
    pub rknn: PathBuf,
    /// The toolkit's log of the build (the spurious `Unkown op target: 0` lines removed).
    pub log: PathBuf,
    /// What the conversion reported.
    pub report: ConvertReport,
    /// Whether it came from the cache.
    pub cached: bool,
}

/// A conversion that did not give an all-NPU model.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NpuError {
    /// The toolkit failed at `stage` (`load_onnx`, `build`, `init_runtime`, …).
    #[error(
        "converting {model} to .rknn ({dtype}, {target}, rknn-toolkit2 {toolkit}) failed in \
         {stage}: {message}{}",
        log_hint(.log_tail)
    )]
    Toolkit {
        /// The model's name as the caller gave it.
        model: String,
        /// fp16 or int8.
        dtype: Dtype,
        /// Target platform.
        target: String,
        /// rknn-toolkit2's version.
        toolkit: String,
        /// The toolkit call that failed.
        stage: String,
        /// The exception.
        message: String,
        /// The last lines of the toolkit's log.
        log_tail: Vec<String>,
    },
    /// Ops landed on the CPU.
    #[error(
        "{model} ({dtype}, {target}): {} op(s) would run on the CPU, not the NPU: {}; \
         for shiftnas exports use the ReshapeSplit split style (docs/npu.md)",
        ops.len(),
        ops.iter().map(|o| format!("{} `{}`", o.op_type, o.name)).collect::<Vec<_>>().join(", ")
    )]
    CpuOps {
        /// The model's name as the caller gave it.
        model: String,
        /// fp16 or int8.
        dtype: Dtype,
        /// Target platform.
        target: String,
        /// The ops.
        ops: Vec<PlacedOp>,
    },
}

fn log_hint(tail: &[String]) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("\ntoolkit log (last lines):\n{}", tail.join("\n"))
    }
}

/// Converts ONNX models with one toolkit into one cache folder.
#[derive(Debug, Clone)]
pub struct Converter {
    /// The toolkit.
    pub toolkit: Toolkit,
    /// The cache folder: one subfolder per conversion key.
    pub cache_dir: PathBuf,
}

/// The default conversion cache: `$XDG_CACHE_HOME/shiftnas/rknn` or `~/.cache/shiftnas/rknn`.
pub fn default_cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/".into())).join(".cache")
        })
        .join("shiftnas")
        .join("rknn")
}

impl Converter {
    /// The toolkit of `SHIFTNAS_RKNN_PYTHON` and the default cache folder.
    ///
    /// # Errors
    /// As [`Toolkit::from_env`].
    pub fn from_env() -> Result<Converter> {
        Ok(Converter {
            toolkit: Toolkit::from_env()?,
            cache_dir: default_cache_dir(),
        })
    }

    /// The cache key of converting `onnx` under `config`: hex sha256 over the ONNX bytes, the
    /// target, the dtype, the toolkit version and, for int8, the calibration files' bytes.
    ///
    /// # Errors
    /// If a calibration file cannot be read.
    pub fn key(&self, onnx: &[u8], config: &ConvertConfig) -> Result<String> {
        let mut h = Sha256::new();
        let mut field = |bytes: &[u8]| {
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        field(b"shiftnas-rknn-1");
        field(&Sha256::digest(onnx));
        field(config.target.as_bytes());
        field(config.dtype.as_str().as_bytes());
        field(self.toolkit.version.as_bytes());
        if config.dtype == Dtype::Int8 {
            for p in &config.calibration {
                let bytes = fs::read(p).with_context(|| {
                    format!("reading the int8 calibration input {}", p.display())
                })?;
                field(&Sha256::digest(&bytes));
            }
        }
        Ok(hex::encode(h.finalize()))
    }

    /// Converts `onnx` (named `model` in errors) under `config`, or takes it from the cache.
    ///
    /// # Errors
    /// [`NpuError::Toolkit`] if the toolkit fails, [`NpuError::CpuOps`] if ops land on the CPU
    /// (the `.rknn` is cached all the same), other errors for I/O and an unusable toolkit.
    pub fn convert(&self, model: &str, onnx: &[u8], config: &ConvertConfig) -> Result<Conversion> {
        let key = self.key(onnx, config)?;
        let entry = self.cache_dir.join(&key);
        let conv = match load_entry(&entry)? {
            Some(c) => c,
            None => self.convert_into(model, onnx, config, &entry)?,
        };
        if !conv.report.cpu_ops.is_empty() {
            return Err(NpuError::CpuOps {
                model: model.into(),
                dtype: config.dtype,
                target: config.target.clone(),
                ops: conv.report.cpu_ops.clone(),
            }
            .into());
        }
        Ok(conv)
    }

    fn convert_into(
        &self,
        model: &str,
        onnx: &[u8],
        config: &ConvertConfig,
        entry: &Path,
    ) -> Result<Conversion> {
        fs::create_dir_all(&self.cache_dir)
            .with_context(|| format!("creating {}", self.cache_dir.display()))?;
        // Build in a temp folder beside the entry, then rename it into place: a reader sees a
        // whole entry or none, and a concurrent writer of the same key simply loses the race.
        let tmp = self.cache_dir.join(format!(
            ".tmp-{}-{}",
            entry.file_name().unwrap().to_string_lossy(),
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let result = (|| {
            let (report, _) = self.run_script(model, onnx, config, &tmp, &[])?;
            write_synced(
                &tmp.join("report.json"),
                &serde_json::to_vec_pretty(&report)?,
            )?;
            File::open(tmp.join("model.rknn"))
                .and_then(|f| f.sync_all())
                .with_context(|| format!("syncing {}", tmp.join("model.rknn").display()))?;
            // A failed rename with a complete entry in place: another process won the race.
            if let Err(e) = fs::rename(&tmp, entry)
                && load_entry(entry)?.is_none()
            {
                return Err(e)
                    .with_context(|| format!("moving {} to {}", tmp.display(), entry.display()));
            }
            Ok(())
        })();
        let _ = fs::remove_dir_all(&tmp);
        result?;
        let mut conv = load_entry(entry)?
            .with_context(|| format!("{} vanished after it was written", entry.display()))?;
        conv.cached = false;
        Ok(conv)
    }

    /// Converts `onnx` under `config` and runs the toolkit's simulator on `inputs`, in one toolkit
    /// process: the simulator only runs a model built in its own process. Each input holds the
    /// NCHW images of `shape`, whose batch N may exceed the model's batch of 1: the images run one
    /// by one. Returns each input's first output, flattened (N rows), and the conversion report.
    /// Does not use the cache.
    ///
    /// # Errors
    /// As [`Converter::convert`] (CPU ops are reported in the report, not as an error, so that
    /// accuracy can be checked either way), and I/O errors.
    pub fn simulate(
        &self,
        model: &str,
        onnx: &[u8],
        config: &ConvertConfig,
        shape: &[usize],
        inputs: &[Vec<f32>],
    ) -> Result<(Vec<Vec<f32>>, ConvertReport)> {
        let dir = toolkit::scratch_dir()?;
        let result = (|| {
            let mut files = Vec::new();
            for (i, x) in inputs.iter().enumerate() {
                let p = dir.join(format!("in_{i}.npy"));
                write_npy(&p, shape, x)
                    .with_context(|| format!("simulator input {i} of {model}"))?;
                files.push(p);
            }
            let (report, simulated) = self.run_script(model, onnx, config, &dir, &files)?;
            let outputs = simulated
                .iter()
                .map(|outs| {
                    let first = outs
                        .first()
                        .with_context(|| format!("the simulator gave {model} no output"))?;
                    Ok(read_npy(first)?.1)
                })
                .collect::<Result<Vec<_>>>()?;
            Ok((outputs, report))
        })();
        let _ = fs::remove_dir_all(&dir);
        result
    }

    /// Runs the script in `dir` (which receives model.onnx, model.rknn, convert.log).
    fn run_script(
        &self,
        model: &str,
        onnx: &[u8],
        config: &ConvertConfig,
        dir: &Path,
        simulate: &[PathBuf],
    ) -> Result<(ConvertReport, Vec<Vec<PathBuf>>)> {
        let onnx_path = dir.join("model.onnx");
        fs::write(&onnx_path, onnx).with_context(|| format!("writing {}", onnx_path.display()))?;
        let mut args: Vec<OsString> = vec![
            "--onnx".into(),
            onnx_path.clone().into(),
            "--target".into(),
            config.target.clone().into(),
            "--dtype".into(),
            config.dtype.as_str().into(),
            "--out".into(),
            dir.join("model.rknn").into(),
            "--log".into(),
            dir.join("convert.log").into(),
        ];
        if config.dtype == Dtype::Int8 {
            if config.calibration.is_empty() {
                anyhow::bail!(
                    "{model}: int8 conversion needs calibration inputs (ConvertConfig::calibration)"
                );
            }
            let list = dir.join("calibration.txt");
            let mut text = String::new();
            for p in &config.calibration {
                let abs = std::path::absolute(p)
                    .with_context(|| format!("calibration input {}", p.display()))?;
                text.push_str(&abs.to_string_lossy());
                text.push('\n');
            }
            fs::write(&list, text).with_context(|| format!("writing {}", list.display()))?;
            args.extend(["--calib".into(), list.into()]);
        }
        if !simulate.is_empty() {
            args.push("--simulate".into());
            args.extend(simulate.iter().map(|p| p.clone().into_os_string()));
            args.extend(["--sim-out".into(), dir.join("sim").into()]);
        }
        let r = self.toolkit.run(&args, dir)?;
        let _ = fs::remove_file(&onnx_path);
        let _ = fs::remove_file(dir.join("convert.py"));
        if !r.ok {
            return Err(NpuError::Toolkit {
                model: model.into(),
                dtype: config.dtype,
                target: config.target.clone(),
                toolkit: r.toolkit_version,
                stage: r.stage,
                message: r.error,
                log_tail: r.log_tail,
            }
            .into());
        }
        let report = ConvertReport {
            toolkit_version: r.toolkit_version,
            target: config.target.clone(),
            dtype: config.dtype,
            seconds: r.seconds,
            npu_ops: r.npu_ops,
            cpu_ops: r.cpu_ops,
            output_reshapes: r.output_reshapes,
        };
        Ok((report, r.simulated))
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// A complete cache entry, or `None`.
fn load_entry(entry: &Path) -> Result<Option<Conversion>> {
    let report_path = entry.join("report.json");
    let rknn = entry.join("model.rknn");
    if !report_path.is_file() || !rknn.is_file() {
        return Ok(None);
    }
    let text =
        fs::read(&report_path).with_context(|| format!("reading {}", report_path.display()))?;
    let report: ConvertReport = serde_json::from_slice(&text).with_context(|| {
        format!(
            "{} is not a conversion report; delete {} to convert again",
            report_path.display(),
            entry.display()
        )
    })?;
    Ok(Some(Conversion {
        rknn,
        log: entry.join("convert.log"),
        report,
        cached: true,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn converter(dir: &Path) -> Converter {
        Converter {
            toolkit: Toolkit {
                python: "/nonexistent/python".into(),
                version: "2.5.0".into(),
            },
            cache_dir: dir.to_path_buf(),
        }
    }

    #[test]
    fn key_covers_model_dtype_target_toolkit_and_calibration() {
        let dir = tempfile::tempdir().unwrap();
        let c = converter(dir.path());
        let fp16 = ConvertConfig::rk3588(Dtype::Fp16);
        let a = dir.path().join("a.npy");
        let b = dir.path().join("b.npy");
        write_npy(&a, &[1, 1, 1, 2], &[0.0, 1.0]).unwrap();
        write_npy(&b, &[1, 1, 1, 2], &[0.0, 2.0]).unwrap();
        let int8 = |files: Vec<PathBuf>| ConvertConfig {
            calibration: files,
            ..ConvertConfig::rk3588(Dtype::Int8)
        };
        let base = c.key(b"onnx", &fp16).unwrap();
        let mut keys = vec![
            base.clone(),
            c.key(b"onnx2", &fp16).unwrap(),
            c.key(
                b"onnx",
                &ConvertConfig {
                    target: "rk3576".into(),
                    ..fp16.clone()
                },
            )
            .unwrap(),
            c.key(b"onnx", &int8(vec![a.clone()])).unwrap(),
            c.key(b"onnx", &int8(vec![b.clone()])).unwrap(),
            c.key(b"onnx", &int8(vec![a.clone(), b.clone()])).unwrap(),
        ];
        let mut newer = converter(dir.path());
        newer.toolkit.version = "2.6.0".into();
        keys.push(newer.key(b"onnx", &fp16).unwrap());
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 7, "every field changes the key");
        // Same inputs, same key; fp16 ignores calibration files.
        assert_eq!(base, c.key(b"onnx", &fp16).unwrap());
        let fp16_with = ConvertConfig {
            calibration: vec![a],
            ..fp16
        };
        assert_eq!(base, c.key(b"onnx", &fp16_with).unwrap());
    }

    #[test]
    fn a_cached_entry_is_used_and_cpu_ops_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let c = converter(dir.path());
        let config = ConvertConfig::rk3588(Dtype::Fp16);
        let entry = dir.path().join(c.key(b"m", &config).unwrap());
        fs::create_dir_all(&entry).unwrap();
        fs::write(entry.join("model.rknn"), b"rknn").unwrap();
        let mut report = ConvertReport {
            toolkit_version: "2.5.0".into(),
            target: "rk3588".into(),
            dtype: Dtype::Fp16,
            seconds: 0.5,
            npu_ops: 10,
            cpu_ops: vec![],
            output_reshapes: vec![],
        };
        fs::write(
            entry.join("report.json"),
            serde_json::to_vec(&report).unwrap(),
        )
        .unwrap();
        // The toolkit's python does not exist: only the cache can answer.
        let conv = c.convert("net-a", b"m", &config).unwrap();
        assert!(conv.cached);
        assert_eq!(conv.report, report);
        report.cpu_ops.push(PlacedOp {
            id: 8,
            op_type: "Slice".into(),
            name: "blocks.1.split.even".into(),
        });
        fs::write(
            entry.join("report.json"),
            serde_json::to_vec(&report).unwrap(),
        )
        .unwrap();
        let e = c.convert("net-a", b"m", &config).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("net-a") && msg.contains("Slice `blocks.1.split.even`"),
            "{msg}"
        );
        assert!(matches!(
            e.downcast_ref::<NpuError>(),
            Some(NpuError::CpuOps { ops, .. }) if ops.len() == 1
        ));
    }

    #[test]
    fn dtype_parses_and_int8_needs_calibration() {
        assert_eq!("int8".parse::<Dtype>().unwrap(), Dtype::Int8);
        assert!(
            "int4"
                .parse::<Dtype>()
                .unwrap_err()
                .to_string()
                .contains("int4")
        );
        let dir = tempfile::tempdir().unwrap();
        let e = converter(dir.path())
            .convert("net-b", b"m", &ConvertConfig::rk3588(Dtype::Int8))
            .unwrap_err()
            .to_string();
        assert!(e.contains("net-b") && e.contains("calibration"), "{e}");
    }
}
