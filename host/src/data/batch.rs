//! Batches: augmentation, normalisation and a resumable position over an index list.
//!
//! A [`Batcher`] walks a seeded permutation of its indices, epoch after epoch; each epoch's
//! permutation is a pure function of `(seed, epoch)`, so [`BatcherPosition`] (`epoch`, `cursor`,
//! `seed`) is all a checkpoint needs to continue mid-epoch exactly. The last incomplete batch of an
//! epoch is dropped (as SPOS's infinite loader does), so every batch has the same size.
//!
//! Per-image randomness (crop offset, flip, resized-crop box) comes from one `u64` per image drawn
//! from the caller's `ChaCha8Rng`, so the caller's RNG state is the only other thing to save. The
//! images are then assembled in parallel (rayon): `u8` → normalised `f32` in one pass through a
//! 256-entry lookup table per channel, writing straight into the batch buffer.

use anyhow::{Result, bail};
use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::Dataset;

/// Per-channel normalisation `(x / 255 - mean) / std`; stored in checkpoints so export can embed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalize {
    /// Channel means of `x / 255`.
    pub mean: Vec<f32>,
    /// Channel standard deviations of `x / 255`.
    pub std: Vec<f32>,
}

impl Normalize {
    /// Mean and (population) std per channel over the images `indices` of `data`.
    pub fn from_dataset(data: &Dataset, indices: &[usize]) -> Normalize {
        let plane = data.height * data.width;
        let mut sum = vec![0f64; data.channels];
        let mut sq = vec![0f64; data.channels];
        for &i in indices {
            let img = data.image(i);
            for c in 0..data.channels {
                let (s, q) = img[c * plane..(c + 1) * plane]
                    .iter()
                    .fold((0u64, 0u64), |(s, q), &v| {
                        (s + u64::from(v), q + u64::from(v) * u64::from(v))
                    });
                sum[c] += s as f64;
                sq[c] += q as f64;
            }
        }
        let n = (indices.len() * plane).max(1) as f64;
        let mean: Vec<f64> = sum.iter().map(|s| s / n / 255.0).collect();
        let std = sq
            .iter()
            .zip(&mean)
            .map(|(q, m)| ((q / n / 65025.0 - m * m).max(0.0).sqrt().max(1e-6)) as f32)
            .collect();
        Normalize {
            mean: mean.iter().map(|&m| m as f32).collect(),
            std,
        }
    }

    /// Lookup table: `lut[c * 256 + v]` = normalised value of byte `v` in channel `c`.
    fn lut(&self) -> Vec<f32> {
        self.mean
            .iter()
            .zip(&self.std)
            .flat_map(|(&m, &s)| (0..256).map(move |v| (v as f32 / 255.0 - m) / s))
            .collect()
    }
}

/// Training-time augmentation, applied per image.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Augment {
    /// Random crop after zero-padding each side by this many pixels (0 = off).
    pub crop_padding: usize,
    /// Random horizontal flip with probability 1/2.
    pub flip: bool,
    /// Random-resized crop (scale 0.08–1, aspect 3/4–4/3, bilinear) instead of the padded crop.
    pub random_resized_crop: bool,
}

impl Augment {
    /// No augmentation (evaluation, BN calibration).
    pub const NONE: Augment = Augment {
        crop_padding: 0,
        flip: false,
        random_resized_crop: false,
    };

    /// Defaults: natural images get a random-resized crop at ≥ 128 px, else a padded crop (pad 4,
    /// or 2 below 32 px) and flips; Fashion-MNIST-like data (`natural == false`) none.
    pub fn default_for(natural: bool, size: usize) -> Augment {
        match (natural, size >= 128) {
            (false, _) => Augment::NONE,
            (true, true) => Augment {
                crop_padding: 0,
                flip: true,
                random_resized_crop: true,
            },
            (true, false) => Augment {
                crop_padding: if size >= 32 { 4 } else { 2 },
                flip: true,
                random_resized_crop: false,
            },
        }
    }
}

/// One batch on the compute: images `f32 [b, c, h, w]`, labels `u32 [b]`.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Normalised images.
    pub images: Tensor,
    /// Class labels.
    pub labels: Tensor,
    /// Which dataset images these are.
    pub indices: Vec<usize>,
}

/// Where a [`Batcher`] is: enough to continue exactly after a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatcherPosition {
    /// Completed epochs.
    pub epoch: u64,
    /// Next position in this epoch's permutation.
    pub cursor: usize,
    /// Seed of the per-epoch permutations.
    pub seed: u64,
}

/// Endless shuffled batches over an index list of a dataset.
#[derive(Debug, Clone)]
pub struct Batcher<'a> {
    data: &'a Dataset,
    indices: Vec<usize>,
    batch_size: usize,
    augment: Augment,
    normalize: Normalize,
    position: BatcherPosition,
    perm: Vec<usize>,
}

impl<'a> Batcher<'a> {
    /// A batcher at epoch 0, cursor 0.
    ///
    /// # Errors
    /// When `batch_size` is 0 or larger than the index list, or normalisation has the wrong
    /// number of channels.
    pub fn new(
        data: &'a Dataset,
        indices: Vec<usize>,
        batch_size: usize,
        augment: Augment,
        normalize: Normalize,
        seed: u64,
    ) -> Result<Batcher<'a>> {
        if batch_size == 0 || batch_size > indices.len() {
            bail!(
                "--batch {batch_size}: must be between 1 and the {} training images of {}",
                indices.len(),
                data.name
            );
        }
        check_normalize(data, &normalize)?;
        let mut b = Batcher {
            data,
            indices,
            batch_size,
            augment,
            normalize,
            position: BatcherPosition {
                epoch: 0,
                cursor: 0,
                seed,
            },
            perm: Vec::new(),
        };
        b.reshuffle();
        Ok(b)
    }

    /// Jumps to a saved position.
    pub fn set_position(&mut self, position: BatcherPosition) {
        self.position = position;
        self.reshuffle();
    }

    /// The current position (save it with the checkpoint).
    pub fn position(&self) -> BatcherPosition {
        self.position
    }

    /// Batches per epoch.
    pub fn batches_per_epoch(&self) -> usize {
        self.indices.len() / self.batch_size
    }

    fn reshuffle(&mut self) {
        let mut rng = ChaCha8Rng::seed_from_u64(self.position.seed);
        rng.set_stream(self.position.epoch);
        self.perm = self.indices.clone();
        self.perm.shuffle(&mut rng);
    }

    /// The next batch, augmented with randomness drawn from `rng`.
    ///
    /// # Errors
    /// Tensor creation on the compute.
    pub fn next_batch(&mut self, rng: &mut ChaCha8Rng, device: &Device) -> Result<Batch> {
        if self.position.cursor + self.batch_size > self.perm.len() {
            self.position.epoch += 1;
            self.position.cursor = 0;
            self.reshuffle();
        }
        let c = self.position.cursor;
        let idx = self.perm[c..c + self.batch_size].to_vec();
        self.position.cursor += self.batch_size;
        assemble(self.data, &idx, self.augment, &self.normalize, rng, device)
    }
}

fn check_normalize(data: &Dataset, n: &Normalize) -> Result<()> {
    if n.mean.len() != data.channels || n.std.len() != data.channels {
        bail!(
            "normalisation has {} means and {} stds but {} has {} channels",
            n.mean.len(),
            n.std.len(),
            data.name,
            data.channels
        );
    }
    Ok(())
}

/// Builds one batch of the images `idx` (in that order); with [`Augment::NONE`], `rng` is unused.
///
/// # Errors
/// Wrong normalisation length or tensor creation on the compute.
pub fn assemble(
    data: &Dataset,
    idx: &[usize],
    augment: Augment,
    normalize: &Normalize,
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> Result<Batch> {
    check_normalize(data, normalize)?;
    let (c, h, w) = (data.channels, data.height, data.width);
    let lut = normalize.lut();
    let seeds: Vec<u64> = if augment == Augment::NONE {
        vec![0; idx.len()]
    } else {
        idx.iter().map(|_| rng.random()).collect()
    };
    let mut buf = vec![0f32; idx.len() * c * h * w];
    buf.par_chunks_mut(c * h * w)
        .zip(idx.par_iter().zip(seeds.par_iter()))
        .for_each(|(out, (&i, &seed))| {
            let mut r = ChaCha8Rng::seed_from_u64(seed);
            write_image(data.image(i), (c, h, w), augment, &lut, &mut r, out);
        });
    let labels: Vec<u32> = idx.iter().map(|&i| data.labels[i]).collect();
    Ok(Batch {
        images: Tensor::from_vec(buf, (idx.len(), c, h, w), device)?,
        labels: Tensor::from_vec(labels, idx.len(), device)?,
        indices: idx.to_vec(),
    })
}

/// Writes one augmented, normalised image into `out` (`[c, h, w]`).
fn write_image(
    src: &[u8],
    (c, h, w): (usize, usize, usize),
    aug: Augment,
    lut: &[f32],
    rng: &mut ChaCha8Rng,
    out: &mut [f32],
) {
    let plane = h * w;
    if aug.random_resized_crop {
        let (y0, x0, ch, cw) = resized_crop_box(h, w, rng);
        let flip = aug.flip && rng.random_bool(0.5);
        let (sy, sx) = (ch as f32 / h as f32, cw as f32 / w as f32);
        for y in 0..h {
            let fy =
                (y0 as f32 + (y as f32 + 0.5) * sy - 0.5).clamp(y0 as f32, (y0 + ch - 1) as f32);
            let ya = fy as usize;
            let yb = (ya + 1).min(y0 + ch - 1);
            let wy = fy - ya as f32;
            for x in 0..w {
                let xo = if flip { w - 1 - x } else { x };
                let fx = (x0 as f32 + (xo as f32 + 0.5) * sx - 0.5)
                    .clamp(x0 as f32, (x0 + cw - 1) as f32);
                let xa = fx as usize;
                let xb = (xa + 1).min(x0 + cw - 1);
                let wx = fx - xa as f32;
                for k in 0..c {
                    let p =
                        |yy: usize, xx: usize| lut[k * 256 + src[k * plane + yy * w + xx] as usize];
                    let top = p(ya, xa) * (1.0 - wx) + p(ya, xb) * wx;
                    let bot = p(yb, xa) * (1.0 - wx) + p(yb, xb) * wx;
                    out[k * plane + y * w + x] = top * (1.0 - wy) + bot * wy;
                }
            }
        }
        return;
    }
    let pad = aug.crop_padding as i64;
    let (oy, ox) = if pad > 0 {
        (
            (rng.random_range(0..=2 * pad) - pad) as isize,
            (rng.random_range(0..=2 * pad) - pad) as isize,
        )
    } else {
        (0, 0)
    };
    let flip = aug.flip && rng.random_bool(0.5);
    for k in 0..c {
        let lut = &lut[k * 256..(k + 1) * 256];
        let src = &src[k * plane..(k + 1) * plane];
        let dst = &mut out[k * plane..(k + 1) * plane];
        if oy == 0 && ox == 0 && !flip {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = lut[s as usize];
            }
            continue;
        }
        for y in 0..h {
            let sy = y as isize + oy;
            let row = &mut dst[y * w..(y + 1) * w];
            if sy < 0 || sy >= h as isize {
                row.fill(lut[0]);
                continue;
            }
            let srow = &src[sy as usize * w..(sy as usize + 1) * w];
            for (x, d) in row.iter_mut().enumerate() {
                let xo = if flip { w - 1 - x } else { x } as isize;
                let sx = xo + ox;
                *d = if sx < 0 || sx >= w as isize {
                    lut[0]
                } else {
                    lut[srow[sx as usize] as usize]
                };
            }
        }
    }
}

/// torchvision `RandomResizedCrop.get_params`: (top, left, height, width).
fn resized_crop_box(h: usize, w: usize, rng: &mut ChaCha8Rng) -> (usize, usize, usize, usize) {
    let area = (h * w) as f64;
    let (lr0, lr1) = ((3.0f64 / 4.0).ln(), (4.0f64 / 3.0).ln());
    for _ in 0..10 {
        let target = area * rng.random_range(0.08..=1.0);
        let ratio = rng.random_range(lr0..=lr1).exp();
        let cw = (target * ratio).sqrt().round() as usize;
        let ch = (target / ratio).sqrt().round() as usize;
        if cw > 0 && ch > 0 && cw <= w && ch <= h {
            return (
                rng.random_range(0..=h - ch),
                rng.random_range(0..=w - cw),
                ch,
                cw,
            );
        }
    }
    (0, 0, h, w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(n: usize, c: usize, h: usize, w: usize) -> Dataset {
        let px = (0..n * c * h * w).map(|i| (i % 251) as u8).collect();
        let labels = (0..n).map(|i| (i % 2) as u32).collect();
        Dataset::new("ramp", (c, h, w), px, labels, vec!["a".into(), "b".into()]).unwrap()
    }

    fn unit() -> Normalize {
        Normalize {
            mean: vec![0.0],
            std: vec![1.0 / 255.0],
        }
    }

    #[test]
    fn plain_batch_is_normalised_pixels() {
        let d = ramp(4, 1, 3, 3);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let n = Normalize {
            mean: vec![0.5],
            std: vec![0.25],
        };
        let b = assemble(&d, &[2, 0], Augment::NONE, &n, &mut rng, &Device::Cpu).unwrap();
        let v: Vec<f32> = b.images.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(b.images.dims(), [2, 1, 3, 3]);
        let want = (18.0 / 255.0 - 0.5) / 0.25;
        assert!((v[0] - want).abs() < 1e-6);
        assert_eq!(b.labels.to_vec1::<u32>().unwrap(), [0, 0]);
    }

    #[test]
    fn crop_and_flip_move_pixels_and_pad_with_zero() {
        let d = ramp(1, 1, 5, 5);
        let aug = Augment {
            crop_padding: 2,
            flip: true,
            random_resized_crop: false,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let plain = assemble(&d, &[0], Augment::NONE, &unit(), &mut rng, &Device::Cpu).unwrap();
        let plain: Vec<f32> = plain.images.flatten_all().unwrap().to_vec1().unwrap();
        let mut moved = 0;
        for _ in 0..20 {
            let b = assemble(&d, &[0], aug, &unit(), &mut rng, &Device::Cpu).unwrap();
            let v: Vec<f32> = b.images.flatten_all().unwrap().to_vec1().unwrap();
            // Every output pixel is 0 (padding) or one of the source values 0..25.
            assert!(
                v.iter()
                    .all(|&x| (x - x.round()).abs() < 1e-3 && (0.0..25.0).contains(&x))
            );
            moved += usize::from(v != plain);
        }
        // 25 crop offsets x 2 flips: the identity has probability 1/50 per draw.
        assert!(moved >= 15, "{moved}");
    }

    #[test]
    fn position_resumes_exactly() {
        let d = ramp(10, 1, 2, 2);
        let norm = Normalize::from_dataset(&d, &(0..10).collect::<Vec<_>>());
        let aug = Augment {
            crop_padding: 1,
            flip: true,
            random_resized_crop: false,
        };
        let mk = || Batcher::new(&d, (0..10).collect(), 3, aug, norm.clone(), 11).unwrap();
        let mut straight = mk();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut all = Vec::new();
        for _ in 0..7 {
            let b = straight.next_batch(&mut rng, &Device::Cpu).unwrap();
            all.push((
                b.indices,
                b.images.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            ));
        }
        // Restart after 4 batches from the saved position and RNG.
        let mut first = mk();
        let mut rng2 = ChaCha8Rng::seed_from_u64(5);
        for _ in 0..4 {
            first.next_batch(&mut rng2, &Device::Cpu).unwrap();
        }
        let (pos, saved_rng) = (first.position(), serde_json::to_string(&rng2).unwrap());
        assert_eq!(pos.epoch, 1); // 3 batches per epoch (last one dropped)
        let mut resumed = mk();
        resumed.set_position(serde_json::from_str(&serde_json::to_string(&pos).unwrap()).unwrap());
        let mut rng3: ChaCha8Rng = serde_json::from_str(&saved_rng).unwrap();
        for want in &all[4..] {
            let b = resumed.next_batch(&mut rng3, &Device::Cpu).unwrap();
            assert_eq!(&b.indices, &want.0);
            assert_eq!(
                b.images.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                want.1
            );
        }
        // Each epoch is a permutation: 9 distinct images in 3 batches.
        let mut e0: Vec<usize> = all[..3].iter().flat_map(|b| b.0.clone()).collect();
        e0.sort_unstable();
        e0.dedup();
        assert_eq!(e0.len(), 9);
    }

    #[test]
    fn normalize_matches_numpy_and_resized_crop_is_in_range() {
        // Single pixels 0 and 255: mean 0.5, population std 0.5.
        let d = Dataset::new(
            "two",
            (1, 1, 1),
            vec![0, 255],
            vec![0, 1],
            vec!["a".into(), "b".into()],
        )
        .unwrap();
        let n = Normalize::from_dataset(&d, &[0, 1]);
        assert!((n.mean[0] - 0.5).abs() < 1e-6 && (n.std[0] - 0.5).abs() < 1e-6);
        let d = ramp(2, 3, 16, 16);
        let aug = Augment {
            crop_padding: 0,
            flip: true,
            random_resized_crop: true,
        };
        let norm = Normalize {
            mean: vec![0.0; 3],
            std: vec![1.0 / 255.0; 3],
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let b = assemble(&d, &[0, 1], aug, &norm, &mut rng, &Device::Cpu).unwrap();
        let v: Vec<f32> = b.images.flatten_all().unwrap().to_vec1().unwrap();
        assert!(v.iter().all(|&x| (0.0..=250.0 + 1e-3).contains(&x)));
    }

    #[test]
    fn bad_batch_size_is_an_error() {
        let d = ramp(4, 1, 2, 2);
        let err = Batcher::new(&d, vec![0, 1], 3, Augment::NONE, unit(), 0).unwrap_err();
        assert!(err.to_string().contains("--batch 3"), "{err}");
    }
}

#[cfg(test)]
mod bench {
    use super::*;

    /// Throughput of batch assembly (not a pass/fail test):
    /// `cargo test --release -p shiftnas batch_assembly_throughput -- --ignored --nocapture`.
    #[test]
    #[ignore = "timing printout, run by hand"]
    fn batch_assembly_throughput() {
        let n = 2048;
        let px = (0..n * 3 * 32 * 32).map(|i| (i % 253) as u8).collect();
        let d = Dataset::new("bench", (3, 32, 32), px, vec![0; n], vec!["a".into()]).unwrap();
        let norm = Normalize {
            mean: vec![0.5; 3],
            std: vec![0.25; 3],
        };
        let aug = Augment {
            crop_padding: 4,
            flip: true,
            random_resized_crop: false,
        };
        let mut b = Batcher::new(&d, (0..n).collect(), 256, aug, norm, 0).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let t = std::time::Instant::now();
        let reps = 200;
        for _ in 0..reps {
            b.next_batch(&mut rng, &Device::Cpu).unwrap();
        }
        let s = t.elapsed().as_secs_f64();
        eprintln!(
            "batch 256x3x32x32 crop+flip: {:.3} ms/batch, {:.0} images/s",
            s * 1e3 / reps as f64,
            (reps * 256) as f64 / s
        );
    }
}
