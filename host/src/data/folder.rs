//! Image folders: `DIR/train/<class>/*.png|jpg|jpeg` and `DIR/test/<class>/*` (the torchvision
//! `ImageFolder` layout, one level per split).
//!
//! Classes are the sub-folder names of `DIR/train`, sorted; `DIR/test` may only use those. Files
//! are read in sorted order, decoded with the `image` crate and resized (bilinear, aspect ratio not
//! kept) to `size × size`. The set is 1-channel when every image is grayscale, else RGB.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use image::imageops::FilterType;

use super::{DataPair, Dataset};

const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("reading {}", dir.display()))?;
    v.sort();
    Ok(v)
}

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Decoded images of one split before channel count is decided.
struct Decoded {
    rgb: Vec<image::RgbImage>,
    all_gray: bool,
    labels: Vec<u32>,
}

fn decode_split(split_dir: &Path, classes: &[String], size: usize) -> Result<Decoded> {
    let mut out = Decoded {
        rgb: Vec::new(),
        all_gray: true,
        labels: Vec::new(),
    };
    for class_dir in sorted_entries(split_dir)? {
        if !class_dir.is_dir() {
            continue;
        }
        let class = class_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some(label) = classes.iter().position(|c| *c == class) else {
            bail!(
                "{}: class folder {class:?} does not exist under train/; classes are {}",
                class_dir.display(),
                classes.join(", ")
            );
        };
        for file in sorted_entries(&class_dir)? {
            if !is_image(&file) {
                continue;
            }
            let img = image::open(&file).with_context(|| {
                format!(
                    "decoding {}: not a readable PNG/JPEG; remove or replace the file",
                    file.display()
                )
            })?;
            out.all_gray &= !img.color().has_color();
            let rgb = img.to_rgb8();
            let rgb = if rgb.width() as usize == size && rgb.height() as usize == size {
                rgb
            } else {
                image::imageops::resize(&rgb, size as u32, size as u32, FilterType::Triangle)
            };
            out.rgb.push(rgb);
            out.labels.push(label as u32);
        }
    }
    if out.labels.is_empty() {
        bail!(
            "{}: no .png/.jpg/.jpeg images in its class folders",
            split_dir.display()
        );
    }
    Ok(out)
}

fn to_dataset(
    d: Decoded,
    gray: bool,
    size: usize,
    name: String,
    classes: &[String],
) -> Result<Dataset> {
    let c = if gray { 1 } else { 3 };
    let plane = size * size;
    let mut images = vec![0u8; d.rgb.len() * c * plane];
    for (img, out) in d.rgb.iter().zip(images.chunks_exact_mut(c * plane)) {
        for (p, px) in img.pixels().enumerate() {
            if gray {
                out[p] = px.0[0];
            } else {
                for ch in 0..3 {
                    out[ch * plane + p] = px.0[ch];
                }
            }
        }
    }
    Dataset::new(name, (c, size, size), images, d.labels, classes.to_vec())
}

/// Loads `folder:DIR`, resizing every image to `size × size`.
///
/// # Errors
/// A missing `train/` or `test/`, an unknown test class, an image that does not decode.
pub fn load_dir(dir: &Path, size: usize) -> Result<DataPair> {
    let (train_dir, test_dir) = (dir.join("train"), dir.join("test"));
    for d in [&train_dir, &test_dir] {
        if !d.is_dir() {
            bail!(
                "folder:{}: no {} folder; lay images out as DIR/train/<class>/*.png and DIR/test/<class>/*.png",
                dir.display(),
                d.display()
            );
        }
    }
    let classes: Vec<String> = sorted_entries(&train_dir)?
        .into_iter()
        .filter(|p| p.is_dir())
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    if classes.is_empty() {
        bail!("{}: no class folders", train_dir.display());
    }
    let train = decode_split(&train_dir, &classes, size)?;
    let test = decode_split(&test_dir, &classes, size)?;
    let gray = train.all_gray && test.all_gray;
    let d = dir.display();
    Ok(DataPair {
        train: to_dataset(train, gray, size, format!("folder:{d} (train)"), &classes)?,
        test: to_dataset(test, gray, size, format!("folder:{d} (test)"), &classes)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_png(path: &Path, w: u32, h: u32, rgb: [u8; 3]) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::RgbImage::from_pixel(w, h, image::Rgb(rgb))
            .save(path)
            .unwrap();
    }

    #[test]
    fn reads_a_folder_of_pngs_resized() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        write_png(&r.join("train/cat/a.png"), 8, 8, [200, 10, 30]);
        write_png(&r.join("train/cat/b.png"), 16, 12, [1, 2, 3]);
        write_png(&r.join("train/dog/a.png"), 8, 8, [5, 6, 7]);
        fs::write(r.join("train/dog/notes.txt"), "ignored").unwrap();
        write_png(&r.join("test/dog/z.png"), 4, 4, [9, 9, 9]);
        let pair = load_dir(r, 8).unwrap();
        assert_eq!(pair.train.class_names, ["cat", "dog"]);
        assert_eq!(pair.train.labels, [0, 0, 1]);
        assert_eq!(pair.test.labels, [1]);
        assert_eq!(
            (pair.train.channels, pair.train.height, pair.train.width),
            (3, 8, 8)
        );
        // A uniform image stays uniform through resizing; channel planes are R, G, B.
        let img = pair.train.image(0);
        assert_eq!((img[0], img[64], img[128]), (200, 10, 30));
        assert_eq!(pair.train.image(1)[64 + 63], 2);
    }

    #[test]
    fn gray_folder_gives_one_channel_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for split in ["train", "test"] {
            let p = r.join(format!("{split}/x/a.png"));
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            image::GrayImage::from_pixel(4, 4, image::Luma([77]))
                .save(&p)
                .unwrap();
        }
        let pair = load_dir(r, 4).unwrap();
        assert_eq!(pair.train.channels, 1);
        assert_eq!(pair.train.images, vec![77; 16]);
        fs::write(r.join("train/x/broken.png"), b"\x89PNG\r\n\x1a\nnope").unwrap();
        let err = format!("{:#}", load_dir(r, 4).unwrap_err());
        assert!(err.contains("broken.png"), "{err}");
        fs::create_dir_all(r.join("test/zebra")).unwrap();
        fs::remove_file(r.join("train/x/broken.png")).unwrap();
        let err = format!("{:#}", load_dir(r, 4).unwrap_err());
        assert!(err.contains("zebra"), "{err}");
    }
}
