//! Fitting a dataset to a space's input: channel conversion and resizing, only when asked for.
//!
//! Grayscale → RGB replicates the plane; RGB → grayscale uses ITU-R BT.601 luma
//! (`0.299 R + 0.587 G + 0.114 B`, rounded), as PIL's `convert("L")` does. Resizing is bilinear
//! with half-pixel centres (PyTorch `align_corners=False`, no antialiasing).

use anyhow::{Result, bail};
use rayon::prelude::*;

use super::Dataset;

/// What [`Dataset::conform`] may change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConformOptions {
    /// Convert between 1 and 3 channels (`--convert-channels`).
    pub convert_channels: bool,
    /// Resize to the space's input size (`--resize`).
    pub resize: bool,
}

impl Dataset {
    /// Returns the dataset with `channels` channels and `size × size` images.
    ///
    /// # Errors
    /// When the data differ from what is asked and the matching option is off (the message names
    /// both shapes and the flag), or for channel counts other than 1 and 3.
    pub fn conform(self, channels: usize, size: usize, opts: ConformOptions) -> Result<Dataset> {
        let mut d = self;
        if d.channels != channels {
            if !opts.convert_channels {
                bail!(
                    "{}: images have {} channel(s) but the space expects {channels}; pass --convert-channels to {} them, or use a space whose input has {} channel(s)",
                    d.name,
                    d.channels,
                    if channels == 3 {
                        "replicate"
                    } else {
                        "luma-convert"
                    },
                    d.channels
                );
            }
            d = convert_channels(d, channels)?;
        }
        if d.height != size || d.width != size {
            if !opts.resize {
                bail!(
                    "{}: images are {}x{} but the space expects {size}x{size}; pass --resize to resize them (bilinear), or pick a space whose input size is {}",
                    d.name,
                    d.height,
                    d.width,
                    d.height
                );
            }
            d = resize(d, size, size);
        }
        Ok(d)
    }
}

fn convert_channels(d: Dataset, to: usize) -> Result<Dataset> {
    let plane = d.height * d.width;
    let images = match (d.channels, to) {
        (1, 3) => d
            .images
            .chunks_exact(plane)
            .flat_map(|p| p.iter().chain(p).chain(p).copied())
            .collect(),
        (3, 1) => d
            .images
            .chunks_exact(3 * plane)
            .flat_map(|img| {
                (0..plane).map(move |i| {
                    let (r, g, b) = (
                        img[i] as f32,
                        img[plane + i] as f32,
                        img[2 * plane + i] as f32,
                    );
                    (0.299 * r + 0.587 * g + 0.114 * b)
                        .round()
                        .clamp(0.0, 255.0) as u8
                })
            })
            .collect(),
        (from, to) => bail!(
            "{}: cannot convert {from} channels to {to}; only 1 <-> 3 is supported",
            d.name
        ),
    };
    Dataset::new(
        d.name,
        (to, d.height, d.width),
        images,
        d.labels,
        d.class_names,
    )
}

/// Bilinear resampling of one `u8` plane (`align_corners=False`).
pub fn resize_plane(src: &[u8], (h, w): (usize, usize), dst: &mut [u8], (oh, ow): (usize, usize)) {
    let sy = h as f32 / oh as f32;
    let sx = w as f32 / ow as f32;
    for y in 0..oh {
        let fy = ((y as f32 + 0.5) * sy - 0.5).clamp(0.0, (h - 1) as f32);
        let y0 = fy as usize;
        let y1 = (y0 + 1).min(h - 1);
        let wy = fy - y0 as f32;
        for x in 0..ow {
            let fx = ((x as f32 + 0.5) * sx - 0.5).clamp(0.0, (w - 1) as f32);
            let x0 = fx as usize;
            let x1 = (x0 + 1).min(w - 1);
            let wx = fx - x0 as f32;
            let p = |yy: usize, xx: usize| src[yy * w + xx] as f32;
            let top = p(y0, x0) * (1.0 - wx) + p(y0, x1) * wx;
            let bot = p(y1, x0) * (1.0 - wx) + p(y1, x1) * wx;
            dst[y * ow + x] = (top * (1.0 - wy) + bot * wy).round().clamp(0.0, 255.0) as u8;
        }
    }
}

fn resize(d: Dataset, oh: usize, ow: usize) -> Dataset {
    let (h, w) = (d.height, d.width);
    let mut images = vec![0u8; d.len() * d.channels * oh * ow];
    images
        .par_chunks_mut(oh * ow)
        .zip(d.images.par_chunks(h * w))
        .for_each(|(dst, src)| resize_plane(src, (h, w), dst, (oh, ow)));
    Dataset {
        images,
        height: oh,
        width: ow,
        ..d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(c: usize, h: usize, w: usize, px: Vec<u8>) -> Dataset {
        Dataset::new("t", (c, h, w), px, vec![0], vec!["a".into()]).unwrap()
    }

    #[test]
    fn channel_conversion_needs_the_option() {
        let d = one(1, 2, 2, vec![1, 2, 3, 4]);
        let err = d
            .clone()
            .conform(3, 2, ConformOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("1 channel") && err.contains("expects 3"),
            "{err}"
        );
        assert!(err.contains("--convert-channels"), "{err}");
        let opts = ConformOptions {
            convert_channels: true,
            resize: false,
        };
        let rgb = d.conform(3, 2, opts).unwrap();
        assert_eq!(rgb.images, [1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4]);
        // Luma: 0.299*100 + 0.587*50 + 0.114*200 = 82.05 -> 82.
        let gray = one(3, 1, 1, vec![100, 50, 200])
            .conform(1, 1, opts)
            .unwrap();
        assert_eq!(gray.images, [82]);
    }

    #[test]
    fn resize_needs_the_option_and_is_bilinear() {
        let d = one(1, 2, 2, vec![0, 100, 100, 200]);
        let err = d
            .clone()
            .conform(1, 4, ConformOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("2x2") && err.contains("4x4") && err.contains("--resize"),
            "{err}"
        );
        let opts = ConformOptions {
            convert_channels: false,
            resize: true,
        };
        let big = d.conform(1, 4, opts).unwrap();
        // torch.nn.functional.interpolate([[0,100],[100,200]], size=4, mode="bilinear",
        // align_corners=False) first row: 0, 25, 75, 100; second row 25, 50, 100, 125.
        assert_eq!(big.images[..8], [0, 25, 75, 100, 25, 50, 100, 125]);
    }
}
