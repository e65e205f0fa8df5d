//! The one place where the agent picks its inference runtime.
//!
//! ONNX Runtime (loaded at run time, see [`ort`]) is the runtime; tract (feature `tract`) stands in
//! only when no `libonnxruntime.so` can be found, and every report names the backend it came from.
//! `--runtime rknn` picks the RK3588 NPU's runtime instead ([`rknn`], `.rknn` models).

pub mod ort;
pub mod rknn;
#[cfg(feature = "tract")]
pub mod tract;

use std::path::PathBuf;

use anyhow::Result;
use shiftnas_protocol::{Backend as BackendId, TensorF32};

/// Session options that change timing; they come from the [`shiftnas_protocol::BenchSpec`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionOptions {
    /// Intra-op threads.
    pub threads: usize,
    /// Let idle intra-op threads spin.
    pub spin: bool,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            threads: 1,
            spin: true,
        }
    }
}

/// An inference runtime that can open models.
pub trait Backend {
    /// Name and version, recorded in every report.
    fn id(&self) -> BackendId;
    /// Builds a session for an in-memory `.onnx` model.
    ///
    /// # Errors
    /// The runtime's error (bad model, unsupported op), or a model with other than one float32
    /// input of static shape.
    fn open(&self, model: &[u8], opts: SessionOptions) -> Result<Box<dyn Model>>;
}

/// An opened model with a single float32 input of static shape.
pub trait Model {
    /// The input's name.
    fn input_name(&self) -> &str;
    /// The input's static shape.
    fn input_shape(&self) -> &[usize];
    /// Sets the input used by [`Model::run`] (`data.len()` = product of the input shape).
    ///
    /// # Errors
    /// On a length mismatch or a runtime error creating the tensor.
    fn set_input(&mut self, data: Vec<f32>) -> Result<()>;
    /// Runs the model on the current input and drops the outputs (the timed call).
    ///
    /// # Errors
    /// The runtime's error.
    fn run(&mut self) -> Result<()>;
    /// Runs the model on the current input and returns its first output.
    ///
    /// # Errors
    /// The runtime's error, or a first output that is not float32.
    fn run_output(&mut self) -> Result<TensorF32>;
    /// The accelerator's own time for the last run, in ms, when the runtime reports one (the
    /// NPU's `RKNN_QUERY_PERF_RUN`); the caller's wall time includes the host-side work.
    fn device_time_ms(&self) -> Option<f64> {
        None
    }
}

/// Which runtime the agent uses (`--runtime`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum RuntimeKind {
    /// ONNX Runtime on the CPU (`.onnx` models); tract when built with it and no ORT is found.
    #[default]
    Ort,
    /// Rockchip's `librknnrt.so` on the RK3588 NPU (`.rknn` models).
    Rknn,
}

/// Which runtime to load and where to look for its library.
#[derive(Debug, Clone, Default)]
pub struct BackendChoice {
    /// `--runtime`.
    pub runtime: RuntimeKind,
    /// `--ort-lib`: the only place tried when given.
    pub ort_lib: Option<PathBuf>,
    /// `--rknn-lib`: the only place tried when given.
    pub rknn_lib: Option<PathBuf>,
    /// `--npu-core-mask` (RKNN only; `None` leaves the runtime's default).
    pub npu_cores: Option<rknn::NpuCores>,
}

/// Loads the runtime: RKNN when asked for ([`rknn::RknnBackend::load`]); else ONNX Runtime if a library is found, else tract when built with the `tract`
/// feature (with a note on stderr), else an error listing every path tried.
///
/// # Errors
/// No usable runtime.
pub fn load(choice: &BackendChoice) -> Result<Box<dyn Backend>> {
    if choice.runtime == RuntimeKind::Rknn {
        return Ok(Box::new(rknn::RknnBackend::load(
            choice.rknn_lib.as_deref(),
            choice.npu_cores,
        )?));
    }
    anyhow::ensure!(
        choice.npu_cores.is_none() && choice.rknn_lib.is_none(),
        "--npu-core-mask and --rknn-lib need --runtime rknn"
    );
    match ort::OrtBackend::load(choice.ort_lib.as_deref()) {
        Ok(b) => Ok(Box::new(b)),
        #[cfg(feature = "tract")]
        Err(e) if choice.ort_lib.is_none() => {
            eprintln!(
                "note: using the tract backend (~2.4x slower than ONNX Runtime) because {e:#}"
            );
            Ok(Box::new(tract::TractBackend))
        }
        Err(e) => Err(e),
    }
}

/// Checks an input shape reported by a runtime: every dimension known and positive.
///
/// # Errors
/// Names the input and the dynamic dimension, and says to export with a fixed shape.
pub fn static_shape(name: &str, dims: &[i64]) -> Result<Vec<usize>> {
    dims.iter()
        .map(|&d| {
            usize::try_from(d).ok().filter(|&d| d > 0).ok_or_else(|| {
                anyhow::anyhow!(
                    "input {name:?} has a dynamic shape {dims:?}; export the model with a fixed input \
                     shape (batch included)"
                )
            })
        })
        .collect()
}

/// Checks a tensor length against a shape.
///
/// # Errors
/// Names both.
pub fn check_len(name: &str, shape: &[usize], len: usize) -> Result<()> {
    let want: usize = shape.iter().product();
    anyhow::ensure!(
        len == want,
        "input {name:?} of shape {shape:?} needs {want} values, got {len}"
    );
    Ok(())
}
