//! The folded inference path against the supernet's eval-mode forward, and its BN calibration
//! against the supernet's, on every block choice at every stride (one arch per choice runs it in
//! every block, stride 1 and 2) of both families.
//!
//! Tolerance: both compute in f32; they differ in the order of sums (gemm blocking, channels-last
//! vs NCHW) and in the fold (`W·γ/√(σ²+ε)` rounded once instead of BN after the conv). The
//! affine-free supernet amplifies rounding through its ReLUs (see [`Subnet::random`]): measured
//! relative L2 on the logits is 1e-5 to 3e-5, and 2.6e-4 on the all-Xception spos-cifar arch (60
//! ReLUs), where the folded candle subnet of the ONNX export is 2.1e-4 from the supernet too. So
//! the bounds are 1e-3 absolute and at most twice the candle subnet's own difference (+2e-5),
//! while a wiring error (a wrong channel, stride, padding or branch order) is O(1).

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shiftnas_models::inference::{Inference, calibrate_bn};
use shiftnas_models::subnet::Subnet;
use shiftnas_models::{Arch, BnCalibration, Space, Supernet};

const TOL: f64 = 1e-3;

fn images(space: &Space, b: usize, seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = b * space.input_channels * space.input_size * space.input_size;
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-2.0f32..2.0)).collect();
    Tensor::from_vec(
        v,
        (b, space.input_channels, space.input_size, space.input_size),
        &Device::Cpu,
    )
    .unwrap()
}

/// Relative L2 difference of the logits and how many rows agree on the top class.
fn compare(got: &[f32], want: &[f32], classes: usize) -> (f64, usize) {
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(a, b)| f64::from(a - b).powi(2))
        .sum();
    let den: f64 = want.iter().map(|b| f64::from(*b).powi(2)).sum();
    let argmax = |r: &[f32]| (0..r.len()).max_by(|&i, &j| r[i].total_cmp(&r[j])).unwrap();
    let agree = got
        .chunks(classes)
        .zip(want.chunks(classes))
        .filter(|(a, b)| argmax(a) == argmax(b))
        .count();
    ((num / den).sqrt(), agree)
}

fn check_space(space: &Space, extra: &[&str]) {
    let net = Supernet::new(space, &Device::Cpu, 7).unwrap();
    let n = space.num_blocks();
    let mut archs: Vec<String> = (0..space.choices.len())
        .map(|c| c.to_string().repeat(n))
        .collect();
    archs.extend(extra.iter().map(|s| s.to_string()));
    let x = images(space, 11, 1);
    for a in &archs {
        let arch: Arch = space.parse_arch(a).unwrap();
        // Calibrated statistics keep activations O(1), as in a search.
        let calib = (0..3).map(|i| Ok(images(space, 8, 100 + i)));
        net.calibrate_bn(&arch, calib, BnCalibration::Exact)
            .unwrap();
        let want = net.forward_t(&x, &arch, false).unwrap();
        let want: Vec<f32> = want.flatten_all().unwrap().to_vec1().unwrap();
        // 3 images per job: 11 images leave a partial last job.
        let inf = Inference::new(&net, &arch).unwrap().with_images_per_job(3);
        let got = inf.forward_tensor(&x).unwrap();
        assert_eq!(got.dims(), &[11, space.classes]);
        let got: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
        let (rel, agree) = compare(&got, &want, space.classes);
        // The same folded network in plain candle ops (the ONNX export's reference).
        let sub = Subnet::from_tensors(space, &arch, &net.arch_tensors(&arch).unwrap()).unwrap();
        let s: Vec<f32> = sub
            .forward(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let rel_fold = compare(&s, &want, space.classes).0;
        assert!(
            rel < TOL,
            "{} arch {a}: logits rel L2 {rel:.2e} > {TOL:.0e}",
            space.name
        );
        assert!(
            rel <= 2.0 * rel_fold + 2e-5,
            "{} arch {a}: logits rel L2 {rel:.2e}, the folded candle subnet's {rel_fold:.2e}",
            space.name
        );
        assert_eq!(
            agree,
            11,
            "{} arch {a}: top-1 differs on {} images",
            space.name,
            11 - agree
        );
    }
}

#[test]
fn matches_supernet_eval_on_every_choice_spos_cifar() {
    check_space(
        &Space::by_name("spos-cifar").unwrap(),
        &["21012020202300003233"],
    );
}

#[test]
fn matches_supernet_eval_on_every_choice_tiny() {
    check_space(&Space::by_name("tiny").unwrap(), &[]);
}

#[test]
fn matches_supernet_eval_on_every_choice_mbv2_tiny() {
    // Mixed kernels and expansions, residual and stride-2 blocks side by side.
    check_space(
        &Space::by_name("mbv2-tiny").unwrap(),
        &["0123450123450123450"],
    );
}

/// Every BN running statistic of `arch`'s path, by name.
fn statistics(net: &Supernet, arch: &Arch) -> Vec<(String, Vec<f32>)> {
    net.arch_tensors(arch)
        .unwrap()
        .into_iter()
        .filter(|(n, _)| n.contains(".running_"))
        .map(|(n, t)| (n, t.to_vec1().unwrap()))
        .collect()
}

/// The kernels' BN calibration leaves the statistics the supernet's training forward leaves, in
/// both modes, on every choice. Errors are relative: to the variance, and for a mean to its
/// magnitude plus its channel's standard deviation (the means of convs on centred inputs are ~0,
/// and their rounding scales with the spread). Both sides round the same sums in another order,
/// and the affine-free net amplifies that rounding with depth (see [`Subnet::random`]): measured
/// ≤ 3e-6 through block 9, then growing to 3.4e-4 at block 19 of the all-Xception arch (60 ReLUs,
/// as the logits' 2.6e-4 above). Bounds: 1e-5 for the stem and blocks 0–9, 1e-3 after them, while
/// a wiring error (a wrong channel, branch or statistic) is O(1).
fn check_calibration(space: &Space, extra: &[&str]) {
    let net = Supernet::new(space, &Device::Cpu, 3).unwrap();
    let n = space.num_blocks();
    let mut archs: Vec<String> = (0..space.choices.len())
        .map(|c| c.to_string().repeat(n))
        .collect();
    archs.extend(extra.iter().map(|s| s.to_string()));
    let batches = || (0..3).map(|i| Ok(images(space, 6, 200 + i)));
    for a in &archs {
        let arch: Arch = space.parse_arch(a).unwrap();
        for mode in [
            BnCalibration::Exact,
            BnCalibration::ResetEma { momentum: 0.1 },
        ] {
            net.calibrate_bn(&arch, batches(), mode).unwrap();
            let want = statistics(&net, &arch);
            calibrate_bn(&net, &arch, batches(), mode).unwrap();
            let got = statistics(&net, &arch);
            let want: std::collections::BTreeMap<_, _> = want.into_iter().collect();
            for (name, g) in &got {
                let w = &want[name];
                // A mean's scale is its channel's standard deviation.
                let var = &want[&name.replace(".running_mean", ".running_var")];
                for (i, (g, w)) in g.iter().zip(w).enumerate() {
                    let scale = if name.ends_with(".running_mean") {
                        w.abs() + var[i].sqrt()
                    } else {
                        w.abs()
                    };
                    let deep = name
                        .strip_prefix("blocks.")
                        .and_then(|r| r.split('.').next()?.parse::<usize>().ok())
                        .is_none_or(|i| i >= 10)
                        && !name.starts_with("stem.");
                    let tol = if deep { TOL as f32 } else { 1e-5 };
                    assert!(
                        (g - w).abs() <= tol * scale,
                        "{} arch {a} {mode:?}: {name}[{i}] = {g}, the supernet's {w}",
                        space.name
                    );
                }
            }
        }
    }
}

#[test]
fn calibration_matches_the_supernet_on_every_choice_tiny() {
    check_calibration(&Space::by_name("tiny").unwrap(), &[]);
}

#[test]
fn calibration_matches_the_supernet_on_every_choice_mbv2_tiny() {
    check_calibration(
        &Space::by_name("mbv2-tiny").unwrap(),
        &["0123450123450123450"],
    );
}

#[test]
fn wrong_input_size_names_the_arch() {
    let space = Space::by_name("tiny").unwrap();
    let net = Supernet::new(&space, &Device::Cpu, 0).unwrap();
    let arch: Arch = space.parse_arch(&"0".repeat(space.num_blocks())).unwrap();
    let inf = Inference::new(&net, &arch).unwrap();
    let err = inf.forward(&[0.0; 10], 1).unwrap_err().to_string();
    assert!(
        err.contains(&arch.to_string()) && err.contains("expects 1 images"),
        "{err}"
    );
}
