//! Channel split / concat glue of the ShuffleNetV2 blocks as CPU custom ops (DESIGN §6).
//!
//! With plain candle ops the SPOS channel shuffle is reshape → narrow → squeeze → contiguous per
//! half, and its backward materialises a zero-filled `cat(zeros, grad, zeros)` per view node. Here
//! [`odd_channels`] copies the odd channels in one op whose backward writes the gradient straight
//! into the odd channels of one buffer, and [`concat_channels`] builds `[even(a) or a, b]` in one
//! op whose backward hands each input its slice. Non-CPU or non-f32 tensors use the plain ops.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::cpu::contiguous_f32;

/// Names the op in errors.
const OP: &str = "channel glue";

fn fused(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32 && t.rank() == 4
}

/// Plain-ops SPOS `channel_shuffle`: (even channels, odd channels) of `[b, c, h, w]`, c even.
pub fn plain_channel_split(x: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
    let (b, c, h, w) = x.dims4()?;
    let r = x.reshape((b, c / 2, 2, h, w))?;
    let even = r.narrow(2, 0, 1)?.squeeze(2)?.contiguous()?;
    let odd = r.narrow(2, 1, 1)?.squeeze(2)?.contiguous()?;
    Ok((even, odd))
}

fn check_even(x: &Tensor) -> candle_core::Result<(usize, usize, usize, usize)> {
    let (b, c, h, w) = x.dims4()?;
    if c % 2 != 0 {
        candle_core::bail!(
            "channel split needs an even channel count, got input {:?}",
            x.dims()
        );
    }
    Ok((b, c, h, w))
}

/// Odd channels `x[:, 1::2]` of `[b, c, h, w]` (c even) → `[b, c/2, h, w]`.
pub fn odd_channels(x: &Tensor) -> candle_core::Result<Tensor> {
    check_even(x)?;
    if !fused(x) {
        return Ok(plain_channel_split(x)?.1);
    }
    x.contiguous()?.apply_op1(OddChannels)
}

/// `[even(a), b]` along channels when `even_of_a` (the stride-1 block output: pass-through half of
/// the block input, then the main branch), else `[a, b]`.
pub fn concat_channels(a: &Tensor, b: &Tensor, even_of_a: bool) -> candle_core::Result<Tensor> {
    if even_of_a {
        check_even(a)?;
    }
    if !fused(a) || !fused(b) {
        let a = if even_of_a {
            plain_channel_split(a)?.0
        } else {
            a.clone()
        };
        return Tensor::cat(&[&a, b], 1);
    }
    let (ba, ca, ha, wa) = a.dims4()?;
    let (bb, _, hb, wb) = b.dims4()?;
    if (ba, ha, wa) != (bb, hb, wb) {
        candle_core::bail!(
            "channel concat: inputs {:?} and {:?} differ in batch or spatial size",
            a.dims(),
            b.dims()
        );
    }
    let _ = ca;
    a.contiguous()?
        .apply_op2(&b.contiguous()?, Concat { even_of_a })
}

/// Copies every `step`-th channel plane starting at `first` of `x` `[b, c, hw]` into `out`.
fn gather(x: &[f32], c: usize, hw: usize, first: usize, step: usize, out: &mut [f32]) {
    let cout = c.saturating_sub(first).div_ceil(step);
    if hw == 0 || cout == 0 {
        return;
    }
    out.par_chunks_mut(hw).enumerate().for_each(|(i, o)| {
        let (n, k) = (i / cout, i % cout);
        let src = (n * c + first + k * step) * hw;
        o.copy_from_slice(&x[src..src + hw]);
    });
}

struct OddChannels;

impl CustomOp1 for OddChannels {
    fn name(&self) -> &'static str {
        "shiftnas-odd-channels"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = l.shape().dims4()?;
        let x = contiguous_f32(s, l, OP, "input")?;
        let mut out = vec![0f32; b * (c / 2) * h * w];
        gather(x, c, h * w, 1, 2, &mut out);
        Ok((CpuStorage::F32(out), Shape::from((b, c / 2, h, w))))
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(
            grad.contiguous()?
                .apply_op1_no_bwd(&Interleave { even: false })?,
        ))
    }
}

/// `[b, c/2, h, w]` → `[b, c, h, w]` with the input in the even (or odd) channels, zeros elsewhere.
struct Interleave {
    even: bool,
}

impl CustomOp1 for Interleave {
    fn name(&self) -> &'static str {
        "shiftnas-interleave"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, ch, h, w) = l.shape().dims4()?;
        let g = contiguous_f32(s, l, OP, "gradient")?;
        let hw = h * w;
        let c = 2 * ch;
        let mut out = vec![0f32; b * c * hw];
        let first = usize::from(!self.even);
        if hw > 0 {
            out.par_chunks_mut(hw).enumerate().for_each(|(i, o)| {
                let (n, k) = (i / c, i % c);
                if k % 2 == first {
                    let src = (n * ch + k / 2) * hw;
                    o.copy_from_slice(&g[src..src + hw]);
                }
            });
        }
        Ok((CpuStorage::F32(out), Shape::from((b, c, h, w))))
    }
}

/// `[even(a) or a, b]` along channels.
struct Concat {
    even_of_a: bool,
}

impl CustomOp2 for Concat {
    fn name(&self) -> &'static str {
        "shiftnas-concat-channels"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, ca, h, w) = l1.shape().dims4()?;
        let (_, cb, _, _) = l2.shape().dims4()?;
        let a = contiguous_f32(s1, l1, OP, "first input")?;
        let bt = contiguous_f32(s2, l2, OP, "second input")?;
        let hw = h * w;
        let ka = if self.even_of_a { ca / 2 } else { ca };
        let step = if self.even_of_a { 2 } else { 1 };
        let c = ka + cb;
        let mut out = vec![0f32; n * c * hw];
        if hw > 0 {
            out.par_chunks_mut(hw).enumerate().for_each(|(i, o)| {
                let (img, k) = (i / c, i % c);
                let src = if k < ka {
                    &a[(img * ca + k * step) * hw..][..hw]
                } else {
                    &bt[(img * cb + k - ka) * hw..][..hw]
                };
                o.copy_from_slice(src);
            });
        }
        Ok((CpuStorage::F32(out), Shape::from((n, c, h, w))))
    }

    fn bwd(
        &self,
        a: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let ca = a.dim(1)?;
        let ka = if self.even_of_a { ca / 2 } else { ca };
        let c = grad.dim(1)?;
        let ga = grad.narrow(1, 0, ka)?.contiguous()?;
        let ga = if self.even_of_a {
            ga.apply_op1_no_bwd(&Interleave { even: true })?
        } else {
            ga
        };
        let gb = grad.narrow(1, ka, c - ka)?.contiguous()?;
        Ok((Some(ga), Some(gb)))
    }
}
