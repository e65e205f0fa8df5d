//! The RK3588 NPU through Rockchip's runtime, `librknnrt.so`, loaded at run time ([`lib`]).
//!
//! A model is a `.rknn` file (converted on the host by rknn-toolkit2, docs/npu.md). The agent
//! feeds **float32 NCHW** (the host's ONNX convention, `pass_through = 0`): the runtime converts
//! to the model's own layout and type (NHWC and fp16/int8 for 4-D inputs). The input shape it
//! reports is NCHW too, even though `RKNN_QUERY_INPUT_ATTR` gives NHWC dims for 4-D inputs.
//!
//! One timed [`Model::run`] is what a caller pays per inference with the normal (copying) API:
//! `rknn_inputs_set` → `rknn_run` → `rknn_outputs_get` (float32) → `rknn_outputs_release`.
//! After each run the NPU's own time (`RKNN_QUERY_PERF_RUN`, µs) is kept for
//! [`Model::device_time_ms`].

pub mod ffi;
pub mod lib;

use std::ffi::{c_int, c_void};
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, Result, bail};
use shiftnas_protocol::{Backend as BackendId, BackendName, TensorF32};

use self::lib::{Lib, ModelOrigin};
use super::{Backend, Model, SessionOptions, check_len};

/// Which NPU cores a model runs on (`rknn_set_core_mask`; the RK3588 has cores 0, 1 and 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum NpuCores {
    /// The runtime picks one core per run (`RKNN_NPU_CORE_AUTO`, its default).
    Auto,
    /// Core 0 only.
    #[value(name = "0")]
    Core0,
    /// Core 1 only.
    #[value(name = "1")]
    Core1,
    /// Core 2 only.
    #[value(name = "2")]
    Core2,
    /// Cores 0 and 1 together.
    #[value(name = "0-1")]
    Cores01,
    /// Cores 0, 1 and 2 together.
    #[value(name = "0-2")]
    Cores012,
    /// As many cores as the runtime chooses for the platform (`RKNN_NPU_CORE_ALL`).
    All,
}

impl NpuCores {
    /// The `rknn_core_mask` value.
    pub fn mask(self) -> c_int {
        match self {
            NpuCores::Auto => 0,
            NpuCores::Core0 => 1,
            NpuCores::Core1 => 2,
            NpuCores::Core2 => 4,
            NpuCores::Cores01 => 3,
            NpuCores::Cores012 => 7,
            NpuCores::All => 0xffff,
        }
    }

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            NpuCores::Auto => "auto",
            NpuCores::Core0 => "0",
            NpuCores::Core1 => "1",
            NpuCores::Core2 => "2",
            NpuCores::Cores01 => "0-1",
            NpuCores::Cores012 => "0-2",
            NpuCores::All => "all",
        }
    }
}

/// An RKNN error: the function, the code and its name.
fn rknn_error(func: &str, code: c_int) -> anyhow::Error {
    anyhow::anyhow!(
        "{func} returned {code} ({})",
        ffi::code_name(code).unwrap_or("an unknown RKNN error code")
    )
}

/// Checks an RKNN return code.
fn check(func: &str, code: c_int) -> Result<()> {
    if code < 0 {
        return Err(rknn_error(func, code));
    }
    Ok(())
}

/// The loaded RKNN runtime.
pub struct RknnBackend {
    lib: Arc<Lib>,
    cores: Option<NpuCores>,
    /// `api_version` and `drv_version` from `RKNN_QUERY_SDK_VERSION`, once a model was opened.
    queried: Mutex<Option<(String, String)>>,
}

impl RknnBackend {
    /// Loads `librknnrt.so` ([`lib::Lib::load`]); `cores` is applied to every model opened.
    ///
    /// # Errors
    /// No loadable library; the error lists every path tried.
    pub fn load(rknn_lib: Option<&Path>, cores: Option<NpuCores>) -> Result<RknnBackend> {
        Ok(RknnBackend {
            lib: Arc::new(Lib::load(rknn_lib)?),
            cores,
            queried: Mutex::new(None),
        })
    }

    /// The library file that was loaded.
    pub fn path(&self) -> &Path {
        &self.lib.path
    }

    /// The runtime's version for messages: the queried API version, else the file's string.
    fn runtime_version(&self) -> String {
        let q = self.queried.lock().unwrap_or_else(|e| e.into_inner());
        match (q.as_ref(), &self.lib.file_version) {
            (Some((api, drv)), _) => format!("librknnrt {api}, driver {drv}"),
            (None, Some(v)) => format!("librknnrt {v} (driver version not queried yet)"),
            (None, None) => format!(
                "librknnrt of unknown version ({} embeds no version string)",
                self.lib.path.display()
            ),
        }
    }

    /// Explains a refused `rknn_init`.
    fn init_error(&self, code: c_int, model: &[u8]) -> anyhow::Error {
        let err = rknn_error("rknn_init", code);
        if code == -3 {
            return err.context(format!(
                "no NPU device is reachable through {}: on a board, check that the rknpu driver \
                 is loaded (`dmesg | grep -i rknpu`, /sys/kernel/debug/rknpu/version) and that \
                 this user may open /dev/dri/renderD*; the toolkit's x86 librknn_api.so only \
                 reaches a board through adb and rknn_server",
                self.lib.path.display()
            ));
        }
        if ffi::is_version_mismatch(code) || code == -6 {
            let origin = ModelOrigin::of(model);
            return err.context(format!(
                "the runtime refused the model: the runtime is {}; the model was {origin}; \
                 convert it with the rknn-toolkit2 version matching the board's librknnrt.so \
                 (and target_platform rk3588), or install the matching librknnrt.so",
                self.runtime_version()
            ));
        }
        err
    }
}

impl Backend for RknnBackend {
    fn id(&self) -> BackendId {
        let q = self.queried.lock().unwrap_or_else(|e| e.into_inner());
        let runtime = match (q.as_ref(), &self.lib.file_version) {
            (Some((api, drv)), _) => format!("{api}, driver {drv}"),
            (None, Some(v)) => format!("{v}, driver unknown"),
            (None, None) => "unknown, driver unknown".into(),
        };
        let cores = self.cores.map_or("default", NpuCores::name);
        BackendId {
            name: BackendName::Rknn,
            version: format!("{runtime}, npu cores {cores}"),
        }
    }

    fn open(&self, model: &[u8], _opts: SessionOptions) -> Result<Box<dyn Model>> {
        let size = u32::try_from(model.len())
            .ok()
            .filter(|&n| n > 0)
            .with_context(|| format!("a .rknn model of {} bytes", model.len()))?;
        // rknn_init takes a non-const pointer: give it a private copy.
        let mut bytes = model.to_vec();
        let mut ctx: ffi::Context = 0;
        // SAFETY: `bytes` is valid for `size` bytes during the call; no extend struct.
        let rc = unsafe {
            (self.lib.init)(
                &mut ctx,
                bytes.as_mut_ptr().cast(),
                size,
                0,
                std::ptr::null_mut(),
            )
        };
        drop(bytes);
        if rc < 0 {
            return Err(self.init_error(rc, model));
        }
        let ctx = Ctx {
            lib: Arc::clone(&self.lib),
            ctx,
        };
        if let Some(v) = ctx.sdk_version() {
            *self.queried.lock().unwrap_or_else(|e| e.into_inner()) = Some(v);
        }
        if let Some(cores) = self.cores {
            let set = self.lib.set_core_mask.with_context(|| {
                format!(
                    "--npu-core-mask {}: {} has no rknn_set_core_mask (a single-core NPU runtime)",
                    cores.name(),
                    self.lib.path.display()
                )
            })?;
            // SAFETY: a live context.
            check("rknn_set_core_mask", unsafe { set(ctx.ctx, cores.mask()) }).with_context(
                || format!("--npu-core-mask {} (mask {})", cores.name(), cores.mask()),
            )?;
        }
        let mut io = ffi::InputOutputNum::default();
        ctx.query(ffi::QUERY_IN_OUT_NUM, &mut io)
            .context("querying the number of inputs and outputs")?;
        anyhow::ensure!(
            io.n_input == 1,
            "the model has {} inputs; the agent measures single-input models",
            io.n_input
        );
        anyhow::ensure!(io.n_output >= 1, "the model has no outputs");
        let mut input = ffi::TensorAttr::for_index(0);
        ctx.query(ffi::QUERY_INPUT_ATTR, &mut input)
            .context("querying the input's attributes")?;
        let mut output = ffi::TensorAttr::for_index(0);
        ctx.query(ffi::QUERY_OUTPUT_ATTR, &mut output)
            .context("querying the first output's attributes")?;
        let name = input.name();
        let (shape, _) = nchw_shape(&input)?;
        let n: usize = shape.iter().product();
        anyhow::ensure!(
            input.n_elems == 0 || input.n_elems as usize == n,
            "input {name:?}: the runtime reports {} elements for dims {:?}",
            input.n_elems,
            input.dims()
        );
        let (out_shape, out_nhwc) = nchw_shape(&output)?;
        Ok(Box::new(RknnModel {
            ctx,
            name,
            shape,
            fmt: if input.n_dims == 4 {
                ffi::TENSOR_NCHW
            } else {
                input.fmt
            },
            n_output: io.n_output,
            out_shape,
            out_nhwc,
            input: None,
            npu_us: None,
        }))
    }
}

/// The NCHW shape of a tensor (NHWC dims of a 4-D tensor are reordered), and whether the runtime
/// reported NHWC.
///
/// # Errors
/// No or zero dimensions.
fn nchw_shape(a: &ffi::TensorAttr) -> Result<(Vec<usize>, bool)> {
    let d: Vec<usize> = a.dims().iter().map(|&x| x as usize).collect();
    if d.is_empty() || d.contains(&0) {
        bail!(
            "tensor {:?} has dims {d:?}; the agent needs a static shape (convert with fixed input \
             shapes)",
            a.name()
        );
    }
    let nhwc = a.fmt == ffi::TENSOR_NHWC && d.len() == 4;
    Ok(if nhwc {
        (vec![d[0], d[3], d[1], d[2]], true)
    } else {
        (d, false)
    })
}

/// A context, destroyed on drop.
struct Ctx {
    lib: Arc<Lib>,
    ctx: ffi::Context,
}

impl Ctx {
    /// `rknn_query` into a `T`, passing `size_of::<T>()` as the header's struct size.
    fn query<T>(&self, cmd: c_int, out: &mut T) -> Result<()> {
        let size = u32::try_from(std::mem::size_of::<T>()).expect("small struct");
        // SAFETY: `out` is a valid, writable `T` of `size` bytes, the layout the command fills.
        check("rknn_query", unsafe {
            (self.lib.query)(self.ctx, cmd, (out as *mut T).cast::<c_void>(), size)
        })
    }

    fn sdk_version(&self) -> Option<(String, String)> {
        let mut v = ffi::SdkVersion {
            api_version: [0; 256],
            drv_version: [0; 256],
        };
        self.query(ffi::QUERY_SDK_VERSION, &mut v).ok()?;
        Some((ffi::c_str(&v.api_version), ffi::c_str(&v.drv_version)))
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        // SAFETY: the context came from a successful rknn_init and is destroyed once.
        unsafe {
            (self.lib.destroy)(self.ctx);
        }
    }
}

struct RknnModel {
    ctx: Ctx,
    name: String,
    /// NCHW (the agent's convention).
    shape: Vec<usize>,
    /// The `fmt` given to `rknn_inputs_set`: NCHW for 4-D inputs, else the runtime's own.
    fmt: c_int,
    n_output: u32,
    /// First output's shape, NCHW.
    out_shape: Vec<usize>,
    /// Whether the runtime returns the first output as NHWC (then it is transposed).
    out_nhwc: bool,
    input: Option<Vec<f32>>,
    npu_us: Option<i64>,
}

impl RknnModel {
    /// One inference; with `keep`, returns the first output as float32 values in runtime order.
    fn infer(&mut self, keep: bool) -> Result<Option<Vec<f32>>> {
        let lib = Arc::clone(&self.ctx.lib);
        let ctx = self.ctx.ctx;
        let data = self.input.as_mut().context("no input set")?;
        let mut input = ffi::Input {
            index: 0,
            buf: data.as_mut_ptr().cast(),
            size: u32::try_from(data.len() * 4).context("input larger than 4 GiB")?,
            pass_through: 0,
            type_: ffi::TENSOR_FLOAT32,
            fmt: self.fmt,
        };
        // SAFETY: one valid rknn_input whose buffer lives through the call (the runtime copies it).
        check("rknn_inputs_set", unsafe {
            (lib.inputs_set)(ctx, 1, &mut input)
        })?;
        // SAFETY: a live context, no extend struct (a blocking run).
        check("rknn_run", unsafe { (lib.run)(ctx, std::ptr::null_mut()) })?;
        let mut outs: Vec<ffi::Output> = (0..self.n_output)
            .map(|i| ffi::Output {
                want_float: 1,
                is_prealloc: 0,
                index: i,
                buf: std::ptr::null_mut(),
                size: 0,
            })
            .collect();
        // SAFETY: `n_output` valid rknn_output entries; the runtime allocates their buffers.
        check("rknn_outputs_get", unsafe {
            (lib.outputs_get)(ctx, self.n_output, outs.as_mut_ptr(), std::ptr::null_mut())
        })?;
        let first = keep.then(|| {
            let o = &outs[0];
            let n = o.size as usize / 4;
            if o.buf.is_null() {
                Vec::new()
            } else {
                // SAFETY: the runtime filled `size` bytes of float32 at `buf` (want_float = 1).
                unsafe { std::slice::from_raw_parts(o.buf.cast::<f32>(), n) }.to_vec()
            }
        });
        // PERF_RUN is valid after rknn_outputs_get; a runtime that cannot tell gives no NPU time.
        let mut perf = ffi::PerfRun::default();
        self.npu_us = self
            .ctx
            .query(ffi::QUERY_PERF_RUN, &mut perf)
            .ok()
            .map(|()| perf.run_duration)
            .filter(|&us| us > 0);
        // SAFETY: the same entries rknn_outputs_get filled.
        check("rknn_outputs_release", unsafe {
            (lib.outputs_release)(ctx, self.n_output, outs.as_mut_ptr())
        })?;
        Ok(first)
    }
}

impl Model for RknnModel {
    fn input_name(&self) -> &str {
        &self.name
    }

    fn input_shape(&self) -> &[usize] {
        &self.shape
    }

    fn set_input(&mut self, data: Vec<f32>) -> Result<()> {
        check_len(&self.name, &self.shape, data.len())?;
        self.input = Some(data);
        Ok(())
    }

    fn run(&mut self) -> Result<()> {
        self.infer(false).map(drop)
    }

    fn run_output(&mut self) -> Result<TensorF32> {
        let data = self.infer(true)?.unwrap_or_default();
        let want: usize = self.out_shape.iter().product();
        anyhow::ensure!(
            data.len() == want,
            "rknn_outputs_get gave {} float32 values for an output of shape {:?}",
            data.len(),
            self.out_shape
        );
        let data = if self.out_nhwc {
            nhwc_to_nchw(&data, &self.out_shape)
        } else {
            data
        };
        Ok(TensorF32 {
            shape: self.out_shape.clone(),
            data,
        })
    }

    fn device_time_ms(&self) -> Option<f64> {
        self.npu_us.map(|us| us as f64 / 1000.0)
    }
}

/// Reorders NHWC values into NCHW for the NCHW `shape` `[n, c, h, w]`.
fn nhwc_to_nchw(x: &[f32], shape: &[usize]) -> Vec<f32> {
    let [n, c, h, w] = [shape[0], shape[1], shape[2], shape[3]];
    let mut out = vec![0.0; x.len()];
    for b in 0..n {
        for y in 0..h {
            for xx in 0..w {
                for ch in 0..c {
                    out[((b * c + ch) * h + y) * w + xx] = x[((b * h + y) * w + xx) * c + ch];
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nhwc_dims_become_nchw() {
        let mut a = ffi::TensorAttr::for_index(0);
        a.n_dims = 4;
        a.dims[..4].copy_from_slice(&[1, 32, 32, 3]);
        a.fmt = ffi::TENSOR_NHWC;
        assert_eq!(nchw_shape(&a).unwrap(), (vec![1, 3, 32, 32], true));
        a.n_dims = 2;
        a.dims[..2].copy_from_slice(&[1, 10]);
        assert_eq!(nchw_shape(&a).unwrap(), (vec![1, 10], false));
        a.dims[1] = 0;
        assert!(nchw_shape(&a).is_err());
    }

    #[test]
    fn nhwc_to_nchw_moves_channels_first() {
        // [1, h=1, w=2, c=3] → [1, 3, 1, 2]
        let x = [0.0, 1.0, 2.0, 10.0, 11.0, 12.0];
        assert_eq!(
            nhwc_to_nchw(&x, &[1, 3, 1, 2]),
            vec![0.0, 10.0, 1.0, 11.0, 2.0, 12.0]
        );
    }

    #[test]
    fn core_masks_are_the_headers() {
        let masks: Vec<c_int> = [
            NpuCores::Auto,
            NpuCores::Core0,
            NpuCores::Core1,
            NpuCores::Core2,
            NpuCores::Cores01,
            NpuCores::Cores012,
            NpuCores::All,
        ]
        .iter()
        .map(|c| c.mask())
        .collect();
        assert_eq!(masks, vec![0, 1, 2, 4, 3, 7, 0xffff]);
    }
}
