//! The MobileNetV2 space and depth multipliers against independent references: FLOPs and params
//! against hand derivations (and torchvision's MobileNetV2 parameter count) and against the
//! multiply-adds counted on the exported ONNX graph; the supernet against a plain-candle f64
//! reference written from the MBConv definition; the subnet and standalone against the supernet;
//! training gradients only on the sampled path; arch errors naming the block and the choices.

mod common;

use std::collections::{BTreeMap, HashMap};

use candle_core::{D, DType, Device, Tensor};
use prost::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shiftnas_models::cost::{arch_cost, arch_flops, block_cost, fixed_cost, supernet_params};
use shiftnas_models::onnx::{self, ExportOptions, pb};
use shiftnas_models::subnet::Subnet;
use shiftnas_models::{
    Arch, BnCalibration, Choice, Family, Space, Stage, Standalone, Supernet, Wiring,
};

const EPS: f64 = 1e-5;

/// The FairNAS choice order of the presets: (kernel, expansion) of digits 0–5.
const KE: [(u64, u64); 6] = [(3, 3), (3, 6), (5, 3), (5, 6), (7, 3), (7, 6)];

/// Multiply-adds and affine-BN params of one MBConv written out: pw `cin → e·cin` at `i`², dw
/// k×k at `o`², pw `e·cin → cout` at `o`², each followed by a BN with γ and β.
fn mbconv(cin: u64, cout: u64, (k, e): (u64, u64), i: u64, o: u64) -> (u64, u64) {
    let h = cin * e;
    let flops = cin * h * i * i + h * k * k * o * o + h * cout * o * o;
    let params = cin * h + 2 * h + h * k * k + 2 * h + h * cout + 2 * cout;
    (flops, params)
}

/// FLOPs and params of a whole MobileNetV2-style net, written out independently of the crate:
/// stem 3×3 (`stem_c`, `stem_s`), fixed e1 block to `first`, `stages` of (channels, repeats,
/// stride) with `ke(block)` per block, 1×1 to `last`, bias-free classifier.
#[allow(clippy::too_many_arguments)]
fn by_hand(
    input: u64,
    in_c: u64,
    (stem_c, stem_s): (u64, u64),
    first: u64,
    stages: &[(u64, u64, u64)],
    last: u64,
    classes: u64,
    ke: impl Fn(usize) -> (u64, u64),
) -> (u64, u64) {
    let m = (input + 2 - 3) / stem_s + 1;
    let mut f = stem_c * in_c * 9 * m * m + stem_c * 9 * m * m + stem_c * first * m * m;
    let mut p =
        stem_c * in_c * 9 + 2 * stem_c + stem_c * 9 + 2 * stem_c + stem_c * first + 2 * first;
    let (mut c, mut size, mut idx) = (first, m, 0);
    for &(ch, n, s) in stages {
        for r in 0..n {
            let o = (size + 2 - 3) / if r == 0 { s } else { 1 } + 1;
            let (bf, bp) = mbconv(c, ch, ke(idx), size, o);
            f += bf;
            p += bp;
            (c, size, idx) = (ch, o, idx + 1);
        }
    }
    f += c * last * size * size + last * classes;
    p += c * last + 2 * last + last * classes;
    (f, p)
}

const FAIRNAS: [(u64, u64, u64); 6] = [
    (32, 2, 2),
    (40, 4, 2),
    (80, 4, 2),
    (96, 4, 1),
    (192, 4, 2),
    (320, 1, 1),
];

#[test]
fn imagenet_costs_by_hand() {
    let s = Space::mbv2_imagenet();
    assert_eq!(s.num_blocks(), 19);
    for (d, expected_flops) in [
        (0u8, 247_129_856u64),
        (1, 452_036_096),
        (2, 268_203_776),
        (3, 494_183_936),
        (4, 299_814_656),
        (5, 557_405_696),
    ] {
        let a = Arch::uniform(19, d);
        let (f, p) = by_hand(224, 3, (32, 2), 16, &FAIRNAS, 1280, 1000, |_| {
            KE[d as usize]
        });
        assert_eq!(f, expected_flops, "hand count all-{d}");
        let c = arch_cost(&s, &a);
        assert_eq!((c.flops, c.params), (f, p), "all-{d}");
    }
    // A mixed arch: every choice at every stage.
    let a = s.parse_arch("0123450123450123450").unwrap();
    let (f, p) = by_hand(224, 3, (32, 2), 16, &FAIRNAS, 1280, 1000, |i| KE[i % 6]);
    assert_eq!((arch_flops(&s, &a), arch_cost(&s, &a).params), (f, p));
}

#[test]
fn cifar_costs_by_hand() {
    let s = Space::mbv2_cifar();
    let stages = [
        (32, 2, 1),
        (40, 4, 2),
        (80, 4, 2),
        (96, 4, 1),
        (192, 4, 2),
        (320, 1, 1),
    ];
    for (arch, flops) in [
        ("0000000000000000000", 72_819_200u64),
        ("5555555555555555555", 171_774_464),
        ("0123450123450123450", 114_672_128),
    ] {
        let a = s.parse_arch(arch).unwrap();
        let (f, p) = by_hand(32, 3, (32, 1), 16, &stages, 1280, 10, |i| {
            KE[a.genes()[i] as usize]
        });
        assert_eq!(f, flops, "hand count {arch}");
        assert_eq!(
            (arch_flops(&s, &a), arch_cost(&s, &a).params),
            (f, p),
            "{arch}"
        );
    }
    // Block 0 of mbv2-cifar (16 → 32, stride 1, 32×32) with k3e3, term by term.
    assert_eq!(
        block_cost(&s, 0, Choice::MbK3E3).flops,
        16 * 48 * 1024 + 48 * 9 * 1024 + 48 * 32 * 1024
    );
}

/// torchvision's `mobilenet_v2()` documents 3,504,872 parameters; with our bias-free classifier
/// that is 3,503,872. Its layout is a MobileNetV2 space with every block k3e6. Its 0.30 GFLOPS
/// (multiply-adds of convs and the classifier) are 300,774,272 by the hand count above.
#[test]
fn torchvision_mobilenet_v2_parameter_count() {
    let mut s = Space::mbv2_imagenet();
    s.stages = [
        (24, 2, 2),
        (32, 3, 2),
        (64, 4, 2),
        (96, 3, 1),
        (160, 3, 2),
        (320, 1, 1),
    ]
    .into_iter()
    .map(|(channels, repeats, stride)| Stage {
        repeats,
        channels,
        stride,
    })
    .collect();
    s.validate().unwrap();
    let a = Arch::uniform(s.num_blocks(), 1);
    let c = arch_cost(&s, &a);
    assert_eq!(c.params, 3_504_872 - 1000);
    assert_eq!(c.flops, 300_774_272);
    let tv = [
        (24, 2, 2),
        (32, 3, 2),
        (64, 4, 2),
        (96, 3, 1),
        (160, 3, 2),
        (320, 1, 1),
    ];
    let hand = by_hand(224, 3, (32, 2), 16, &tv, 1280, 1000, |_| (3, 6));
    assert_eq!(hand, (c.flops, c.params));
}

/// Value shapes `(c, h, w)` propagated through an exported graph, and its multiply-adds and
/// parameters counted from the nodes and initializers alone: `Conv` = out · in/group · k² · out
/// pixels, `Gemm` = its weight; params = weights + 2 per folded bias channel (the BN's γ, β).
fn graph_count(bytes: &[u8], input: (usize, usize)) -> (u64, u64) {
    let m = pb::ModelProto::decode(bytes).unwrap();
    let g = m.graph.unwrap();
    let inits: HashMap<String, Vec<i64>> = g
        .initializer
        .iter()
        .map(|t| (t.name.clone().unwrap(), t.dims.clone()))
        .collect();
    let mut shapes: HashMap<String, (usize, usize)> =
        HashMap::from([(onnx::INPUT_NAME.to_string(), input)]);
    let (mut macs, mut params) = (0u64, 0u64);
    let ints = |n: &pb::NodeProto, a: &str| -> Vec<i64> {
        n.attribute
            .iter()
            .find(|x| x.name.as_deref() == Some(a))
            .unwrap()
            .ints
            .clone()
    };
    for n in &g.node {
        let op = n.op_type.as_deref().unwrap();
        let (c, h) = shapes.get(&n.input[0]).copied().unwrap_or((0, 0));
        let out = match op {
            "Conv" => {
                let w = &inits[&n.input[1]];
                let (o, ig, k) = (w[0] as u64, w[1] as u64, w[2] as u64);
                let (s, p) = (ints(n, "strides")[0] as usize, ints(n, "pads")[0] as usize);
                let oh = (h + 2 * p - k as usize) / s + 1;
                macs += o * ig * k * k * (oh * oh) as u64;
                params += o * ig * k * k + 2 * inits[&n.input[2]][0] as u64;
                (o as usize, oh)
            }
            "Gemm" => {
                let w = &inits[&n.input[1]];
                macs += (w[0] * w[1]) as u64;
                params += (w[0] * w[1]) as u64;
                (w[0] as usize, 1)
            }
            "Slice" => (c / 2, h),
            "Concat" => (n.input.iter().map(|i| shapes[i].0).sum(), h),
            "Add" => {
                assert_eq!(shapes[&n.input[0]], shapes[&n.input[1]], "{n:?}");
                (c, h)
            }
            "GlobalAveragePool" => (c, 1),
            "Relu" | "Clip" | "Flatten" => (c, h),
            other => panic!("unexpected op {other}"),
        };
        shapes.insert(n.output[0].clone(), out);
    }
    (macs, params)
}

fn graph_matches_cost(space: &Space, arch: &Arch) {
    // Fresh-init weights (no probe batch): only shapes matter for counting.
    let sub = Standalone::new(space, arch, &Device::Cpu, 0)
        .unwrap()
        .subnet()
        .unwrap();
    let bytes = onnx::export(&sub, &ExportOptions::default()).unwrap();
    let counted = graph_count(&bytes, (space.input_channels, space.input_size));
    let c = arch_cost(space, arch);
    assert_eq!(counted, (c.flops, c.params), "{} {arch}", space.name);
}

#[test]
fn onnx_graph_macs_and_params_match_the_cost_model() {
    for space in [
        Space::mbv2_tiny(),
        Space::mbv2_cifar(),
        Space::mbv2_imagenet(),
        Space::tiny(),
        Space::mbv2_tiny().with_depth_mult(1.5),
        Space::tiny().with_depth_mult(2.0),
        Space::mbv2_cifar().with_width_mult(0.5),
    ] {
        let n = space.num_blocks();
        let mut rng = ChaCha8Rng::seed_from_u64(n as u64);
        for d in 0..space.choices.len() as u8 {
            graph_matches_cost(&space, &Arch::uniform(n, d));
        }
        graph_matches_cost(&space, &Arch::random(n, space.choices.len(), &mut rng));
    }
}

#[test]
fn depth_multiplier_scales_blocks_flops_and_params() {
    for base in [
        Space::spos_imagenet(),
        Space::mbv2_imagenet(),
        Space::mbv2_tiny(),
    ] {
        for mult in [0.5, 1.5, 2.0] {
            let deep = base.clone().with_depth_mult(mult);
            deep.validate().unwrap();
            assert_eq!(deep.name, format!("{}@d{mult}", base.name));
            let repeats: Vec<usize> = base
                .stages
                .iter()
                .map(|s| (s.repeats as f64 * mult).ceil() as usize)
                .collect();
            assert_eq!(
                deep.num_blocks(),
                repeats.iter().sum::<usize>(),
                "{}",
                deep.name
            );
            // Every stage keeps its first (strided) block; the others are copies of the stage's
            // stride-1 block, so a uniform arch's cost moves by whole stride-1 block costs.
            let (b0, b1) = (base.blocks(), deep.blocks());
            let first = |bs: &[shiftnas_models::BlockShape], s: usize| {
                *bs.iter().find(|b| b.stage == s).unwrap()
            };
            let stride1 = |bs: &[shiftnas_models::BlockShape], s: usize| {
                bs.iter()
                    .find(|b| b.stage == s && b.stride == 1 && b.in_channels == b.out_channels)
                    .copied()
            };
            for d in 0..base.choices.len() as u8 {
                let c = base.choices[d as usize];
                let mut expected = fixed_cost(&base);
                for (s, &r) in repeats.iter().enumerate() {
                    let f = first(&b0, s);
                    assert_eq!(
                        first(&b1, s),
                        shiftnas_models::BlockShape {
                            index: first(&b1, s).index,
                            ..f
                        }
                    );
                    expected += shiftnas_models::cost::block_cost(&base, f.index, c);
                    if r > 1 {
                        let one = stride1(&b0, s)
                            .or_else(|| stride1(&b1, s))
                            .expect("a stage with two blocks has a stride-1 block");
                        let cost = shiftnas_models::cost::block_convs(&one, c)
                            .iter()
                            .map(|x| x.cost(false))
                            .sum::<shiftnas_models::cost::Cost>();
                        for _ in 1..r {
                            expected += cost;
                        }
                    }
                }
                let a = Arch::uniform(deep.num_blocks(), d);
                assert_eq!(
                    arch_flops(&deep, &a),
                    expected.flops,
                    "{} all-{d}",
                    deep.name
                );
                let weights: u64 = deep
                    .blocks()
                    .iter()
                    .map(|b| block_cost(&deep, b.index, c).params)
                    .sum::<u64>()
                    + fixed_cost(&deep).params;
                assert_eq!(weights, expected.params, "{} all-{d} weights", deep.name);
            }
            // The supernet holds every choice of every block: scaled by the block count.
            let deep_ref = &deep;
            let per_block: u64 = deep
                .blocks()
                .iter()
                .flat_map(|b| {
                    (deep_ref.choices.iter()).map(move |&c| block_cost(deep_ref, b.index, c).params)
                })
                .sum();
            assert_eq!(supernet_params(&deep), per_block + fixed_cost(&deep).params);
        }
    }
    // By hand: spos-imagenet ×2 has [8, 8, 16, 8] blocks; all-k3 adds 4 + 4 + 8 + 4 stride-1 k3
    // blocks. A stride-1 k3 block of c channels at n×n: pw c/2·c/2 + dw c/2·9 + pw c/2·c/2, all n².
    let s = Space::spos_imagenet();
    let k3 = |c: u64, n: u64| (c / 2 * c / 2 * 2 + c / 2 * 9) * n * n;
    let extra = 4 * k3(64, 56) + 4 * k3(160, 28) + 8 * k3(320, 14) + 4 * k3(640, 7);
    assert_eq!(
        arch_flops(&s.clone().with_depth_mult(2.0), &Arch::uniform(40, 0)),
        295_842_496 + extra
    );
    // Depth multipliers travel with the space through JSON; the default stays out of it.
    let deep = Space::mbv2_cifar().with_depth_mult(1.5);
    let json = serde_json::to_string(&deep).unwrap();
    assert_eq!(serde_json::from_str::<Space>(&json).unwrap(), deep);
    let plain = serde_json::to_string(&Space::spos_cifar()).unwrap();
    assert!(
        !plain.contains("depth_mult") && !plain.contains("family"),
        "{plain}"
    );
    assert!(json.contains("\"family\":\"mobilenet-v2\""), "{json}");
    let bad = Space::tiny()
        .with_depth_mult(0.0)
        .validate()
        .unwrap_err()
        .to_string();
    assert!(bad.contains("depth multiplier 0"), "{bad}");
}

#[test]
fn presets_shapes_and_arch_errors() {
    for s in [
        Space::mbv2_imagenet(),
        Space::mbv2_cifar(),
        Space::mbv2_tiny(),
    ] {
        s.validate().unwrap();
        assert_eq!(Space::by_name(&s.name).unwrap(), s);
        assert_eq!(s.family, Family::MobilenetV2);
        assert_eq!(s.choices, Choice::MBCONV);
    }
    let s = Space::mbv2_imagenet();
    assert_eq!(
        (s.stem_channels(), s.stem_out_channels(), s.stem_out_size()),
        (32, 16, 112)
    );
    let sizes: Vec<usize> = s.blocks().iter().map(|b| b.out_size).collect();
    assert_eq!(
        sizes,
        [
            56, 56, 28, 28, 28, 28, 14, 14, 14, 14, 14, 14, 14, 14, 7, 7, 7, 7, 7
        ]
    );
    let residual: Vec<bool> = s
        .blocks()
        .iter()
        .map(|b| s.wiring(b) == Wiring::InvertedResidual { residual: true })
        .collect();
    // Only the non-first blocks of each stage add their input (block 18 changes 192 → 320).
    let firsts = [0, 2, 6, 10, 14, 18];
    for (i, r) in residual.iter().enumerate() {
        assert_eq!(*r, !firsts.contains(&i), "block {i}");
    }
    let c = Space::mbv2_cifar();
    let sizes: Vec<usize> = c.blocks().iter().map(|b| b.out_size).collect();
    assert_eq!(sizes[..3], [32, 32, 16]);
    assert_eq!(c.final_size(), 4);
    assert_eq!(Space::mbv2_tiny().final_size(), 2);

    let e = c.parse_arch("0123450123456123450").unwrap_err().to_string();
    assert!(
        e.contains("position 12")
            && e.contains("block 12, stage 3")
            && e.contains("0=k3e3 1=k3e6 2=k5e3 3=k5e6 4=k7e3 5=k7e6"),
        "{e}"
    );
    let e = c
        .parse_arch("01234501234501234501")
        .unwrap_err()
        .to_string();
    assert!(e.contains("19 choice blocks"), "{e}");
    // A choice of the other family is rejected with the allowed ones.
    let mut mixed = Space::mbv2_tiny();
    mixed.choices.push(Choice::Xception);
    let e = mixed.validate().unwrap_err().to_string();
    assert!(
        e.contains("xception is a ShuffleNetV2 block") && e.contains("k7e6"),
        "{e}"
    );
    let mut no_block = Space::mbv2_tiny();
    no_block.stem.block_channels = None;
    assert!(
        no_block
            .validate()
            .unwrap_err()
            .to_string()
            .contains("block_channels")
    );
    // Width multipliers round to multiples of 8 in this family.
    let w = Space::mbv2_imagenet().with_width_mult(0.75);
    assert_eq!(
        (
            w.stem_channels(),
            w.stem_out_channels(),
            w.stage_channels(1)
        ),
        (24, 16, 32)
    );
}

fn images(space: &Space, b: usize, seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = b * space.input_channels * space.input_size * space.input_size;
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-2.0..2.0)).collect();
    let (c, s) = (space.input_channels, space.input_size);
    Tensor::from_vec(v, (b, c, s, s), &Device::Cpu).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let f = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
    let d = (f(a) - f(b)).unwrap().abs().unwrap().flatten_all().unwrap();
    d.max(0).unwrap().to_scalar::<f64>().unwrap() as f32
}

/// Eval-mode logits of `arch` from its named tensors, in f64 with plain candle ops, written from
/// the MobileNetV2 definition: conv → BN (running statistics) → ReLU6 (min(max(x, 0), 6)), the
/// fixed e1 block, MBConv blocks adding their input at stride 1 with equal channels, last conv,
/// mean pool, bias-free linear.
/// `cap = false` leaves out the 6 of ReLU6 (to show that it matters).
fn reference(
    space: &Space,
    t: &BTreeMap<String, Tensor>,
    x: &Tensor,
    arch: &Arch,
    cap: bool,
) -> Tensor {
    let w = |n: &str| t[n].to_dtype(DType::F64).unwrap();
    let conv_bn = |x: &Tensor, conv: &str, bn: &str, stride: usize, dw: bool, act: bool| {
        let k = w(conv).dim(2).unwrap();
        let groups = if dw { x.dim(1).unwrap() } else { 1 };
        let y = x.conv2d(&w(conv), k / 2, stride, 1, groups).unwrap();
        let c = y.dim(1).unwrap();
        let mean = w(&format!("{bn}.running_mean"))
            .reshape((1, c, 1, 1))
            .unwrap();
        let var = w(&format!("{bn}.running_var"))
            .reshape((1, c, 1, 1))
            .unwrap();
        let y = y
            .broadcast_sub(&mean)
            .unwrap()
            .broadcast_div(&(var + EPS).unwrap().sqrt().unwrap())
            .unwrap();
        match (act, cap) {
            (true, true) => y.relu().unwrap().minimum(6f64).unwrap(),
            (true, false) => y.relu().unwrap(),
            (false, _) => y,
        }
    };
    let x = x.to_dtype(DType::F64).unwrap();
    let mut h = conv_bn(
        &x,
        "stem.conv.weight",
        "stem.bn",
        space.stem.stride,
        false,
        true,
    );
    h = conv_bn(
        &h,
        "stem.block.conv0.weight",
        "stem.block.bn0",
        1,
        true,
        true,
    );
    h = conv_bn(
        &h,
        "stem.block.conv1.weight",
        "stem.block.bn1",
        1,
        false,
        false,
    );
    for b in space.blocks() {
        let p = format!("blocks.{}.choice{}.main", b.index, arch.genes()[b.index]);
        let cw = |j: usize| format!("{p}.conv{j}.weight");
        let bn = |j: usize| format!("{p}.bn{j}");
        let mut m = conv_bn(&h, &cw(0), &bn(0), 1, false, true);
        m = conv_bn(&m, &cw(1), &bn(1), b.stride, true, true);
        m = conv_bn(&m, &cw(2), &bn(2), 1, false, false);
        h = if b.stride == 1 && h.dim(1).unwrap() == m.dim(1).unwrap() {
            (m + h).unwrap()
        } else {
            m
        };
    }
    let h = conv_bn(&h, "last.conv.weight", "last.bn", 1, false, true);
    let pooled = h.mean((2, 3)).unwrap();
    pooled.matmul(&w("classifier.weight").t().unwrap()).unwrap()
}

#[test]
fn supernet_matches_the_mbconv_reference_and_the_subnet() {
    let space = Space::mbv2_tiny();
    let net = Supernet::new(&space, &Device::Cpu, 3).unwrap();
    let n = space.num_blocks();
    let mut archs: Vec<Arch> = (0..6).map(|d| Arch::uniform(n, d)).collect();
    archs.push(space.parse_arch("0123450123450123450").unwrap());
    for (i, arch) in archs.iter().enumerate() {
        // Non-trivial running statistics: calibrate the path on a few batches first.
        let batches = (0..3).map(|k| Ok(images(&space, 8, 100 + k)));
        net.calibrate_bn(arch, batches, BnCalibration::Exact)
            .unwrap();
        let x = images(&space, 3, i as u64);
        let ours = net.forward_t(&x, arch, false).unwrap();
        let t = net.arch_tensors(arch).unwrap();
        let exact = reference(&space, &t, &x, arch, true);
        let scale = exact
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!(scale > 1e-3, "{arch}: degenerate logits");
        let d = max_diff(&ours, &exact);
        assert!(
            d <= 1e-4 * scale.max(1.0) as f32,
            "{arch}: supernet vs reference {d}"
        );
        // The BN-folded subnet of the same tensors, in f32 and f64.
        let sub = Subnet::from_tensors(&space, arch, &t).unwrap();
        let d = max_diff(&sub.forward(&x).unwrap(), &exact);
        assert!(
            d <= 1e-4 * scale.max(1.0) as f32,
            "{arch}: subnet vs reference {d}"
        );
        let d = max_diff(&common::subnet_f64(&sub, &x), &exact);
        assert!(
            d <= 1e-5 * scale.max(1.0) as f32,
            "{arch}: folded f64 vs reference {d}"
        );
    }
    // Large inputs saturate ReLU6: the cap changes the logits, and ours has it.
    let big = (images(&space, 2, 9) * 50.0).unwrap();
    let arch = &archs[6];
    let t = net.arch_tensors(arch).unwrap();
    let ours = net.forward_t(&big, arch, false).unwrap();
    let capped = reference(&space, &t, &big, arch, true);
    let uncapped = reference(&space, &t, &big, arch, false);
    let scale = capped
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert!(max_diff(&ours, &capped) <= 1e-4 * scale.max(1.0) as f32);
    assert!(
        max_diff(&capped, &uncapped) > 1e-2,
        "the cap at 6 is exercised"
    );
}

#[test]
fn training_step_touches_only_the_path_and_moves_its_statistics() {
    let space = Space::mbv2_tiny();
    let net = Supernet::new(&space, &Device::Cpu, 5).unwrap();
    let arch = space.parse_arch("5432105432105432105").unwrap();
    let x = images(&space, 4, 1);
    let stat = "blocks.3.choice2.main.bn1.running_var";
    let before = net.tensor(stat).unwrap().copy().unwrap();
    net.set_dropout_seed(1);
    let logits = net.forward_t(&x, &arch, true).unwrap();
    let labels = Tensor::new(&[1u32, 2, 3, 4], &Device::Cpu).unwrap();
    let loss = candle_nn::loss::cross_entropy(&logits, &labels).unwrap();
    let grads = loss.backward().unwrap();
    let path: Vec<String> = net
        .path_trainable(&arch)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        path.len(),
        3 + 3 * 19 + 2,
        "stem conv + e1 block, 3 per block, last, classifier"
    );
    for (name, var) in net.trainable() {
        let g = grads.get(var.as_tensor());
        if path.contains(&name) {
            let g = g.unwrap_or_else(|| panic!("no gradient for {name}"));
            let norm = g
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(
                norm > 0.0 && norm.is_finite(),
                "{name}: gradient norm {norm}"
            );
        } else {
            assert!(g.is_none(), "{name} is off the path but got a gradient");
        }
    }
    let after = net.tensor(stat).unwrap();
    assert!(
        max_diff(&before, &after) > 0.0,
        "the path's BN statistics moved"
    );
    let off = net.tensor("blocks.3.choice1.main.bn1.running_var").unwrap();
    assert_eq!(max_diff(&off, &Tensor::ones_like(&off).unwrap()), 0.0);
}

#[test]
fn standalone_matches_its_subnet_and_checkpoints_round_trip() {
    let space = Space::mbv2_tiny().with_depth_mult(1.5);
    let arch = Arch::random(space.num_blocks(), 6, &mut ChaCha8Rng::seed_from_u64(2));
    let net = Standalone::new(&space, &arch, &Device::Cpu, 4).unwrap();
    assert!(net.names().any(|n| n == "stem.block.bn1.weight"));
    // Train-mode steps move γ-free statistics; then eval forward equals the folded subnet.
    for k in 0..2 {
        net.forward_t(&images(&space, 6, 20 + k), true).unwrap();
    }
    let x = images(&space, 2, 30);
    let ours = net.forward_t(&x, false).unwrap();
    let sub = net.subnet().unwrap();
    let d = max_diff(&ours, &sub.forward(&x).unwrap());
    assert!(d <= 1e-4, "standalone vs folded subnet: {d}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("n.safetensors");
    net.save(&path, 7).unwrap();
    let (back, step) = Standalone::load_for(&path, &space, &arch, &Device::Cpu).unwrap();
    assert_eq!(step, 7);
    assert_eq!(max_diff(&back.forward_t(&x, false).unwrap(), &ours), 0.0);
    // The supernet of a MobileNetV2 space checkpoints with its family.
    let sn = Supernet::new(&space, &Device::Cpu, 1).unwrap();
    let p = dir.path().join("s.safetensors");
    sn.save(&p, 3).unwrap();
    let (sn2, _) = Supernet::load(&p, &Device::Cpu).unwrap();
    assert_eq!(sn2.space(), &space);
}

#[test]
fn kernel_inheritance_within_an_expansion() {
    let space = Space::mbv2_tiny();
    let net = Supernet::new(&space, &Device::Cpu, 8).unwrap();
    let n = space.num_blocks();
    let written = net.inherit_kernels(0).unwrap();
    // k3e3 feeds k5e3 and k7e3 (3 convs each per block), never an e6 choice.
    assert_eq!(written.len(), n * 2 * 3);
    assert!(
        written
            .iter()
            .all(|w| w.contains(".choice2.") || w.contains(".choice4."))
    );
    let x = images(&space, 2, 3);
    let y0 = net.forward_t(&x, &Arch::uniform(n, 0), false).unwrap();
    for d in [2, 4] {
        let y = net.forward_t(&x, &Arch::uniform(n, d), false).unwrap();
        assert!(max_diff(&y0, &y) <= 1e-6, "choice {d} after inheritance");
    }
    let y1 = net.forward_t(&x, &Arch::uniform(n, 1), false).unwrap();
    let scale = y0
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(
        max_diff(&y0, &y1) > 0.1 * scale,
        "e6 choices keep their own weights: {} vs scale {scale}",
        max_diff(&y0, &y1)
    );
    let e = net.inherit_kernels(2).unwrap_err().to_string();
    assert!(e.contains("kernels can only grow"), "{e}");
    // Sanity: logits have a last dim of `classes`.
    assert_eq!(y0.dim(D::Minus1).unwrap(), space.classes);
}
