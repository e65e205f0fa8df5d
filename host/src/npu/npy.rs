//! The `.npy` files the conversion script exchanges with rknn-toolkit2: little-endian float32 in
//! C order (format 1.0), the only kind written or read here.

use std::path::Path;

use anyhow::{Context as _, Result, anyhow};
use shiftnas_protocol::{TensorF32, npy};

/// Writes `data` with `shape` as a float32 `.npy` file ([`npy::encode`]).
///
/// # Errors
/// If `data` does not have `shape`'s element count, or the file cannot be written.
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let t = TensorF32 {
        shape: shape.to_vec(),
        data: data.to_vec(),
    };
    let bytes = npy::encode(&t).with_context(|| format!("{}", path.display()))?;
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Reads a float32 `.npy` file (C order): its shape and values ([`npy::decode`]).
///
/// # Errors
/// If the file is not a little-endian float32, C-order `.npy` file of version 1–3.
pub fn read_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let t = npy::decode(&bytes)
        .map_err(|e| anyhow!("{}: not a float32 .npy file: {e:#}", path.display()))?;
    Ok((t.shape, t.data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_header_alignment() {
        let dir = tempfile::tempdir().unwrap();
        for shape in [vec![5], vec![1, 3, 4, 2], vec![2, 0]] {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 1.0).collect();
            let p = dir.path().join("x.npy");
            write_f32(&p, &shape, &data).unwrap();
            let bytes = std::fs::read(&p).unwrap();
            // numpy requires the data to start at a multiple of 64 bytes.
            assert_eq!((bytes.len() - 4 * n) % 64, 0);
            assert_eq!(read_f32(&p).unwrap(), (shape, data));
        }
    }

    #[test]
    fn refuses_wrong_counts_and_dtypes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.npy");
        assert!(write_f32(&p, &[2, 2], &[1.0; 3]).is_err());
        write_f32(&p, &[2], &[1.0, 2.0]).unwrap();
        let mut bytes = std::fs::read(&p).unwrap();
        let at = bytes.windows(3).position(|w| w == b"<f4").unwrap();
        bytes[at + 2] = b'8';
        std::fs::write(&p, &bytes).unwrap();
        let e = read_f32(&p).unwrap_err().to_string();
        assert!(e.contains("x.npy") && e.contains("<f8"), "{e}");
    }
}
