//! Helpers shared by the model test binaries.

use candle_core::{DType, Tensor};
use shiftnas_models::Wiring;
use shiftnas_models::cost::Act;
use shiftnas_models::subnet::{FoldedConv, Subnet, split_channels};

/// The folded network in f64: how far the f32 subnet itself drifts from exact.
pub fn subnet_f64(subnet: &Subnet, x: &Tensor) -> Tensor {
    let conv = |c: &FoldedConv, x: &Tensor| -> Tensor {
        let s = &c.spec;
        let w = c.weight.to_dtype(DType::F64).unwrap();
        let b = c.bias.to_dtype(DType::F64).unwrap();
        let y = x.conv2d(&w, s.padding(), s.stride, 1, s.groups).unwrap();
        let y = y
            .broadcast_add(&b.reshape((1, s.out_channels, 1, 1)).unwrap())
            .unwrap();
        match s.act {
            Act::None => y,
            Act::Relu => y.relu().unwrap(),
            Act::Relu6 => y.clamp(0f64, 6f64).unwrap(),
        }
    };
    let mut h = x.to_dtype(DType::F64).unwrap();
    for c in &subnet.stem().convs {
        h = conv(c, &h);
    }
    for block in subnet.blocks() {
        if let Wiring::InvertedResidual { residual } = block.wiring {
            let mut main = h.clone();
            for c in &block.main {
                main = conv(c, &main);
            }
            h = if residual { (main + &h).unwrap() } else { main };
            continue;
        }
        let (side, mut main) = if block.shape.stride == 1 {
            split_channels(&h).unwrap()
        } else {
            let mut side = h.clone();
            for c in &block.proj {
                side = conv(c, &side);
            }
            (side, h.clone())
        };
        for c in &block.main {
            main = conv(c, &main);
        }
        h = Tensor::cat(&[side, main], 1).unwrap();
    }
    let h = conv(subnet.last(), &h).mean((2, 3)).unwrap();
    let w = subnet.classifier().to_dtype(DType::F64).unwrap();
    h.matmul(&w.t().unwrap()).unwrap()
}
