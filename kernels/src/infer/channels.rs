//! Strided channel copies of channels-last rows: the SPOS channel split and concat.

/// For each of `rows` rows, copies `n` channels `src[r * src_rs + src_off + i * step]` to
/// `dst[r * dst_rs + dst_off + i]` (step 2 with offset 0 or 1: the even or odd channels).
///
/// # Panics
/// When a buffer is too small for the shapes given.
#[allow(clippy::too_many_arguments)]
pub fn copy_channels(
    src: &[f32],
    src_rs: usize,
    src_off: usize,
    step: usize,
    dst: &mut [f32],
    dst_rs: usize,
    dst_off: usize,
    rows: usize,
    n: usize,
) {
    if rows == 0 || n == 0 {
        return;
    }
    assert!(
        (rows - 1) * src_rs + src_off + (n - 1) * step < src.len(),
        "copy_channels: source of {} values too small for {rows}×{n} (rs {src_rs}, step {step})",
        src.len()
    );
    assert!(
        (rows - 1) * dst_rs + dst_off + n <= dst.len(),
        "copy_channels: destination of {} values too small for {rows}×{n} (rs {dst_rs})",
        dst.len()
    );
    for r in 0..rows {
        let s = &src[r * src_rs + src_off..];
        let d = &mut dst[r * dst_rs + dst_off..r * dst_rs + dst_off + n];
        if step == 1 {
            d.copy_from_slice(&s[..n]);
        } else {
            for (i, v) in d.iter_mut().enumerate() {
                *v = s[i * step];
            }
        }
    }
}
