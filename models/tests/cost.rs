//! FLOPs and parameter counts against reference integers recomputed independently
//! from the SPOS reference code (`get_flops` in SPOS's `flops.py` counts conv/linear multiply-adds;
//! params counted from the PyTorch `ShuffleNetV2_OneShot` modules).

use shiftnas_models::cost::{
    self, Cost, arch_breakdown, arch_cost, arch_flops, block_cost, fixed_cost, supernet_params,
};
use shiftnas_models::{Arch, Choice, Family, Space};

fn imagenet() -> Space {
    Space::spos_imagenet()
}

#[test]
fn spos_published_arch_flops() {
    let s = imagenet();
    let a = s.parse_arch("21012020202300003233").unwrap();
    assert_eq!(arch_flops(&s, &a), 322_918_720);
}

#[test]
fn uniform_arch_flops() {
    let s = imagenet();
    for (digit, expected) in [
        (0, 295_842_496),
        (1, 313_654_976),
        (2, 340_373_696),
        (3, 358_825_920),
    ] {
        let a = Arch::uniform(20, digit);
        assert_eq!(arch_flops(&s, &a), expected, "all-{digit}");
    }
}

#[test]
fn fixed_part_flops() {
    assert_eq!(fixed_cost(&imagenet()).flops, 38_555_648);
}

#[test]
fn supernet_params_without_bn() {
    assert_eq!(supernet_params(&imagenet()), 8_388_176);
}

#[test]
fn standalone_spos_arch_params_with_affine_bn() {
    let s = imagenet();
    let a = s.parse_arch("21012020202300003233").unwrap();
    assert_eq!(arch_cost(&s, &a).params, 3_558_464);
}

#[test]
fn breakdown_sums_to_total_and_blocks_match_block_cost() {
    // The ShuffleNetV2 presets (20 blocks, 4 choices); tests/mbv2.rs covers the others.
    for s in Space::presets()
        .into_iter()
        .filter(|s| s.family == Family::ShufflenetV2)
    {
        let a = s.parse_arch("01230123012301230123").unwrap();
        let b = arch_breakdown(&s, &a);
        let parts: Cost = b.stem
            + b.last
            + b.classifier
            + b.blocks
                .iter()
                .map(|x| Cost {
                    flops: x.flops,
                    params: x.params,
                })
                .sum();
        assert_eq!(parts, b.total, "{}", s.name);
        let flops: u64 = fixed_cost(&s).flops
            + (0..20)
                .map(|i| block_cost(&s, i, s.choice(&a, i)).flops)
                .sum::<u64>();
        assert_eq!(flops, b.total.flops, "{}", s.name);
    }
}

#[test]
fn block_cost_by_hand_first_imagenet_block_k3() {
    // Block 0: 16 → 64, stride 2, 112 → 56; branch_in 16, mid 32, branch_out 48.
    // main: pw 16·32·112² + dw 32·9·56² + pw 32·48·56²; proj: dw 16·9·56² + pw 16·16·56².
    let expected = 16 * 32 * 112 * 112
        + 32 * 9 * 56 * 56
        + 32 * 48 * 56 * 56
        + 16 * 9 * 56 * 56
        + 16 * 16 * 56 * 56;
    assert_eq!(
        block_cost(&imagenet(), 0, Choice::ShuffleK3).flops,
        expected
    );
    assert_eq!(cost::stem_conv(&imagenet()).flops(), 3 * 16 * 9 * 112 * 112);
}
