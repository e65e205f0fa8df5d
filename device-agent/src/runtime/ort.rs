//! ONNX Runtime through `ort` with `load-dynamic`: the library is found at run time.
//!
//! Search order (the first that loads wins; the error lists every path tried):
//! 1. `--ort-lib PATH` (only this one when given),
//! 2. `$ORT_DYLIB_PATH`,
//! 3. `libonnxruntime.so*` next to the agent binary,
//! 4. a Python `onnxruntime` install: `python3 -c 'import onnxruntime…'` → `capi/libonnxruntime.so*`.
//!
//! `ort::init_from` is used rather than `ort::init`, which panics when the library is missing.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{Tensor, TensorElementType, ValueType};
use shiftnas_protocol::{Backend as BackendId, BackendName, TensorF32};

use super::{Backend, Model, SessionOptions, check_len, static_shape};

/// The loaded ONNX Runtime (one per process: ORT's library handle is global).
pub struct OrtBackend {
    env: ort::environment::Environment,
    version: String,
    /// The library file that was loaded.
    pub path: PathBuf,
}

/// The library and ONNX Runtime environment of this process, built once: ORT allows a single
/// environment per process, so every [`OrtBackend::load`] after the first shares it.
static LOADED: Mutex<Option<(PathBuf, String, ort::environment::Environment)>> = Mutex::new(None);

/// Candidate library paths in search order (existing or not, for the error message).
pub fn candidates(ort_lib: Option<&Path>) -> Vec<PathBuf> {
    if let Some(p) = ort_lib {
        return vec![p.to_path_buf()];
    }
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        out.push(PathBuf::from(p));
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        out.extend(libs_in(&dir).unwrap_or_else(|| vec![dir.join("libonnxruntime.so")]));
    }
    match python_onnxruntime_dir() {
        Some(dir) => out.extend(
            libs_in(&dir.join("capi")).unwrap_or_else(|| vec![dir.join("capi/libonnxruntime.so")]),
        ),
        None => out.push(PathBuf::from(
            "<python3 -c 'import onnxruntime'>: not installed",
        )),
    }
    out
}

/// `libonnxruntime.so*` files in `dir` (shortest name first), or `None` if there are none.
fn libs_in(dir: &Path) -> Option<Vec<PathBuf>> {
    let mut libs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.so"))
        })
        .collect();
    libs.sort_by_key(|p| (p.as_os_str().len(), p.clone()));
    (!libs.is_empty()).then_some(libs)
}

fn python_onnxruntime_dir() -> Option<PathBuf> {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import onnxruntime,os;print(os.path.dirname(onnxruntime.__file__))",
        ])
        .stderr(std::process::Stdio::null())
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    let s = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !s.trim().is_empty()).then(|| PathBuf::from(s.trim()))
}

/// Reads the version string of an already-loaded ONNX Runtime library.
fn version_of(path: &Path) -> Result<String> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .context("library path has a NUL byte")?;
    // SAFETY: RTLD_NOLOAD returns the handle ort already holds (or NULL); OrtGetApiBase and
    // GetVersionString are the stable C entry points of every ORT release and return static data.
    unsafe {
        let handle = libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD);
        if handle.is_null() {
            bail!("{} is not loaded", path.display());
        }
        let sym = libc::dlsym(handle, c"OrtGetApiBase".as_ptr());
        let version = if sym.is_null() {
            None
        } else {
            let get: unsafe extern "C" fn() -> *const ort::sys::OrtApiBase =
                std::mem::transmute(sym);
            let base = get();
            (!base.is_null()).then(|| {
                std::ffi::CStr::from_ptr(((*base).GetVersionString)())
                    .to_string_lossy()
                    .into_owned()
            })
        };
        libc::dlclose(handle);
        version.context("OrtGetApiBase missing")
    }
}

impl OrtBackend {
    /// Finds and loads `libonnxruntime.so` (see the module doc for the search order).
    ///
    /// # Errors
    /// Lists every path tried and why each failed, and says how to point the agent at a library.
    pub fn load(ort_lib: Option<&Path>) -> Result<OrtBackend> {
        let mut loaded = LOADED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((path, version, env)) = loaded.as_ref() {
            return Ok(OrtBackend {
                env: env.clone(),
                version: version.clone(),
                path: path.clone(),
            });
        }
        let mut tried = Vec::new();
        let mut found = None;
        for c in candidates(ort_lib) {
            if !c.is_file() {
                tried.push(format!("{} (not found)", c.display()));
                continue;
            }
            match ort::init_from(&c) {
                Ok(builder) => {
                    drop(builder);
                    found = Some(c);
                    break;
                }
                Err(e) => tried.push(format!("{} ({e})", c.display())),
            }
        }
        let Some(path) = found else {
            bail!(
                "no ONNX Runtime library could be loaded; tried:\n  {}\npass --ort-lib PATH or set \
                 ORT_DYLIB_PATH to a libonnxruntime.so for this architecture, or copy one next \
                 to the agent (PyPI's onnxruntime wheel ships it under onnxruntime/capi/)",
                tried.join("\n  ")
            );
        };
        let version = version_of(&path)?;
        let env = ort::init_from(&path)
            .with_context(|| format!("loading {}", path.display()))?
            .with_name("shiftnas-agent")
            .build()
            .context("creating the ONNX Runtime environment")?;
        *loaded = Some((path.clone(), version.clone(), env.clone()));
        Ok(OrtBackend { env, version, path })
    }
}

impl Backend for OrtBackend {
    fn id(&self) -> BackendId {
        BackendId {
            name: BackendName::Ort,
            version: self.version.clone(),
        }
    }

    fn open(&self, model: &[u8], opts: SessionOptions) -> Result<Box<dyn Model>> {
        anyhow::ensure!(
            (1..=shiftnas_protocol::MAX_THREADS).contains(&opts.threads),
            "--threads must be between 1 and {}, got {}",
            shiftnas_protocol::MAX_THREADS,
            opts.threads
        );
        let cfg = |e: &dyn std::fmt::Display| {
            anyhow::anyhow!("configuring the ONNX Runtime session: {e}")
        };
        let session = Session::builder(&self.env)
            .map_err(|e| cfg(&e))?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(|e| cfg(&e))?
            .with_intra_threads(opts.threads)
            .map_err(|e| cfg(&e))?
            .with_inter_threads(1)
            .map_err(|e| cfg(&e))?
            .with_intra_op_spinning(opts.spin)
            .map_err(|e| cfg(&e))?
            .commit_from_memory(model)
            .map_err(|e| anyhow::anyhow!("ONNX Runtime could not load the model: {e}"))?;
        let inputs = session.inputs();
        anyhow::ensure!(
            inputs.len() == 1,
            "the model has {} inputs ({}); the agent measures single-input models",
            inputs.len(),
            inputs
                .iter()
                .map(|i| i.name())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let input = &inputs[0];
        let name = input.name().to_string();
        let ValueType::Tensor { ty, shape, .. } = input.dtype() else {
            bail!("input {name:?} is not a tensor");
        };
        anyhow::ensure!(
            matches!(ty, TensorElementType::Float32),
            "input {name:?} is {ty:?}; the agent feeds float32"
        );
        let shape = static_shape(&name, shape)?;
        Ok(Box::new(OrtModel {
            session,
            name,
            shape,
            input: None,
        }))
    }
}

struct OrtModel {
    session: Session,
    name: String,
    shape: Vec<usize>,
    input: Option<Tensor<f32>>,
}

impl Model for OrtModel {
    fn input_name(&self) -> &str {
        &self.name
    }

    fn input_shape(&self) -> &[usize] {
        &self.shape
    }

    fn set_input(&mut self, data: Vec<f32>) -> Result<()> {
        check_len(&self.name, &self.shape, data.len())?;
        let t = Tensor::from_array((self.shape.clone(), data))
            .map_err(|e| anyhow::anyhow!("creating the input tensor: {e}"))?;
        self.input = Some(t);
        Ok(())
    }

    fn run(&mut self) -> Result<()> {
        let input = self.input.take().context("no input set")?;
        let res = self
            .session
            .run(ort::inputs![self.name.as_str() => &input])
            .map(drop);
        self.input = Some(input);
        res.map_err(|e| anyhow::anyhow!("ONNX Runtime run failed: {e}"))
    }

    fn run_output(&mut self) -> Result<TensorF32> {
        let input = self.input.take().context("no input set")?;
        let res = (|| {
            let outputs = self
                .session
                .run(ort::inputs![self.name.as_str() => &input])?;
            let (shape, data) = outputs[0].try_extract_tensor::<f32>()?;
            Ok::<_, ort::Error>(TensorF32 {
                shape: shape.iter().map(|&d| d.max(0) as usize).collect(),
                data: data.to_vec(),
            })
        })();
        self.input = Some(input);
        res.map_err(|e| {
            anyhow::anyhow!("ONNX Runtime run failed (first output must be float32): {e}")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `serve` loads the runtime for `info` and again for `load`: the second must share the first
    /// environment instead of failing with "only one environment is allowed per process".
    #[test]
    fn loading_twice_shares_one_environment() {
        let Some(lib) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) else {
            eprintln!("skipped: ORT_DYLIB_PATH is not set (source scripts/setup-deps)");
            return;
        };
        let a = OrtBackend::load(Some(Path::new(&lib))).expect("first load");
        let b = OrtBackend::load(Some(Path::new(&lib))).expect("second load");
        assert_eq!(a.version, b.version);
        assert_eq!(a.path, b.path);
    }
}
