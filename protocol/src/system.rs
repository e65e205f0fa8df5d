//! What the agent reports about the board: its identity ([`BoardInfo`]) and the clock/thermal
//! state around a measurement ([`SystemSnapshot`]). Missing `/sys` files give empty lists or
//! `None`, never errors (VMs and containers have none).

use serde::{Deserialize, Serialize};

use crate::bench::Backend;

/// One CPU core's static description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoreInfo {
    /// Logical CPU number (`cpuN`).
    pub cpu: usize,
    /// Microarchitecture name from `/proc/cpuinfo` (`Cortex-A76`, or the x86 model name), if known.
    pub model: Option<String>,
    /// `cpu_capacity` (arm64 only; 1024 for the biggest cores).
    pub capacity: Option<u32>,
    /// `cpufreq/cpuinfo_max_freq`.
    pub max_freq_khz: Option<u64>,
    /// A big core: highest capacity (or highest max frequency) on a heterogeneous board; all cores
    /// count as big on a homogeneous one.
    pub big: bool,
}

/// The board's identity: what a latency number depends on besides the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoardInfo {
    /// CPU model, e.g. `4x Cortex-A55 + 4x Cortex-A76` or `AMD EPYC 7B13`.
    pub cpu_model: String,
    /// Machine architecture (`uname -m`), e.g. `aarch64`.
    pub arch: String,
    /// Every online core.
    pub cores: Vec<CoreInfo>,
    /// Kernel release and version (`uname -r` and `-v`).
    pub kernel: String,
    /// Distinct cpufreq governors in use, sorted (empty without cpufreq).
    pub governors: Vec<String>,
    /// The runtime the agent would use (`none` when no library was found).
    pub backend: Backend,
    /// Why no runtime could be loaded, when `backend.name` is `none`.
    pub backend_error: Option<String>,
    /// The agent's crate version.
    pub agent_version: String,
    /// The agent's protocol version.
    pub protocol_version: u32,
}

impl BoardInfo {
    /// The key latency caches use: CPU model, kernel and runtime name + version.
    ///
    /// Two boards with the same fingerprint are expected to give the same latency for the same
    /// model and [`crate::BenchSpec`].
    pub fn fingerprint(&self) -> String {
        format!(
            "{} | {} | {} {}",
            self.cpu_model, self.kernel, self.backend.name, self.backend.version
        )
    }

    /// The big cores' CPU numbers (e.g. `[4, 5, 6, 7]` on an RK3588).
    pub fn big_cores(&self) -> Vec<usize> {
        self.cores.iter().filter(|c| c.big).map(|c| c.cpu).collect()
    }
}

/// One core's clock state at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoreState {
    /// Logical CPU number.
    pub cpu: usize,
    /// `cpufreq/scaling_governor`, if readable.
    pub governor: Option<String>,
    /// `cpufreq/scaling_cur_freq`, if readable.
    pub freq_khz: Option<u64>,
}

/// One thermal zone's reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThermalZone {
    /// Zone index (`thermal_zoneN`); indices can change between kernels, so match by `kind`.
    pub zone: u32,
    /// The zone's `type` file, e.g. `bigcore0-thermal`, `soc-thermal`.
    pub kind: String,
    /// Temperature in °C (`temp` is in millidegrees).
    pub temp_c: f64,
}

/// One devfreq device's clock state (`/sys/class/devfreq/<name>/`): the NPU and the DDR
/// controller (`dmc`) on the RK3588, whose clocks move NPU latency as CPU clocks move CPU latency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DevfreqState {
    /// The device's directory name, e.g. `fdab0000.npu`, `dmc`.
    pub name: String,
    /// `governor`, if readable (`userspace` or `performance` keep the clock fixed).
    pub governor: Option<String>,
    /// `cur_freq` in Hz.
    pub cur_hz: Option<u64>,
    /// `min_freq` in Hz.
    pub min_hz: Option<u64>,
    /// `max_freq` in Hz.
    pub max_hz: Option<u64>,
}

/// Governors, frequencies and temperatures at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SystemSnapshot {
    /// The cores the measurement uses (all cores when not pinned).
    pub cores: Vec<CoreState>,
    /// Every thermal zone.
    pub thermal: Vec<ThermalZone>,
    /// NPU and DDR devfreq devices (names containing `npu` or `dmc`), by name; empty where there
    /// are none (x86, VMs) and in reports of agents that did not read them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devfreq: Vec<DevfreqState>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::BackendName;

    #[test]
    fn fingerprint_names_cpu_kernel_and_runtime() {
        let info = BoardInfo {
            cpu_model: "4x Cortex-A55 + 4x Cortex-A76".into(),
            arch: "aarch64".into(),
            cores: (0..8)
                .map(|cpu| CoreInfo {
                    cpu,
                    model: None,
                    capacity: None,
                    max_freq_khz: None,
                    big: cpu >= 4,
                })
                .collect(),
            kernel: "5.10.160-rockchip".into(),
            governors: vec!["userspace".into()],
            backend: Backend {
                name: BackendName::Ort,
                version: "1.23.2".into(),
            },
            backend_error: None,
            agent_version: "0.1.0".into(),
            protocol_version: 1,
        };
        let fp = info.fingerprint();
        assert_eq!(
            fp,
            "4x Cortex-A55 + 4x Cortex-A76 | 5.10.160-rockchip | ort 1.23.2"
        );
        assert_eq!(info.big_cores(), vec![4, 5, 6, 7]);
        let line = serde_json::to_string(&crate::Response::Info(info.clone())).unwrap();
        assert!(line.starts_with(r#"{"type":"info","cpu_model":"#), "{line}");
        assert_eq!(
            serde_json::from_str::<crate::Response>(&line).unwrap(),
            crate::Response::Info(info)
        );
    }
}
