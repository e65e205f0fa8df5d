//! AVX-512 copies of the 1×1 and depthwise inference kernels: 16 channels per register, fused
//! multiply-adds, masked loads and stores for channel tails, bias and activation applied before
//! the single store. [`pointwise_nhwc`](super::pointwise_nhwc) and
//! [`depthwise_nhwc`](super::depthwise_nhwc) run them when the CPU has AVX-512F (see
//! [`enabled`]); the callers have checked every buffer bound.
//!
//! Results differ from the AVX2/baseline copies by rounding only (a fused multiply-add rounds
//! once): both are tested against the same f64 reference. The depthwise training op runs the
//! depthwise kernel without fusing (`FUSED = false`), which gives the portable loop's bits.

use std::arch::x86_64::*;
use std::sync::atomic::{AtomicBool, Ordering};

use super::Activation;
use super::depthwise::DwShape;

static OFF: AtomicBool = AtomicBool::new(false);

/// Whether the inference kernels run their AVX-512 copies: the CPU has AVX-512F and they were not
/// turned off with [`set_enabled`].
pub fn enabled() -> bool {
    !OFF.load(Ordering::Relaxed)
        && crate::cpu::has_avx2()
        && std::arch::is_x86_feature_detected!("avx512f")
}

/// Turns the AVX-512 copies off (or back on) for the whole process, so that tests and benchmarks
/// can run the AVX2 path on a CPU that has both.
pub fn set_enabled(on: bool) {
    OFF.store(!on, Ordering::Relaxed);
}

/// The first `n` (≤ 16) lanes.
#[inline(always)]
fn lanes(n: usize) -> __mmask16 {
    debug_assert!(n <= 16);
    ((1u32 << n) - 1) as __mmask16
}

/// `act` on every lane.
#[target_feature(enable = "avx512f")]
#[inline]
fn activate(v: __m512, act: Activation) -> __m512 {
    match act {
        Activation::None => v,
        Activation::Relu => _mm512_max_ps(v, _mm512_setzero_ps()),
        Activation::Relu6 => {
            _mm512_min_ps(_mm512_max_ps(v, _mm512_setzero_ps()), _mm512_set1_ps(6.0))
        }
    }
}

/// `out[r * out_rs + o] = act(bias[o] + Σ_c x[r * rs + c * cs] · w[c * cout + o])`, as
/// [`super::pointwise_nhwc`] documents it.
///
/// # Safety
/// The CPU has AVX-512F; `x`, `w` and `out` hold every element the formula reads or writes.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn pointwise(
    x: *const f32,
    rs: usize,
    cs: usize,
    rows: usize,
    cin: usize,
    w: *const f32,
    bias: &[f32],
    act: Activation,
    out: *mut f32,
    out_rs: usize,
) {
    let cout = bias.len();
    // 32 output channels at a time: their weight panel (cin × 32) stays in L1 while every row
    // passes; 8 rows × 2 registers of accumulators leave room for the weights and broadcasts.
    let mut o = 0;
    while o < cout {
        let n = (cout - o).min(32);
        let m = [lanes(n.min(16)), lanes(n.saturating_sub(16))];
        // SAFETY (all calls below): the column block o..o+n lies inside every row of `w` and
        // `out`; rows r..r+R are inside `x` and `out` by the caller's contract.
        let p = Panel {
            x,
            rs,
            cs,
            cin,
            w: unsafe { w.add(o) },
            w_rs: cout,
            b: [
                unsafe { _mm512_maskz_loadu_ps(m[0], bias.as_ptr().add(o)) },
                if n > 16 {
                    unsafe { _mm512_maskz_loadu_ps(m[1], bias.as_ptr().add(o + 16)) }
                } else {
                    _mm512_setzero_ps()
                },
            ],
            m,
            act,
            out: unsafe { out.add(o) },
            out_rs,
        };
        unsafe {
            if n > 16 {
                p.rows::<2>(rows);
            } else {
                p.rows::<1>(rows);
            }
        }
        o += 32;
    }
}

/// One block of up to 32 output channels of a 1×1 conv.
struct Panel {
    x: *const f32,
    rs: usize,
    cs: usize,
    cin: usize,
    w: *const f32,
    w_rs: usize,
    b: [__m512; 2],
    m: [__mmask16; 2],
    act: Activation,
    out: *mut f32,
    out_rs: usize,
}

impl Panel {
    /// All `rows`, 8 at a time, then the rest.
    #[target_feature(enable = "avx512f")]
    unsafe fn rows<const V: usize>(&self, rows: usize) {
        let mut r = 0;
        unsafe {
            while r + 8 <= rows {
                self.tile::<8, V>(r);
                r += 8;
            }
            match rows - r {
                0 => {}
                1 => self.tile::<1, V>(r),
                2 => self.tile::<2, V>(r),
                3 => self.tile::<3, V>(r),
                4 => self.tile::<4, V>(r),
                5 => self.tile::<5, V>(r),
                6 => self.tile::<6, V>(r),
                _ => self.tile::<7, V>(r),
            }
        }
    }

    /// Rows `r0..r0 + R`, `V` registers of output channels, accumulated in registers over `cin`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn tile<const R: usize, const V: usize>(&self, r0: usize) {
        unsafe {
            let b: [__m512; V] = std::array::from_fn(|v| self.b[v]);
            let mut acc = [b; R];
            let mut xp = self.x.add(r0 * self.rs);
            let mut wp = self.w;
            for _ in 0..self.cin {
                let mut wv = [_mm512_setzero_ps(); V];
                for (v, w) in wv.iter_mut().enumerate() {
                    *w = _mm512_maskz_loadu_ps(self.m[v], wp.add(16 * v));
                }
                for (r, a) in acc.iter_mut().enumerate() {
                    let xv = _mm512_set1_ps(*xp.add(r * self.rs));
                    for (a, w) in a.iter_mut().zip(&wv) {
                        *a = _mm512_fmadd_ps(xv, *w, *a);
                    }
                }
                xp = xp.add(self.cs);
                wp = wp.add(self.w_rs);
            }
            for (r, a) in acc.iter().enumerate() {
                let row = self.out.add((r0 + r) * self.out_rs);
                for (v, a) in a.iter().enumerate() {
                    _mm512_mask_storeu_ps(row.add(16 * v), self.m[v], activate(*a, self.act));
                }
            }
        }
    }
}

/// Output pixels per register tile of the depthwise conv's interior (where all k taps of a row
/// fall inside the image): each tap's weights are loaded once for all of them.
const DW_TILE: usize = 4;

/// `acc + x · w`: one fused multiply-add when `FUSED`, else a product and a sum each rounded (the
/// bits of the AVX2 and baseline loops).
#[target_feature(enable = "avx512f")]
#[inline]
fn mul_add<const FUSED: bool>(x: __m512, w: __m512, acc: __m512) -> __m512 {
    if FUSED {
        _mm512_fmadd_ps(x, w, acc)
    } else {
        _mm512_add_ps(acc, _mm512_mul_ps(x, w))
    }
}

/// The depthwise conv as [`super::depthwise_nhwc`] documents it, its taps added in (ky, kx) order
/// (with `FUSED` false: bit for bit the result of the portable loop).
///
/// # Safety
/// The CPU has AVX-512F; the caller has checked the buffer sizes against `s`.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn depthwise<const FUSED: bool>(
    x: &[f32],
    s: DwShape,
    taps: &[f32],
    bias: &[f32],
    act: Activation,
    out: &mut [f32],
) {
    let (oh, ow) = s.out_hw();
    let (c, k, st) = (s.c, s.k, s.stride);
    let p = k / 2;
    // Output columns whose k taps all fall inside the row: ox·st ≥ p and ox·st − p + k ≤ w.
    let lo = p.div_ceil(st);
    let hi = if s.w + p >= k {
        ((s.w + p - k) / st + 1).min(ow)
    } else {
        0
    };
    let (xp, tp, op) = (x.as_ptr(), taps.as_ptr(), out.as_mut_ptr());
    for n in 0..s.batch {
        // SAFETY: every offset below stays inside image n of `x`, `taps` and image n of `out`
        // (the caller checked their sizes; the tap ranges are clipped to the image).
        let img = unsafe { xp.add(n * s.h * s.w * c) };
        for oy in 0..oh {
            let y0 = (oy * st) as isize - p as isize;
            let ky0 = (-y0).max(0) as usize;
            let ky1 = (s.h as isize - y0).clamp(0, k as isize) as usize;
            let orow = unsafe { op.add((n * oh + oy) * ow * c) };
            let mut cb = 0;
            while cb < c {
                let m = lanes((c - cb).min(16));
                let b = unsafe { _mm512_maskz_loadu_ps(m, bias.as_ptr().add(cb)) };
                let mut ox = 0;
                while ox < ow {
                    if ox >= lo && ox + DW_TILE <= hi {
                        let mut acc = [b; DW_TILE];
                        for ky in ky0..ky1 {
                            let iy = (y0 + ky as isize) as usize;
                            let irow = unsafe { img.add(iy * s.w * c + cb) };
                            for kx in 0..k {
                                let wv = unsafe {
                                    _mm512_maskz_loadu_ps(m, tp.add((ky * k + kx) * c + cb))
                                };
                                for (j, a) in acc.iter_mut().enumerate() {
                                    let ix = (ox + j) * st + kx - p;
                                    let xv = unsafe { _mm512_maskz_loadu_ps(m, irow.add(ix * c)) };
                                    *a = mul_add::<FUSED>(xv, wv, *a);
                                }
                            }
                        }
                        for (j, a) in acc.iter().enumerate() {
                            unsafe {
                                _mm512_mask_storeu_ps(
                                    orow.add((ox + j) * c + cb),
                                    m,
                                    activate(*a, act),
                                )
                            };
                        }
                        ox += DW_TILE;
                    } else {
                        let x0 = (ox * st) as isize - p as isize;
                        let kx0 = (-x0).max(0) as usize;
                        let kx1 = (s.w as isize - x0).clamp(0, k as isize) as usize;
                        let mut a = b;
                        for ky in ky0..ky1 {
                            let iy = (y0 + ky as isize) as usize;
                            for kx in kx0..kx1 {
                                let ix = (x0 + kx as isize) as usize;
                                unsafe {
                                    let wv =
                                        _mm512_maskz_loadu_ps(m, tp.add((ky * k + kx) * c + cb));
                                    let xv =
                                        _mm512_maskz_loadu_ps(m, img.add((iy * s.w + ix) * c + cb));
                                    a = mul_add::<FUSED>(xv, wv, a);
                                }
                            }
                        }
                        unsafe {
                            _mm512_mask_storeu_ps(orow.add(ox * c + cb), m, activate(a, act))
                        };
                        ox += 1;
                    }
                }
                cb += 16;
            }
        }
    }
}
