//! CUDA kernels of the depthwise conv custom ops (forward, input gradient, weight gradient), compiled
//! at run time with NVRTC (no build-time CUDA compiler for this crate) and loaded once per device.
//!
//! Each kernel reads contiguous f32 NCHW tensors (padding `k / 2`, square odd kernel):
//! - `dw_fwd`: one thread per output element, k² taps;
//! - `dw_grad_input`: one thread per input element, gathering the output positions whose taps
//!   touch it (no atomics, deterministic);
//! - `dw_grad_weight`: one block per (channel, tap), a shared-memory reduction over batch × output
//!   pixels (deterministic).
//!
//! The kernels are the default CUDA path (4–5× faster than the shift-and-add composition of
//! [`super::dw_shift`] on an H200, same gradients); `SHIFTNAS_CUDA_DWCONV=shift` selects the
//! composition (see docs/cuda.md).

use std::sync::OnceLock;

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaStorage, WrapErr};
use candle_core::{Layout, Shape};

const MODULE: &str = "shiftnas_dwconv";

const SRC: &str = r#"
extern "C" __global__ void dw_fwd(const float* x, const float* w, float* y,
    int B, int C, int H, int W, int K, int S, int OH, int OW) {
  long n = (long)B * C * OH * OW;
  int p = K / 2;
  for (long idx = blockIdx.x * (long)blockDim.x + threadIdx.x; idx < n; idx += (long)blockDim.x * gridDim.x) {
    int ox = idx % OW; long t = idx / OW; int oy = t % OH; t /= OH;  // t = b*C + c
    int c = t % C;
    const float* xp = x + t * (long)H * W;
    const float* wp = w + (long)c * K * K;
    float acc = 0.f;
    for (int ky = 0; ky < K; ++ky) {
      int iy = oy * S + ky - p;
      if (iy < 0 || iy >= H) continue;
      for (int kx = 0; kx < K; ++kx) {
        int ix = ox * S + kx - p;
        if (ix < 0 || ix >= W) continue;
        acc += wp[ky * K + kx] * xp[(long)iy * W + ix];
      }
    }
    y[idx] = acc;
  }
}

extern "C" __global__ void dw_grad_input(const float* go, const float* w, float* gx,
    int B, int C, int H, int W, int K, int S, int OH, int OW) {
  long n = (long)B * C * H * W;
  int p = K / 2;
  for (long idx = blockIdx.x * (long)blockDim.x + threadIdx.x; idx < n; idx += (long)blockDim.x * gridDim.x) {
    int ix = idx % W; long t = idx / W; int iy = t % H; t /= H;  // t = b*C + c
    int c = t % C;
    const float* gp = go + t * (long)OH * OW;
    const float* wp = w + (long)c * K * K;
    float acc = 0.f;
    for (int ky = 0; ky < K; ++ky) {
      int ty = iy + p - ky;  // = oy * S
      if (ty < 0 || ty % S != 0) continue;
      int oy = ty / S;
      if (oy >= OH) continue;
      for (int kx = 0; kx < K; ++kx) {
        int tx = ix + p - kx;
        if (tx < 0 || tx % S != 0) continue;
        int ox = tx / S;
        if (ox >= OW) continue;
        acc += wp[ky * K + kx] * gp[(long)oy * OW + ox];
      }
    }
    gx[idx] = acc;
  }
}

// blockDim.x must be 256.
extern "C" __global__ void dw_grad_weight(const float* x, const float* go, float* gw,
    int B, int C, int H, int W, int K, int S, int OH, int OW) {
  __shared__ float sh[256];
  int c = blockIdx.x / (K * K);
  int tap = blockIdx.x % (K * K);
  int ky = tap / K, kx = tap % K, p = K / 2;
  long n = (long)B * OH * OW;
  float acc = 0.f;
  for (long i = threadIdx.x; i < n; i += blockDim.x) {
    int ox = i % OW; long t = i / OW; int oy = t % OH; long b = t / OH;
    int iy = oy * S + ky - p, ix = ox * S + kx - p;
    if (iy >= 0 && iy < H && ix >= 0 && ix < W) {
      long plane = b * C + c;
      acc += x[plane * H * W + (long)iy * W + ix] * go[plane * OH * OW + (long)oy * OW + ox];
    }
  }
  sh[threadIdx.x] = acc;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) gw[blockIdx.x] = sh[0];
}
"#;

/// Whether the depthwise custom op runs its own CUDA kernels (the default: 4–5× faster on an H200)
/// rather than the shift-and-add composition (`SHIFTNAS_CUDA_DWCONV=shift`).
pub fn kernels_enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("SHIFTNAS_CUDA_DWCONV").map_or(true, |v| v != "shift"))
}

fn ptx() -> candle_core::Result<&'static str> {
    static PTX: OnceLock<Result<String, String>> = OnceLock::new();
    PTX.get_or_init(|| {
        candle_core::cuda_backend::cudarc::nvrtc::compile_ptx(SRC)
            .map(|p| p.to_src())
            .map_err(|e| format!("NVRTC could not compile the depthwise conv kernels: {e:?}; is libnvrtc.so.13 on LD_LIBRARY_PATH?"))
    })
    .as_ref()
    .map(|s| s.as_str())
    .map_err(|e| candle_core::Error::Cuda(e.clone().into()))
}

/// Geometry shared by the three kernels (all as `i32`, the kernels' argument type).
struct Dims {
    b: usize,
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    s: usize,
    oh: usize,
    ow: usize,
}

fn slice<'a>(
    st: &'a CudaStorage,
    l: &Layout,
    what: &str,
) -> candle_core::Result<candle_core::cuda_backend::cudarc::driver::CudaView<'a, f32>> {
    let (a, b) = l.contiguous_offsets().ok_or_else(|| {
        candle_core::Error::Msg(format!("depthwise conv (CUDA): {what} must be contiguous"))
    })?;
    Ok(st.as_cuda_slice::<f32>()?.slice(a..b))
}

fn i32_of(v: usize, what: &str) -> candle_core::Result<i32> {
    i32::try_from(v).map_err(|_| {
        candle_core::Error::Msg(format!("depthwise conv (CUDA): {what} = {v} exceeds i32"))
    })
}

/// Launches `name` with (`a`, `b`, out of `n_out` floats, dims) over `cfg`; returns the output storage.
fn launch(
    name: &str,
    (sa, la, wa): (&CudaStorage, &Layout, &str),
    (sb, lb, wb): (&CudaStorage, &Layout, &str),
    n_out: usize,
    d: &Dims,
    cfg: LaunchConfig,
) -> candle_core::Result<CudaStorage> {
    let dev = sa.device().clone();
    let a = slice(sa, la, wa)?;
    let b = slice(sb, lb, wb)?;
    let func = dev.get_or_load_custom_func(name, MODULE, ptx()?)?;
    // SAFETY: every element is written by the kernel.
    let out = unsafe { dev.alloc::<f32>(n_out)? };
    let dims = [d.b, d.c, d.h, d.w, d.k, d.s, d.oh, d.ow]
        .iter()
        .map(|&v| i32_of(v, "a tensor dimension"))
        .collect::<candle_core::Result<Vec<i32>>>()?;
    let mut builder = func.builder();
    builder.arg(&a);
    builder.arg(&b);
    builder.arg(&out);
    for v in &dims {
        builder.arg(v);
    }
    // SAFETY: argument types and count match the kernel signatures in SRC.
    unsafe { builder.launch(cfg) }.w()?;
    Ok(CudaStorage::wrap_cuda_slice(out, dev))
}

fn elementwise_cfg(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(256).clamp(1, 1 << 20) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn out_size(n: usize, k: usize, s: usize) -> usize {
    (n + 2 * (k / 2) - k) / s + 1
}

/// Forward: (x `[b,c,h,w]`, weight `[c,1,k,k]`) → `[b,c,oh,ow]`.
pub fn fwd(
    sx: &CudaStorage,
    lx: &Layout,
    sw: &CudaStorage,
    lw: &Layout,
    k: usize,
    s: usize,
) -> candle_core::Result<(CudaStorage, Shape)> {
    let (b, c, h, w) = lx.shape().dims4()?;
    let (oh, ow) = (out_size(h, k, s), out_size(w, k, s));
    let d = Dims {
        b,
        c,
        h,
        w,
        k,
        s,
        oh,
        ow,
    };
    let n = b * c * oh * ow;
    let out = launch(
        "dw_fwd",
        (sx, lx, "input"),
        (sw, lw, "weight"),
        n,
        &d,
        elementwise_cfg(n),
    )?;
    Ok((out, Shape::from((b, c, oh, ow))))
}

/// Input gradient: (grad_out `[b,c,oh,ow]`, weight) → `[b,c,h,w]`.
pub fn grad_input(
    sg: &CudaStorage,
    lg: &Layout,
    sw: &CudaStorage,
    lw: &Layout,
    (k, s, h, w): (usize, usize, usize, usize),
) -> candle_core::Result<(CudaStorage, Shape)> {
    let (b, c, oh, ow) = lg.shape().dims4()?;
    let d = Dims {
        b,
        c,
        h,
        w,
        k,
        s,
        oh,
        ow,
    };
    let n = b * c * h * w;
    let out = launch(
        "dw_grad_input",
        (sg, lg, "output gradient"),
        (sw, lw, "weight"),
        n,
        &d,
        elementwise_cfg(n),
    )?;
    Ok((out, Shape::from((b, c, h, w))))
}

/// Weight gradient: (x `[b,c,h,w]`, grad_out `[b,c,oh,ow]`) → `[c,1,k,k]`.
pub fn grad_weight(
    sx: &CudaStorage,
    lx: &Layout,
    sg: &CudaStorage,
    lg: &Layout,
    k: usize,
    s: usize,
) -> candle_core::Result<(CudaStorage, Shape)> {
    let (b, c, h, w) = lx.shape().dims4()?;
    let (_, _, oh, ow) = lg.shape().dims4()?;
    let d = Dims {
        b,
        c,
        h,
        w,
        k,
        s,
        oh,
        ow,
    };
    let cfg = LaunchConfig {
        grid_dim: (i32_of(c * k * k, "channels × k²")? as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    let out = launch(
        "dw_grad_weight",
        (sx, lx, "input"),
        (sg, lg, "output gradient"),
        c * k * k,
        &d,
        cfg,
    )?;
    Ok((out, Shape::from((c, 1, k, k))))
}
