//! Training-loop tests on the embedded Fashion-MNIST subset and the `tiny` space.

use candle_core::Device;
use rand::SeedableRng;
use shiftnas_models::Arch;

use super::*;
use crate::data::{Augment, ConformOptions, DataSpec, Normalize};
use crate::run_dir::RunDir;

fn config(steps: u64, batch: usize, checkpoint_every: u64) -> TrainConfig {
    TrainConfig {
        space: "tiny".into(),
        data: DataSpec::BuiltinFashionMnist,
        steps,
        batch,
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 4e-5,
        label_smoothing: 0.1,
        seed: 3,
        checkpoint_every,
        log_every: 1,
        sampling: Sampling::Uniform,
        warmup_steps: 3,
        flops_bins: 10,
        proxy_size: 1000,
        conform: ConformOptions::default(),
        augment: Augment::NONE,
        normalize: Normalize {
            mean: vec![0.2867],
            std: vec![0.354],
        },
    }
}

fn data() -> PreparedData {
    let space = space_for("tiny", 10).unwrap();
    prepare_data(
        &DataSpec::BuiltinFashionMnist,
        &space,
        ConformOptions::default(),
        Some(1000),
        3,
    )
    .unwrap()
}

fn weights(net: &shiftnas_models::Supernet) -> Vec<(String, Vec<u32>)> {
    net.names()
        .map(|n| {
            let t = net
                .tensor(n)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            (n.to_string(), t.iter().map(|v| v.to_bits()).collect())
        })
        .collect()
}

#[test]
fn killed_and_resumed_run_matches_uninterrupted_bit_for_bit() {
    let data = data();
    let dir = tempfile::tempdir().unwrap();
    for sampling in [Sampling::Uniform, Sampling::FlopsBinned, Sampling::Fair] {
        let mut cfg = config(4, 4, 2);
        cfg.sampling = sampling;
        if sampling == Sampling::Fair {
            cfg.warmup_steps = 0;
        }
        cfg.augment = Augment {
            crop_padding: 2,
            flip: true,
            random_resized_crop: false,
        };
        let a = RunDir::create(&dir.path().join(format!("{sampling:?}-a"))).unwrap();
        let straight = weights(&train(&cfg, &data, &a, &Device::Cpu, &mut |_| {}).unwrap());

        // Interrupted after the checkpoint at step 2; everything in memory is dropped.
        let b = RunDir::create(&dir.path().join(format!("{sampling:?}-b"))).unwrap();
        drop(train_until(&cfg, &data, &b, &Device::Cpu, 2, &mut |_| {}).unwrap());
        let mut steps = Vec::new();
        let resumed = train(&cfg, &data, &b, &Device::Cpu, &mut |r| steps.push(r.step)).unwrap();
        assert_eq!(steps, [3, 4]);
        assert!(
            straight == weights(&resumed),
            "{sampling:?}: resumed weights differ"
        );
        assert!(b.resumable_checkpoint().is_some());
    }
}

/// The issue's target: a short run on the embedded data scores clearly above chance (10 %) for
/// a random arch (k5/k7 inherited, Xception mixed in during the warm-up). ~1 min on 2 cores.
#[test]
fn short_training_beats_chance_on_proxy() {
    let data = data();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(240, 64, 0);
    cfg.lr = 0.05;
    cfg.warmup_steps = 120;
    cfg.log_every = 40;
    let run = RunDir::create(&dir.path().join("r")).unwrap();
    let net = train(&cfg, &data, &run, &Device::Cpu, &mut |r| eprintln!("{r:?}")).unwrap();
    let arch = Arch::random(
        net.space().num_blocks(),
        4,
        &mut rand_chacha::ChaCha8Rng::seed_from_u64(0),
    );
    let bn = BnSource {
        data: &data.pair.train,
        indices: &data.splits.train,
        mode: BnMode::Exact,
        images: 1024,
        seed: 0,
    };
    let acc = evaluate(
        &net,
        &arch,
        &data.pair.train,
        &data.splits.proxy,
        &cfg.normalize,
        bn,
        256,
    )
    .unwrap();
    eprintln!("{acc:?}");
    assert!(acc.top1 >= 0.5, "{acc:?}");
}

#[test]
fn gradient_descent_on_one_batch_lowers_its_loss() {
    let data = data();
    let space = space_for("tiny", 10).unwrap();
    let net = shiftnas_models::Supernet::new(&space, &Device::Cpu, 0).unwrap();
    let arch = Arch::uniform(space.num_blocks(), 0);
    let norm = Normalize {
        mean: vec![0.2867],
        std: vec![0.354],
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let b = crate::data::batch::assemble(
        &data.pair.train,
        &data.splits.train[..32],
        Augment::NONE,
        &norm,
        &mut rng,
        &Device::Cpu,
    )
    .unwrap();
    let mut sgd = Sgd::new(SgdConfig {
        lr: 0.05,
        momentum: 0.0,
        weight_decay: 0.0,
    });
    let mut losses = Vec::new();
    for _ in 0..8 {
        let (loss, g) = batch_loss_and_grads(&net, &arch, &b.images, &b.labels, 0.0).unwrap();
        losses.push(loss);
        sgd.step(&g).unwrap();
    }
    eprintln!("{losses:?}");
    assert!(losses[7] < losses[0] - 0.3, "{losses:?}");
}

#[test]
fn warmup_starts_on_k3_and_widens_to_uniform() {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    let space = space_for("tiny", 10).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    // Share of genes per choice over 400 archs of step `step` (warm-up 100).
    let mut shares = |step: u64| {
        let mut count = [0usize; 4];
        for _ in 0..400 {
            for &g in crate::train::warmup_arch(step, 100, &space, &mut rng).genes() {
                count[g as usize] += 1;
            }
        }
        count.map(|c| c as f64 / 8000.0)
    };
    assert_eq!(shares(0), [1.0, 0.0, 0.0, 0.0]);
    // Halfway, a block is Xception with probability 1/2 · 1/4; k5/k7 only come by inheritance.
    let mid = shares(50);
    assert_eq!((mid[1], mid[2]), (0.0, 0.0));
    assert!((mid[3] - 0.125).abs() < 0.02, "{mid:?}");
    for s in shares(100) {
        assert!((s - 0.25).abs() < 0.02, "{s}");
    }
    // Without warm-up the stream is exactly SPOS's uniform sampling.
    let (mut a, mut b) = (ChaCha8Rng::seed_from_u64(9), ChaCha8Rng::seed_from_u64(9));
    assert_eq!(
        crate::train::warmup_arch(0, 0, &space, &mut a),
        shiftnas_models::Arch::random(20, 4, &mut b)
    );
}

/// Step numbers of the lines of a run's `log.jsonl`.
fn logged_steps(run: &RunDir) -> Vec<u64> {
    std::fs::read_to_string(run.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<StepReport>(l).unwrap().step)
        .collect()
}

#[test]
fn resume_logs_every_step_once() {
    let data = data();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(4, 4, 2);
    let run = RunDir::create(&dir.path().join("r")).unwrap();
    // A kill before the first checkpoint: log lines, but nothing to resume from.
    std::fs::write(run.join("log.jsonl"), "{\"step\":1}\n{\"step\":2,").unwrap();
    drop(train_until(&cfg, &data, &run, &Device::Cpu, 2, &mut |_| {}).unwrap());
    assert_eq!(logged_steps(&run), [1, 2]);
    // A kill after step 3 was logged but before its checkpoint, inside the next append.
    let log = run.join("log.jsonl");
    let mut text = std::fs::read_to_string(&log).unwrap();
    let line = text
        .lines()
        .last()
        .unwrap()
        .replace("\"step\":2", "\"step\":3");
    text.push_str(&format!("{line}\n{{\"step\":4,\"ste"));
    std::fs::write(&log, text).unwrap();
    train(&cfg, &data, &run, &Device::Cpu, &mut |_| {}).unwrap();
    assert_eq!(logged_steps(&run), [1, 2, 3, 4]);
}

#[test]
fn zero_steps_are_refused_before_anything_is_written() {
    let data = data();
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::create(&dir.path().join("r")).unwrap();
    let err = train(&config(0, 4, 2), &data, &run, &Device::Cpu, &mut |_| {})
        .map(drop)
        .unwrap_err();
    assert!(format!("{err:#}").contains("--steps 0"), "{err:#}");
    assert!(run.resumable_checkpoint().is_none());
    assert!(!run.join("log.jsonl").exists());
}
