//! A subnet built from supernet weights computes what the supernet computes for that arch in
//! eval mode: BN folding and the channel split are checked against the supernet's own forward.

mod common;

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal};
use shiftnas_models::subnet::Subnet;
use shiftnas_models::{Space, Supernet};

/// Seeded N(0, 1) images, so a failure reproduces.
fn images(space: &Space, b: usize, seed: u64) -> Tensor {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = b * space.input_channels * space.input_size * space.input_size;
    let v: Vec<f32> = (0..n).map(|_| StandardNormal.sample(&mut rng)).collect();
    let (c, s) = (space.input_channels, space.input_size);
    Tensor::from_vec(v, (b, c, s, s), &Device::Cpu).unwrap()
}

fn max_abs(t: &Tensor) -> f64 {
    t.abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_scalar()
        .unwrap()
}

#[test]
fn subnet_from_supernet_matches_supernet_eval_forward() {
    let device = Device::Cpu;
    let space = Space::tiny();
    let supernet = Supernet::new(&space, &device, 3).unwrap();
    for (seed, arch) in [
        "01230123012301230123",
        "33333333333333333333",
        "21012020202300003233",
    ]
    .into_iter()
    .enumerate()
    {
        let arch = space.parse_arch(arch).unwrap();
        // Non-trivial running statistics: calibrate on random images first.
        let x = images(&space, 8, seed as u64);
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
        let exact = common::subnet_f64(&subnet, &x);
        let f = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
        // The folded f32 subnet's own distance from exact measures how ill-conditioned this arch
        // is in f32 (tiny BN variances amplify rounding; 120 BNs in series for all-Xception).
        // The supernet, unfolded, must land as close to exact as that, up to a small factor
        // (measured 1.1–1.5×); a folding or wiring mistake is off by the logits' own size.
        let drift = max_abs(&(f(&got) - &exact).unwrap());
        let off = max_abs(&(f(&want) - &exact).unwrap());
        assert!(
            off <= (4.0 * drift).max(1e-5),
            "arch {arch}: supernet is {off} from the exact folded net, the f32 subnet {drift}"
        );
    }
}
