//! Fused affine-free batch norm (+ optional ReLU or ReLU6) as candle custom ops on CPU.
//!
//! Plain candle ops build BN from ~8 graph nodes (mean, sub, sqr, mean, add, sqrt, div, relu),
//! each with a full-size temporary forward and a `zeros_like + add` gradient accumulation
//! backward. [`bn_train`] does the forward in one pass over each channel plane (f64 sums) and the
//! backward in one op with the standard formula
//! `dx = invstd · (g − mean(g) − x̂ · mean(g · x̂))` (g masked where the activation clipped).
//! [`bn_eval`] fuses the running-statistics normalisation and activation. Only contiguous f32 CPU tensors use the loops; other
//! devices or dtypes (CUDA) run the plain-ops composition, which gives the same numbers.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Shape, Tensor};

use super::cpu::{
    BatchStats, batch_stats, channel_sums, chunks8, clip_mask, contiguous_f32, keep_if, par_filled,
    passes, plane, simd_fn,
};
use super::infer::Activation;

/// Names the op in errors.
const OP: &str = "fused batch norm";

/// Train-mode BN(+activation): normalises with batch statistics, remembers them for the backward.
struct BnTrain {
    eps: f64,
    act: Activation,
    saved: Arc<Mutex<Option<BatchStats>>>,
}

impl CustomOp1 for BnTrain {
    fn name(&self) -> &'static str {
        "shiftnas-bn-train"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = l.shape().dims4()?;
        let x = contiguous_f32(s, l, OP, "input")?;
        let hw = h * w;
        let stats = batch_stats(x, b, c, hw, self.eps);
        let y = normalize(x, c, hw, &stats.mean, &stats.invstd, self.act);
        *self.saved.lock().unwrap_or_else(|e| e.into_inner()) = Some(stats);
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, y: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let saved = self
            .saved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| {
                candle_core::Error::Msg("fused batch norm: backward before forward".into())
            })?;
        let g = grad.contiguous()?;
        let gx = x.apply_op2_no_bwd(
            &g,
            &BnTrainGrad {
                act: self.act,
                saved,
            },
        )?;
        let _ = y;
        Ok(Some(gx))
    }
}

/// Input gradient of [`BnTrain`]: (x, grad_y) → grad_x.
struct BnTrainGrad {
    act: Activation,
    saved: BatchStats,
}

impl CustomOp2 for BnTrainGrad {
    fn name(&self) -> &'static str {
        "shiftnas-bn-train-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = l1.shape().dims4()?;
        let x = contiguous_f32(s1, l1, OP, "input")?;
        let g = contiguous_f32(s2, l2, OP, "output gradient")?;
        let hw = h * w;
        let n = (b * hw) as f64;
        let (mean, invstd) = (&self.saved.mean, &self.saved.invstd);
        let cap = self.act.cap();
        // Per channel: mean(g') and mean(g'·x̂), with g' = g masked where the activation clipped.
        let sums: Vec<(f32, f32)> = channel_sums(b, c, |l, i| {
            let (ch, xp, gp) = (i % c, plane(x, hw, i), plane(g, hw, i));
            add_grad_sums(l, xp, gp, mean[ch], invstd[ch], cap)
        })
        .iter()
        .map(|s| ((s[0] / n) as f32, (s[1] / n) as f32))
        .collect();
        // SAFETY: `grad_plane` writes every value of its plane.
        let gx = unsafe {
            par_filled(
                x.len(),
                hw,
                || (),
                |_, i, out| {
                    let ch = i % c;
                    let r = i * hw..(i + 1) * hw;
                    let stats = (mean[ch], invstd[ch], sums[ch].0, sums[ch].1);
                    grad_plane(out, &x[r.clone()], &g[r], stats, cap);
                },
            )
        };
        Ok((CpuStorage::F32(gx), l1.shape().clone()))
    }
}

simd_fn! {
    /// Adds `g'` and `g'·x̂` over one plane to `lanes` (see [`chunks8`]), `g'` the output gradient
    /// masked where a rectifier with upper clip `cap` clipped (`x̂ ≤ 0` or `x̂ ≥ cap`); no mask
    /// without one. Padding with g = 0 adds nothing.
    fn add_grad_sums(
        lanes: &mut [[f32; 8]; 2],
        x: &[f32],
        g: &[f32],
        m: f32,
        is: f32,
        cap: Option<f32>,
    ) {
        // Two loops, so each has a constant mask test and vectorises to a blend.
        if let Some(cap) = cap {
            for [xs, gs] in chunks8([x, g], [0.0; 2]) {
                grad_lanes::<true>(lanes, &xs, &gs, (m, is), cap);
            }
        } else {
            for [xs, gs] in chunks8([x, g], [0.0; 2]) {
                grad_lanes::<false>(lanes, &xs, &gs, (m, is), f32::INFINITY);
            }
        }
    }
}

/// Adds eight lanes of `g'` to `lanes[0]` and of `g'·x̂` to `lanes[1]` (see [`add_grad_sums`]).
#[inline(always)]
fn grad_lanes<const CLIP: bool>(
    lanes: &mut [[f32; 8]; 2],
    xs: &[f32; 8],
    gs: &[f32; 8],
    (m, is): (f32, f32),
    cap: f32,
) {
    let xh: [f32; 8] = std::array::from_fn(|i| (xs[i] - m) * is);
    let gv: [f32; 8] = std::array::from_fn(|i| keep_if(gs[i], passes(xh[i], (CLIP, cap))));
    for i in 0..8 {
        lanes[0][i] += gv[i];
        lanes[1][i] += gv[i] * xh[i];
    }
}

simd_fn! {
    /// `gx = is · (g' − mean(g') − x̂ · mean(g'·x̂))` over one plane; `stats` is
    /// `(mean, invstd, mean(g'), mean(g'·x̂))` of its channel.
    fn grad_plane(
        out: &mut [f32],
        x: &[f32],
        g: &[f32],
        stats: (f32, f32, f32, f32),
        cap: Option<f32>,
    ) {
        let (m, is, mg, mgx) = stats;
        let mask = clip_mask(cap);
        for ((o, &xv), &gv) in out.iter_mut().zip(x).zip(g) {
            let xh = (xv - m) * is;
            let gv = keep_if(gv, passes(xh, mask));
            *o = is * (gv - mg - xh * mgx);
        }
    }
}

simd_fn! {
    /// `out = act((x − m) · is)` over one plane, `act` a rectifier clipped above at `cap` when
    /// there is one.
    fn normalize_plane(out: &mut [f32], x: &[f32], m: f32, is: f32, cap: Option<f32>) {
        if let Some(cap) = cap {
            for (o, &v) in out.iter_mut().zip(x) {
                *o = ((v - m) * is).max(0.0).min(cap);
            }
        } else {
            for (o, &v) in out.iter_mut().zip(x) {
                *o = (v - m) * is;
            }
        }
    }
}

/// `act((x − mean) · invstd)` per channel over an NCHW buffer `[b, c, hw]`: the forward of
/// train-mode (batch statistics) and eval-mode (running statistics) BN.
fn normalize(
    x: &[f32],
    c: usize,
    hw: usize,
    mean: &[f32],
    invstd: &[f32],
    act: Activation,
) -> Vec<f32> {
    let cap = act.cap();
    // SAFETY: `normalize_plane` writes every value of its plane.
    unsafe {
        par_filled(
            x.len(),
            hw,
            || (),
            |_, i, out| {
                let ch = i % c;
                normalize_plane(out, &x[i * hw..(i + 1) * hw], mean[ch], invstd[ch], cap);
            },
        )
    }
}

/// Whether the fused CPU loops handle `x`.
fn fused(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32 && x.rank() == 4
}

/// Train-mode affine-free BN over `[b, c, h, w]` followed by `act`: returns the output, the
/// batch mean `[c]` and the biased batch variance `[c]` (both detached).
pub fn bn_train(
    x: &Tensor,
    eps: f64,
    act: Activation,
) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let (_, c, _, _) = x.dims4()?;
    if !fused(x) {
        let mean = x.mean_keepdim((0, 2, 3))?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim((0, 2, 3))?;
        let y = xc.broadcast_div(&(&var + eps)?.sqrt()?)?;
        let y = act.apply_tensor(y)?;
        return Ok((y, mean.detach().flatten_all()?, var.detach().flatten_all()?));
    }
    let saved = Arc::new(Mutex::new(None));
    let y = x.contiguous()?.apply_op1(BnTrain {
        eps,
        act,
        saved: saved.clone(),
    })?;
    let s = saved
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .ok_or_else(|| candle_core::Error::Msg("fused batch norm: forward saved nothing".into()))?;
    let dev = x.device();
    Ok((
        y,
        Tensor::from_vec(s.mean, c, dev)?,
        Tensor::from_vec(s.var, c, dev)?,
    ))
}

/// Eval-mode BN(+activation) with given `mean` and `var` `[c]` (treated as constants).
pub fn bn_eval(
    x: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    eps: f64,
    act: Activation,
) -> candle_core::Result<Tensor> {
    let (_, c, _, _) = x.dims4()?;
    if !fused(x) || !mean.device().is_cpu() {
        let m = mean.reshape((1, c, 1, 1))?;
        let inv = (var + eps)?.sqrt()?.recip()?.reshape((1, c, 1, 1))?;
        return act.apply_tensor(x.broadcast_sub(&m)?.broadcast_mul(&inv)?);
    }
    let mean = mean.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    let invstd = var
        .to_dtype(DType::F64)?
        .to_vec1::<f64>()?
        .into_iter()
        .map(|v| (1.0 / (v + eps).sqrt()) as f32)
        .collect();
    x.contiguous()?.apply_op1(BnEval { mean, invstd, act })
}

/// Eval-mode BN(+activation) with fixed statistics.
struct BnEval {
    mean: Vec<f32>,
    invstd: Vec<f32>,
    act: Activation,
}

impl CustomOp1 for BnEval {
    fn name(&self) -> &'static str {
        "shiftnas-bn-eval"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (_, c, h, w) = l.shape().dims4()?;
        let x = contiguous_f32(s, l, OP, "input")?;
        let hw = h * w;
        let y = normalize(x, c, hw, &self.mean, &self.invstd, self.act);
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let c = self.mean.len();
        let inv = Tensor::from_slice(&self.invstd, (1, c, 1, 1), grad.device())?;
        let mut g = grad.broadcast_mul(&inv)?;
        if let Some(cap) = self.act.cap() {
            g = g.mul(&y.gt(0f32)?.to_dtype(DType::F32)?)?;
            if cap.is_finite() {
                g = g.mul(&y.lt(cap)?.to_dtype(DType::F32)?)?;
            }
        }
        Ok(Some(g))
    }
}
