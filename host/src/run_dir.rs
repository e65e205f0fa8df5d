//! Run dirs: one folder per `train`/`search`/`retrain` run holding all its outputs.
//!
//! Layout (DESIGN §3): `config.toml` (every effective setting, read back by `--resume`),
//! `log.jsonl` (one JSON object per line, appended), `checkpoint/` (weights + `state.json`), and
//! for searches `archive.jsonl`, `pareto.{json,csv,svg}`, `hypervolume.csv`, `models/*.onnx`.
//! Every whole-file write goes through [`write_atomic`], so a `kill -9` leaves either the old or
//! the new file, never a torn one.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The file whose presence marks a checkpoint folder as complete (written last).
pub const STATE_FILE: &str = "state.json";

/// Makes the entries of `dir` (renames, new files) durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

/// Writes `bytes` to `path` atomically: a temp file in the same folder, fsync, rename, fsync dir.
///
/// # Errors
/// I/O errors, naming the path.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        File::open(dir)?.sync_all()
    };
    write()
        .with_context(|| format!("writing {}", path.display()))
        .inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })
}

/// One run's folder.
#[derive(Debug, Clone)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// Creates a new run dir; refuses a non-empty existing folder so no run is overwritten.
    ///
    /// # Errors
    /// When `path` holds files already (suggesting `--resume`), or on I/O errors.
    pub fn create(path: &Path) -> Result<RunDir> {
        if path.exists()
            && fs::read_dir(path)
                .with_context(|| format!("reading {}", path.display()))?
                .next()
                .is_some()
        {
            bail!(
                "run dir {} exists and is not empty; pass --resume {} to continue it, or choose another --out",
                path.display(),
                path.display()
            );
        }
        fs::create_dir_all(path.join("checkpoint"))
            .with_context(|| format!("creating {}", path.display()))?;
        Ok(RunDir {
            path: path.to_path_buf(),
        })
    }

    /// Opens an existing run dir (for `--resume`, `eval`, `export`).
    ///
    /// # Errors
    /// When the folder or its `config.toml` is missing.
    pub fn open(path: &Path) -> Result<RunDir> {
        if !path.join("config.toml").is_file() {
            bail!(
                "{} is not a run dir (no config.toml); give the folder a `shiftnas train` or `search` created",
                path.display()
            );
        }
        Ok(RunDir {
            path: path.to_path_buf(),
        })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside the run dir.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }

    /// The checkpoint folder.
    pub fn checkpoint_dir(&self) -> PathBuf {
        self.path.join("checkpoint")
    }

    /// Writes a complete checkpoint and swaps it in; the one checkpoint swap of every run kind.
    ///
    /// `write` fills a fresh `checkpoint.tmp/`. The current `checkpoint/` is then renamed to
    /// `checkpoint.old/` and the new one into place, so a `kill -9` at any instant leaves a
    /// complete checkpoint in `checkpoint/` or `checkpoint.old/` ([`Self::resumable_checkpoint`]).
    ///
    /// # Errors
    /// `write`'s errors, or I/O errors naming the folder.
    pub fn swap_checkpoint(&self, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
        let cur = self.checkpoint_dir();
        let tmp = self.join("checkpoint.tmp");
        let old = self.join("checkpoint.old");
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        write(&tmp)?;
        sync_dir(&tmp)?;
        // A complete `checkpoint/` must exist before the last complete `checkpoint.old/` goes.
        if cur.join(STATE_FILE).is_file() {
            let _ = fs::remove_dir_all(&old);
            fs::rename(&cur, &old).with_context(|| format!("moving {}", cur.display()))?;
        } else {
            let _ = fs::remove_dir_all(&cur);
        }
        fs::rename(&tmp, &cur).with_context(|| format!("moving {}", tmp.display()))?;
        sync_dir(&self.path)?;
        let _ = fs::remove_dir_all(&old);
        Ok(())
    }

    /// The checkpoint folder to resume from: `checkpoint/`, or `checkpoint.old/` after a kill
    /// during [`Self::swap_checkpoint`]; `None` when the run never checkpointed.
    pub fn resumable_checkpoint(&self) -> Option<PathBuf> {
        [self.checkpoint_dir(), self.join("checkpoint.old")]
            .into_iter()
            .find(|d| d.join(STATE_FILE).is_file())
    }

    /// Writes `config.toml` atomically.
    ///
    /// # Errors
    /// Serialisation or I/O errors.
    pub fn write_config<T: Serialize>(&self, config: &T) -> Result<()> {
        let text = toml::to_string_pretty(config).context("serialising config.toml")?;
        write_atomic(&self.join("config.toml"), text.as_bytes())
    }

    /// Reads `config.toml` back.
    ///
    /// # Errors
    /// Missing file or a field that does not parse, naming the file.
    pub fn read_config<T: DeserializeOwned>(&self) -> Result<T> {
        let path = self.join("config.toml");
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Appends one JSON line to `log.jsonl`.
    ///
    /// # Errors
    /// Serialisation or I/O errors.
    pub fn log<T: Serialize>(&self, record: &T) -> Result<()> {
        append_jsonl(&self.join("log.jsonl"), record)
    }
}

/// Appends `record` as one JSON line to `path` (a single `write` call, so lines never interleave).
///
/// # Errors
/// Serialisation or I/O errors, naming the path.
pub fn append_jsonl<T: Serialize>(path: &Path, record: &T) -> Result<()> {
    let mut line = serde_json::to_vec(record).context("serialising a JSON line")?;
    line.push(b'\n');
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    f.write_all(&line)
        .with_context(|| format!("appending to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn create_refuses_non_empty_and_open_needs_config() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(&dir.path().join("r")).unwrap();
        assert!(RunDir::open(run.path()).is_err());
        run.write_config(&serde_json::json!({"steps": 3})).unwrap();
        let back: toml::Value = RunDir::open(run.path()).unwrap().read_config().unwrap();
        assert_eq!(back["steps"].as_integer(), Some(3));
        let err = RunDir::create(run.path()).unwrap_err().to_string();
        assert!(err.contains("--resume"), "{err}");
    }
}
