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

/// A buffer of `n` values written in `chunk`-sized pieces in parallel by `fill(scratch, i,
/// piece)`, with one `init()` scratch per rayon job, without zeroing the buffer first (that pass
/// was a twentieth of a training step).
///
/// # Safety
/// `fill` must write every value of every piece it is given (it must not read them first).
pub(crate) unsafe fn par_filled<S>(
    n: usize,
    chunk: usize,
    init: impl Fn() -> S + Sync + Send,
    fill: impl Fn(&mut S, usize, &mut [f32]) + Sync + Send,
) -> Vec<f32> {
    use rayon::prelude::*;
    let mut v = Vec::<f32>::with_capacity(n);
    // SAFETY: the allocation holds `n` f32s (no invalid bit patterns); the caller guarantees each is
    // written before the vector is read.
    let buf = unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr(), n) };
    buf.par_chunks_mut(chunk.max(1))
        .enumerate()
        .for_each_init(init, |s, (i, piece)| fill(s, i, piece));
    // SAFETY: as above, every value is initialised now.
    unsafe { v.set_len(n) };
    v
}

/// Plane `i` (`hw` values) of an NCHW buffer.
#[inline(always)]
pub(crate) fn plane(t: &[f32], hw: usize, i: usize) -> &[f32] {
    &t[i * hw..(i + 1) * hw]
}

/// Images summed in f32 lanes before a part's total in [`channel_sums`] and the depthwise kernel
/// gradient: a fixed number, so results do not depend on the thread count.
pub(crate) const IMAGES_PER_PART: usize = 8;

/// Per-channel sums `[c][N]` of `N` quantities over an NCHW buffer `[b, c, hw]`. `add(lanes,
/// plane)` adds plane `plane`'s (image `plane / c`, channel `plane % c`) terms of each quantity
/// to eight f32 lanes (see [`chunks8`]). Parts of [`IMAGES_PER_PART`] images run in parallel, each
/// walking its planes in memory order into per-channel lanes; the parts' f64 totals are added in
/// order. Summing per plane instead cost a horizontal f64 reduction for every plane: more than
/// the sum itself on the 2×2 to 7×7 planes of the late stages.
pub(crate) fn channel_sums<const N: usize>(
    b: usize,
    c: usize,
    add: impl Fn(&mut [[f32; 8]; N], usize) + Sync + Send,
) -> Vec<[f64; N]> {
    use rayon::prelude::*;
    let parts: Vec<Vec<[f64; N]>> = (0..b.div_ceil(IMAGES_PER_PART))
        .into_par_iter()
        .map(|part| {
            let mut lanes = vec![[[0f32; 8]; N]; c];
            for n in part * IMAGES_PER_PART..((part + 1) * IMAGES_PER_PART).min(b) {
                for (ch, l) in lanes.iter_mut().enumerate() {
                    add(l, n * c + ch);
                }
            }
            let total = |q: &[f32; 8]| q.iter().map(|&v| f64::from(v)).sum::<f64>();
            lanes
                .iter()
                .map(|l| std::array::from_fn(|k| total(&l[k])))
                .collect()
        })
        .collect();
    let mut out = vec![[0f64; N]; c];
    for part in &parts {
        for (o, p) in out.iter_mut().zip(part) {
            for (o, p) in o.iter_mut().zip(p) {
                *o += p;
            }
        }
    }
    out
}

/// The values of planes `xs` (of equal length) eight at a time, the last chunk of each padded
/// with `pad`: element `j` of a plane always lands in lane `j mod 8`. An iterator rather than a
/// callback, because a closure called from a [`simd_fn`] body may stay out of line, compiled
/// without AVX2.
#[inline(always)]
pub(crate) fn chunks8<const K: usize>(xs: [&[f32]; K], pad: [f32; K]) -> Chunks8<'_, K> {
    let n = xs[0].len();
    let full = n / 8;
    // Eight fixed steps rather than a copy of n % 8 values: that became a call to memcpy per plane
    // and input, a tenth of BN's backward on the 2×2 to 7×7 planes of the late stages.
    let tails = std::array::from_fn(|k| {
        let tail = &xs[k][full * 8..];
        std::array::from_fn(|i| tail.get(i).copied().unwrap_or(pad[k]))
    });
    Chunks8 {
        xs,
        tails,
        next: 0,
        full,
        count: n.div_ceil(8),
    }
}

/// See [`chunks8`].
pub(crate) struct Chunks8<'a, const K: usize> {
    xs: [&'a [f32]; K],
    tails: [[f32; 8]; K],
    next: usize,
    full: usize,
    count: usize,
}

impl<const K: usize> Iterator for Chunks8<'_, K> {
    type Item = [[f32; 8]; K];

    #[inline(always)]
    fn next(&mut self) -> Option<[[f32; 8]; K]> {
        let j = self.next;
        if j == self.count {
            return None;
        }
        self.next += 1;
        Some(if j < self.full {
            std::array::from_fn(|k| self.xs[k][j * 8..j * 8 + 8].try_into().unwrap())
        } else {
            self.tails
        })
    }
}

/// The gradient mask of a rectifier clipped above at `cap` (`None`: no rectifier) as
/// `(clips, cap)` for [`passes`], ∞ standing in for a missing cap.
pub(crate) fn clip_mask(cap: Option<f32>) -> (bool, f32) {
    (cap.is_some(), cap.unwrap_or(f32::INFINITY))
}

/// Whether the gradient passes a rectifier at value `v` (before or after it: 0 < v < cap);
/// always when it `clips` nothing.
#[inline(always)]
pub(crate) fn passes(v: f32, (clips, cap): (bool, f32)) -> bool {
    !clips || (v > 0.0 && v < cap)
}

/// `g` where `keep`, else 0.0, without a branch: a `?:` on data-dependent signs compiled to one
/// mispredicted branch per lane and kept BN's backward from vectorising.
#[inline(always)]
pub(crate) fn keep_if(g: f32, keep: bool) -> f32 {
    f32::from_bits(g.to_bits() & 0u32.wrapping_sub(u32::from(keep)))
}

/// Set by tests to run the baseline copies of [`simd_fn`] functions on an AVX2 machine.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) static BASELINE_ONLY: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Whether [`simd_fn`] functions run their AVX2 copy: this x86-64 CPU has AVX2 (std caches the
/// answer after the first check).
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn has_avx2() -> bool {
    !BASELINE_ONLY.load(std::sync::atomic::Ordering::Relaxed)
        && std::arch::is_x86_feature_detected!("avx2")
}

/// Defines a function whose body is compiled twice, for the baseline x86-64 target (SSE2) and with
/// AVX2, and runs the AVX2 copy when the CPU has it. Both copies do the same f32 operations in the
/// same order (no FMA contraction), so they give bit-identical results; the AVX2 copy runs the
/// vectorised loops 8 lanes wide instead of 4. Helpers the body calls must be `#[inline(always)]`
/// to be compiled into the AVX2 copy. Parameters are plain identifiers.
macro_rules! simd_fn {
    ($(#[$m:meta])* $vis:vis fn $name:ident $(<$($lt:lifetime),*>)? ($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        $vis fn $name $(<$($lt),*>)? ($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn imp $(<$($lt),*>)? ($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                fn avx2 $(<$($lt),*>)? ($($arg: $ty),*) $(-> $ret)? {
                    imp($($arg),*)
                }
                if $crate::cpu::has_avx2() {
                    // SAFETY: the CPU has AVX2 (checked just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            imp($($arg),*)
        }
    };
}
pub(crate) use simd_fn;

simd_fn! {
    /// Adds plane `x` to `lanes[0]` (see [`chunks8`]).
    fn add_sum(lanes: &mut [[f32; 8]; 1], x: &[f32]) {
        for [x] in chunks8([x], [0.0]) {
            for i in 0..8 {
                lanes[0][i] += x[i];
            }
        }
    }
}

simd_fn! {
    /// Adds `(x − m)²` over plane `x` to `lanes[0]` (see [`chunks8`]; padding with `m` adds 0).
    fn add_sq_dev(lanes: &mut [[f32; 8]; 1], x: &[f32], m: f32) {
        for [x] in chunks8([x], [m]) {
            for i in 0..8 {
                let d = x[i] - m;
                lanes[0][i] += d * d;
            }
        }
    }
}

/// Per-channel batch statistics of one train-mode BN forward (kept for its backward).
#[derive(Debug, Clone)]
pub(crate) struct BatchStats {
    pub mean: Vec<f32>,
    /// `1 / sqrt(var + eps)`.
    pub invstd: Vec<f32>,
    /// Biased variance, for the running-statistics update.
    pub var: Vec<f32>,
}

/// Per-channel statistics of an NCHW buffer `[b, c, hw]`: two passes of [`channel_sums`], the
/// second around the channel means, totals in f64.
pub(crate) fn batch_stats(x: &[f32], b: usize, c: usize, hw: usize, eps: f64) -> BatchStats {
    let n = (b * hw) as f64;
    let sums = channel_sums(b, c, |l, i| add_sum(l, plane(x, hw, i)));
    let mean: Vec<f32> = sums.iter().map(|s| (s[0] / n) as f32).collect();
    let ss = channel_sums(b, c, |l, i| add_sq_dev(l, plane(x, hw, i), mean[i % c]));
    let var: Vec<f64> = ss.iter().map(|s| s[0] / n).collect();
    BatchStats {
        mean,
        invstd: var
            .iter()
            .map(|&v| (1.0 / (v + eps).sqrt()) as f32)
            .collect(),
        var: var.iter().map(|&v| v as f32).collect(),
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, Var};

    use super::BASELINE_ONLY;
    use crate::infer::Activation;
    use crate::{bn_affine::bn_affine_train, bn_op::bn_train, depthwise_conv2d};

    /// A fixed pseudo-random `[dims]` tensor (values `scale · sin(i · 0.7 + phase) + offset`).
    fn input(dims: &[usize], scale: f32, offset: f32, phase: f32) -> Var {
        let n: usize = dims.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|i| scale * (i as f32 * 0.7 + phase).sin() + offset)
            .collect();
        Var::from_tensor(&Tensor::from_vec(v, dims, &Device::Cpu).unwrap()).unwrap()
    }

    /// Outputs and gradients of the CPU custom ops that use `simd_fn`, as raw bits.
    fn run_ops() -> Vec<Vec<u32>> {
        let bits = |t: &Tensor| -> Vec<u32> {
            let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            v.iter().map(|f| f.to_bits()).collect()
        };
        let mut out = Vec::new();
        // Odd plane sizes and channel counts leave remainders in every vectorised loop.
        for (k, stride, hw) in [(3, 1, 7), (5, 2, 9), (7, 1, 3), (3, 2, 4)] {
            let x = input(&[3, 5, hw, hw], 1.0, 0.1, 0.0);
            let w = input(&[5, 1, k, k], 0.3, 0.0, 1.0);
            let y = depthwise_conv2d(x.as_tensor(), w.as_tensor(), stride).unwrap();
            let (z, mean, var) = bn_train(&y, 1e-5, Activation::Relu).unwrap();
            // γ ≈ 3 puts outputs above ReLU6's cap on the stride-2 shapes.
            let g = input(&[5], 0.2, 3.0, 2.0);
            let b = input(&[5], 0.2, 0.0, 3.0);
            let act = [Activation::Relu, Activation::Relu6][stride - 1];
            let (a, _, _) = bn_affine_train(&z, g.as_tensor(), b.as_tensor(), 1e-5, act).unwrap();
            let loss = (a.sqr().unwrap().sum_all().unwrap() + y.sum_all().unwrap()).unwrap();
            let grads = loss.backward().unwrap();
            for t in [&y, &z, &mean, &var, &a] {
                out.push(bits(t));
            }
            for v in [&x, &w, &g, &b] {
                out.push(bits(grads.get(v.as_tensor()).unwrap()));
            }
        }
        out
    }

    #[test]
    fn avx2_and_baseline_copies_give_identical_bits() {
        let fast = run_ops();
        BASELINE_ONLY.store(true, std::sync::atomic::Ordering::Relaxed);
        let base = run_ops();
        BASELINE_ONLY.store(false, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(fast.len(), base.len());
        for (i, (f, b)) in fast.iter().zip(&base).enumerate() {
            assert_eq!(
                f, b,
                "tensor {i} differs between the AVX2 and the baseline copy"
            );
        }
    }
}
