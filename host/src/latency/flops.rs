//! The `flops` latency source: multiply-adds of the subnet in millions, a proxy that needs no board.

use anyhow::Result;
use shiftnas_models::cost::arch_flops;
use shiftnas_models::{Arch, Space};

use super::{Estimate, LatencySource};

/// Latency proxy: MFLOPs (multiply-adds / 10⁶) of each arch's subnet.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlopsSource;

impl LatencySource for FlopsSource {
    fn describe(&self) -> String {
        "flops".into()
    }

    fn unit(&self) -> &'static str {
        "MFLOPs"
    }

    fn estimates(&mut self, space: &Space, archs: &[Arch]) -> Result<Vec<Estimate>> {
        Ok(archs
            .iter()
            .map(|a| Estimate::point(arch_flops(space, a) as f64 / 1e6))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flops_source_is_mflops_of_the_cost_model() {
        let space = Space::by_name("tiny").unwrap();
        let arch = Arch::new(vec![0; space.num_blocks()]);
        let v = FlopsSource
            .latencies(&space, std::slice::from_ref(&arch))
            .unwrap();
        assert_eq!(v[0], arch_flops(&space, &arch) as f64 / 1e6);
        let e = FlopsSource.estimates(&space, &[arch]).unwrap();
        assert_eq!(e, vec![Estimate::point(v[0])], "a proxy has no interval");
        assert_eq!(FlopsSource.describe(), "flops");
        assert_eq!(FlopsSource.unit(), "MFLOPs");
    }
}
