//! The deployable aarch64 agent starts on boards with glibc 2.28 (issue 28): the release build of
//! `scripts/build-agent-aarch64` needs no glibc symbol version above `GLIBC_2.28`, and it runs
//! under qemu like the other aarch64 tests (tests/tests/it/agent.rs).
//!
//! The binary: `SHIFTNAS_AGENT_AARCH64` (which `scripts/test` sets to that build), else the test
//! runs `scripts/build-agent-aarch64` itself. Symbol versions come from
//! `aarch64-linux-gnu-readelf -V` (apt `binutils-aarch64-linux-gnu`) or the host's `readelf`.

use std::path::PathBuf;
use std::process::Command;

use super::agent::{AARCH64_FIX, aarch64, qemu_agent, run_ok};

/// The newest glibc a board must have.
const MAX_GLIBC: (u32, u32) = (2, 28);

/// Every `GLIBC_X.Y[.Z]` version named in `readelf -V` output, as (X, Y), sorted and unique.
/// `GLIBC_PRIVATE` and other non-numeric names are left out.
fn glibc_versions(readelf: &str) -> Vec<(u32, u32)> {
    let mut v: Vec<(u32, u32)> = readelf
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter_map(|tok| tok.strip_prefix("GLIBC_"))
        .filter_map(|ver| {
            let mut parts = ver.split('.').map(str::parse::<u32>);
            match (parts.next(), parts.next()) {
                (Some(Ok(a)), Some(Ok(b))) => Some((a, b)),
                _ => None,
            }
        })
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

#[test]
fn glibc_versions_are_read_from_readelf_output() {
    // Excerpt of `aarch64-linux-gnu-readelf -V` (binutils 2.40) on a plain-cargo agent build.
    let out = "Version symbols section '.gnu.version' contains 3 entries:\n\
               000:   0 (*local*)       2 (GLIBC_2.17)    3 (GLIBC_2.34)\n\
               Version needs section '.gnu.version_r' contains 1 entry:\n\
               \x20 0x0010:   Name: GLIBC_2.17  Flags: none  Version: 2\n\
               \x20 0x0020:   Name: GLIBC_2.34  Flags: none  Version: 3\n\
               \x20 0x0030:   Name: GLIBC_2.18.1  Flags: none  Version: 4\n\
               \x20 0x0040:   Name: GLIBC_PRIVATE  Flags: none  Version: 5\n";
    assert_eq!(glibc_versions(out), vec![(2, 17), (2, 18), (2, 34)]);
    assert!(glibc_versions("no versions here").is_empty());
}

/// The aarch64 agent to check, or why there is none.
fn deployable_agent() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("SHIFTNAS_AGENT_AARCH64").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let root = shiftnas_tests::repo_root();
    let out = Command::new(root.join("scripts/build-agent-aarch64"))
        .current_dir(&root)
        .output()
        .map_err(|e| format!("running scripts/build-agent-aarch64: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "scripts/build-agent-aarch64 failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .last()
        .map(PathBuf::from)
        .ok_or_else(|| "scripts/build-agent-aarch64 printed no path".into())
}

#[test]
fn aarch64_agent_needs_at_most_glibc_2_28_and_runs_under_qemu() {
    let agent = deployable_agent();
    shiftnas_tests::skip_unless!(
        agent.as_ref().err(),
        "run `source scripts/setup-deps` (it installs zig and cargo-zigbuild from \
         scripts/requirements-build.txt) and `scripts/build-agent-aarch64`"
    );
    let agent = agent.expect("checked above");
    assert!(agent.is_file(), "{} is not a file", agent.display());
    let readelf = ["aarch64-linux-gnu-readelf", "readelf"]
        .into_iter()
        .find_map(shiftnas_tests::find_tool);
    shiftnas_tests::skip_unless!(
        readelf
            .is_none()
            .then_some("neither aarch64-linux-gnu-readelf nor readelf is on PATH"),
        "apt-get install binutils-aarch64-linux-gnu (`source scripts/setup-deps` does)"
    );
    let out = run_ok(
        Command::new(readelf.expect("checked above"))
            .arg("-V")
            .arg(&agent),
    );
    let versions = glibc_versions(&out);
    assert!(
        !versions.is_empty(),
        "{} names no GLIBC_ version: is it a dynamic glibc binary?\n{out}",
        agent.display()
    );
    let newest = *versions.last().expect("not empty");
    assert!(
        newest <= MAX_GLIBC,
        "{} needs GLIBC_{}.{} (all: {versions:?}), above the GLIBC_{}.{} of old board images; \
         build it with scripts/build-agent-aarch64 (cargo-zigbuild, aarch64-unknown-linux-gnu.2.28), \
         not plain cargo",
        agent.display(),
        newest.0,
        newest.1,
        MAX_GLIBC.0,
        MAX_GLIBC.1
    );

    shiftnas_tests::skip_unless!(aarch64().err(), AARCH64_FIX);
    let a = super::agent::Aarch64 {
        agent,
        ..aarch64().expect("checked above").clone()
    };
    let version = run_ok(&mut qemu_agent(&a, &["--version"]));
    assert!(version.starts_with("shiftnas-agent "), "{version}");
    let info = run_ok(&mut qemu_agent(&a, &["info", "--json"]));
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["arch"], "aarch64");
    assert_eq!(info["backend"]["name"], "ort", "{info}");
}
