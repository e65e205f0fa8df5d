//! Retraining tests on the embedded Fashion-MNIST subset and the `tiny` space.

use candle_core::Device;
use shiftnas_models::onnx::{self, ExportOptions};
use shiftnas_models::subnet::Subnet;

use super::*;
use crate::data::{Augment, ConformOptions, DataSpec, Normalize};
use crate::run_dir::RunDir;
use crate::train::prepare_data;

const ARCH: &str = "01233210012332100123";

fn config(steps: u64, batch: usize, checkpoint_every: u64) -> RetrainConfig {
    RetrainConfig {
        space: "tiny".into(),
        arch: ARCH.into(),
        data: DataSpec::BuiltinFashionMnist,
        steps,
        batch,
        lr: default_retrain_lr(batch) * 4.0,
        momentum: 0.9,
        weight_decay: 4e-5,
        label_smoothing: 0.1,
        seed: 3,
        split_seed: 3,
        checkpoint_every,
        log_every: 1,
        proxy_size: 1000,
        conform: ConformOptions::default(),
        augment: Augment {
            crop_padding: 2,
            flip: true,
            random_resized_crop: false,
        },
        normalize: Normalize {
            mean: vec![0.2867],
            std: vec![0.354],
        },
        supernet_run: None,
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

fn bits(net: &Standalone) -> Vec<(String, Vec<u32>)> {
    net.tensors()
        .unwrap()
        .into_iter()
        .map(|(n, t)| {
            let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            (n, v.iter().map(|x| x.to_bits()).collect())
        })
        .collect()
}

#[test]
fn retrain_killed_and_resumed_matches_uninterrupted_bit_for_bit() {
    let data = data();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(4, 4, 2);
    let a = RunDir::create(&dir.path().join("a")).unwrap();
    let straight = bits(&retrain(&cfg, &data, &a, &Device::Cpu, &mut |_| {}).unwrap());
    assert!(a.checkpoint_dir().join("model.safetensors").is_file());

    // Interrupted after the checkpoint at step 2; everything in memory is dropped.
    let b = RunDir::create(&dir.path().join("b")).unwrap();
    drop(retrain_until(&cfg, &data, &b, &Device::Cpu, 2, &mut |_| {}).unwrap());
    let mut steps = Vec::new();
    let resumed = retrain(&cfg, &data, &b, &Device::Cpu, &mut |r| steps.push(r.step)).unwrap();
    assert_eq!(steps, [3, 4]);
    assert!(straight == bits(&resumed), "resumed weights differ");
    assert!(b.resumable_checkpoint().is_some());

    // BN γ/β and the convs all moved; running statistics too.
    let fresh = Standalone::new(resumed.space(), resumed.arch(), &Device::Cpu, cfg.seed).unwrap();
    for name in [
        "stem.bn.weight",
        "last.bn.bias",
        "blocks.3.choice3.main.bn5.weight",
        "blocks.0.choice0.main.conv1.weight",
        "classifier.weight",
        "last.bn.running_mean",
    ] {
        let (x, y) = (
            fresh.tensor(name).unwrap_or_else(|| panic!("{name}")),
            resumed.tensor(name).unwrap(),
        );
        let d = (x - y).unwrap().abs().unwrap().max_all().unwrap();
        assert!(d.to_scalar::<f32>().unwrap() > 0.0, "{name} did not move");
    }

    // A run dir of another arch refuses to resume, naming both archs.
    let mut other = cfg.clone();
    other.arch = "0".repeat(20);
    let err = retrain(&other, &data, &b, &Device::Cpu, &mut |_| {}).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains(ARCH) && msg.contains(&other.arch), "{msg}");
}

#[test]
fn retrain_lowers_the_loss_and_exports_the_trained_weights() {
    let data = data();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(30, 32, 0);
    // The default lr at batch 64; 4× that still learns, 8× diverges for a while (measured).
    cfg.lr = default_retrain_lr(64);
    cfg.log_every = 10;
    let run = RunDir::create(&dir.path().join("r")).unwrap();
    let mut losses = Vec::new();
    let net = retrain(&cfg, &data, &run, &Device::Cpu, &mut |r| {
        losses.push(r.loss)
    })
    .unwrap();
    assert_eq!(losses.len(), 3);
    assert!(losses[2] < losses[0] - 0.2, "{losses:?}");

    // 30 steps leave the training EMA of the BN statistics behind the weights; precise BN on
    // 512 training images gives the accuracy of the final weights.
    let test = &data.splits.test[..256];
    let ema = score_standalone(&net, &data.pair.test, test, &cfg.normalize, 64).unwrap();
    precise_bn(
        &net,
        &data.pair.train,
        &data.splits.train,
        &cfg.normalize,
        512,
        64,
    )
    .unwrap();
    let acc = score_standalone(&net, &data.pair.test, test, &cfg.normalize, 64).unwrap();
    assert!(
        acc.top1 > 0.25 && acc.top1 > ema.top1,
        "{acc:?} (EMA statistics: {ema:?})"
    );
    let subnet = Subnet::from_tensors(net.space(), net.arch(), &net.tensors().unwrap()).unwrap();
    let folded = score(
        |x| Ok(subnet.forward(x)?),
        &data.pair.test,
        test,
        &cfg.normalize,
        64,
        &Device::Cpu,
    )
    .unwrap();
    assert!(
        (folded.top1 - acc.top1).abs() <= 1.0 / 256.0,
        "{folded:?} vs {acc:?}"
    );
    assert!(
        (folded.loss - acc.loss).abs() < 1e-3,
        "{folded:?} vs {acc:?}"
    );

    let options = ExportOptions {
        batch: Some(1),
        mean: Some(cfg.normalize.mean.clone()),
        std: Some(cfg.normalize.std.clone()),
        ..Default::default()
    };
    let proto = onnx::model_proto(&subnet, &options).unwrap();
    let graph = proto.graph.expect("graph");
    let classifier = graph
        .initializer
        .iter()
        .find(|t| t.name.as_deref().is_some_and(|n| n.contains("classifier")))
        .expect("classifier initializer");
    let raw = classifier.raw_data.as_deref().expect("raw data");
    let exported: Vec<f32> = raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let w: Vec<f32> = subnet
        .classifier()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(exported, w, "exported classifier is not the trained one");
    assert!(!onnx::export(&subnet, &options).unwrap().is_empty());
}
