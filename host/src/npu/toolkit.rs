//! Runs `scripts/rknn/convert.py` (compiled into the binary) with rknn-toolkit2's Python and
//! parses its JSON.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use anyhow::{Context as _, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

/// The conversion script; written next to each use, so the binary works from anywhere.
pub const CONVERT_PY: &str = include_str!("../../../scripts/rknn/convert.py");

/// The environment variable naming the Python that has rknn-toolkit2 (`source scripts/rknn-env`
/// sets it to its private venv's).
pub const PYTHON_ENV: &str = "SHIFTNAS_RKNN_PYTHON";

/// A Python with rknn-toolkit2, and the toolkit's version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toolkit {
    /// The interpreter.
    pub python: PathBuf,
    /// `rknn-toolkit2`'s version, e.g. `2.5.0` (part of every cache key).
    pub version: String,
}

/// An op that did not land on the NPU, as the toolkit's layer table names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacedOp {
    /// Row id in the toolkit's layer table.
    pub id: u32,
    /// The RKNN op type (`Slice`, `Reshape`, …).
    #[serde(rename = "type")]
    pub op_type: String,
    /// The ONNX node name it came from (`blocks.1.split.even`) or a toolkit-made name.
    pub name: String,
}

/// What the script reports (its JSON).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct ScriptReport {
    pub ok: bool,
    pub toolkit_version: String,
    #[serde(default)]
    pub seconds: f64,
    #[serde(default)]
    pub npu_ops: u32,
    #[serde(default)]
    pub cpu_ops: Vec<PlacedOp>,
    #[serde(default)]
    pub output_reshapes: Vec<PlacedOp>,
    #[serde(default)]
    pub simulated: Vec<Vec<PathBuf>>,
    #[serde(default)]
    pub stage: String,
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub log_tail: Vec<String>,
}

impl Toolkit {
    /// The Python of `SHIFTNAS_RKNN_PYTHON`, checked and asked for the toolkit's version (once per
    /// process and interpreter).
    ///
    /// # Errors
    /// If the variable is unset, or that Python cannot report rknn-toolkit2's version.
    pub fn from_env() -> Result<Toolkit> {
        let python = std::env::var_os(PYTHON_ENV).filter(|p| !p.is_empty()).ok_or_else(|| {
            anyhow!(
                "{PYTHON_ENV} is not set: `source scripts/rknn-env` installs rknn-toolkit2 in a \
                 private venv and sets it, or set it to your own Python with rknn-toolkit2 \
                 (docs/npu.md)"
            )
        })?;
        Toolkit::with_python(Path::new(&python))
    }

    /// `python`, checked and asked for the toolkit's version (cached per process).
    ///
    /// # Errors
    /// If `python` cannot run or has no rknn-toolkit2.
    pub fn with_python(python: &Path) -> Result<Toolkit> {
        static SEEN: Mutex<Vec<Toolkit>> = Mutex::new(Vec::new());
        if let Some(t) = SEEN.lock().unwrap().iter().find(|t| t.python == python) {
            return Ok(t.clone());
        }
        let dir = scratch_dir()?;
        let script = write_script(&dir)?;
        let out = Command::new(python)
            .arg(&script)
            .arg("--version")
            .output()
            .with_context(|| {
                format!(
                    "running {} (the RKNN Python, {PYTHON_ENV}): `source scripts/rknn-env` \
                     or point {PYTHON_ENV} at a Python with rknn-toolkit2",
                    python.display()
                )
            })?;
        let _ = std::fs::remove_dir_all(&dir);
        let report: ScriptReport = parse_stdout(&out.stdout).map_err(|e| {
            anyhow!(
                "{} cannot report rknn-toolkit2's version ({e}); is rknn-toolkit2 installed \
                 there? `source scripts/rknn-env` makes a venv that has it. stderr: {}",
                python.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })?;
        let t = Toolkit {
            python: python.to_path_buf(),
            version: report.toolkit_version,
        };
        SEEN.lock().unwrap().push(t.clone());
        Ok(t)
    }

    /// Runs the script with `args` (`--onnx …`) and returns its report (ok or not).
    pub(crate) fn run(&self, args: &[std::ffi::OsString], dir: &Path) -> Result<ScriptReport> {
        let script = write_script(dir)?;
        let out = Command::new(&self.python)
            .arg(&script)
            .args(args)
            .output()
            .with_context(|| format!("running {}", self.python.display()))?;
        parse_stdout(&out.stdout).map_err(|e| {
            anyhow!(
                "{} {} crashed ({e}, {}); stderr: {}",
                self.python.display(),
                script.display(),
                out.status,
                tail(&String::from_utf8_lossy(&out.stderr), 30)
            )
        })
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The script's JSON: the last line of stdout.
fn parse_stdout(stdout: &[u8]) -> Result<ScriptReport> {
    let text = String::from_utf8_lossy(stdout);
    let Some(line) = text.lines().rev().find(|l| l.trim_start().starts_with('{')) else {
        bail!("no JSON on stdout");
    };
    serde_json::from_str(line).context("unreadable JSON on stdout")
}

fn write_script(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("convert.py");
    std::fs::write(&path, CONVERT_PY).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// A fresh folder under the system temp dir, for one script run.
pub(crate) fn scratch_dir() -> Result<PathBuf> {
    let base = std::env::temp_dir();
    for i in 0..100u32 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = base.join(format!(
            "shiftnas-npu-{}-{nanos:09}-{i}",
            std::process::id()
        ));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
        }
    }
    bail!("could not create a scratch folder under {}", base.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_last_json_line() {
        let out = b"noise\n{\"ok\": true, \"toolkit_version\": \"2.5.0\", \"seconds\": 1.5, \
                    \"npu_ops\": 3, \"cpu_ops\": [{\"id\": 8, \"type\": \"Slice\", \"name\": \"b.1\"}], \
                    \"output_reshapes\": [], \"simulated\": []}\n";
        let r = parse_stdout(out).unwrap();
        assert!(r.ok);
        assert_eq!(r.npu_ops, 3);
        assert_eq!(r.cpu_ops[0].op_type, "Slice");
        assert!(parse_stdout(b"Traceback ...\n").is_err());
    }

    #[test]
    fn a_python_without_the_toolkit_is_named() {
        let e = Toolkit::with_python(Path::new("/nonexistent/python"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/nonexistent/python") && e.contains("rknn-env"),
            "{e}"
        );
    }
}
