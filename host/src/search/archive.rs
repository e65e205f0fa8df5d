//! The search archive: one [`ArchiveRecord`] per evaluated arch, as JSON Lines (`archive.jsonl`).
//!
//! Format: one JSON object per line, fields exactly those of [`ArchiveRecord`], e.g.
//!
//! ```text
//! {"generation":3,"arch":"0123012301230123","error":0.3125,"latency":12.5,"latency_source":"board:rk1","flops":210000000,"params":3400000,"supernet_step":12000}
//! ```
//!
//! `arch` is the digit string; `error` is the top-1 error in [0, 1]; `latency` is in
//! milliseconds from `latency_source` (a `LatencySource::describe` string); `flops` counts
//! multiply-adds; `supernet_step` is the supernet training step the error was measured at, so
//! scores from before a shift are recognisable as stale. Lines are appended with one `write`
//! each ([`append`]); [`read`] names the file and line of the first line that does not parse.

use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use shiftnas_models::Arch;

/// One evaluated architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveRecord {
    /// Generation that evaluated it (1 = initial population).
    pub generation: usize,
    /// The architecture.
    pub arch: Arch,
    /// Top-1 error in [0, 1] on the validation split.
    pub error: f64,
    /// Latency in milliseconds.
    pub latency: f64,
    /// Where the latency came from (e.g. `board:rk1`, `predictor:lut`).
    pub latency_source: String,
    /// Multiply-adds.
    pub flops: u64,
    /// Parameters.
    pub params: u64,
    /// Supernet training step at which `error` was measured.
    pub supernet_step: u64,
}

/// Appends one record to the archive at `path`.
///
/// # Errors
/// Serialisation or I/O errors, naming the path.
pub fn append(path: &Path, record: &ArchiveRecord) -> anyhow::Result<()> {
    crate::run_dir::append_jsonl(path, record)
}

/// Reads every record of the archive at `path` (blank lines are skipped).
///
/// # Errors
/// A missing file, or the first line that is not a valid record, with its line number.
pub fn read(path: &Path) -> anyhow::Result<Vec<ArchiveRecord>> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open archive {}", path.display()))?;
    let mut records = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {} line {}", path.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(&line).with_context(|| {
            format!(
                "{} line {}: not an archive record (fix or delete that line; a crash mid-write leaves at most the last line broken)",
                path.display(),
                i + 1
            )
        })?;
        records.push(record);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(generation: usize) -> ArchiveRecord {
        ArchiveRecord {
            generation,
            arch: "0123".parse().unwrap(),
            error: 0.25,
            latency: 12.5,
            latency_source: "board:rk1".into(),
            flops: 210_000_000,
            params: 3_400_000,
            supernet_step: 12_000,
        }
    }

    #[test]
    fn round_trip_and_bad_line_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("archive.jsonl");
        append(&path, &record(1)).unwrap();
        append(&path, &record(2)).unwrap();
        assert_eq!(read(&path).unwrap(), vec![record(1), record(2)]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("{\"generation\":1,\"arch\":\"0123\","));
        std::fs::write(
            &path,
            format!("{text}\n{{\"generation\":3,\"arch\":\"01x\"}}\n"),
        )
        .unwrap();
        let err = format!("{:#}", read(&path).unwrap_err());
        assert!(err.contains("line 4"), "{err}");
        assert!(err.contains("position 2"), "{err}");
        assert!(format!("{:#}", read(&dir.path().join("nope")).unwrap_err()).contains("nope"));
    }
}
