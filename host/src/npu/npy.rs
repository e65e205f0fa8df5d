//! The `.npy` files the conversion script exchanges with rknn-toolkit2: little-endian float32 in
//! C order (format 1.0), the only kind written or read here.

use std::path::Path;

use anyhow::{Context as _, Result, bail};

/// Writes `data` with `shape` as a float32 `.npy` file.
///
/// # Errors
/// If `data` does not have `shape`'s element count, or the file cannot be written.
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let n: usize = shape.iter().product();
    if n != data.len() {
        bail!(
            "{}: {} values do not fill the shape {shape:?} ({n} values)",
            path.display(),
            data.len()
        );
    }
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple}, }}").into_bytes();
    // Magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple of
    // 64 bytes and ended by a newline.
    let total = (10 + header.len() + 1).div_ceil(64) * 64;
    header.resize(total - 10 - 1, b' ');
    header.push(b'\n');
    let mut bytes = Vec::with_capacity(total + 4 * data.len());
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(&header);
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Reads a float32 `.npy` file (C order): its shape and values.
///
/// # Errors
/// If the file is not a little-endian float32, C-order `.npy` file of version 1–3.
pub fn read_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let bad = |why: &str| anyhow::anyhow!("{}: not a float32 .npy file: {why}", path.display());
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("no NUMPY magic"));
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad(&format!("format version {v}"))),
    };
    let header = bytes
        .get(start..start + len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("truncated header"))?;
    if !header.contains("'descr': '<f4'") {
        return Err(bad(&format!("dtype is not '<f4' ({})", header.trim())));
    }
    if header.contains("'fortran_order': True") {
        return Err(bad("Fortran order"));
    }
    let shape_txt = header
        .split("'shape':")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .map(|s| s.trim().trim_start_matches('('))
        .ok_or_else(|| bad("no shape"))?;
    let shape = shape_txt
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| bad(&format!("shape {shape_txt}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let body = &bytes[start + len..];
    let n: usize = shape.iter().product();
    if body.len() != 4 * n {
        return Err(bad(&format!(
            "{} data bytes for shape {shape:?}",
            body.len()
        )));
    }
    let data = body
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok((shape, data))
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
