//! Depthwise k×k conv (padding k/2, any stride) on channels-last images.
//!
//! Channels are innermost, so 8 neighbouring channels (16 with AVX-512) share one SIMD register:
//! each output pixel keeps its accumulators in registers over the k² taps and is stored once,
//! however small the plane. The depthwise training op runs its forward through this kernel too
//! (see `dw_rows`).

use super::Activation;
use crate::cpu::simd_fn;

/// Shape of a depthwise conv over a batch of channels-last images.
#[derive(Debug, Clone, Copy)]
pub struct DwShape {
    /// Images.
    pub batch: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Channels.
    pub c: usize,
    /// Kernel size (square, odd).
    pub k: usize,
    /// Stride.
    pub stride: usize,
}

impl DwShape {
    /// Output height and width with padding k/2.
    pub fn out_hw(&self) -> (usize, usize) {
        let p = self.k / 2;
        (
            (self.h + 2 * p - self.k) / self.stride + 1,
            (self.w + 2 * p - self.k) / self.stride + 1,
        )
    }
}

/// Transposes an OIHW depthwise weight `[c, 1, k, k]` to the tap-major `[k·k, c]` layout
/// [`depthwise_nhwc`] reads.
pub fn taps_major(weight: &[f32], c: usize, k: usize) -> Vec<f32> {
    assert_eq!(
        weight.len(),
        c * k * k,
        "taps_major: weight must be [c, 1, k, k]"
    );
    super::pointwise::transpose(weight, c, k * k)
}

/// `out[n][oy][ox][ch] = act(bias[ch] + Σ_{ky,kx} x[n][iy][ix][ch] · taps[ky·k + kx][ch])`
/// with `iy = oy·stride + ky − k/2` (zero outside), likewise `ix`. `taps` comes from
/// [`taps_major`].
///
/// # Panics
/// When a buffer does not match the shapes given.
pub fn depthwise_nhwc(
    x: &[f32],
    s: DwShape,
    taps: &[f32],
    bias: &[f32],
    act: Activation,
    out: &mut [f32],
) {
    run::<true>(x, s, taps, bias, act, out);
}

/// [`depthwise_nhwc`] without activation or fused multiply-adds: each product rounded, then added
/// to `bias` in (ky, kx) order, so every CPU gives the same bits (the training op's forward, with
/// a zero bias).
pub(crate) fn depthwise_nhwc_unfused(
    x: &[f32],
    s: DwShape,
    taps: &[f32],
    bias: &[f32],
    out: &mut [f32],
) {
    run::<false>(x, s, taps, bias, Activation::None, out);
}

/// [`depthwise_nhwc`]; fused multiply-adds where `FUSED` and the CPU has them in AVX-512.
fn run<const FUSED: bool>(
    x: &[f32],
    s: DwShape,
    taps: &[f32],
    bias: &[f32],
    act: Activation,
    out: &mut [f32],
) {
    let (oh, ow) = s.out_hw();
    assert_eq!(
        x.len(),
        s.batch * s.h * s.w * s.c,
        "depthwise_nhwc: input size"
    );
    assert_eq!(taps.len(), s.k * s.k * s.c, "depthwise_nhwc: weight size");
    assert_eq!(bias.len(), s.c, "depthwise_nhwc: bias size");
    assert_eq!(
        out.len(),
        s.batch * oh * ow * s.c,
        "depthwise_nhwc: output size"
    );
    #[cfg(target_arch = "x86_64")]
    if super::avx512::enabled() {
        // SAFETY: AVX-512F is there; the sizes were checked above.
        unsafe { super::avx512::depthwise::<FUSED>(x, s, taps, bias, act, out) };
        return;
    }
    dw(x, s, taps, bias, act, out);
}

simd_fn! {
    fn dw(x: &[f32], s: DwShape, taps: &[f32], bias: &[f32], act: Activation, out: &mut [f32]) {
        let (oh, ow) = s.out_hw();
        let (c, k, p) = (s.c, s.k, (s.k / 2) as isize);
        let blocks = c / 8;
        for n in 0..s.batch {
            let img = &x[n * s.h * s.w * c..(n + 1) * s.h * s.w * c];
            for oy in 0..oh {
                let y0 = (oy * s.stride) as isize - p;
                let ky0 = (-y0).max(0) as usize;
                let ky1 = ((s.h as isize - y0).min(k as isize)).max(0) as usize;
                for ox in 0..ow {
                    let x0 = (ox * s.stride) as isize - p;
                    let kx0 = (-x0).max(0) as usize;
                    let kx1 = ((s.w as isize - x0).min(k as isize)).max(0) as usize;
                    let o = &mut out[((n * oh + oy) * ow + ox) * c..((n * oh + oy) * ow + ox + 1) * c];
                    for b in 0..blocks {
                        let mut acc: [f32; 8] = bias[b * 8..b * 8 + 8].try_into().unwrap();
                        for ky in ky0..ky1 {
                            let iy = (y0 + ky as isize) as usize;
                            for kx in kx0..kx1 {
                                let ix = (x0 + kx as isize) as usize;
                                let xi = &img[(iy * s.w + ix) * c + b * 8..][..8];
                                let wi = &taps[(ky * k + kx) * c + b * 8..][..8];
                                for i in 0..8 {
                                    acc[i] += xi[i] * wi[i];
                                }
                            }
                        }
                        for v in &mut acc {
                            *v = act.apply(*v);
                        }
                        o[b * 8..b * 8 + 8].copy_from_slice(&acc);
                    }
                    for ch in blocks * 8..c {
                        let mut acc = bias[ch];
                        for ky in ky0..ky1 {
                            let iy = (y0 + ky as isize) as usize;
                            for kx in kx0..kx1 {
                                let ix = (x0 + kx as isize) as usize;
                                acc += img[(iy * s.w + ix) * c + ch] * taps[(ky * k + kx) * c + ch];
                            }
                        }
                        o[ch] = act.apply(acc);
                    }
                }
            }
        }
    }
}
