//! The stem: a dense k×k conv (padding k/2) that reads NCHW images and writes channels-last rows,
//! as im2col + one gemm per image.

use gemm::{Parallelism, gemm};

use super::{Activation, bias_act};

/// Shape of a dense conv.
#[derive(Debug, Clone, Copy)]
pub struct DenseShape {
    /// Input channels.
    pub cin: usize,
    /// Input height and width.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Kernel size (square, odd).
    pub k: usize,
    /// Stride.
    pub stride: usize,
}

impl DenseShape {
    /// Output height and width with padding k/2.
    pub fn out_hw(&self) -> (usize, usize) {
        let p = self.k / 2;
        (
            (self.h + 2 * p - self.k) / self.stride + 1,
            (self.w + 2 * p - self.k) / self.stride + 1,
        )
    }
}

/// `out[n][oy][ox][o] = act(bias[o] + Σ_{c,ky,kx} x[n][c][iy][ix] · weight[o][c][ky][kx])` for
/// `batch` NCHW images `x`, zero padding k/2; `weight` is the OIHW weight transposed to
/// `[cin·k·k, cout]` ([`super::pointwise::transpose`]), `out` channels-last.
/// `scratch` is reused for the im2col matrix.
///
/// # Panics
/// When a buffer does not match the shapes given.
#[allow(clippy::too_many_arguments)]
pub fn dense_conv_nchw_in(
    x: &[f32],
    batch: usize,
    s: DenseShape,
    weight: &[f32],
    bias: &[f32],
    act: Activation,
    out: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    let cout = bias.len();
    let kk = s.cin * s.k * s.k;
    let (oh, ow) = s.out_hw();
    let in_img = s.cin * s.h * s.w;
    let out_img = oh * ow * cout;
    assert_eq!(x.len(), batch * in_img, "dense_conv_nchw_in: input size");
    assert_eq!(weight.len(), cout * kk, "dense_conv_nchw_in: weight size");
    assert_eq!(
        out.len(),
        batch * out_img,
        "dense_conv_nchw_in: output size"
    );
    let p = s.k / 2;
    scratch.clear();
    scratch.resize(oh * ow * kk, 0.0);
    for n in 0..batch {
        let img = &x[n * in_img..(n + 1) * in_img];
        // im2col: row (oy, ox), column (c, ky, kx) as in the OIHW weight.
        for oy in 0..oh {
            for ox in 0..ow {
                let row = &mut scratch[(oy * ow + ox) * kk..(oy * ow + ox + 1) * kk];
                let mut j = 0;
                for c in 0..s.cin {
                    for ky in 0..s.k {
                        let iy = (oy * s.stride + ky) as isize - p as isize;
                        for kx in 0..s.k {
                            let ix = (ox * s.stride + kx) as isize - p as isize;
                            row[j] =
                                if iy >= 0 && ix >= 0 && (iy as usize) < s.h && (ix as usize) < s.w
                                {
                                    img[(c * s.h + iy as usize) * s.w + ix as usize]
                                } else {
                                    0.0
                                };
                            j += 1;
                        }
                    }
                }
            }
        }
        let o = &mut out[n * out_img..(n + 1) * out_img];
        // SAFETY: scratch is (oh·ow)×kk, weight kk×cout, o (oh·ow)×cout, all
        // checked above; kk ≥ 1 so every output is written.
        unsafe {
            gemm(
                oh * ow,
                cout,
                kk,
                o.as_mut_ptr(),
                1,
                cout as isize,
                false,
                scratch.as_ptr(),
                1,
                kk as isize,
                weight.as_ptr(),
                1,
                cout as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                Parallelism::None,
            );
        }
        bias_act(o, oh * ow, cout, bias, act);
    }
}
