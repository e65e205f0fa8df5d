//! The SPOS ShuffleNetV2 family: four choices per block (ShuffleNet units with a 3×3, 5×5 or
//! 7×7 depthwise conv, and the Xception unit), channel split at stride 1, a projection branch at
//! stride 2, ReLU. Presets: `spos-imagenet`, `spos-cifar`, `tiny` (`presets.rs`).

use super::BlockShape;
use super::Choice;
use crate::cost::{Act, ConvSpec, conv};

/// Why `b` cannot be a ShuffleNetV2 block, if it cannot: a stride-1 block passes half its input
/// through, so it needs equal, even in/out channels; every block needs a non-empty main branch.
pub(crate) fn check_block(b: &BlockShape) -> Option<String> {
    if b.stride == 1 && (b.in_channels != b.out_channels || !b.in_channels.is_multiple_of(2)) {
        return Some(format!(
            "block {} (stride 1) needs equal, even in/out channels, got {} → {}; give stage {} stride 2",
            b.index, b.in_channels, b.out_channels, b.stage
        ));
    }
    if b.out_channels <= b.branch_in() || !b.out_channels.is_multiple_of(2) {
        return Some(format!(
            "block {}: {} → {} channels leaves an empty branch; stage {} needs more than {} even output channels",
            b.index,
            b.in_channels,
            b.out_channels,
            b.stage,
            b.branch_in()
        ));
    }
    None
}

/// The convs of one ShuffleNetV2 choice block, in execution order within each branch: the main
/// branch (`main.conv{j}`) and, at stride 2, the projection branch (`proj.conv0` dw,
/// `proj.conv1` pw).
///
/// Wiring (SPOS): ShuffleNet-k main = pw `branch_in → mid` (ReLU), dw k×k stride s,
/// pw `mid → branch_out` (ReLU). Xception main = [dw 3×3 (stride s on the first), pw (ReLU)] × 3
/// with pws `branch_in → mid`, `mid → mid`, `mid → branch_out`. Projection = dw k×k s2 on the full
/// input (k = 3 for Xception), pw `in → in` (ReLU).
pub(crate) fn block_convs(b: &BlockShape, choice: Choice) -> Vec<ConvSpec> {
    let (bi, mid, bo, s) = (b.branch_in(), b.mid(), b.branch_out(), b.stride);
    let (i, o) = (b.in_size, b.out_size);
    let k = choice.kernel();
    let (r, n) = (Act::Relu, Act::None);
    let mut out = match choice {
        Choice::ShuffleK3 | Choice::ShuffleK5 | Choice::ShuffleK7 => vec![
            conv("main.conv0", (bi, mid), 1, 1, false, (i, i), r),
            conv("main.conv1", (mid, mid), k, s, true, (i, o), n),
            conv("main.conv2", (mid, bo), 1, 1, false, (o, o), r),
        ],
        Choice::Xception => vec![
            conv("main.conv0", (bi, bi), 3, s, true, (i, o), n),
            conv("main.conv1", (bi, mid), 1, 1, false, (o, o), r),
            conv("main.conv2", (mid, mid), 3, 1, true, (o, o), n),
            conv("main.conv3", (mid, mid), 1, 1, false, (o, o), r),
            conv("main.conv4", (mid, mid), 3, 1, true, (o, o), n),
            conv("main.conv5", (mid, bo), 1, 1, false, (o, o), r),
        ],
        other => unreachable!("{other:?} is not a ShuffleNetV2 choice (Space::validate)"),
    };
    if s != 1 {
        let cin = b.in_channels;
        out.push(conv("proj.conv0", (cin, cin), k, s, true, (i, o), n));
        out.push(conv("proj.conv1", (cin, cin), 1, 1, false, (o, o), r));
    }
    out
}
