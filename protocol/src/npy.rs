//! A minimal `.npy` reader and writer for little-endian float32 arrays in C order — the only kind
//! the agent's `run` command and the host's NPU conversions exchange (format: numpy's `NEP 1`, versions 1.0–3.0).

use crate::TensorF32;
use anyhow::{Context, Result, bail};

const MAGIC: &[u8] = b"\x93NUMPY";

/// Parses `.npy` bytes holding a `<f4` C-order array.
///
/// # Errors
/// Names what is wrong: magic, version, header, dtype (with the one found), Fortran order, or a
/// data length that does not match the shape.
pub fn decode(bytes: &[u8]) -> Result<TensorF32> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        bail!("not a .npy file (missing the \\x93NUMPY magic)");
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (header_len, start): (usize, usize) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                bail!("truncated .npy header");
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        _ => bail!("unsupported .npy version {major}.{minor}"),
    };
    let end = start
        .checked_add(header_len)
        .filter(|&e| e <= bytes.len())
        .context("truncated .npy header")?;
    let header = std::str::from_utf8(&bytes[start..end]).context(".npy header is not text")?;
    let descr = dict_value(header, "descr").context(".npy header has no 'descr'")?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    if descr != "<f4" {
        bail!(
            "dtype {descr:?} is not supported; save the array as float32 (np.asarray(x, dtype='<f4'))"
        );
    }
    let fortran =
        dict_value(header, "fortran_order").context(".npy header has no 'fortran_order'")?;
    if fortran != "False" {
        bail!("Fortran-order arrays are not supported; save np.ascontiguousarray(x)");
    }
    let shape_txt = dict_value(header, "shape").context(".npy header has no 'shape'")?;
    let inner = shape_txt
        .trim()
        .trim_start_matches('(')
        .trim_end_matches(')');
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim_end_matches('L')
                .parse::<usize>()
                .with_context(|| format!("bad .npy shape {shape_txt:?}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .context("shape too large")?;
    let data = &bytes[end..];
    if data.len() != count * 4 {
        bail!(
            "shape {shape:?} needs {} data bytes but the file has {}",
            count * 4,
            data.len()
        );
    }
    let data = data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok(TensorF32 { shape, data })
}

/// The text after `'key':` up to the next top-level `,` or `}` (parentheses kept together).
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pat_single = format!("'{key}':");
    let pat_double = format!("\"{key}\":");
    let at = header
        .find(&pat_single)
        .map(|i| i + pat_single.len())
        .or_else(|| header.find(&pat_double).map(|i| i + pat_double.len()))?;
    let rest = &header[at..];
    let mut depth = 0usize;
    for (i, ch) in rest.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' | '}' if depth == 0 => return Some(rest[..i].trim()),
            _ => {}
        }
    }
    None
}

/// Serialises a tensor as a version 1.0 `.npy` (`<f4`, C order).
///
/// # Errors
/// When `data.len()` does not match the shape.
pub fn encode(t: &TensorF32) -> Result<Vec<u8>> {
    let count: usize = t.shape.iter().product();
    if count != t.data.len() {
        bail!(
            "tensor of shape {:?} has {} values, expected {count}",
            t.shape,
            t.data.len()
        );
    }
    let shape = match t.shape.len() {
        1 => format!("({},)", t.shape[0]),
        _ => format!(
            "({})",
            t.shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    // Pad with spaces so that magic + 4 + header (ending in '\n') is a multiple of 64.
    let unpadded = MAGIC.len() + 4 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 4 * count);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(
        &u16::try_from(header.len())
            .context(".npy header too long")?
            .to_le_bytes(),
    );
    out.extend_from_slice(header.as_bytes());
    for v in &t.data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Produced by numpy 2.3.5: np.save(f, np.array([[1.5, -2.0, 0.25], [3.0, 0.0, -0.5]], dtype='<f4'))
    const NUMPY_2X3: &[u8] = b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }                                                          \n\x00\x00\xc0?\x00\x00\x00\xc0\x00\x00\x80>\x00\x00@@\x00\x00\x00\x00\x00\x00\x00\xbf";

    #[test]
    fn reads_numpy_output_and_writes_it_back_byte_for_byte() {
        let t = decode(NUMPY_2X3).unwrap();
        assert_eq!(t.shape, vec![2, 3]);
        assert_eq!(t.data, vec![1.5, -2.0, 0.25, 3.0, 0.0, -0.5]);
        assert_eq!(encode(&t).unwrap(), NUMPY_2X3);
    }

    #[test]
    fn round_trips_odd_shapes() {
        for shape in [vec![], vec![5], vec![1, 3, 2, 2], vec![0, 4]] {
            let n: usize = shape.iter().product();
            let t = TensorF32 {
                shape: shape.clone(),
                data: (0..n).map(|i| i as f32 * 0.5 - 1.0).collect(),
            };
            let bytes = encode(&t).unwrap();
            assert_eq!(
                (bytes.len() - 4 * n) % 64,
                0,
                "header alignment for {shape:?}"
            );
            assert_eq!(decode(&bytes).unwrap(), t);
        }
    }

    fn replace(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
        let at = bytes.windows(from.len()).position(|w| w == from).unwrap();
        [&bytes[..at], to, &bytes[at + from.len()..]].concat()
    }

    #[test]
    fn rejects_what_it_cannot_read() {
        assert!(decode(b"hello").unwrap_err().to_string().contains("magic"));
        let err = decode(&replace(NUMPY_2X3, b"<f4", b"<f8"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("<f8") && err.contains("float32"), "{err}");
        let fortran = replace(NUMPY_2X3, b"False", b"True ");
        assert!(
            decode(&fortran)
                .unwrap_err()
                .to_string()
                .contains("Fortran")
        );
        assert!(
            decode(&NUMPY_2X3[..NUMPY_2X3.len() - 1])
                .unwrap_err()
                .to_string()
                .contains("data bytes")
        );
    }
}
