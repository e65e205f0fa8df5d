//! What the board is and how its clocks and temperatures stand: `/proc/cpuinfo`,
//! `/sys/devices/system/cpu/cpu*/{cpu_capacity,cpufreq/*}`, `/sys/class/thermal/thermal_zone*`
//! and the NPU and DDR devfreq devices in `/sys/class/devfreq/*`.
//!
//! Every reader takes a [`SysRoot`] so tests can point it at fixtures. Missing files give empty
//! lists or `None`, never errors: x86 VMs and containers have no cpufreq or thermal zones.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use shiftnas_protocol::{CoreInfo, CoreState, DevfreqState, SystemSnapshot, ThermalZone};

/// Where the agent reads system files from (`/` on a real board).
#[derive(Debug, Clone)]
pub struct SysRoot {
    /// The `/proc/cpuinfo` file.
    pub cpuinfo: PathBuf,
    /// The `/sys` directory.
    pub sys: PathBuf,
}

impl Default for SysRoot {
    fn default() -> Self {
        SysRoot {
            cpuinfo: "/proc/cpuinfo".into(),
            sys: "/sys".into(),
        }
    }
}

impl SysRoot {
    fn cpu_dir(&self, cpu: usize) -> PathBuf {
        self.sys.join(format!("devices/system/cpu/cpu{cpu}"))
    }
}

fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn read_num<T: std::str::FromStr>(p: &Path) -> Option<T> {
    read_trim(p)?.parse().ok()
}

/// Names ARM CPU part numbers (`CPU part` in `/proc/cpuinfo`, implementer 0x41).
pub fn arm_part_name(part: u32) -> Option<&'static str> {
    Some(match part {
        0xd03 => "Cortex-A53",
        0xd04 => "Cortex-A35",
        0xd05 => "Cortex-A55",
        0xd07 => "Cortex-A57",
        0xd08 => "Cortex-A72",
        0xd09 => "Cortex-A73",
        0xd0a => "Cortex-A75",
        0xd0b => "Cortex-A76",
        0xd0c => "Neoverse-N1",
        0xd0d => "Cortex-A77",
        0xd40 => "Neoverse-V1",
        0xd41 => "Cortex-A78",
        0xd44 => "Cortex-X1",
        0xd46 => "Cortex-A510",
        0xd47 => "Cortex-A710",
        0xd48 => "Cortex-X2",
        0xd49 => "Neoverse-N2",
        0xd4d => "Cortex-A715",
        0xd4e => "Cortex-X3",
        0xd4f => "Neoverse-V2",
        0xd80 => "Cortex-A520",
        0xd81 => "Cortex-A720",
        0xd82 => "Cortex-X4",
        _ => return None,
    })
}

/// Each processor's model from `/proc/cpuinfo` text: `model name` (x86), else the `CPU part`
/// name (ARM), else `None`. Keyed by CPU number.
pub fn parse_cpuinfo(text: &str) -> BTreeMap<usize, Option<String>> {
    let mut out = BTreeMap::new();
    for block in text.split("\n\n") {
        let mut cpu = None;
        let mut model_name = None;
        let mut part = None;
        let mut implementer = None;
        for line in block.lines() {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let (k, v) = (k.trim(), v.trim());
            match k {
                "processor" => cpu = v.parse::<usize>().ok(),
                "model name" => model_name = Some(v.to_string()),
                "CPU part" => part = u32::from_str_radix(v.trim_start_matches("0x"), 16).ok(),
                "CPU implementer" => {
                    implementer = u32::from_str_radix(v.trim_start_matches("0x"), 16).ok()
                }
                _ => {}
            }
        }
        let Some(cpu) = cpu else { continue };
        let arm = part.map(|p| match (implementer, arm_part_name(p)) {
            (Some(0x41) | None, Some(name)) => name.to_string(),
            (imp, _) => format!("part 0x{p:03x} (implementer 0x{:02x})", imp.unwrap_or(0)),
        });
        // On ARM, "model name" is often the generic "ARMv8 Processor rev 0 (v8l)": prefer the part.
        out.insert(cpu, arm.or(model_name));
    }
    out
}

/// Summarises per-core models, e.g. `4x Cortex-A55 + 4x Cortex-A76`, in order of first CPU.
pub fn summarise_models(models: &BTreeMap<usize, Option<String>>) -> String {
    let mut groups: Vec<(String, usize)> = Vec::new();
    for m in models.values() {
        let name = m.clone().unwrap_or_else(|| "unknown CPU".into());
        match groups.iter_mut().find(|(n, _)| *n == name) {
            Some(g) => g.1 += 1,
            None => groups.push((name, 1)),
        }
    }
    if groups.is_empty() {
        return "unknown CPU".into();
    }
    groups
        .iter()
        .map(|(n, c)| format!("{c}x {n}"))
        .collect::<Vec<_>>()
        .join(" + ")
}

/// CPU numbers found under `/sys/devices/system/cpu` (used when cpuinfo lists none).
fn sysfs_cpus(root: &SysRoot) -> Vec<usize> {
    let mut cpus: Vec<usize> = std::fs::read_dir(root.sys.join("devices/system/cpu"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("cpu")?.parse().ok())
        .collect();
    cpus.sort_unstable();
    cpus
}

/// Every core with its model, capacity, max frequency and big/little role, and the CPU summary.
pub fn cores(root: &SysRoot) -> (Vec<CoreInfo>, String) {
    let text = std::fs::read_to_string(&root.cpuinfo).unwrap_or_default();
    let mut models = parse_cpuinfo(&text);
    if models.is_empty() {
        models = sysfs_cpus(root).into_iter().map(|c| (c, None)).collect();
    }
    let mut cores: Vec<CoreInfo> = models
        .iter()
        .map(|(&cpu, model)| CoreInfo {
            cpu,
            model: model.clone(),
            capacity: read_num(&root.cpu_dir(cpu).join("cpu_capacity")),
            max_freq_khz: read_num(&root.cpu_dir(cpu).join("cpufreq/cpuinfo_max_freq")),
            big: true,
        })
        .collect();
    mark_big(&mut cores);
    (cores, summarise_models(&models))
}

/// Marks the big cores: highest `cpu_capacity` when every core has one, else highest max
/// frequency; on a homogeneous board every core is big.
pub fn mark_big(cores: &mut [CoreInfo]) {
    let key: Option<Vec<u64>> = if cores.iter().all(|c| c.capacity.is_some()) {
        Some(
            cores
                .iter()
                .map(|c| c.capacity.unwrap_or(0) as u64)
                .collect(),
        )
    } else if cores.iter().all(|c| c.max_freq_khz.is_some()) {
        Some(cores.iter().map(|c| c.max_freq_khz.unwrap_or(0)).collect())
    } else {
        None
    };
    let Some(key) = key else {
        cores.iter_mut().for_each(|c| c.big = true);
        return;
    };
    let max = key.iter().copied().max().unwrap_or(0);
    for (c, k) in cores.iter_mut().zip(key) {
        c.big = k == max;
    }
}

/// Governor and current frequency of each of `cpus`.
pub fn core_states(root: &SysRoot, cpus: &[usize]) -> Vec<CoreState> {
    cpus.iter()
        .map(|&cpu| {
            let d = root.cpu_dir(cpu).join("cpufreq");
            CoreState {
                cpu,
                governor: read_trim(&d.join("scaling_governor")),
                freq_khz: read_num(&d.join("scaling_cur_freq")),
            }
        })
        .collect()
}

/// Every readable thermal zone, by index.
pub fn thermal_zones(root: &SysRoot) -> Vec<ThermalZone> {
    let mut zones: Vec<ThermalZone> = std::fs::read_dir(root.sys.join("class/thermal"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let zone: u32 = e
                .file_name()
                .to_str()?
                .strip_prefix("thermal_zone")?
                .parse()
                .ok()?;
            let millideg: f64 = read_num(&e.path().join("temp"))?;
            let kind =
                read_trim(&e.path().join("type")).unwrap_or_else(|| format!("thermal_zone{zone}"));
            Some(ThermalZone {
                zone,
                kind,
                temp_c: millideg / 1000.0,
            })
        })
        .collect();
    zones.sort_by_key(|z| z.zone);
    zones
}

/// The devfreq devices whose name contains `npu` or `dmc` (the RK3588's `fdab0000.npu` and `dmc`),
/// sorted by name.
pub fn devfreq(root: &SysRoot) -> Vec<DevfreqState> {
    let mut out: Vec<DevfreqState> = std::fs::read_dir(root.sys.join("class/devfreq"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let lower = name.to_ascii_lowercase();
            if !(lower.contains("npu") || lower.contains("dmc")) {
                return None;
            }
            let d = e.path();
            Some(DevfreqState {
                governor: read_trim(&d.join("governor")),
                cur_hz: read_num(&d.join("cur_freq")),
                min_hz: read_num(&d.join("min_freq")),
                max_hz: read_num(&d.join("max_freq")),
                name,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Clocks of `cpus`, every thermal zone and the NPU/DDR devfreq devices, now.
pub fn snapshot(root: &SysRoot, cpus: &[usize]) -> SystemSnapshot {
    SystemSnapshot {
        cores: core_states(root, cpus),
        thermal: thermal_zones(root),
        devfreq: devfreq(root),
    }
}

/// Distinct governors of all cores, sorted.
pub fn governors(root: &SysRoot, cpus: &[usize]) -> Vec<String> {
    let mut g: Vec<String> = core_states(root, cpus)
        .into_iter()
        .filter_map(|s| s.governor)
        .collect();
    g.sort();
    g.dedup();
    g
}

/// `(machine, "release version")` from `uname`.
pub fn uname() -> (String, String) {
    // SAFETY: utsname is plain data; uname fills NUL-terminated fields.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return ("unknown".into(), "unknown".into());
        }
        let field = |f: &[libc::c_char]| {
            std::ffi::CStr::from_ptr(f.as_ptr())
                .to_string_lossy()
                .into_owned()
        };
        (
            field(&u.machine),
            format!("{} {}", field(&u.release), field(&u.version)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/agent")
            .join(name)
    }

    #[test]
    fn rk3588_cpuinfo_gives_four_a55_and_four_a76() {
        let text = std::fs::read_to_string(fixture("cpuinfo-rk3588")).unwrap();
        let models = parse_cpuinfo(&text);
        assert_eq!(models.len(), 8);
        assert_eq!(models[&0].as_deref(), Some("Cortex-A55"));
        assert_eq!(models[&7].as_deref(), Some("Cortex-A76"));
        assert_eq!(summarise_models(&models), "4x Cortex-A55 + 4x Cortex-A76");
    }

    #[test]
    fn x86_model_name() {
        let text = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(summarise_models(&parse_cpuinfo(text)), "2x AMD EPYC 7B13");
    }

    #[test]
    fn fake_sysfs_gives_big_cores_governors_and_zones() {
        let dir = tempfile::tempdir().unwrap();
        let sys = dir.path().join("sys");
        for cpu in 0..8usize {
            let d = sys.join(format!("devices/system/cpu/cpu{cpu}/cpufreq"));
            std::fs::create_dir_all(&d).unwrap();
            let cap = if cpu >= 4 { "1024" } else { "414" };
            std::fs::write(d.parent().unwrap().join("cpu_capacity"), cap).unwrap();
            std::fs::write(
                d.join("scaling_governor"),
                if cpu >= 4 {
                    "userspace\n"
                } else {
                    "schedutil\n"
                },
            )
            .unwrap();
            std::fs::write(d.join("scaling_cur_freq"), "2256000\n").unwrap();
        }
        for (i, (kind, t)) in [("soc-thermal", "45000"), ("bigcore0-thermal", "81500")]
            .iter()
            .enumerate()
        {
            let z = sys.join(format!("class/thermal/thermal_zone{i}"));
            std::fs::create_dir_all(&z).unwrap();
            std::fs::write(z.join("type"), kind).unwrap();
            std::fs::write(z.join("temp"), t).unwrap();
        }
        let root = SysRoot {
            cpuinfo: fixture("cpuinfo-rk3588"),
            sys,
        };
        let (cores, model) = cores(&root);
        assert_eq!(model, "4x Cortex-A55 + 4x Cortex-A76");
        assert_eq!(
            cores
                .iter()
                .filter(|c| c.big)
                .map(|c| c.cpu)
                .collect::<Vec<_>>(),
            vec![4, 5, 6, 7]
        );
        assert_eq!(
            governors(&root, &[0, 1, 2, 3, 4, 5, 6, 7]),
            vec!["schedutil", "userspace"]
        );
        let snap = snapshot(&root, &[4, 5]);
        assert_eq!(
            snap.cores[1],
            CoreState {
                cpu: 5,
                governor: Some("userspace".into()),
                freq_khz: Some(2256000)
            }
        );
        assert_eq!(snap.thermal[1].kind, "bigcore0-thermal");
        assert_eq!(snap.thermal[1].temp_c, 81.5);
        assert!(snap.devfreq.is_empty());
    }

    #[test]
    fn fake_devfreq_gives_npu_and_dmc_only() {
        let dir = tempfile::tempdir().unwrap();
        let sys = dir.path().join("sys");
        // The RK3588's NPU and DDR devices, the GPU (not read) and an NPU with unreadable files.
        for (name, files) in [
            (
                "fdab0000.npu",
                &[
                    ("governor", "userspace\n"),
                    ("cur_freq", "1000000000\n"),
                    ("min_freq", "300000000\n"),
                    ("max_freq", "1000000000\n"),
                ][..],
            ),
            (
                "dmc",
                &[("governor", "dmc_ondemand\n"), ("cur_freq", "2112000000\n")][..],
            ),
            ("fb000000.gpu", &[("governor", "simple_ondemand\n")][..]),
            ("npu-empty", &[][..]),
        ] {
            let d = sys.join("class/devfreq").join(name);
            std::fs::create_dir_all(&d).unwrap();
            for (f, v) in files {
                std::fs::write(d.join(f), v).unwrap();
            }
        }
        let root = SysRoot {
            cpuinfo: "/nonexistent/cpuinfo".into(),
            sys,
        };
        let snap = snapshot(&root, &[]);
        assert_eq!(
            snap.devfreq,
            vec![
                DevfreqState {
                    name: "dmc".into(),
                    governor: Some("dmc_ondemand".into()),
                    cur_hz: Some(2_112_000_000),
                    min_hz: None,
                    max_hz: None,
                },
                DevfreqState {
                    name: "fdab0000.npu".into(),
                    governor: Some("userspace".into()),
                    cur_hz: Some(1_000_000_000),
                    min_hz: Some(300_000_000),
                    max_hz: Some(1_000_000_000),
                },
                DevfreqState {
                    name: "npu-empty".into(),
                    governor: None,
                    cur_hz: None,
                    min_hz: None,
                    max_hz: None,
                },
            ]
        );
        // On the wire it is optional: a snapshot without it (an older agent) still parses.
        let old: SystemSnapshot = serde_json::from_str(r#"{"cores":[],"thermal":[]}"#).unwrap();
        assert!(old.devfreq.is_empty());
    }

    #[test]
    fn missing_files_are_empty_not_errors() {
        let root = SysRoot {
            cpuinfo: "/nonexistent/cpuinfo".into(),
            sys: "/nonexistent/sys".into(),
        };
        let snap = snapshot(&root, &[0, 1]);
        assert!(snap.thermal.is_empty());
        assert_eq!(snap.cores[0].governor, None);
        let (cores, model) = cores(&root);
        assert!(cores.is_empty());
        assert_eq!(model, "unknown CPU");
    }
}
