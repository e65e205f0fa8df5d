//! Deploys the agent and its ONNX Runtime library into a board's `workdir`, only when their
//! SHA-256 differs from what is already there.
//!
//! One `sha256sum` exec compares both files (an exec costs ~200 ms, an upload of the agent far
//! more); changed files are uploaded under a temporary name and renamed into place, so a board
//! never runs a half-written agent.

use std::path::Path;

use anyhow::{Context as _, Result};
use sha2::{Digest, Sha256};

use super::config::BoardConfig;
use super::ssh::{SshConn, expand_tilde};

/// The agent's file name in `workdir`.
pub const AGENT_NAME: &str = "shiftnas-agent";
/// The ORT library's file name in `workdir`.
pub const ORT_NAME: &str = "libonnxruntime.so";

/// What a deployment did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeployOutcome {
    /// Files uploaded (names in `workdir`); empty when everything was up to date.
    pub uploaded: Vec<String>,
    /// Files whose hash already matched.
    pub up_to_date: Vec<String>,
}

/// SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Quotes `s` for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Parses `sha256sum` output into (file name, hash) pairs.
fn parse_sha256sum(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| {
            let (h, name) = l.split_once(char::is_whitespace)?;
            let name = name.trim_start().trim_start_matches('*');
            let base = name.rsplit('/').next().unwrap_or(name);
            (h.len() == 64).then(|| (base.to_string(), h.to_string()))
        })
        .collect()
}

fn read_local(cfg: &BoardConfig, field: &str, p: &Path) -> Result<Vec<u8>> {
    let p = expand_tilde(p);
    std::fs::read(&p).with_context(|| {
        format!(
            "board {:?}: reading `{field}` = {}; build it (for the agent: cargo build --release -p \
             shiftnas-agent --target <the board's target>) or fix the path in boards.toml",
            cfg.name,
            p.display()
        )
    })
}

/// Makes `workdir` hold the current agent (and ORT library, when `ort_lib` is set).
///
/// # Errors
/// Missing local files, SSH/SFTP errors, or a hash that does not match after upload.
pub fn deploy(conn: &SshConn, cfg: &BoardConfig) -> Result<DeployOutcome> {
    let workdir = cfg.workdir.as_deref().unwrap_or("/tmp/shiftnas");
    let mut files: Vec<(&str, Vec<u8>)> = Vec::new();
    if let Some(agent) = &cfg.agent {
        files.push((AGENT_NAME, read_local(cfg, "agent", agent)?));
    }
    if let Some(lib) = &cfg.ort_lib {
        files.push((ORT_NAME, read_local(cfg, "ort_lib", lib)?));
    }
    let w = shell_quote(workdir);
    let names: Vec<String> = files.iter().map(|(n, _)| shell_quote(n)).collect();
    // `|| true`: a missing file is just "needs upload"; mkdir failing still shows in stderr below.
    let (code, out, err) = conn.exec(&format!(
        "mkdir -p {w} && cd {w} && {{ sha256sum {} 2>/dev/null || true; }}",
        names.join(" ")
    ))?;
    if code != 0 {
        anyhow::bail!(
            "board {:?}: cannot use workdir {workdir}: {}; fix `workdir` in boards.toml",
            cfg.name,
            err.trim()
        );
    }
    let remote = parse_sha256sum(&out);
    let mut outcome = DeployOutcome {
        uploaded: Vec::new(),
        up_to_date: Vec::new(),
    };
    for (name, bytes) in &files {
        let want = sha256_hex(bytes);
        if remote.iter().any(|(n, h)| n == name && *h == want) {
            outcome.up_to_date.push(name.to_string());
            continue;
        }
        let tmp = format!("{workdir}/.{name}.{}.tmp", std::process::id());
        conn.upload(bytes, &tmp)?;
        let fin = format!("{workdir}/{name}");
        let got = conn.exec_ok(&format!(
            "chmod 755 {t} && mv -f {t} {f} && sha256sum {f}",
            t = shell_quote(&tmp),
            f = shell_quote(&fin)
        ))?;
        let ok = parse_sha256sum(&got)
            .iter()
            .any(|(n, h)| n == name && *h == want);
        if !ok {
            anyhow::bail!(
                "board {:?}: {fin} does not have the uploaded SHA-256 {want} after upload (got {:?}); \
                 is the board's disk full?",
                cfg.name,
                got.trim()
            );
        }
        outcome.uploaded.push(name.to_string());
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_abc() {
        // FIPS 180-2, appendix B.1.
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn parses_sha256sum_lines() {
        let h = "a".repeat(64);
        let out = format!("{h}  shiftnas-agent\n{h} *libonnxruntime.so\ngarbage\n");
        let p = parse_sha256sum(&out);
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].0, "libonnxruntime.so");
    }

    #[test]
    fn quotes() {
        assert_eq!(shell_quote("/tmp/a-b"), "/tmp/a-b");
        assert_eq!(shell_quote("a b'c"), "'a b'\\''c'");
    }
}
