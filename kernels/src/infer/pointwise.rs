//! 1×1 conv on channels-last rows: one gemm `[rows, cin] · [cin, cout]`, then bias and ReLU.

use gemm::{Parallelism, gemm};

use super::{Activation, bias_act};

/// Rows of an input matrix: element (r, c) at `data[r * rs + c * cs]`.
#[derive(Debug, Clone, Copy)]
pub struct Rows<'a> {
    /// The values, starting at element (0, 0).
    pub data: &'a [f32],
    /// Row stride.
    pub rs: usize,
    /// Column stride (2 reads every other channel: the SPOS odd channels without a copy).
    pub cs: usize,
}

/// `out[r * out_rs + o] = act(bias[o] + Σ_c x(r, c) · weight[c * cout + o])` for `rows` rows.
///
/// `weight` is `[cin, cout]`, the transpose of the conv's OIHW weight (see [`transpose`]: read
/// in place, the gemm re-packed it on every call); `out_rs ≥ cout` lets the output land in a
/// wider buffer (a concat without a copy).
///
/// # Panics
/// When a buffer is too small for the shapes given.
#[allow(clippy::too_many_arguments)]
pub fn pointwise_nhwc(
    x: Rows<'_>,
    rows: usize,
    cin: usize,
    weight: &[f32],
    bias: &[f32],
    act: Activation,
    out: &mut [f32],
    out_rs: usize,
) {
    let cout = bias.len();
    assert!(
        rows > 0 && cin > 0 && cout > 0,
        "pointwise_nhwc: empty shape"
    );
    assert_eq!(
        weight.len(),
        cout * cin,
        "pointwise_nhwc: weight must be [cout, cin]"
    );
    assert!(
        (rows - 1) * x.rs + (cin - 1) * x.cs < x.data.len(),
        "pointwise_nhwc: input of {} values is too small for {rows}×{cin} (rs {}, cs {})",
        x.data.len(),
        x.rs,
        x.cs
    );
    assert!(
        out_rs >= cout && (rows - 1) * out_rs + cout <= out.len(),
        "pointwise_nhwc: output of {} values is too small for {rows}×{cout} (rs {out_rs})",
        out.len()
    );
    #[cfg(target_arch = "x86_64")]
    if super::avx512::enabled() {
        // SAFETY: AVX-512F is there; the asserts above bound every element read and written.
        unsafe {
            super::avx512::pointwise(
                x.data.as_ptr(),
                x.rs,
                x.cs,
                rows,
                cin,
                weight.as_ptr(),
                bias,
                act,
                out.as_mut_ptr(),
                out_rs,
            )
        };
        return;
    }
    // SAFETY: the asserts above bound every element the gemm reads (x: rows×cin with strides
    // rs/cs; weight: cin×cout) and writes (out: rows×cout, row stride
    // out_rs, all written since read_dst is false and cin ≥ 1).
    unsafe {
        gemm(
            rows,
            cout,
            cin,
            out.as_mut_ptr(),
            1,
            out_rs as isize,
            false,
            x.data.as_ptr(),
            x.cs as isize,
            x.rs as isize,
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
    bias_act(out, rows, out_rs, bias, act);
}

/// `[rows, cols]` row-major → `[cols, rows]` row-major (an OIHW 1×1 or dense weight `[cout, k]`
/// to the `[k, cout]` the kernels read).
pub fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; m.len()];
    crate::layout::transpose(m, rows, cols, &mut t);
    t
}
