//! IDX files (MNIST, Fashion-MNIST): `train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`,
//! `t10k-images-idx3-ubyte[.gz]`, `t10k-labels-idx1-ubyte[.gz]`.
//!
//! Format (yann.lecun.com/exdb/mnist): big-endian header `0x00 0x00 TYPE NDIM`, then `NDIM` u32
//! sizes, then the data. We accept TYPE 0x08 (unsigned byte) only: images have 3 dimensions
//! `[n, rows, cols]`, labels 1. Gzip is detected by its magic bytes, not the file name; offsets in
//! errors are then positions in the decompressed stream. Class names come from `classes.txt` (one
//! per line) when the folder has one, else they are the label numbers.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::{DataPair, Dataset, FormatError};

/// A parsed IDX array of bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// Sizes of each dimension.
    pub dims: Vec<usize>,
    /// The data, row-major.
    pub data: Vec<u8>,
}

/// Decompresses `bytes` when they start with the gzip magic; `name` is used in errors.
///
/// # Errors
/// A corrupt or truncated gzip stream, with the decompressed offset where it broke.
pub fn maybe_gunzip(bytes: Vec<u8>, name: &str) -> Result<Vec<u8>, FormatError> {
    if bytes.len() < 2 || bytes[..2] != [0x1f, 0x8b] {
        return Ok(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len() * 4);
    let mut dec = flate2::read::GzDecoder::new(&bytes[..]);
    dec.read_to_end(&mut out).map_err(|e| {
        FormatError::new(
            name,
            out.len() as u64,
            format!(
                "gzip stream is corrupt or truncated ({e}); the file is damaged, copy it again"
            ),
        )
    })?;
    Ok(out)
}

/// Parses an IDX byte array (already decompressed); `name` is used in errors.
///
/// # Errors
/// A wrong magic, an unsupported element type, or fewer data bytes than the header promises.
pub fn parse_idx(bytes: &[u8], name: &str) -> Result<IdxArray, FormatError> {
    if bytes.len() < 4 {
        return Err(FormatError::new(
            name,
            bytes.len() as u64,
            "file ends inside the 4-byte IDX magic",
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(FormatError::new(
            name,
            0,
            format!(
                "expected IDX magic 0x0000 then type and rank, found {:02x}{:02x}; is this an IDX file?",
                bytes[0], bytes[1]
            ),
        ));
    }
    if bytes[2] != 0x08 {
        return Err(FormatError::new(
            name,
            2,
            format!(
                "element type 0x{:02x} is not supported; only unsigned bytes (0x08)",
                bytes[2]
            ),
        ));
    }
    let ndim = bytes[3] as usize;
    if ndim == 0 {
        return Err(FormatError::new(name, 3, "IDX rank is 0"));
    }
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(FormatError::new(
            name,
            bytes.len() as u64,
            format!("file ends inside the header: {ndim} dimension sizes need {header} bytes"),
        ));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|i| {
            let o = 4 + 4 * i;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let want = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| FormatError::new(name, 4, format!("dimensions {dims:?} overflow")))?;
    let have = bytes.len() - header;
    if have < want {
        return Err(FormatError::new(
            name,
            bytes.len() as u64,
            format!(
                "file is truncated: header says {dims:?} = {want} data bytes after byte {header}, found {have}"
            ),
        ));
    }
    if have > want {
        return Err(FormatError::new(
            name,
            (header + want) as u64,
            format!("{} unexpected bytes after the {dims:?} array", have - want),
        ));
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// Builds a dataset from IDX images and labels bytes (each gzipped or not).
///
/// # Errors
/// Malformed files, image/label count mismatch, naming the files.
pub fn dataset_from_bytes(
    name: &str,
    images: (&str, Vec<u8>),
    labels: (&str, Vec<u8>),
    class_names: Option<Vec<String>>,
) -> Result<Dataset> {
    let (img_name, img_bytes) = images;
    let (lab_name, lab_bytes) = labels;
    let img = parse_idx(&maybe_gunzip(img_bytes, img_name)?, img_name)?;
    let lab = parse_idx(&maybe_gunzip(lab_bytes, lab_name)?, lab_name)?;
    if img.dims.len() != 3 {
        return Err(FormatError::new(
            img_name,
            3,
            format!(
                "images must have 3 dimensions [n, rows, cols], found {:?}",
                img.dims
            ),
        )
        .into());
    }
    if lab.dims.len() != 1 {
        return Err(FormatError::new(
            lab_name,
            3,
            format!("labels must have 1 dimension [n], found {:?}", lab.dims),
        )
        .into());
    }
    if img.dims[0] != lab.dims[0] {
        bail!(
            "{img_name} holds {} images but {lab_name} holds {} labels; the files do not belong together",
            img.dims[0],
            lab.dims[0]
        );
    }
    let labels: Vec<u32> = lab.data.iter().map(|&l| u32::from(l)).collect();
    let class_names = match class_names {
        Some(c) => c,
        None => {
            let k = labels.iter().max().map_or(0, |&m| m as usize + 1);
            let mut seen = vec![false; k];
            for &l in &labels {
                seen[l as usize] = true;
            }
            if let Some(gap) = seen.iter().position(|&s| !s) {
                let (i, &top) = labels
                    .iter()
                    .enumerate()
                    .max_by_key(|&(_, &l)| l)
                    .expect("a gap implies labels");
                bail!(
                    "{lab_name}: image {i} has label {top}, but no image has label {gap}: without \
                     classes.txt the labels must be the classes 0..K-1 with no gaps; renumber the \
                     labels, or add classes.txt (one class name per line) to the folder"
                );
            }
            (0..k).map(|i| i.to_string()).collect()
        }
    };
    Dataset::new(
        name,
        (1, img.dims[1], img.dims[2]),
        img.data,
        labels,
        class_names,
    )
}

/// Finds `stem` or `stem.gz` in `dir`.
fn find(dir: &Path, stem: &str) -> Result<PathBuf> {
    for cand in [dir.join(stem), dir.join(format!("{stem}.gz"))] {
        if cand.is_file() {
            return Ok(cand);
        }
    }
    bail!(
        "{}: no {stem} or {stem}.gz; an idx: folder needs train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (each optionally .gz)",
        dir.display()
    )
}

fn read(path: &Path) -> Result<(String, Vec<u8>)> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok((path.display().to_string(), bytes))
}

/// Loads `idx:DIR`.
///
/// # Errors
/// Missing or malformed files, naming them.
pub fn load_dir(dir: &Path) -> Result<DataPair> {
    let classes_txt = dir.join("classes.txt");
    let names = if classes_txt.is_file() {
        let text = fs::read_to_string(&classes_txt)
            .with_context(|| format!("reading {}", classes_txt.display()))?;
        Some(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect(),
        )
    } else {
        None
    };
    let load = |prefix: &str, split: &str| -> Result<Dataset> {
        let (ni, bi) = read(&find(dir, &format!("{prefix}-images-idx3-ubyte"))?)?;
        let (nl, bl) = read(&find(dir, &format!("{prefix}-labels-idx1-ubyte"))?)?;
        dataset_from_bytes(
            &format!("idx:{} ({split})", dir.display()),
            (&ni, bi),
            (&nl, bl),
            names.clone(),
        )
    };
    let train = load("train", "train")?;
    let mut test = load("t10k", "test")?;
    // Both splits must share one class list, or labels would mean different things.
    if test.class_names.len() < train.class_names.len() {
        test.class_names = train.class_names.clone();
    }
    if test.class_names.len() > train.class_names.len() {
        bail!(
            "idx:{}: the test labels go up to {} but the training labels only to {}",
            dir.display(),
            test.class_names.len() - 1,
            train.class_names.len() - 1
        );
    }
    Ok(DataPair { train, test })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// IDX bytes for a `u8` array of the given dims.
    pub fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(data);
        v
    }

    pub fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn write_set(dir: &Path, gz: bool, n_train: u32, n_test: u32) {
        for (prefix, n) in [("train", n_train), ("t10k", n_test)] {
            let pixels: Vec<u8> = (0..n * 4 * 3).map(|i| (i * 7 % 256) as u8).collect();
            let labels: Vec<u8> = (0..n).map(|i| (i % 3) as u8).collect();
            let img = idx_bytes(&[n, 4, 3], &pixels);
            let lab = idx_bytes(&[n], &labels);
            let (img, lab, ext) = if gz {
                (gzip(&img), gzip(&lab), ".gz")
            } else {
                (img, lab, "")
            };
            fs::write(dir.join(format!("{prefix}-images-idx3-ubyte{ext}")), img).unwrap();
            fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte{ext}")), lab).unwrap();
        }
    }

    #[test]
    fn reads_raw_and_gzipped_idx() {
        for gz in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            write_set(dir.path(), gz, 6, 3);
            let pair = load_dir(dir.path()).unwrap();
            assert_eq!(pair.train.len(), 6);
            assert_eq!(pair.test.len(), 3);
            assert_eq!(
                (pair.train.channels, pair.train.height, pair.train.width),
                (1, 4, 3)
            );
            assert_eq!(pair.train.class_names, ["0", "1", "2"]);
            assert_eq!(pair.train.labels, [0, 1, 2, 0, 1, 2]);
            // Image 1, row 2, col 1 = element 12 + 2*3 + 1 = 19 -> 19*7 % 256.
            assert_eq!(pair.train.image(1)[2 * 3 + 1], (19 * 7) as u8);
        }
    }

    #[test]
    fn a_label_past_a_gap_is_named_with_its_image() {
        let dir = tempfile::tempdir().unwrap();
        write_set(dir.path(), false, 3, 3);
        let train_labels = idx_bytes(&[3], &[0, 1, 99]);
        fs::write(dir.path().join("train-labels-idx1-ubyte"), train_labels).unwrap();
        let err = format!("{:#}", load_dir(dir.path()).unwrap_err());
        assert!(
            err.contains("image 2 has label 99") && err.contains("no image has label 2"),
            "{err}"
        );
    }

    #[test]
    fn class_names_come_from_classes_txt() {
        let dir = tempfile::tempdir().unwrap();
        write_set(dir.path(), false, 3, 3);
        fs::write(dir.path().join("classes.txt"), "a\nb\nc\n\n").unwrap();
        assert_eq!(
            load_dir(dir.path()).unwrap().test.class_names,
            ["a", "b", "c"]
        );
    }

    #[test]
    fn truncated_idx_names_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        write_set(dir.path(), false, 6, 3);
        let p = dir.path().join("train-images-idx3-ubyte");
        let mut b = fs::read(&p).unwrap();
        b.truncate(b.len() - 5);
        fs::write(&p, &b).unwrap();
        let err = format!("{:#}", load_dir(dir.path()).unwrap_err());
        assert!(err.contains("train-images-idx3-ubyte"), "{err}");
        assert!(err.contains(&format!("at byte {}", b.len())), "{err}");
        assert!(err.contains("truncated") && err.contains("72"), "{err}");
    }

    #[test]
    fn corrupt_magic_and_gzip_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        write_set(dir.path(), true, 6, 3);
        let p = dir.path().join("t10k-labels-idx1-ubyte.gz");
        let b = fs::read(&p).unwrap();
        fs::write(&p, &b[..b.len() / 2]).unwrap();
        let err = format!("{:#}", load_dir(dir.path()).unwrap_err());
        assert!(
            err.contains("t10k-labels-idx1-ubyte.gz") && err.contains("gzip"),
            "{err}"
        );

        let err = parse_idx(b"\x12\x34\x08\x01", "x").unwrap_err().to_string();
        assert!(
            err.contains("x: at byte 0") && err.contains("magic"),
            "{err}"
        );
        let err = parse_idx(b"\0\0\x08\x03\0\0", "y").unwrap_err().to_string();
        assert!(err.contains("at byte 6") && err.contains("header"), "{err}");
        let err = parse_idx(b"\0\0\x0d\x01", "z").unwrap_err().to_string();
        assert!(err.contains("at byte 2"), "{err}");
        assert!(parse_idx(b"", "e").is_err());
    }

    #[test]
    fn missing_files_list_what_is_needed() {
        let dir = tempfile::tempdir().unwrap();
        let err = format!("{:#}", load_dir(dir.path()).unwrap_err());
        assert!(
            err.contains("train-images-idx3-ubyte") && err.contains(".gz"),
            "{err}"
        );
    }
}
