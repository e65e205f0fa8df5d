//! CIFAR-10 and CIFAR-100 "binary version" files (cs.toronto.edu/~kriz/cifar.html).
//!
//! CIFAR-10: `data_batch_{1..5}.bin` (train) and `test_batch.bin`, each a run of 3,073-byte records:
//! 1 label byte (0..9), then 1,024 R, 1,024 G, 1,024 B bytes (32×32 planes, row-major); class names
//! in `batches.meta.txt`, one per line. CIFAR-100: `train.bin` and `test.bin`, 3,074-byte records:
//! coarse label, fine label (0..99), then the same 3,072 pixel bytes; we use the fine label, with
//! names from `fine_label_names.txt` when present (else the numbers). There is no header, so a file
//! whose size is not a whole number of records is truncated.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::{DataPair, Dataset, FormatError};

const PIXELS: usize = 3 * 32 * 32;

/// Record layout of one CIFAR flavour.
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// Label bytes before the pixels.
    label_bytes: usize,
    /// Which label byte is used.
    label_at: usize,
    /// Number of classes (labels must be below).
    classes: usize,
}

const CIFAR10: Layout = Layout {
    label_bytes: 1,
    label_at: 0,
    classes: 10,
};
const CIFAR100: Layout = Layout {
    label_bytes: 2,
    label_at: 1,
    classes: 100,
};

/// Appends the records of one CIFAR file to `images`/`labels`.
fn parse_records(
    bytes: &[u8],
    name: &str,
    layout: Layout,
    images: &mut Vec<u8>,
    labels: &mut Vec<u32>,
) -> Result<(), FormatError> {
    let rec = layout.label_bytes + PIXELS;
    if bytes.is_empty() {
        return Err(FormatError::new(name, 0, "file is empty; expected records"));
    }
    if !bytes.len().is_multiple_of(rec) {
        let whole = bytes.len() / rec;
        return Err(FormatError::new(
            name,
            (whole * rec) as u64,
            format!(
                "file is truncated: record {whole} has {} of its {rec} bytes (file size {} is not a multiple of {rec})",
                bytes.len() % rec,
                bytes.len()
            ),
        ));
    }
    for (i, r) in bytes.chunks_exact(rec).enumerate() {
        let label = r[layout.label_at] as usize;
        if label >= layout.classes {
            return Err(FormatError::new(
                name,
                (i * rec + layout.label_at) as u64,
                format!(
                    "record {i} has label {label}; expected 0..{} — is this the right CIFAR flavour?",
                    layout.classes - 1
                ),
            ));
        }
        labels.push(label as u32);
        images.extend_from_slice(&r[layout.label_bytes..]);
    }
    Ok(())
}

fn read_files(
    dir: &Path,
    files: &[&str],
    layout: Layout,
    name: String,
    classes: &[String],
) -> Result<Dataset> {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for f in files {
        let p = dir.join(f);
        let bytes = fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
        parse_records(
            &bytes,
            &p.display().to_string(),
            layout,
            &mut images,
            &mut labels,
        )?;
    }
    Dataset::new(name, (3, 32, 32), images, labels, classes.to_vec())
}

fn read_names(path: &Path, expected: usize) -> Result<Option<Vec<String>>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if names.len() != expected {
        bail!(
            "{}: {} class names, expected {expected} (one per line)",
            path.display(),
            names.len()
        );
    }
    Ok(Some(names))
}

fn numbered(n: usize) -> Vec<String> {
    (0..n).map(|i| i.to_string()).collect()
}

fn require(dir: &Path, files: &[&str], kind: &str) -> Result<()> {
    let missing: Vec<&str> = files
        .iter()
        .copied()
        .filter(|f| !dir.join(f).is_file())
        .collect();
    if !missing.is_empty() {
        bail!(
            "{kind}:{}: missing {}; a {kind} folder holds the binary version's files ({})",
            dir.display(),
            missing.join(", "),
            files.join(", ")
        );
    }
    Ok(())
}

/// Loads `cifar10:DIR`.
///
/// # Errors
/// Missing or malformed files, naming the file, offset and expectation.
pub fn load_cifar10(dir: &Path) -> Result<DataPair> {
    let train_files = [
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
    ];
    let mut all = train_files.to_vec();
    all.push("test_batch.bin");
    require(dir, &all, "cifar10")?;
    let classes = read_names(&dir.join("batches.meta.txt"), 10)?.unwrap_or_else(|| numbered(10));
    let d = dir.display();
    Ok(DataPair {
        train: read_files(
            dir,
            &train_files,
            CIFAR10,
            format!("cifar10:{d} (train)"),
            &classes,
        )?,
        test: read_files(
            dir,
            &["test_batch.bin"],
            CIFAR10,
            format!("cifar10:{d} (test)"),
            &classes,
        )?,
    })
}

/// Loads `cifar100:DIR` (fine labels).
///
/// # Errors
/// Missing or malformed files, naming the file, offset and expectation.
pub fn load_cifar100(dir: &Path) -> Result<DataPair> {
    require(dir, &["train.bin", "test.bin"], "cifar100")?;
    let classes =
        read_names(&dir.join("fine_label_names.txt"), 100)?.unwrap_or_else(|| numbered(100));
    let d = dir.display();
    Ok(DataPair {
        train: read_files(
            dir,
            &["train.bin"],
            CIFAR100,
            format!("cifar100:{d} (train)"),
            &classes,
        )?,
        test: read_files(
            dir,
            &["test.bin"],
            CIFAR100,
            format!("cifar100:{d} (test)"),
            &classes,
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record whose pixel p of channel c is (seed + c * 7 + p) % 256.
    fn record(labels: &[u8], seed: usize) -> Vec<u8> {
        let mut r = labels.to_vec();
        for c in 0..3 {
            r.extend((0..1024).map(|p| ((seed + c * 7 + p) % 256) as u8));
        }
        r
    }

    fn write_cifar10(dir: &Path) {
        for (i, f) in [
            "data_batch_1.bin",
            "data_batch_2.bin",
            "data_batch_3.bin",
            "data_batch_4.bin",
            "data_batch_5.bin",
            "test_batch.bin",
        ]
        .iter()
        .enumerate()
        {
            let mut b = record(&[i as u8], i);
            b.extend(record(&[9], 100 + i));
            fs::write(dir.join(f), b).unwrap();
        }
        let names = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n";
        fs::write(dir.join("batches.meta.txt"), names).unwrap();
    }

    #[test]
    fn reads_cifar10_binary() {
        let dir = tempfile::tempdir().unwrap();
        write_cifar10(dir.path());
        let pair = load_cifar10(dir.path()).unwrap();
        assert_eq!(pair.train.len(), 10);
        assert_eq!(pair.test.len(), 2);
        assert_eq!(pair.train.labels, [0, 9, 1, 9, 2, 9, 3, 9, 4, 9]);
        assert_eq!(pair.test.labels, [5, 9]);
        assert_eq!(pair.train.class_names[9], "truck");
        // Train image 2 (batch 2, record 0, seed 1): G plane (c=1), row 3, col 5 -> p = 101.
        assert_eq!(pair.train.image(2)[1024 + 3 * 32 + 5], (1 + 7 + 101) as u8);
    }

    #[test]
    fn reads_cifar100_fine_labels() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = record(&[3, 87], 0);
        b.extend(record(&[19, 5], 1));
        fs::write(dir.path().join("train.bin"), &b).unwrap();
        fs::write(dir.path().join("test.bin"), record(&[0, 99], 2)).unwrap();
        let pair = load_cifar100(dir.path()).unwrap();
        assert_eq!(pair.train.labels, [87, 5]);
        assert_eq!(pair.test.labels, [99]);
        assert_eq!(pair.train.num_classes(), 100);
        assert_eq!(pair.train.image(1)[2048], (1 + 14) as u8);
    }

    #[test]
    fn truncated_and_bad_label_cifar_name_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        write_cifar10(dir.path());
        let p = dir.path().join("data_batch_3.bin");
        let b = fs::read(&p).unwrap();
        fs::write(&p, &b[..3073 + 100]).unwrap();
        let err = format!("{:#}", load_cifar10(dir.path()).unwrap_err());
        assert!(err.contains("data_batch_3.bin: at byte 3073"), "{err}");
        assert!(err.contains("truncated") && err.contains("3073"), "{err}");

        let mut b = b.clone();
        b[3073] = 10;
        fs::write(&p, &b).unwrap();
        let err = format!("{:#}", load_cifar10(dir.path()).unwrap_err());
        assert!(
            err.contains("data_batch_3.bin: at byte 3073") && err.contains("label 10"),
            "{err}"
        );

        fs::remove_file(dir.path().join("test_batch.bin")).unwrap();
        let err = format!("{:#}", load_cifar10(dir.path()).unwrap_err());
        assert!(err.contains("missing test_batch.bin"), "{err}");
    }
}

#[cfg(test)]
mod shared_data_tests {
    /// The project's full CIFAR-10 copy in `shared/datasets/cifar10` beside the repository (README:
    /// 5,000/1,000 per class); `SHIFTNAS_DATASETS` overrides the folder. Missing, it is skipped
    /// locally and fails under `CI=true`.
    #[test]
    fn shared_cifar10() {
        let root = std::env::var_os("SHIFTNAS_DATASETS")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets")
            });
        let dir = root.join("cifar10");
        if !dir.join("test_batch.bin").is_file() {
            let what = format!("no CIFAR-10 at {}", dir.display());
            let ci = std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
            assert!(
                !ci,
                "{what}; set SHIFTNAS_DATASETS (CI=true: a missing data set fails)"
            );
            eprintln!("skipped: {what}; set SHIFTNAS_DATASETS");
            return;
        }
        let pair = super::load_cifar10(&dir).unwrap();
        assert_eq!(pair.train.class_histogram(), vec![5000; 10]);
        assert_eq!(pair.test.class_histogram(), vec![1000; 10]);
        assert_eq!(pair.train.class_names[0], "airplane");
    }
}
