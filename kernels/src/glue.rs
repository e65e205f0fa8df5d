//! Channel split / concat glue of the ShuffleNetV2 blocks as CPU custom ops.
//!
//! With plain candle ops the SPOS channel shuffle is reshape → narrow → squeeze → contiguous per
//! half, and its backward materialises a zero-filled `cat(zeros, grad, zeros)` per view node. Here
//! [`shuffle_block`] runs a stride-1 block's shuffle as two ops: the odd channels feed the branch,
//! and the concat of the even ones with the branch output is one copy. Their backward writes the
//! block input's gradient once: the concat leaves its output gradient to the odd-channels op, which
//! runs later (the branch lies between them) and interleaves both halves in one pass, instead of
//! autograd adding two zero-padded halves. [`concat_channels`] joins a stride-2 block's branches
//! and hands each its slice of the gradient. Non-CPU or non-f32 tensors use the plain ops.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::cpu::{contiguous_f32, par_filled};

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
    x.contiguous()?.apply_op1(OddChannels { handoff: None })
}

/// The SPOS stride-1 block around `branch`: `[even(x), branch(odd(x))]` along channels (x has an
/// even channel count). `branch` must compute its output from the odd channels it is given: their
/// op's backward completes the block input's gradient.
pub fn shuffle_block<E: From<candle_core::Error>>(
    x: &Tensor,
    branch: impl FnOnce(&Tensor) -> Result<Tensor, E>,
) -> Result<Tensor, E> {
    check_even(x)?;
    if !fused(x) {
        let (even, odd) = plain_channel_split(x)?;
        return Ok(Tensor::cat(&[&even, &branch(&odd)?], 1)?);
    }
    let x = x.contiguous()?;
    let handoff = Handoff::default();
    let odd = x.apply_op1(OddChannels {
        handoff: Some(handoff.clone()),
    })?;
    let h = branch(&odd)?;
    check_same_images(&x, &h)?;
    let concat = Concat {
        shuffle: Some(handoff),
    };
    Ok(x.apply_op2(&h.contiguous()?, concat)?)
}

/// `[a, b]` along channels (a stride-2 block's projection and main branch).
pub fn concat_channels(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    if !fused(a) || !fused(b) {
        return Tensor::cat(&[a, b], 1);
    }
    check_same_images(a, b)?;
    a.contiguous()?
        .apply_op2(&b.contiguous()?, Concat { shuffle: None })
}

fn check_same_images(a: &Tensor, b: &Tensor) -> candle_core::Result<()> {
    let (ba, _, ha, wa) = a.dims4()?;
    let (bb, _, hb, wb) = b.dims4()?;
    if (ba, ha, wa) != (bb, hb, wb) {
        candle_core::bail!(
            "channel concat: inputs {:?} and {:?} differ in batch or spatial size",
            a.dims(),
            b.dims()
        );
    }
    Ok(())
}

/// Where a [`shuffle_block`]'s concat leaves its output gradient for the odd-channels op.
type Handoff = Arc<Mutex<Option<Tensor>>>;

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

struct OddChannels {
    handoff: Option<Handoff>,
}

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
        let grad = grad.contiguous()?;
        let concat_grad = self
            .handoff
            .as_ref()
            .and_then(|h| h.lock().unwrap_or_else(|e| e.into_inner()).take());
        Ok(Some(match concat_grad {
            Some(concat_grad) => concat_grad.apply_op2_no_bwd(&grad, &ShuffleGrad)?,
            None => grad.apply_op1_no_bwd(&OddChannelsGrad)?,
        }))
    }
}

/// A [`shuffle_block`]'s input gradient from (its concat's output gradient `[b, c, h, w]`, the odd
/// channels' gradient `[b, c/2, h, w]`): even channel 2k is the concat's channel k, odd channel
/// 2k + 1 the odd channels' k.
struct ShuffleGrad;

impl CustomOp2 for ShuffleGrad {
    fn name(&self) -> &'static str {
        "shiftnas-shuffle-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = l1.shape().dims4()?;
        let (_, half, _, _) = l2.shape().dims4()?;
        if 2 * half != c {
            candle_core::bail!(
                "{OP}: shuffle gradient halves {:?} and {:?}",
                l1.dims(),
                l2.dims()
            );
        }
        let pass = contiguous_f32(s1, l1, OP, "concat gradient")?;
        let odd = contiguous_f32(s2, l2, OP, "odd-channel gradient")?;
        let hw = h * w;
        // SAFETY: every plane of the output is copied.
        let out = unsafe {
            par_filled(
                b * c * hw,
                hw,
                || (),
                |_, i, o| {
                    let (n, k) = (i / c, i % c);
                    let src = if k % 2 == 0 {
                        &pass[(n * c + k / 2) * hw..]
                    } else {
                        &odd[(n * half + k / 2) * hw..]
                    };
                    o.copy_from_slice(&src[..hw]);
                },
            )
        };
        Ok((CpuStorage::F32(out), Shape::from((b, c, h, w))))
    }
}

/// Input gradient of [`odd_channels`] alone: `[b, c/2, h, w]` → `[b, c, h, w]` with the input in
/// the odd channels, zeros in the even ones.
struct OddChannelsGrad;

impl CustomOp1 for OddChannelsGrad {
    fn name(&self) -> &'static str {
        "shiftnas-odd-channels-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, ch, h, w) = l.shape().dims4()?;
        let g = contiguous_f32(s, l, OP, "gradient")?;
        let hw = h * w;
        let c = 2 * ch;
        let mut out = vec![0f32; b * c * hw];
        if hw > 0 {
            out.par_chunks_mut(hw).enumerate().for_each(|(i, o)| {
                let (n, k) = (i / c, i % c);
                if k % 2 == 1 {
                    let src = (n * ch + k / 2) * hw;
                    o.copy_from_slice(&g[src..src + hw]);
                }
            });
        }
        Ok((CpuStorage::F32(out), Shape::from((b, c, h, w))))
    }
}

/// `[a, b]` along channels, or `[even(a), b]` for a [`shuffle_block`], whose backward leaves the
/// output gradient in the hand-off instead of returning `a`'s.
struct Concat {
    shuffle: Option<Handoff>,
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
        let step = if self.shuffle.is_some() { 2 } else { 1 };
        let ka = ca / step;
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
        let (ca, c) = (a.dim(1)?, grad.dim(1)?);
        if let Some(handoff) = &self.shuffle {
            let gb = grad.narrow(1, ca / 2, c - ca / 2)?.contiguous()?;
            *handoff.lock().unwrap_or_else(|e| e.into_inner()) = Some(grad.contiguous()?);
            return Ok((None, Some(gb)));
        }
        let ga = grad.narrow(1, 0, ca)?.contiguous()?;
        let gb = grad.narrow(1, ca, c - ca)?.contiguous()?;
        Ok((Some(ga), Some(gb)))
    }
}
