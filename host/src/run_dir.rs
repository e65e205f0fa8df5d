//! Run dirs: one folder per `train`/`search`/`retrain` run holding all its outputs.
//!
//! Layout: `config.toml` (every effective setting, read back by `--resume`), `log.jsonl` (one
//! JSON object per line, appended), `checkpoint/` (weights + `state.json`), `run.lock` (see
//! below), and for searches `archive.jsonl`, `pareto.{json,csv,svg}`, `hypervolume.csv`,
//! `models/*.onnx`. Every whole-file write goes through [`write_atomic`], so a `kill -9` leaves
//! either the old or the new file, never a torn one.
//!
//! A run that writes (`train`, `retrain`, `search`) holds an exclusive lock on `run.lock` for as
//! long as its [`RunDir`] lives ([`RunDir::create`], [`RunDir::open`]), so a second process
//! resuming the same folder is refused instead of interleaving checkpoints. The lock is an
//! advisory `flock` that the kernel drops when the holder exits, even by `kill -9`; the file keeps
//! the holder's PID for the error message. Readers (`eval`, `export`, `rank`) use
//! [`RunDir::open_read_only`] and never wait for it.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The file whose presence marks a checkpoint folder as complete (written last).
pub const STATE_FILE: &str = "state.json";

/// The lock file inside a run dir; holds the PID of the process that has the run open.
pub const LOCK_FILE: &str = "run.lock";

/// Takes the exclusive lock on `dir`'s [`LOCK_FILE`] and writes this process's PID into it.
///
/// # Errors
/// When another process holds it (naming the folder and that process's PID), or on I/O errors.
fn lock(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let holder = fs::read_to_string(&path).unwrap_or_default();
            let holder = match holder.trim() {
                "" => "unknown PID (it is just starting)".to_string(),
                pid => format!("PID {pid}"),
            };
            bail!(
                "run dir {} is in use by another shiftnas process ({holder}); wait for it to \
                 finish or stop it, or choose another --out",
                dir.display()
            );
        }
        Err(fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", path.display()));
        }
    }
    let pid = format!("{}\n", std::process::id());
    file.set_len(0)
        .and_then(|()| file.write_all(pid.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(file)
}

/// Makes the entries of `dir` (renames, new files) durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

/// Writes `bytes` to `path` atomically ([`shiftnas_models::checkpoint::write_atomic`]: a temp
/// file in the same folder, fsync, rename), creating the folder first.
///
/// # Errors
/// I/O errors, naming the path.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    shiftnas_models::checkpoint::write_atomic(path, bytes)
        .with_context(|| format!("writing {}", path.display()))
}

/// Whether `dir` holds nothing, or only what a run killed before its `config.toml` was written
/// leaves behind (`run.lock`, an empty `checkpoint/`, a config temp file): starting that run
/// again is the only way to continue it, so [`RunDir::create`] accepts it.
fn never_started(dir: &Path) -> Result<bool> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let leftover = name == LOCK_FILE
            || name.starts_with(".config.toml.tmp")
            || (name == "checkpoint"
                && fs::read_dir(entry.path()).is_ok_and(|mut d| d.next().is_none()));
        if !leftover {
            return Ok(false);
        }
    }
    Ok(true)
}

/// One run's folder; when opened for writing it holds the folder's lock until the last clone
/// is dropped.
#[derive(Debug, Clone)]
pub struct RunDir {
    path: PathBuf,
    /// The locked `run.lock` (`None` for [`RunDir::open_read_only`]).
    lock: Option<Arc<File>>,
}

impl RunDir {
    /// Creates a new run dir and takes its lock; refuses a non-empty existing folder so no run is
    /// overwritten.
    ///
    /// # Errors
    /// When `path` holds files already (suggesting `--resume`), when another process took the
    /// lock first, or on I/O errors.
    pub fn create(path: &Path) -> Result<RunDir> {
        if path.exists() && !never_started(path)? {
            bail!(
                "run dir {} exists and is not empty; pass --resume {} to continue it, or choose another --out",
                path.display(),
                path.display()
            );
        }
        fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
        let lock = lock(path)?;
        fs::create_dir_all(path.join("checkpoint"))
            .with_context(|| format!("creating {}", path.display()))?;
        Ok(RunDir {
            path: path.to_path_buf(),
            lock: Some(Arc::new(lock)),
        })
    }

    /// Opens an existing run dir to continue it (`--resume`) and takes its lock.
    ///
    /// # Errors
    /// When the folder or its `config.toml` is missing, or another process holds the lock
    /// (naming its PID).
    pub fn open(path: &Path) -> Result<RunDir> {
        let mut run = RunDir::open_read_only(path)?;
        run.lock = Some(Arc::new(lock(path)?));
        Ok(run)
    }

    /// Opens an existing run dir to read it (`eval`, `export`, `rank`, a resume reading the
    /// config): no lock, so it works while a run is writing the folder.
    ///
    /// # Errors
    /// When the folder or its `config.toml` is missing.
    pub fn open_read_only(path: &Path) -> Result<RunDir> {
        if !path.join("config.toml").is_file() {
            bail!(
                "{} is not a run dir (no config.toml); give the folder a `shiftnas train` or `search` created",
                path.display()
            );
        }
        Ok(RunDir {
            path: path.to_path_buf(),
            lock: None,
        })
    }

    /// Whether this handle holds the folder's lock (opened for writing).
    pub fn is_locked(&self) -> bool {
        self.lock.is_some()
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

    /// Drops the `log.jsonl` lines of steps after `step` (logged after the checkpoint a resume
    /// starts from, so the resumed run would log them again) and a torn last line; rewrites the
    /// file atomically when anything goes. Lines without a `step` field are kept. Returns how
    /// many lines were dropped.
    ///
    /// # Errors
    /// A line before the last one that is not JSON (file and line named), or I/O errors.
    pub fn trim_log_after_step(&self, step: u64) -> Result<usize> {
        let path = self.join("log.jsonl");
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let lines: Vec<&[u8]> = text.split_inclusive(|&b| b == b'\n').collect();
        let (mut kept, mut dropped) = (Vec::with_capacity(text.len()), 0);
        for (i, line) in lines.iter().enumerate() {
            let parsed = serde_json::from_slice::<serde_json::Value>(line)
                .ok()
                .filter(|_| line.ends_with(b"\n"));
            let keep = match parsed {
                Some(v) => v["step"].as_u64().is_none_or(|s| s <= step),
                // A kill inside the last append leaves at most that line torn.
                None if i + 1 == lines.len() => false,
                None => bail!(
                    "{} line {}: not a JSON line; fix or delete it, then resume again",
                    path.display(),
                    i + 1
                ),
            };
            if keep {
                kept.extend_from_slice(line);
            } else {
                dropped += 1;
            }
        }
        if dropped > 0 {
            write_atomic(&path, &kept)?;
        }
        Ok(dropped)
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
        let back: toml::Value = RunDir::open_read_only(run.path())
            .unwrap()
            .read_config()
            .unwrap();
        assert_eq!(back["steps"].as_integer(), Some(3));
        let err = RunDir::create(run.path()).unwrap_err().to_string();
        assert!(err.contains("--resume"), "{err}");
    }

    #[test]
    fn create_takes_over_a_run_killed_before_its_config_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r");
        drop(RunDir::create(&path).unwrap());
        fs::write(path.join(".config.toml.tmp123"), b"steps = ").unwrap();
        let run = RunDir::create(&path).unwrap();
        // Still refused while held, or once anything else is in it.
        assert!(format!("{:#}", RunDir::create(&path).unwrap_err()).contains("in use"));
        drop(run);
        fs::write(path.join("checkpoint/state.json"), b"{}").unwrap();
        assert!(format!("{:#}", RunDir::create(&path).unwrap_err()).contains("--resume"));
    }

    /// A run dir with a config, not held by anyone.
    fn config_run(dir: &Path) -> PathBuf {
        let path = dir.join("r");
        let run = RunDir::create(&path).unwrap();
        run.write_config(&serde_json::json!({"steps": 3})).unwrap();
        path
    }

    #[test]
    fn lock_refuses_a_second_open_naming_the_pid_and_is_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = config_run(dir.path());
        let pid = std::process::id().to_string();
        let run = RunDir::open(&path).unwrap();
        assert!(run.is_locked());
        assert_eq!(
            fs::read_to_string(path.join(LOCK_FILE)).unwrap().trim(),
            pid
        );
        let err = format!("{:#}", RunDir::open(&path).unwrap_err());
        assert!(
            err.contains(&format!("run dir {} is in use", path.display()))
                && err.contains(&format!("PID {pid}")),
            "{err}"
        );
        // Readers never need the lock; a clone keeps it.
        let reader = RunDir::open_read_only(&path).unwrap();
        assert!(!reader.is_locked());
        let clone = run.clone();
        drop(run);
        assert!(RunDir::open(&path).is_err(), "the clone still holds it");
        drop(clone);
        let again = RunDir::open(&path).unwrap();
        assert!(again.is_locked());
        // A new run holds its lock from the start.
        let fresh = RunDir::create(&dir.path().join("new")).unwrap();
        fresh.write_config(&serde_json::json!({})).unwrap();
        assert!(RunDir::open(fresh.path()).is_err());
    }

    /// Run by [`lock_of_a_killed_process_does_not_block`] in a child process: holds the lock of
    /// `$SHIFTNAS_TEST_LOCK_HOLDER` until killed.
    #[test]
    #[ignore = "a helper process of lock_of_a_killed_process_does_not_block"]
    fn lock_holder() {
        let Some(path) = std::env::var_os("SHIFTNAS_TEST_LOCK_HOLDER") else {
            return;
        };
        let path = PathBuf::from(path);
        let _run = RunDir::open(&path).unwrap();
        fs::write(path.join("holder-ready"), b"").unwrap();
        std::thread::sleep(std::time::Duration::from_secs(120));
    }

    #[test]
    fn lock_of_a_killed_process_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let path = config_run(dir.path());
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "run_dir::tests::lock_holder", "--ignored"])
            .env("SHIFTNAS_TEST_LOCK_HOLDER", &path)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let t0 = std::time::Instant::now();
        while !path.join("holder-ready").exists() {
            assert!(
                t0.elapsed().as_secs() < 60,
                "the holder never took the lock"
            );
            assert!(child.try_wait().unwrap().is_none(), "the holder exited");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let err = format!("{:#}", RunDir::open(&path).unwrap_err());
        assert!(err.contains(&format!("PID {}", child.id())), "{err}");
        child.kill().unwrap(); // SIGKILL: no destructor runs, the kernel drops the flock.
        child.wait().unwrap();
        let run = RunDir::open(&path).unwrap();
        let pid = std::process::id().to_string();
        assert_eq!(
            fs::read_to_string(path.join(LOCK_FILE)).unwrap().trim(),
            pid
        );
        drop(run);
    }

    #[test]
    fn trim_log_drops_steps_after_the_checkpoint_and_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(&dir.path().join("r")).unwrap();
        assert_eq!(run.trim_log_after_step(5).unwrap(), 0, "no log yet");
        for step in [2u64, 4, 6] {
            run.log(&serde_json::json!({"step": step, "loss": 1.0}))
                .unwrap();
        }
        run.log(&serde_json::json!({"note": "no step"})).unwrap();
        let log = run.join("log.jsonl");
        let mut text = fs::read_to_string(&log).unwrap();
        text.push_str("{\"step\":8,\"lo");
        fs::write(&log, &text).unwrap();
        assert_eq!(run.trim_log_after_step(4).unwrap(), 2);
        assert_eq!(
            fs::read_to_string(&log).unwrap(),
            "{\"loss\":1.0,\"step\":2}\n{\"loss\":1.0,\"step\":4}\n{\"note\":\"no step\"}\n"
        );
        assert_eq!(run.trim_log_after_step(4).unwrap(), 0);
        fs::write(&log, "{\"step\":1}\nnot json\n{\"step\":2}\n").unwrap();
        let err = format!("{:#}", run.trim_log_after_step(1).unwrap_err());
        assert!(err.contains("log.jsonl line 2"), "{err}");
    }
}
