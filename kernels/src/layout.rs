//! Matrix transposes between NCHW planes and channels-last rows of one image.

/// `dst[j * rows + i] = src[i * cols + j]`: the `rows × cols` row-major matrix `src` transposed
/// into `dst` (`cols × rows`). 8×8 blocks go through AVX registers where the CPU has AVX2 (a
/// scalar loop ran as long as the depthwise conv it fed), the edges element by element.
///
/// # Panics
/// When a buffer is not `rows · cols` long.
pub(crate) fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    assert_eq!(src.len(), rows * cols, "transpose: source size");
    assert_eq!(dst.len(), rows * cols, "transpose: destination size");
    let (r8, c8) = (rows / 8 * 8, cols / 8 * 8);
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::has_avx2() {
        // SAFETY: AVX2 is there; blocks lie inside both buffers (sizes checked above).
        unsafe { blocks_avx2(src, rows, cols, dst) };
    } else {
        blocks_scalar(src, rows, cols, dst);
    }
    #[cfg(not(target_arch = "x86_64"))]
    blocks_scalar(src, rows, cols, dst);
    // The edges: the last cols % 8 columns of every row, and the last rows % 8 rows.
    for i in 0..rows {
        let from = if i < r8 { c8 } else { 0 };
        for j in from..cols {
            dst[j * rows + i] = src[i * cols + j];
        }
    }
}

/// The whole 8×8 blocks of [`transpose`], element by element.
fn blocks_scalar(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    for i0 in (0..rows / 8 * 8).step_by(8) {
        for j0 in (0..cols / 8 * 8).step_by(8) {
            for i in i0..i0 + 8 {
                for j in j0..j0 + 8 {
                    dst[j * rows + i] = src[i * cols + j];
                }
            }
        }
    }
}

/// The whole 8×8 blocks of [`transpose`], eight loads, 24 shuffles and eight stores each.
///
/// # Safety
/// The CPU has AVX2; `src` and `dst` hold `rows · cols` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn blocks_avx2(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    use std::arch::x86_64::*;
    let (sp, dp) = (src.as_ptr(), dst.as_mut_ptr());
    for i0 in (0..rows / 8 * 8).step_by(8) {
        for j0 in (0..cols / 8 * 8).step_by(8) {
            // SAFETY: rows i0..i0+8 and columns j0..j0+8 are inside the matrix.
            unsafe {
                let row = |i: usize| sp.add((i0 + i) * cols + j0);
                let r = [
                    _mm256_loadu_ps(row(0)),
                    _mm256_loadu_ps(row(1)),
                    _mm256_loadu_ps(row(2)),
                    _mm256_loadu_ps(row(3)),
                    _mm256_loadu_ps(row(4)),
                    _mm256_loadu_ps(row(5)),
                    _mm256_loadu_ps(row(6)),
                    _mm256_loadu_ps(row(7)),
                ];
                let t = [
                    _mm256_unpacklo_ps(r[0], r[1]),
                    _mm256_unpackhi_ps(r[0], r[1]),
                    _mm256_unpacklo_ps(r[2], r[3]),
                    _mm256_unpackhi_ps(r[2], r[3]),
                    _mm256_unpacklo_ps(r[4], r[5]),
                    _mm256_unpackhi_ps(r[4], r[5]),
                    _mm256_unpacklo_ps(r[6], r[7]),
                    _mm256_unpackhi_ps(r[6], r[7]),
                ];
                let u = [
                    _mm256_shuffle_ps::<0x44>(t[0], t[2]),
                    _mm256_shuffle_ps::<0xEE>(t[0], t[2]),
                    _mm256_shuffle_ps::<0x44>(t[1], t[3]),
                    _mm256_shuffle_ps::<0xEE>(t[1], t[3]),
                    _mm256_shuffle_ps::<0x44>(t[4], t[6]),
                    _mm256_shuffle_ps::<0xEE>(t[4], t[6]),
                    _mm256_shuffle_ps::<0x44>(t[5], t[7]),
                    _mm256_shuffle_ps::<0xEE>(t[5], t[7]),
                ];
                let out = [
                    _mm256_permute2f128_ps::<0x20>(u[0], u[4]),
                    _mm256_permute2f128_ps::<0x20>(u[1], u[5]),
                    _mm256_permute2f128_ps::<0x20>(u[2], u[6]),
                    _mm256_permute2f128_ps::<0x20>(u[3], u[7]),
                    _mm256_permute2f128_ps::<0x31>(u[0], u[4]),
                    _mm256_permute2f128_ps::<0x31>(u[1], u[5]),
                    _mm256_permute2f128_ps::<0x31>(u[2], u[6]),
                    _mm256_permute2f128_ps::<0x31>(u[3], u[7]),
                ];
                for (j, o) in out.iter().enumerate() {
                    _mm256_storeu_ps(dp.add((j0 + j) * rows + i0), *o);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::transpose;

    #[test]
    fn transposes_every_shape_around_the_8x8_blocks() {
        check();
        // The copy for CPUs without AVX2 too.
        crate::cpu::BASELINE_ONLY.store(true, std::sync::atomic::Ordering::Relaxed);
        check();
        crate::cpu::BASELINE_ONLY.store(false, std::sync::atomic::Ordering::Relaxed);
    }

    fn check() {
        for (rows, cols) in [
            (1, 1),
            (8, 8),
            (16, 24),
            (3, 17),
            (19, 8),
            (32, 4),
            (4, 320),
            (13, 29),
        ] {
            let src: Vec<f32> = (0..rows * cols).map(|v| v as f32).collect();
            let mut dst = vec![f32::NAN; rows * cols];
            transpose(&src, rows, cols, &mut dst);
            for i in 0..rows {
                for j in 0..cols {
                    assert_eq!(
                        dst[j * rows + i],
                        src[i * cols + j],
                        "{rows}×{cols} at ({i}, {j})"
                    );
                }
            }
        }
    }
}
