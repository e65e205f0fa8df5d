//! Is the board's glibc new enough for the agent? Checked over SSH before the agent is deployed,
//! so a board with an old C library fails with one line naming both versions and the fix, instead
//! of a loader error (`version 'GLIBC_2.34' not found`) from inside the agent session.
//!
//! The agent's need is the highest `GLIBC_x.y[.z]` version it requires, read from its ELF
//! version-needs section (`.gnu.version_r`, `SHT_GNU_verneed`); the board's version comes from
//! `ldd --version` (or `getconf GNU_LIBC_VERSION`). An agent that needs no glibc version (a
//! static or musl build, or not an ELF at all) is not checked.

use std::fmt;
use std::str::FromStr;

use anyhow::{Result, bail};

use super::config::BoardConfig;
use super::ssh::SshConn;

/// The command that builds an agent for boards with glibc 2.28 or newer.
pub const OLD_GLIBC_BUILD: &str = "scripts/build-agent-aarch64";

/// A glibc version such as `2.28` or `2.2.5`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GlibcVersion {
    /// Major (2 for every glibc since 1997).
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Patch (`GLIBC_2.2.5`); 0 when absent.
    pub patch: u32,
}

impl FromStr for GlibcVersion {
    type Err = String;

    /// Parses `2.28` or `2.2.5`.
    fn from_str(s: &str) -> std::result::Result<GlibcVersion, String> {
        let bad = || format!("{s:?} is not a glibc version such as 2.28");
        let parts = s
            .split('.')
            .map(|p| p.parse::<u32>().map_err(|_| bad()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        match parts[..] {
            [major, minor] => Ok(GlibcVersion {
                major,
                minor,
                patch: 0,
            }),
            [major, minor, patch] => Ok(GlibcVersion {
                major,
                minor,
                patch,
            }),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for GlibcVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)?;
        if self.patch != 0 {
            write!(f, ".{}", self.patch)?;
        }
        Ok(())
    }
}

/// The glibc version in `ldd --version` or `getconf GNU_LIBC_VERSION` output: the last word of
/// the first line that names libc and ends in a version (`ldd (Debian GLIBC 2.36-9+deb12u4) 2.36`,
/// `ldd (GNU libc) 2.28`, `glibc 2.31`). `None` for musl or anything else.
pub fn parse_ldd_version(out: &str) -> Option<GlibcVersion> {
    let lower = out.to_ascii_lowercase();
    if lower.contains("musl") {
        return None;
    }
    lower
        .lines()
        .filter(|l| l.contains("libc"))
        .find_map(|l| l.split_whitespace().last()?.parse().ok())
}

/// The highest `GLIBC_x.y[.z]` version an ELF file requires (from its `SHT_GNU_verneed`
/// section), or `None` when it requires none.
///
/// # Errors
/// Not an ELF file, or a truncated or inconsistent one.
pub fn elf_max_glibc(bytes: &[u8]) -> Result<Option<GlibcVersion>> {
    let elf = Elf::parse(bytes)?;
    let mut best = None;
    for sec in 0..elf.shnum {
        let sh = elf.section(sec)?;
        if sh.kind != SHT_GNU_VERNEED {
            continue;
        }
        let strtab = elf.section(sh.link as usize)?;
        let strings = elf.slice(strtab.offset, strtab.size)?;
        let data = elf.slice(sh.offset, sh.size)?;
        let mut at = 0usize;
        // `sh_info` is the number of entries; the `vn_next` chain is followed at most that often.
        for _ in 0..sh.info.max(1) {
            let cnt = elf.u16(data, at + 2)?;
            let mut aux = at + elf.u32(data, at + 8)? as usize;
            for _ in 0..cnt {
                let name = elf.u32(data, aux + 8)? as usize;
                if let Some(v) = c_str(strings, name)
                    .and_then(|n| n.strip_prefix("GLIBC_"))
                    .and_then(|v| v.parse::<GlibcVersion>().ok())
                {
                    best = best.max(Some(v));
                }
                let next = elf.u32(data, aux + 12)? as usize;
                if next == 0 {
                    break;
                }
                aux += next;
            }
            let next = elf.u32(data, at + 12)? as usize;
            if next == 0 {
                break;
            }
            at += next;
        }
    }
    Ok(best)
}

const SHT_GNU_VERNEED: u32 = 0x6fff_fffe;

/// The few fields of an ELF file the version check reads (32- or 64-bit, either byte order).
struct Elf<'a> {
    bytes: &'a [u8],
    wide: bool,
    big_endian: bool,
    shoff: u64,
    shentsize: usize,
    shnum: usize,
}

/// One section header, as far as it is needed.
struct Section {
    kind: u32,
    offset: u64,
    size: u64,
    link: u32,
    info: u32,
}

impl<'a> Elf<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Elf<'a>> {
        if bytes.len() < 52 || &bytes[..4] != b"\x7fELF" {
            bail!("not an ELF file");
        }
        let wide = match bytes[4] {
            1 => false,
            2 => true,
            c => bail!("unknown ELF class {c}"),
        };
        let big_endian = match bytes[5] {
            1 => false,
            2 => true,
            d => bail!("unknown ELF byte order {d}"),
        };
        let mut e = Elf {
            bytes,
            wide,
            big_endian,
            shoff: 0,
            shentsize: 0,
            shnum: 0,
        };
        if wide {
            e.shoff = e.u64(bytes, 0x28)?;
            e.shentsize = e.u16(bytes, 0x3a)? as usize;
            e.shnum = e.u16(bytes, 0x3c)? as usize;
        } else {
            e.shoff = e.u32(bytes, 0x20)? as u64;
            e.shentsize = e.u16(bytes, 0x2e)? as usize;
            e.shnum = e.u16(bytes, 0x30)? as usize;
        }
        if e.shnum > 0 && e.shentsize < if wide { 64 } else { 40 } {
            bail!("ELF section headers of {} bytes are too small", e.shentsize);
        }
        Ok(e)
    }

    fn section(&self, i: usize) -> Result<Section> {
        if i >= self.shnum {
            bail!("ELF section {i} does not exist ({} sections)", self.shnum);
        }
        let at = self.shoff as usize + i * self.shentsize;
        let b = self.bytes;
        Ok(if self.wide {
            Section {
                kind: self.u32(b, at + 4)?,
                offset: self.u64(b, at + 24)?,
                size: self.u64(b, at + 32)?,
                link: self.u32(b, at + 40)?,
                info: self.u32(b, at + 44)?,
            }
        } else {
            Section {
                kind: self.u32(b, at + 4)?,
                offset: self.u32(b, at + 16)? as u64,
                size: self.u32(b, at + 20)? as u64,
                link: self.u32(b, at + 24)?,
                info: self.u32(b, at + 28)?,
            }
        })
    }

    fn slice(&self, offset: u64, size: u64) -> Result<&'a [u8]> {
        let end = offset.checked_add(size);
        match end {
            Some(end) if end <= self.bytes.len() as u64 => {
                Ok(&self.bytes[offset as usize..end as usize])
            }
            _ => bail!("ELF section at {offset}+{size} lies past the end of the file"),
        }
    }

    fn take<const N: usize>(&self, b: &[u8], at: usize) -> Result<[u8; N]> {
        match b.get(at..at + N) {
            Some(s) => Ok(s.try_into().expect("N bytes")),
            None => bail!("truncated ELF file (reading {N} bytes at {at})"),
        }
    }

    fn u16(&self, b: &[u8], at: usize) -> Result<u16> {
        let a = self.take(b, at)?;
        Ok(if self.big_endian {
            u16::from_be_bytes(a)
        } else {
            u16::from_le_bytes(a)
        })
    }

    fn u32(&self, b: &[u8], at: usize) -> Result<u32> {
        let a = self.take(b, at)?;
        Ok(if self.big_endian {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        })
    }

    fn u64(&self, b: &[u8], at: usize) -> Result<u64> {
        let a = self.take(b, at)?;
        Ok(if self.big_endian {
            u64::from_be_bytes(a)
        } else {
            u64::from_le_bytes(a)
        })
    }
}

/// The NUL-terminated string at `at` in a string table.
fn c_str(strings: &[u8], at: usize) -> Option<&str> {
    let s = strings.get(at..)?;
    let end = s.iter().position(|&b| b == 0)?;
    std::str::from_utf8(&s[..end]).ok()
}

/// The one-line refusal for a board whose glibc (`board`) is older than the agent needs.
pub fn too_old_message(cfg: &BoardConfig, board: GlibcVersion, needed: GlibcVersion) -> String {
    let agent = cfg
        .agent
        .as_deref()
        .map_or_else(|| "the agent".to_string(), |p| p.display().to_string());
    format!(
        "board {:?}: its glibc is {board} but the agent {agent} needs GLIBC_{needed}; build an \
         agent for glibc 2.28 and newer with `{OLD_GLIBC_BUILD}` and set `agent` in boards.toml \
         to the binary it writes",
        cfg.name
    )
}

/// Fails when the board's glibc is older than what `agent` (the binary's bytes) requires. An
/// agent that requires no glibc version, or a board whose glibc version cannot be read (musl, no
/// `ldd`), passes: the agent's own start then says what is wrong.
///
/// # Errors
/// The board's glibc is too old (one line, naming both versions and [`OLD_GLIBC_BUILD`]), or
/// the remote command could not be run.
pub fn check_board_glibc(conn: &SshConn, cfg: &BoardConfig, agent: &[u8]) -> Result<()> {
    let Ok(Some(needed)) = elf_max_glibc(agent) else {
        return Ok(());
    };
    let (_, out, _) =
        conn.exec("ldd --version 2>&1 | head -n 1; getconf GNU_LIBC_VERSION 2>/dev/null")?;
    match parse_ldd_version(&out) {
        Some(board) if board < needed => bail!("{}", too_old_message(cfg, board, needed)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> GlibcVersion {
        s.parse().unwrap()
    }

    #[test]
    fn versions_order_numerically() {
        assert!(v("2.9") < v("2.28"));
        assert!(v("2.2.5") < v("2.3"));
        assert_eq!(v("2.28").to_string(), "2.28");
        assert_eq!(v("2.2.5").to_string(), "2.2.5");
        assert!("2".parse::<GlibcVersion>().is_err());
        assert!("PRIVATE".parse::<GlibcVersion>().is_err());
    }

    /// Real first lines of `ldd --version` and `getconf GNU_LIBC_VERSION` on several systems.
    #[test]
    fn reads_ldd_and_getconf_output() {
        let debian = "ldd (Debian GLIBC 2.36-9+deb12u4) 2.36\nCopyright (C) 2022 Free Software \
                      Foundation, Inc.\nWritten by Roland McGrath and Ulrich Drepper.\n";
        assert_eq!(parse_ldd_version(debian), Some(v("2.36")));
        let ubuntu = "ldd (Ubuntu GLIBC 2.35-0ubuntu3.8) 2.35\n";
        assert_eq!(parse_ldd_version(ubuntu), Some(v("2.35")));
        // Buildroot / Yocto images of RK3588 boards.
        assert_eq!(parse_ldd_version("ldd (GNU libc) 2.28\n"), Some(v("2.28")));
        assert_eq!(parse_ldd_version("glibc 2.31\n"), Some(v("2.31")));
        // No ldd, then getconf's answer on the second line.
        assert_eq!(
            parse_ldd_version("sh: 1: ldd: not found\nglibc 2.31\n"),
            Some(v("2.31"))
        );
        assert_eq!(
            parse_ldd_version("musl libc (aarch64)\nVersion 1.2.4\n"),
            None
        );
        assert_eq!(parse_ldd_version(""), None);
        assert_eq!(parse_ldd_version("sh: 1: ldd: not found\n"), None);
    }

    /// A minimal ELF with a `.dynstr` and a `.gnu.version_r` needing `needs` from libc.so.6 and
    /// `GLIBC_2.99` from a second library, in the given class and byte order.
    fn tiny_elf(wide: bool, big_endian: bool, needs: &[&str]) -> Vec<u8> {
        let put16 = |b: &mut Vec<u8>, x: u16| {
            b.extend(if big_endian {
                x.to_be_bytes()
            } else {
                x.to_le_bytes()
            })
        };
        let put32 = |b: &mut Vec<u8>, x: u32| {
            b.extend(if big_endian {
                x.to_be_bytes()
            } else {
                x.to_le_bytes()
            })
        };
        let put_word = |b: &mut Vec<u8>, x: u64| {
            if wide {
                b.extend(if big_endian {
                    x.to_be_bytes()
                } else {
                    x.to_le_bytes()
                })
            } else {
                put32(b, x as u32)
            }
        };
        // .dynstr
        let mut strs = vec![0u8];
        let mut name = |s: &str| {
            let at = strs.len() as u32;
            strs.extend(s.as_bytes());
            strs.push(0);
            at
        };
        let libc = name("libc.so.6");
        let libm = name("libother.so.1");
        let need_names: Vec<u32> = needs.iter().map(|n| name(n)).collect();
        let other = name("GLIBC_2.99");
        // .gnu.version_r: two Verneed entries, each followed by its Vernaux entries.
        let mut vr = Vec::new();
        let verneed = |vr: &mut Vec<u8>, file: u32, names: &[u32], last: bool| {
            put16(vr, 1);
            put16(vr, names.len() as u16);
            put32(vr, file);
            put32(vr, 16);
            put32(
                vr,
                if last {
                    0
                } else {
                    16 + 16 * names.len() as u32
                },
            );
            for (i, &n) in names.iter().enumerate() {
                put32(vr, 0x0d69_6914);
                put16(vr, 0);
                put16(vr, 2 + i as u16);
                put32(vr, n);
                put32(vr, if i + 1 == names.len() { 0 } else { 16 });
            }
        };
        verneed(&mut vr, libc, &need_names, false);
        verneed(&mut vr, libm, &[other], true);
        let ehsize = if wide { 64 } else { 52 };
        let shentsize = if wide { 64 } else { 40 };
        let strs_off = ehsize as u64;
        let vr_off = strs_off + strs.len() as u64;
        let shoff = vr_off + vr.len() as u64;
        let mut b = Vec::new();
        b.extend(b"\x7fELF");
        b.push(if wide { 2 } else { 1 });
        b.push(if big_endian { 2 } else { 1 });
        b.push(1);
        b.resize(16, 0);
        put16(&mut b, 3); // ET_DYN
        put16(&mut b, 0xb7); // EM_AARCH64
        put32(&mut b, 1);
        put_word(&mut b, 0); // entry
        put_word(&mut b, 0); // phoff
        put_word(&mut b, shoff);
        put32(&mut b, 0); // flags
        put16(&mut b, ehsize);
        put16(&mut b, 0);
        put16(&mut b, 0);
        put16(&mut b, shentsize);
        put16(&mut b, 3); // null, .dynstr, .gnu.version_r
        put16(&mut b, 0);
        assert_eq!(b.len(), ehsize as usize);
        b.extend(&strs);
        b.extend(&vr);
        let section = |b: &mut Vec<u8>, kind: u32, off: u64, size: u64, link: u32, info: u32| {
            let start = b.len();
            put32(b, 0);
            put32(b, kind);
            put_word(b, 0); // flags
            put_word(b, 0); // addr
            put_word(b, off);
            put_word(b, size);
            put32(b, link);
            put32(b, info);
            put_word(b, 1);
            put_word(b, 0);
            assert_eq!(b.len() - start, shentsize as usize);
        };
        section(&mut b, 0, 0, 0, 0, 0);
        section(&mut b, 3, strs_off, strs.len() as u64, 0, 0); // SHT_STRTAB
        section(&mut b, SHT_GNU_VERNEED, vr_off, vr.len() as u64, 1, 2);
        b
    }

    #[test]
    fn reads_the_highest_glibc_need_of_a_tiny_elf() {
        // Every library's GLIBC_ needs count (libm and libpthread are glibc too), so the second
        // library's GLIBC_2.99 wins; GLIBC_PRIVATE is no version; the order does not matter.
        let needs = ["GLIBC_2.17", "GLIBC_2.34", "GLIBC_PRIVATE", "GLIBC_2.2.5"];
        for (wide, big) in [(true, false), (false, false), (true, true), (false, true)] {
            let elf = tiny_elf(wide, big, &needs);
            assert_eq!(
                elf_max_glibc(&elf).unwrap(),
                Some(v("2.99")),
                "wide {wide} big-endian {big}"
            );
        }
        let elf = tiny_elf(true, false, &["GLIBC_2.17"]);
        let e = elf_max_glibc(&elf[..elf.len() - 40]).unwrap_err();
        assert!(e.to_string().starts_with("truncated ELF file"), "{e}");
        assert!(elf_max_glibc(b"#!/bin/sh\necho not an agent\n").is_err());
    }

    /// The test binary itself: its glibc needs agree with `readelf -V` (binutils), read
    /// independently.
    #[test]
    fn reads_a_real_binary_like_readelf() {
        let exe = std::env::current_exe().unwrap();
        let ours = elf_max_glibc(&std::fs::read(&exe).unwrap()).unwrap();
        let out = std::process::Command::new("readelf")
            .arg("-V")
            .arg(&exe)
            .output()
            .expect("readelf (apt binutils)");
        let text = String::from_utf8_lossy(&out.stdout);
        let theirs = text
            .split_whitespace()
            .filter_map(|w| w.strip_prefix("GLIBC_")?.parse::<GlibcVersion>().ok())
            .max();
        assert!(theirs.is_some(), "readelf found no GLIBC_ needs: {text}");
        assert_eq!(ours, theirs);
    }

    #[test]
    fn the_refusal_names_both_versions_and_the_build() {
        let mut cfg = BoardConfig::local(Some("target/aarch64/shiftnas-agent".into()));
        cfg.name = "rk1".into();
        let m = too_old_message(&cfg, v("2.31"), v("2.34"));
        assert!(!m.contains('\n'));
        assert!(m.contains("board \"rk1\""), "{m}");
        assert!(
            m.contains("glibc is 2.31") && m.contains("GLIBC_2.34"),
            "{m}"
        );
        assert!(m.contains("scripts/build-agent-aarch64"), "{m}");
    }
}
