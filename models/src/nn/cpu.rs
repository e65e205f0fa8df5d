//! Helpers shared by the CPU paths of the custom ops: contiguous views and vectorised sums.

use candle_core::{CpuStorage, Layout};

/// The f32 values of a contiguous CPU tensor; `op` and `what` name it in the error.
pub(crate) fn contiguous_f32<'a>(
    s: &'a CpuStorage,
    l: &Layout,
    op: &str,
    what: &str,
) -> candle_core::Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{op}: {what} must be contiguous (call .contiguous())"),
    }
}

/// The planes of channel `ch` over the batch of an NCHW buffer: `x[(i·c + ch)·hw ..][..hw]`.
pub(crate) fn planes(
    x: &[f32],
    b: usize,
    c: usize,
    ch: usize,
    hw: usize,
) -> impl Iterator<Item = &[f32]> {
    (0..b).map(move |i| &x[(i * c + ch) * hw..(i * c + ch + 1) * hw])
}

/// `Σ f(x)` with eight f32 partial sums (so the compiler vectorises it), returned in f64.
#[inline]
pub(crate) fn sum8(xs: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut acc = [0f32; 8];
    let chunks = xs.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(|&v| f64::from(f(v))).sum();
    for c in chunks {
        for i in 0..8 {
            acc[i] += f(c[i]);
        }
    }
    acc.iter().map(|&a| f64::from(a)).sum::<f64>() + tail
}

/// Two sums `Σ f(x, g)` over paired slices, the same way as [`sum8`].
#[inline]
pub(crate) fn sum8_pair(xs: &[f32], gs: &[f32], f: impl Fn(f32, f32) -> (f32, f32)) -> (f64, f64) {
    let (mut a, mut b) = ([0f32; 8], [0f32; 8]);
    let (xc, gc) = (xs.chunks_exact(8), gs.chunks_exact(8));
    let (mut ta, mut tb) = (0f64, 0f64);
    for (&x, &g) in xc.remainder().iter().zip(gc.remainder()) {
        let (u, v) = f(x, g);
        ta += f64::from(u);
        tb += f64::from(v);
    }
    for (x, g) in xc.zip(gc) {
        for i in 0..8 {
            let (u, v) = f(x[i], g[i]);
            a[i] += u;
            b[i] += v;
        }
    }
    let total = |l: [f32; 8]| l.iter().map(|&v| f64::from(v)).sum::<f64>();
    (total(a) + ta, total(b) + tb)
}
