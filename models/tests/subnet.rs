//! A subnet built from supernet weights computes what the supernet computes for that arch in
//! eval mode: BN folding and the channel split are checked against the supernet's own forward.

use candle_core::{DType, Device, Tensor};
use shiftnas_models::subnet::Subnet;
use shiftnas_models::{Space, Supernet};

#[test]
fn subnet_from_supernet_matches_supernet_eval_forward() {
    let device = Device::Cpu;
    let space = Space::tiny();
    let supernet = Supernet::new(&space, &device, 3).unwrap();
    for arch in [
        "01230123012301230123",
        "33333333333333333333",
        "21012020202300003233",
    ] {
        let arch = space.parse_arch(arch).unwrap();
        // Non-trivial running statistics: calibrate on random images first.
        let x = Tensor::randn(0f32, 1.0, (8, 1, 28, 28), &device).unwrap();
        supernet
            .calibrate_bn(
                &arch,
                [Ok(x.clone())],
                shiftnas_models::BnCalibration::Exact,
            )
            .unwrap();
        let subnet =
            Subnet::from_tensors(&space, &arch, &supernet.arch_tensors(&arch).unwrap()).unwrap();
        let want = supernet.forward_t(&x, &arch, false).unwrap();
        let got = subnet.forward(&x).unwrap();
        let max_abs = |t: Tensor| -> f64 {
            t.abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap()
                .to_scalar()
                .unwrap()
        };
        let scale = max_abs(want.clone());
        let diff = max_abs((want - got).unwrap());
        // Relative to the logits' scale: folding moves the BN division into the conv weights, so
        // a channel with a tiny variance amplifies float32 rounding by 1/sqrt(var + eps) on both
        // sides differently; 120 BNs in series (all-Xception) reach ~1e-4 absolute on O(1) logits.
        assert!(
            diff <= 1e-4 * scale.max(1.0),
            "arch {arch}: max |supernet − subnet| = {diff} (logits up to {scale})"
        );
    }
}
