//! Classifier head on channels-last features: global average pool, then a bias-free linear layer.

/// `out[n * classes + k] = Σ_c mean_p x[n][p][c] · classifier[k * c_len + c]` for `batch` images
/// of `pixels` pixels and `channels` channels; `classifier` is `[classes, channels]`.
///
/// # Panics
/// When a buffer does not match the shapes given.
pub fn pool_linear(
    x: &[f32],
    batch: usize,
    pixels: usize,
    channels: usize,
    classifier: &[f32],
    out: &mut [f32],
) {
    assert_eq!(
        x.len(),
        batch * pixels * channels,
        "pool_linear: input size"
    );
    assert!(
        channels > 0 && classifier.len().is_multiple_of(channels),
        "pool_linear: classifier size"
    );
    let classes = classifier.len() / channels;
    assert_eq!(out.len(), batch * classes, "pool_linear: output size");
    let mut pooled = vec![0f32; channels];
    for n in 0..batch {
        pooled.fill(0.0);
        for p in 0..pixels {
            let row = &x[(n * pixels + p) * channels..(n * pixels + p + 1) * channels];
            for (s, &v) in pooled.iter_mut().zip(row) {
                *s += v;
            }
        }
        let inv = 1.0 / pixels as f32;
        for (k, o) in out[n * classes..(n + 1) * classes].iter_mut().enumerate() {
            let w = &classifier[k * channels..(k + 1) * channels];
            *o = pooled.iter().zip(w).map(|(&p, &w)| p * inv * w).sum();
        }
    }
}
