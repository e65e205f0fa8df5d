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
//! scores from before a shift are recognisable as stale. `latency_interval` (`{"low":…,"high":…}`,
//! ms) is the latency's confidence interval, written only when the source measured one (so
//! archives of sources without intervals read as before and are byte for byte the same).
//! Lines are appended with one `write`
//! each ([`append`]); [`read`] names the file and line of the first line that does not parse;
//! [`truncate_to`] cuts the file back to a checkpoint's length when a search resumes.
//!
//! Report, rank and the architecture search all read this file, so it sits at the crate root.

use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use shiftnas_models::Arch;

use crate::latency::Interval;

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
    /// The latency's confidence interval, ms, when the source measured one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_interval: Option<Interval>,
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

/// Keeps the first `len` records of the archive at `path` and drops everything after them (the
/// evaluations of a generation that was killed before its checkpoint), including a torn last
/// line; rewrites the file atomically ([`crate::run_dir::write_atomic`]) and returns the kept
/// records. A missing file counts as empty.
///
/// `len` is the checkpoint's `archive_len`: the records it vouches for must all be there and
/// parse, so a short file or a broken line among them is an error, not something to drop.
///
/// # Errors
/// Fewer than `len` records, a line among the first `len` that is not a record (file and line
/// named), or I/O errors.
pub fn truncate_to(path: &Path, len: usize) -> anyhow::Result<Vec<ArchiveRecord>> {
    let text = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && len == 0 => Vec::new(),
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "cannot open archive {}, which the checkpoint says holds {len} records",
                    path.display()
                )
            });
        }
    };
    let mut records = Vec::with_capacity(len);
    let mut kept_bytes = 0;
    let mut lines = text.split_inclusive(|&b| b == b'\n').enumerate();
    while records.len() < len {
        let Some((i, line)) = lines.next() else {
            anyhow::bail!(
                "{} holds {} records but the checkpoint expects {len}; the run dir is damaged \
                 (restore the archive, or start the search again in a new --out)",
                path.display(),
                records.len()
            );
        };
        kept_bytes += line.len();
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let whole = line.ends_with(b"\n");
        let record = std::str::from_utf8(line)
            .map_err(anyhow::Error::from)
            .and_then(|l| Ok(serde_json::from_str::<ArchiveRecord>(l)?))
            .ok()
            .filter(|_| whole);
        let Some(record) = record else {
            anyhow::bail!(
                "{} line {}: not a complete archive record, but the checkpoint expects {len} \
                 records and this is record {}; the run dir is damaged (restore the archive, \
                 or start the search again in a new --out)",
                path.display(),
                i + 1,
                records.len() + 1
            );
        };
        records.push(record);
    }
    if kept_bytes != text.len() {
        crate::run_dir::write_atomic(path, &text[..kept_bytes])?;
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
            latency_interval: None,
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

    #[test]
    fn truncate_to_drops_the_tail_and_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("archive.jsonl");
        for g in 1..=3 {
            append(&path, &record(g)).unwrap();
        }
        let two = std::fs::read_to_string(&path).unwrap();
        let two: String = two.lines().take(2).map(|l| format!("{l}\n")).collect();
        // A record past the checkpoint and a torn one (a kill inside the last write).
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"generation\":4,\"arch\":\"01");
        std::fs::write(&path, &text).unwrap();
        assert!(read(&path).is_err(), "read refuses the torn line");
        assert_eq!(truncate_to(&path, 2).unwrap(), vec![record(1), record(2)]);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), two);
        assert_eq!(read(&path).unwrap(), vec![record(1), record(2)]);
        // Nothing to drop: the file is left as it is; 0 empties it.
        assert_eq!(truncate_to(&path, 2).unwrap().len(), 2);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), two);
        assert!(truncate_to(&path, 0).unwrap().is_empty());
        assert_eq!(std::fs::read(&path).unwrap(), b"");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
        // A missing archive is empty when the checkpoint expects nothing.
        let none = dir.path().join("none.jsonl");
        assert!(truncate_to(&none, 0).unwrap().is_empty());
        let e = format!("{:#}", truncate_to(&none, 1).unwrap_err());
        assert!(e.contains("none.jsonl") && e.contains("1 records"), "{e}");
    }

    #[test]
    fn truncate_to_refuses_a_short_or_broken_archive_within_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("archive.jsonl");
        append(&path, &record(1)).unwrap();
        append(&path, &record(2)).unwrap();
        let before = std::fs::read(&path).unwrap();
        let e = format!("{:#}", truncate_to(&path, 3).unwrap_err());
        assert!(
            e.contains("archive.jsonl holds 2 records but the checkpoint expects 3"),
            "{e}"
        );
        // Torn inside the records the checkpoint vouches for: an error naming the line.
        let torn = &before[..before.len() - 5];
        std::fs::write(&path, torn).unwrap();
        let e = format!("{:#}", truncate_to(&path, 2).unwrap_err());
        assert!(
            e.contains("archive.jsonl line 2") && e.contains("record 2"),
            "{e}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), torn, "left untouched");
        let mut bad = b"{\"generation\":1}\n".to_vec();
        bad.extend_from_slice(&before);
        std::fs::write(&path, &bad).unwrap();
        let e = format!("{:#}", truncate_to(&path, 1).unwrap_err());
        assert!(e.contains("line 1: not a complete archive record"), "{e}");
    }

    /// A record without an interval is written exactly as before the field existed, so old
    /// archives read and new ones without intervals stay the same; one with an interval writes
    /// it and reads it back.
    #[test]
    fn the_interval_is_optional_and_round_trips() {
        let old = "{\"generation\":1,\"arch\":\"0123\",\"error\":0.25,\"latency\":12.5,\
                   \"latency_source\":\"board:rk1\",\"flops\":210000000,\"params\":3400000,\
                   \"supernet_step\":12000}";
        let r: ArchiveRecord = serde_json::from_str(old).unwrap();
        assert_eq!(r, record(1));
        assert_eq!(serde_json::to_string(&r).unwrap(), old);
        let with = ArchiveRecord {
            latency_interval: Some(Interval {
                low: 12.0,
                high: 13.0,
            }),
            ..record(1)
        };
        let text = serde_json::to_string(&with).unwrap();
        assert!(
            text.contains("\"latency_interval\":{\"low\":12.0,\"high\":13.0}"),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<ArchiveRecord>(&text).unwrap(), with);
    }
}
