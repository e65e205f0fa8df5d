//! `boards.toml`: one `[[board]]` table per board, parsed strictly.
//!
//! Unknown fields are refused (a typo such as `thread = 4` must not silently measure with the
//! default), and a `password` field gets its own message: passwords are never read from config
//! files; use a key (`identity`) or ssh-agent. Every error names the board and the field.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};

use crate::npu::Dtype;
use crate::paths::home_dir;

/// The boards file read when no `--boards` flag is given (missing means only `local`).
pub const DEFAULT_BOARDS_FILE: &str = "boards.toml";

/// The name of the board that runs the agent as a child process of the host (no SSH).
pub const LOCAL_BOARD: &str = "local";

/// How the host reaches a board.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BoardKind {
    /// Over SSH (key or ssh-agent authentication, strict host-key checking).
    Ssh,
    /// The agent runs as a child process on the host.
    Local,
}

/// What to do with a host key that is not in `known_hosts` yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyPolicy {
    /// Refuse unknown and changed keys (the default).
    #[default]
    Strict,
    /// Accept and append the key of a host seen for the first time; still refuse changed keys.
    AcceptNew,
}

/// One `[[board]]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardConfig {
    /// Unique name used on the command line (`board:NAME`).
    pub name: String,
    /// `ssh` or `local`.
    #[serde(default = "default_kind")]
    pub kind: BoardKind,
    /// Host name or address (SSH boards).
    #[serde(default)]
    pub host: Option<String>,
    /// SSH port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Login user (SSH boards).
    #[serde(default)]
    pub user: Option<String>,
    /// Private key file; without it, ssh-agent is asked.
    #[serde(default)]
    pub identity: Option<PathBuf>,
    /// known_hosts file (default `~/.ssh/known_hosts`).
    #[serde(default)]
    pub known_hosts: Option<PathBuf>,
    /// `strict` (default) or `accept-new`.
    #[serde(default)]
    pub host_key: HostKeyPolicy,
    /// Directory on the board that receives the agent, its ORT library and the models.
    #[serde(default)]
    pub workdir: Option<String>,
    /// Local path of the agent binary to deploy (built for the board's architecture).
    #[serde(default)]
    pub agent: Option<PathBuf>,
    /// Local path of the board's `libonnxruntime.so`, deployed next to the agent.
    #[serde(default)]
    pub ort_lib: Option<PathBuf>,
    /// ORT intra-op threads.
    #[serde(default = "default_threads")]
    pub threads: u32,
    /// CPU cores to pin to, e.g. `"4-7"` (the RK3588's A76 cores).
    #[serde(default)]
    pub cores: Option<String>,
    /// A wrapper put before the agent command on the board (e.g. `qemu-aarch64-static -L …`).
    #[serde(default)]
    pub command_prefix: Option<String>,
    /// Free-form labels.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Discard a measurement when a thermal zone reached this temperature (°C).
    #[serde(default = "default_thermal_limit")]
    pub thermal_limit_c: f64,
    /// Seconds to wait before measuring again after a hot or throttled run.
    #[serde(default = "default_cool_down")]
    pub cool_down_s: f64,
    /// Seconds one load + measurement may take before the board counts as failed.
    #[serde(default = "default_timeout")]
    pub timeout_s: f64,
    /// Untimed warm-up runs per measurement (default 10).
    #[serde(default = "default_warmup")]
    pub warmup: usize,
    /// Minimum timed runs per measurement (default 50).
    #[serde(default = "default_runs")]
    pub runs: usize,
    /// Minimum total time of the timed runs, seconds (default 1).
    #[serde(default = "default_min_seconds")]
    pub min_seconds: f64,
    /// What the agent measures with: `ort` (ONNX Runtime on the CPU, the default) or `rknn` (the
    /// RK3588 NPU through `librknnrt.so`; candidates are converted to `.rknn` on the host).
    #[serde(default)]
    pub runtime: Runtime,
    /// `rknn`: the NPU number format candidates are converted to (default `int8`).
    #[serde(default)]
    pub dtype: Option<Dtype>,
    /// `rknn`: the NPU cores (`0`, `1`, `2`, `0-1`, `0-2`, `auto` or `all`; default: the
    /// runtime's choice).
    #[serde(default)]
    pub npu_core_mask: Option<String>,
    /// `rknn`: `librknnrt.so` on the board (default: the agent's `LIBRKNNRT_PATH`, then
    /// `/usr/lib/librknnrt.so`).
    #[serde(default)]
    pub rknn_lib: Option<String>,
}

/// The agent's inference runtime on a board.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// ONNX Runtime on the CPU cores.
    #[default]
    Ort,
    /// The RK3588 NPU through Rockchip's `librknnrt.so`.
    Rknn,
}

/// The NPU core masks the agent's `--npu-core-mask` takes.
pub const NPU_CORE_MASKS: [&str; 7] = ["0", "1", "2", "0-1", "0-2", "auto", "all"];

fn default_warmup() -> usize {
    10
}
fn default_runs() -> usize {
    50
}
fn default_min_seconds() -> f64 {
    1.0
}
fn default_kind() -> BoardKind {
    BoardKind::Ssh
}
fn default_port() -> u16 {
    22
}
fn default_threads() -> u32 {
    1
}
fn default_thermal_limit() -> f64 {
    80.0
}
fn default_cool_down() -> f64 {
    30.0
}
fn default_timeout() -> f64 {
    120.0
}

impl BoardConfig {
    /// The built-in `local` board: the agent next to the `shiftnas` binary (or `agent`), run as a
    /// child process.
    pub fn local(agent: Option<PathBuf>) -> BoardConfig {
        BoardConfig {
            name: LOCAL_BOARD.into(),
            kind: BoardKind::Local,
            host: None,
            port: default_port(),
            user: None,
            identity: None,
            known_hosts: None,
            host_key: HostKeyPolicy::Strict,
            workdir: None,
            agent,
            ort_lib: None,
            threads: default_threads(),
            cores: None,
            command_prefix: None,
            tags: Vec::new(),
            thermal_limit_c: default_thermal_limit(),
            cool_down_s: 1.0,
            timeout_s: default_timeout(),
            warmup: default_warmup(),
            runs: default_runs(),
            min_seconds: default_min_seconds(),
            runtime: Runtime::Ort,
            dtype: None,
            npu_core_mask: None,
            rknn_lib: None,
        }
    }

    /// `user@host:port` for messages.
    pub fn address(&self) -> String {
        format!(
            "{}@{}:{}",
            self.user.as_deref().unwrap_or("?"),
            self.host.as_deref().unwrap_or("?"),
            self.port
        )
    }

    /// The known_hosts file to check against: `known_hosts`, else `~/.ssh/known_hosts`.
    pub fn known_hosts_path(&self) -> PathBuf {
        self.known_hosts
            .clone()
            .unwrap_or_else(|| home_dir().join(".ssh").join("known_hosts"))
    }

    /// Checks what serde cannot: required fields per kind, ranges, the cores list.
    ///
    /// # Errors
    /// Names the board and the field, and says what to write.
    pub fn validate(&self) -> Result<()> {
        let name = &self.name;
        let field_err = |field: &str, why: &str| -> anyhow::Error {
            anyhow::anyhow!("board {name:?}: field `{field}` {why}")
        };
        if name.is_empty() || name.contains([',', ' ', ':']) {
            bail!(
                "board {name:?}: field `name` must be non-empty without spaces, commas or colons"
            );
        }
        if self.kind == BoardKind::Ssh {
            for (field, v) in [("host", &self.host), ("user", &self.user)] {
                if v.as_deref().is_none_or(str::is_empty) {
                    return Err(field_err(field, "is required for kind = \"ssh\""));
                }
            }
            if self.workdir.as_deref().is_none_or(str::is_empty) {
                return Err(field_err(
                    "workdir",
                    "is required for kind = \"ssh\" (a directory on the board, e.g. \"/tmp/shiftnas\")",
                ));
            }
            if self.agent.is_none() {
                return Err(field_err(
                    "agent",
                    "is required for kind = \"ssh\" (the local path of the agent binary built for the board)",
                ));
            }
            if self.port == 0 {
                return Err(field_err("port", "must be 1–65535"));
            }
        }
        if self.threads == 0 {
            return Err(field_err("threads", "must be at least 1"));
        }
        if let Some(c) = &self.cores {
            parse_cores(c).map_err(|e| field_err("cores", &e))?;
        }
        if !(self.thermal_limit_c > 0.0 && self.thermal_limit_c < 150.0) {
            return Err(field_err(
                "thermal_limit_c",
                "must be a temperature in °C between 0 and 150",
            ));
        }
        if !(self.cool_down_s >= 0.0 && self.cool_down_s.is_finite()) {
            return Err(field_err("cool_down_s", "must be ≥ 0 seconds"));
        }
        if self.runs == 0 {
            return Err(field_err("runs", "must be at least 1"));
        }
        if !(self.min_seconds >= 0.0 && self.min_seconds.is_finite()) {
            return Err(field_err("min_seconds", "must be ≥ 0 seconds"));
        }
        if !(self.timeout_s > 0.0 && self.timeout_s.is_finite()) {
            return Err(field_err("timeout_s", "must be > 0 seconds"));
        }
        match self.runtime {
            Runtime::Ort => {
                for (field, set) in [
                    ("dtype", self.dtype.is_some()),
                    ("npu_core_mask", self.npu_core_mask.is_some()),
                    ("rknn_lib", self.rknn_lib.is_some()),
                ] {
                    if set {
                        return Err(field_err(
                            field,
                            "applies to the NPU only; add runtime = \"rknn\" or remove it",
                        ));
                    }
                }
            }
            Runtime::Rknn => {
                if self.ort_lib.is_some() {
                    return Err(field_err(
                        "ort_lib",
                        "applies to runtime = \"ort\" only; remove it for an NPU board",
                    ));
                }
                if let Some(m) = &self.npu_core_mask
                    && !NPU_CORE_MASKS.contains(&m.as_str())
                {
                    return Err(field_err(
                        "npu_core_mask",
                        &format!("is {m:?}; write one of {}", NPU_CORE_MASKS.join(", ")),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The NPU format of an `rknn` board (`None` for `ort`).
    pub fn npu_dtype(&self) -> Option<Dtype> {
        (self.runtime == Runtime::Rknn).then(|| self.dtype.unwrap_or(Dtype::Int8))
    }

    /// The agent's runtime flags for this board (none for `ort`; `ort_lib` is passed apart, as
    /// its path differs on the board).
    pub fn runtime_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if self.runtime == Runtime::Rknn {
            args.extend(["--runtime".to_string(), "rknn".into()]);
            if let Some(m) = &self.npu_core_mask {
                args.extend(["--npu-core-mask".to_string(), m.clone()]);
            }
            if let Some(lib) = &self.rknn_lib {
                args.extend(["--rknn-lib".to_string(), lib.clone()]);
            }
        }
        args
    }
}

/// Parses a cores list such as `"4-7"` or `"0,2,4-5"` into sorted CPU numbers.
///
/// # Errors
/// A message saying what was expected.
pub fn parse_cores(s: &str) -> std::result::Result<Vec<u32>, String> {
    let mut out = BTreeSet::new();
    for part in s.split(',').map(str::trim) {
        let bad = || format!("{s:?} is not a cores list; write e.g. \"4-7\" or \"0,2,4-5\"");
        match part.split_once('-') {
            Some((a, b)) => {
                let a: u32 = a.trim().parse().map_err(|_| bad())?;
                let b: u32 = b.trim().parse().map_err(|_| bad())?;
                if a > b {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => {
                out.insert(part.parse::<u32>().map_err(|_| bad())?);
            }
        }
    }
    Ok(out.into_iter().collect())
}

/// The whole `boards.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardsFile {
    /// The boards, in file order.
    #[serde(default, rename = "board")]
    pub boards: Vec<BoardConfig>,
}

impl fmt::Display for BoardKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BoardKind::Ssh => "ssh",
            BoardKind::Local => "local",
        })
    }
}

impl BoardsFile {
    /// Parses `boards.toml` text; `origin` names the file in errors.
    ///
    /// # Errors
    /// TOML syntax, unknown or mistyped fields (naming the board and field), duplicate names,
    /// and any `password` field.
    pub fn parse(text: &str, origin: &str) -> Result<BoardsFile> {
        // A table-by-table parse lets errors name the board even when serde's message does not.
        let raw: toml::Table =
            toml::from_str(text).with_context(|| format!("{origin}: not valid TOML"))?;
        for key in raw.keys() {
            if key != "board" {
                bail!("{origin}: unknown top-level key `{key}`; write boards as [[board]] tables");
            }
        }
        let tables = match raw.get("board") {
            None => return Ok(BoardsFile::default()),
            Some(toml::Value::Array(a)) => a.clone(),
            Some(_) => bail!("{origin}: `board` must be written as [[board]] tables"),
        };
        let mut boards = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, t) in tables.into_iter().enumerate() {
            let label = t
                .get("name")
                .and_then(|v| v.as_str())
                .map(|s| format!("board {s:?}"))
                .unwrap_or_else(|| format!("board #{} (no `name`)", i + 1));
            if let Some(tab) = t.as_table()
                && tab.contains_key("password")
            {
                bail!(
                    "{origin}: {label}: field `password` is not accepted; use a key (identity) or \
                     ssh-agent; passwords are never read from config files"
                );
            }
            let board = parse_board(&t).with_context(|| format!("{origin}: {label}"))?;
            board.validate().with_context(|| origin.to_string())?;
            if !seen.insert(board.name.clone()) {
                bail!(
                    "{origin}: board {:?} is defined twice; names must be unique",
                    board.name
                );
            }
            boards.push(board);
        }
        Ok(BoardsFile { boards })
    }

    /// Reads `path`; a missing file gives an empty list (the `local` board still exists).
    ///
    /// # Errors
    /// As [`BoardsFile::parse`], or the file cannot be read.
    pub fn load(path: &Path) -> Result<BoardsFile> {
        match std::fs::read_to_string(path) {
            Ok(text) => BoardsFile::parse(&text, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BoardsFile::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// The boards file a command was given: `Some(path)` (a `--boards` flag) must exist; `None`
    /// reads `boards.toml` in the working directory, where a missing file means only `local`.
    ///
    /// # Errors
    /// A named file that does not exist (naming it), or as [`BoardsFile::load`].
    pub fn load_flag(path: Option<&Path>) -> Result<BoardsFile> {
        match path {
            None => BoardsFile::load(Path::new(DEFAULT_BOARDS_FILE)),
            Some(p) if !p.exists() => bail!(
                "the boards file {} does not exist; fix the --boards path (docs/boards.md shows \
                 the format), or leave --boards out to use {DEFAULT_BOARDS_FILE} or the built-in \
                 `local` board",
                p.display()
            ),
            Some(p) => BoardsFile::load(p),
        }
    }

    /// Looks boards up by name; `local` resolves to the built-in local board unless the file
    /// defines one of that name.
    ///
    /// # Errors
    /// An unknown name, listing the known ones.
    pub fn select(
        &self,
        names: &[String],
        local_agent: Option<PathBuf>,
    ) -> Result<Vec<BoardConfig>> {
        let mut out = Vec::new();
        for n in names {
            if let Some(b) = self.boards.iter().find(|b| &b.name == n) {
                out.push(b.clone());
            } else if n == LOCAL_BOARD {
                out.push(BoardConfig::local(local_agent.clone()));
            } else {
                let known: Vec<&str> = self.boards.iter().map(|b| b.name.as_str()).collect();
                bail!(
                    "no board named {n:?} in boards.toml (known: {}, and the built-in `local`); \
                     add a [[board]] table or pass --boards FILE",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                );
            }
        }
        Ok(out)
    }
}

/// Deserialises one board table; the error names the field (re-parsing the table as a document
/// gives a span, whose line holds the key).
fn parse_board(t: &toml::Value) -> Result<BoardConfig> {
    let text = toml::to_string(t).context("re-serialising a board table")?;
    toml::from_str::<BoardConfig>(&text).map_err(|e| {
        let msg = e.message().trim().to_string();
        let field = e.span().and_then(|sp| {
            let line = text[..sp.start.min(text.len())].lines().last()?;
            let key = line.split('=').next()?.trim();
            (!key.is_empty() && line.contains('=')).then(|| key.to_string())
        });
        match field {
            Some(f) if !msg.contains(&format!("`{f}`")) => anyhow::anyhow!("field `{f}`: {msg}"),
            _ => anyhow::anyhow!("{msg}"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[board]]
name = "rk1"
host = "10.0.0.5"
user = "root"
identity = "~/.ssh/id_ed25519"
workdir = "/tmp/shiftnas"
agent = "target/aarch64-unknown-linux-gnu/release/shiftnas-agent"
ort_lib = "libonnxruntime.so"
threads = 4
cores = "4-7"
tags = ["rk3588"]

[[board]]
name = "host"
kind = "local"
"#;

    #[test]
    fn parses_a_good_file_with_defaults() {
        let f = BoardsFile::parse(GOOD, "boards.toml").unwrap();
        assert_eq!(f.boards.len(), 2);
        let b = &f.boards[0];
        assert_eq!(b.port, 22);
        assert_eq!(b.host_key, HostKeyPolicy::Strict);
        assert_eq!(b.thermal_limit_c, 80.0);
        assert_eq!(b.kind, BoardKind::Ssh);
        assert_eq!(f.boards[1].kind, BoardKind::Local);
        assert_eq!(
            parse_cores(b.cores.as_deref().unwrap()).unwrap(),
            vec![4, 5, 6, 7]
        );
    }

    fn err(text: &str) -> String {
        format!("{:#}", BoardsFile::parse(text, "boards.toml").unwrap_err())
    }

    #[test]
    fn npu_boards_take_their_fields_and_others_refuse_them() {
        let local = "[[board]]\nname = \"npu\"\nkind = \"local\"\n";
        let f = BoardsFile::parse(
            &format!("{local}runtime = \"rknn\"\nnpu_core_mask = \"0-2\"\nrknn_lib = \"/usr/lib/librknnrt.so\"\n"),
            "boards.toml",
        )
        .unwrap();
        let b = &f.boards[0];
        assert_eq!(
            (b.runtime, b.npu_dtype()),
            (Runtime::Rknn, Some(Dtype::Int8))
        );
        assert_eq!(
            b.runtime_args(),
            [
                "--runtime",
                "rknn",
                "--npu-core-mask",
                "0-2",
                "--rknn-lib",
                "/usr/lib/librknnrt.so"
            ]
        );
        let fp16 = BoardsFile::parse(
            &format!("{local}runtime = \"rknn\"\ndtype = \"fp16\"\n"),
            "boards.toml",
        )
        .unwrap();
        assert_eq!(fp16.boards[0].npu_dtype(), Some(Dtype::Fp16));
        let plain = BoardsFile::parse(local, "boards.toml").unwrap();
        assert_eq!(plain.boards[0].npu_dtype(), None);
        assert!(plain.boards[0].runtime_args().is_empty());
        let e = err(&format!("{local}npu_core_mask = \"1\"\n"));
        assert!(
            e.contains("board \"npu\"")
                && e.contains("`npu_core_mask`")
                && e.contains("runtime = \"rknn\""),
            "{e}"
        );
        let e = err(&format!(
            "{local}runtime = \"rknn\"\nnpu_core_mask = \"3\"\n"
        ));
        assert!(e.contains("\"3\"") && e.contains("0-2"), "{e}");
        let e = err(&format!("{local}runtime = \"rknn\"\nort_lib = \"x.so\"\n"));
        assert!(e.contains("`ort_lib`"), "{e}");
        let e = err(&format!("{local}runtime = \"tpu\"\n"));
        assert!(e.contains("runtime"), "{e}");
    }

    #[test]
    fn password_is_refused_with_the_fix() {
        let e = err("[[board]]\nname = \"rk1\"\nhost = \"h\"\nuser = \"u\"\npassword = \"x\"\n");
        assert!(e.contains("board \"rk1\""), "{e}");
        assert!(e.contains("`password`"), "{e}");
        assert!(e.contains("use a key (identity) or ssh-agent"), "{e}");
    }

    #[test]
    fn unknown_and_mistyped_fields_name_board_and_field() {
        let e = err("[[board]]\nname = \"rk1\"\nkind = \"local\"\nthread = 4\n");
        assert!(e.contains("board \"rk1\"") && e.contains("thread"), "{e}");
        let e = err("[[board]]\nname = \"rk1\"\nkind = \"local\"\nthreads = \"four\"\n");
        assert!(e.contains("board \"rk1\"") && e.contains("threads"), "{e}");
        let e = err("[[board]]\nname = \"rk1\"\nkind = \"serial\"\n");
        assert!(e.contains("board \"rk1\"") && e.contains("serial"), "{e}");
    }

    #[test]
    fn validation_names_the_field() {
        let e = err("[[board]]\nname = \"rk1\"\nhost = \"h\"\nuser = \"u\"\nagent = \"a\"\n");
        assert!(e.contains("board \"rk1\": field `workdir`"), "{e}");
        let e = err("[[board]]\nname = \"rk1\"\nkind = \"local\"\ncores = \"7-4\"\n");
        assert!(e.contains("field `cores`"), "{e}");
        let e = err(
            "[[board]]\nname = \"rk1\"\nkind = \"local\"\n[[board]]\nname = \"rk1\"\nkind = \"local\"\n",
        );
        assert!(e.contains("defined twice"), "{e}");
    }

    #[test]
    fn select_knows_local_and_lists_names() {
        let f = BoardsFile::parse(GOOD, "boards.toml").unwrap();
        let s = f.select(&["local".into(), "rk1".into()], None).unwrap();
        assert_eq!(s[0].kind, BoardKind::Local);
        let e = f.select(&["rk9".into()], None).unwrap_err().to_string();
        assert!(e.contains("rk1, host"), "{e}");
    }

    #[test]
    fn a_named_boards_file_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no/such.toml");
        let e = format!("{:#}", BoardsFile::load_flag(Some(&missing)).unwrap_err());
        assert!(
            e.contains(&missing.display().to_string()) && e.contains("--boards"),
            "{e}"
        );
        let f = dir.path().join("b.toml");
        std::fs::write(&f, GOOD).unwrap();
        assert_eq!(BoardsFile::load_flag(Some(&f)).unwrap().boards.len(), 2);
        // A missing file given as a plain path still means "only local" (the search's default).
        assert!(BoardsFile::load(&missing).unwrap().boards.is_empty());
    }

    #[test]
    fn cores_lists() {
        assert_eq!(parse_cores("0,2,4-5").unwrap(), vec![0, 2, 4, 5]);
        assert!(parse_cores("a").is_err());
    }
}
