//! The standalone network of one arch, with BN folded into the convs: what gets exported to ONNX.
//!
//! A [`Subnet`] holds plain f32 CPU tensors: for every conv a folded weight
//! `W' = W · γ / √(σ² + ε)` (per output channel) and a bias `b' = β − μ · γ / √(σ² + ε)`, with
//! ε = [`BN_EPS`]. It is built from named tensors that follow the parameter names shared by the
//! supernet, its checkpoints and the ONNX node names:
//!
//! | part | names |
//! |---|---|
//! | stem | `stem.conv.weight` (OIHW), `stem.bn.{running_mean,running_var}` (+ optional `weight`, `bias`) |
//! | MobileNetV2 fixed first block | `stem.block.conv{0,1}.weight`, `stem.block.bn{0,1}.*` |
//! | block `i`, choice `c` | `blocks.{i}.choice{c}.main.conv{j}.weight`, `blocks.{i}.choice{c}.main.bn{j}.*` |
//! | stride-2 projection | `blocks.{i}.choice{c}.proj.conv{0,1}.weight`, `blocks.{i}.choice{c}.proj.bn{0,1}.*` |
//! | last conv | `last.conv.weight`, `last.bn.*` |
//! | classifier | `classifier.weight` `[classes, last_channels]`, no bias |
//!
//! ShuffleNet and MBConv choices have `main.conv0` (pw), `conv1` (dw), `conv2` (pw); Xception has
//! `conv0`…`conv5` (dw, pw, dw, pw, dw, pw). BN `j` follows conv `j`; a BN without `weight`/`bias`
//! is affine-free (γ = 1, β = 0), as in the supernet. The convs are [`crate::cost::block_convs`],
//! their wiring [`Space::wiring`].
//!
//! [`Subnet::forward`] runs the folded network with plain candle ops (eval mode): the reference the
//! ONNX export is checked against.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal, Uniform};

use crate::arch::Arch;
use crate::cost::{Act, ConvSpec, block_convs, last_conv, stem_convs};
use crate::error::{Error, Result};
use crate::space::{BlockShape, Choice, Space, Wiring};

/// BN epsilon used when folding (PyTorch's and candle's default).
pub const BN_EPS: f64 = 1e-5;

/// One conv with its BN folded in: `act(conv(x, weight) + bias)`.
#[derive(Debug, Clone)]
pub struct FoldedConv {
    /// Node name without the choice, e.g. `blocks.7.main.conv1`, `stem.conv`.
    pub name: String,
    /// Channels, kernel, stride, groups, sizes and the activation that follows.
    pub spec: ConvSpec,
    /// Folded weight, OIHW, f32 on the CPU.
    pub weight: Tensor,
    /// Folded bias `[out_channels]`, f32 on the CPU.
    pub bias: Tensor,
}

impl FoldedConv {
    /// `act(conv(x) + bias)` with candle's (grouped) conv2d.
    ///
    /// # Errors
    /// A candle error when `x` does not have `spec.in_channels` channels.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let s = &self.spec;
        let y = x.conv2d(&self.weight, s.padding(), s.stride, 1, s.groups)?;
        let y = y.broadcast_add(&self.bias.reshape((1, s.out_channels, 1, 1))?)?;
        Ok(match s.act {
            Act::None => y,
            Act::Relu => y.relu()?,
            Act::Relu6 => y.clamp(0f32, 6f32)?,
        })
    }
}

/// The folded stem part: the stem conv and, in MobileNetV2 spaces, the fixed first block's
/// convs, run in sequence.
#[derive(Debug, Clone)]
pub struct FoldedStem {
    /// The convs in order.
    pub convs: Vec<FoldedConv>,
}

impl FoldedStem {
    /// The convs one after the other.
    ///
    /// # Errors
    /// A candle error on a wrong input shape.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for c in &self.convs {
            h = c.forward(&h)?;
        }
        Ok(h)
    }
}

/// One choice block of a subnet: the main branch and, for ShuffleNetV2 at stride 2, the
/// projection branch.
#[derive(Debug, Clone)]
pub struct SubnetBlock {
    /// Channels, stride and sizes.
    pub shape: BlockShape,
    /// The choice this arch makes here.
    pub choice: Choice,
    /// How the convs combine.
    pub wiring: Wiring,
    /// Main-branch convs in order.
    pub main: Vec<FoldedConv>,
    /// Projection convs (dw, pw) at stride 2; empty at stride 1.
    pub proj: Vec<FoldedConv>,
}

impl SubnetBlock {
    /// ShuffleNetV2 stride 1: `concat(even channels, main(odd channels))`; stride 2:
    /// `concat(proj(x), main(x))`. Inverted residual: `main(x)`, `+ x` where residual.
    ///
    /// # Errors
    /// A candle error on a wrong input shape.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let Wiring::InvertedResidual { residual } = self.wiring {
            let mut h = x.clone();
            for c in &self.main {
                h = c.forward(&h)?;
            }
            return Ok(if residual { (h + x)? } else { h });
        }
        let (mut side, mut main) = if self.shape.stride == 1 {
            split_channels(x)?
        } else {
            (x.clone(), x.clone())
        };
        for c in &self.proj {
            side = c.forward(&side)?;
        }
        for c in &self.main {
            main = c.forward(&main)?;
        }
        Ok(Tensor::cat(&[side, main], 1)?)
    }

    /// `block 7 (k5, stride 2)`: how errors name this block.
    pub fn describe(&self) -> String {
        describe_block(&self.shape, self.choice)
    }
}

/// SPOS `channel_shuffle`: `(even channels, odd channels)` of a `(b, c, h, w)` tensor.
///
/// # Errors
/// A candle error when `x` is not 4-D with an even channel count.
pub fn split_channels(x: &Tensor) -> Result<(Tensor, Tensor)> {
    let (b, c, h, w) = x.dims4()?;
    let x = x.reshape((b, c / 2, 2, h, w))?;
    let even = x.narrow(2, 0, 1)?.reshape((b, c / 2, h, w))?;
    let odd = x.narrow(2, 1, 1)?.reshape((b, c / 2, h, w))?;
    Ok((even, odd))
}

fn describe_block(b: &BlockShape, choice: Choice) -> String {
    format!(
        "block {} ({}, stride {})",
        b.index,
        choice.short_name(),
        b.stride
    )
}

/// Where one conv's tensors live: its source prefix (with the choice), node name, part and spec.
struct ConvSlot {
    source: String,
    node: String,
    part: String,
    spec: ConvSpec,
}

impl ConvSlot {
    /// Prefix of the BN that follows: the last `conv` of the prefix becomes `bn`.
    fn bn_prefix(&self) -> String {
        match self.source.rsplit_once(".conv") {
            Some((head, idx)) => format!("{head}.bn{idx}"),
            None => self.source.clone(),
        }
    }
}

fn slots(space: &Space, arch: &Arch) -> (Vec<ConvSlot>, Vec<Vec<ConvSlot>>, ConvSlot) {
    let stem = stem_convs(space)
        .into_iter()
        .map(|spec| ConvSlot {
            source: format!("stem.{}", spec.name),
            node: format!("stem.{}", spec.name),
            part: "stem".into(),
            spec,
        })
        .collect();
    let blocks = space
        .blocks()
        .iter()
        .map(|b| {
            let digit = arch.genes()[b.index];
            let choice = space.choice(arch, b.index);
            block_convs(b, choice)
                .into_iter()
                .map(|spec| ConvSlot {
                    source: format!("blocks.{}.choice{digit}.{}", b.index, spec.name),
                    node: format!("blocks.{}.{}", b.index, spec.name),
                    part: describe_block(b, choice),
                    spec,
                })
                .collect()
        })
        .collect();
    let last = ConvSlot {
        source: "last.conv".into(),
        node: "last.conv".into(),
        part: "last conv".into(),
        spec: last_conv(space),
    };
    (stem, blocks, last)
}

/// The standalone, BN-folded network of one arch (see the module doc for names and wiring).
#[derive(Debug, Clone)]
pub struct Subnet {
    space: Space,
    arch: Arch,
    stem: FoldedStem,
    blocks: Vec<SubnetBlock>,
    last: FoldedConv,
    classifier: Tensor,
}

impl Subnet {
    /// Every tensor name [`Subnet::from_tensors`] reads for `arch` (BN `weight`/`bias` included,
    /// though they are optional).
    ///
    /// # Panics
    /// If `arch` does not fit `space` (check it with [`Space::check_arch`] first).
    pub fn parameter_names(space: &Space, arch: &Arch) -> Vec<String> {
        let (stem, blocks, last) = slots(space, arch);
        let mut out = Vec::new();
        for slot in stem
            .iter()
            .chain(blocks.iter().flatten())
            .chain(std::iter::once(&last))
        {
            out.push(format!("{}.weight", slot.source));
            let bn = slot.bn_prefix();
            for field in ["running_mean", "running_var", "weight", "bias"] {
                out.push(format!("{bn}.{field}"));
            }
        }
        out.push("classifier.weight".into());
        out
    }

    /// Builds the subnet of `arch` from named tensors, folding every BN into its conv.
    ///
    /// Tensors of other choices are ignored, so a whole supernet state dict works as input.
    ///
    /// # Errors
    /// [`Error::InvalidSpace`]/[`Error::Arch`] for a bad space or arch; [`Error::MissingTensor`]
    /// naming the key and the block; [`Error::InvalidTensor`] for a wrong shape or a BN variance
    /// that is negative or not finite.
    pub fn from_tensors(
        space: &Space,
        arch: &Arch,
        tensors: &BTreeMap<String, Tensor>,
    ) -> Result<Subnet> {
        space.validate()?;
        space.check_arch(arch)?;
        Subnet::assemble(space, arch, None, |slot, _| fold(slot, tensors), tensors)
    }

    /// Builds the subnet conv by conv with `make`. With a `probe` batch, the probe is run through
    /// the layers already built and `make` gets each conv's input (for BN statistics).
    fn assemble(
        space: &Space,
        arch: &Arch,
        probe: Option<Tensor>,
        mut make: impl FnMut(&ConvSlot, Option<&Tensor>) -> Result<FoldedConv>,
        tensors: &BTreeMap<String, Tensor>,
    ) -> Result<Subnet> {
        let (stem_slot, block_slots, last_slot) = slots(space, arch);
        let step = |c: &FoldedConv, x: Option<Tensor>| x.map(|x| c.forward(&x)).transpose();
        let mut h = probe;
        let mut stem = Vec::with_capacity(stem_slot.len());
        for slot in &stem_slot {
            let c = make(slot, h.as_ref())?;
            h = step(&c, h)?;
            stem.push(c);
        }
        let stem = FoldedStem { convs: stem };
        let shapes = space.blocks();
        let mut blocks = Vec::with_capacity(shapes.len());
        for (shape, slots) in shapes.iter().zip(&block_slots) {
            let wiring = space.wiring(shape);
            let (mut side, mut main) = match &h {
                Some(x) if shape.stride == 1 && wiring == Wiring::Shuffle => {
                    let (a, b) = split_channels(x)?;
                    (Some(a), Some(b))
                }
                other => (other.clone(), other.clone()),
            };
            let (mut proj_convs, mut main_convs) = (Vec::new(), Vec::new());
            for slot in slots {
                if slot.spec.name.starts_with("proj.") {
                    let c = make(slot, side.as_ref())?;
                    side = step(&c, side)?;
                    proj_convs.push(c);
                } else {
                    let c = make(slot, main.as_ref())?;
                    main = step(&c, main)?;
                    main_convs.push(c);
                }
            }
            h = match (wiring, side, main) {
                (Wiring::Shuffle, Some(a), Some(b)) => Some(Tensor::cat(&[a, b], 1)?),
                (Wiring::InvertedResidual { residual: true }, Some(x), Some(b)) => Some((b + x)?),
                (Wiring::InvertedResidual { residual: false }, _, b) => b,
                _ => None,
            };
            blocks.push(SubnetBlock {
                shape: *shape,
                choice: space.choice(arch, shape.index),
                wiring,
                main: main_convs,
                proj: proj_convs,
            });
        }
        let last = make(&last_slot, h.as_ref())?;
        let classifier = tensor(
            tensors,
            "classifier.weight",
            "classifier",
            &[space.classes, space.last_channels],
        )?;
        Ok(Subnet {
            space: space.clone(),
            arch: arch.clone(),
            stem,
            blocks,
            last,
            classifier,
        })
    }

    /// A subnet with random weights, seeded: for latency-only exports and tests.
    ///
    /// Convs are He-normal, the classifier N(0, 1/last_channels), BN γ ∈ [0.5, 1.5] and
    /// β ∈ [0.25, 1.0] uniform. BN running statistics are measured on a random N(0, 1) probe batch
    /// (2 to 16 images; variances floored at 25 % of the layer mean), as a BN calibration would,
    /// so activations stay O(1) through all blocks (with made-up statistics they grow
    /// geometrically with depth and the logits are useless for numeric comparisons).
    ///
    /// β > 0 keeps the net well conditioned in f32. With measured statistics every pre-ReLU value
    /// is ~N(β/γ, 1) in units of γ; the ReLU cuts a fraction of the units and the next BN removes
    /// the ReLU's mean, so each ReLU → BN stage scales a perturbation's size relative to the
    /// activations by √(P(z > 0) / var(relu z)): 1.21 at β = 0, 1.06 at β/γ = 1. Over the 60 ReLUs
    /// of an all-Xception arch, β ∈ [−0.2, 0.2] amplified f32 rounding ~1000-fold (logits 1–2e-4
    /// from an f64 evaluation of the same folded net); β ∈ [0.25, 1.0] keeps it below 5e-6
    /// (docs/export.md).
    ///
    /// # Errors
    /// As [`Subnet::from_tensors`] for a bad space or arch.
    pub fn random(space: &Space, arch: &Arch, seed: u64) -> Result<Subnet> {
        space.validate()?;
        space.check_arch(arch)?;
        let mut rng = StdRng::seed_from_u64(seed);
        let (stem, blocks, last) = slots(space, arch);
        let mut map = BTreeMap::new();
        let mut put = |name: String, shape: &[usize], values: Vec<f32>| -> Result<()> {
            map.insert(name, Tensor::from_vec(values, shape, &Device::Cpu)?);
            Ok(())
        };
        let uniform = |lo: f32, hi: f32| Uniform::new(lo, hi).expect("constant bounds lo < hi");
        for slot in stem
            .iter()
            .chain(blocks.iter().flatten())
            .chain(std::iter::once(&last))
        {
            let shape = slot.spec.weight_shape();
            let fan_in = (shape[1] * shape[2] * shape[3]) as f32;
            let normal = Normal::new(0.0, (2.0 / fan_in).sqrt()).expect("positive std");
            let n = slot.spec.weights() as usize;
            put(
                format!("{}.weight", slot.source),
                &shape,
                (0..n).map(|_| normal.sample(&mut rng)).collect(),
            )?;
            let c = slot.spec.out_channels;
            let bn = slot.bn_prefix();
            for (field, lo, hi) in [
                ("running_mean", -0.2, 0.2),
                ("running_var", 0.5, 1.5),
                ("weight", 0.5, 1.5),
                ("bias", 0.25, 1.0),
            ] {
                let d = uniform(lo, hi);
                put(
                    format!("{bn}.{field}"),
                    &[c],
                    (0..c).map(|_| d.sample(&mut rng)).collect(),
                )?;
            }
        }
        let (k, l) = (space.classes, space.last_channels);
        let normal = Normal::new(0.0, (1.0 / l as f32).sqrt()).expect("positive std");
        put(
            "classifier.weight".into(),
            &[k, l],
            (0..k * l).map(|_| normal.sample(&mut rng)).collect(),
        )?;
        let n = space.input_size;
        // Enough probe images for ≥ 64 samples per channel at the last blocks' resolution.
        let final_px = space.final_size().pow(2).max(1);
        let batch = 64usize.div_ceil(final_px).clamp(2, 16);
        let probe: Vec<f32> = {
            let normal = Normal::new(0.0f32, 1.0).expect("positive std");
            (0..batch * space.input_channels * n * n)
                .map(|_| normal.sample(&mut rng))
                .collect()
        };
        let probe = Tensor::from_vec(probe, (batch, space.input_channels, n, n), &Device::Cpu)?;
        let mut stats = map.clone();
        Subnet::assemble(
            space,
            arch,
            Some(probe),
            |slot, x| {
                if let Some(x) = x {
                    let s = &slot.spec;
                    let w = &map[&format!("{}.weight", slot.source)];
                    // The probe only sets statistics, so it may use the fast depthwise op
                    // (candle's grouped conv made each random export take seconds).
                    let y = if s.groups > 1 {
                        shiftnas_kernels::dwconv::depthwise_conv2d(x, w, s.stride)?
                    } else {
                        x.conv2d(w, s.padding(), s.stride, 1, 1)?
                    };
                    let mean = y.mean_keepdim((0, 2, 3))?;
                    let var = y.broadcast_sub(&mean)?.sqr()?.mean((0, 2, 3))?;
                    // A floor at 25 % of the layer's mean variance keeps a near-constant channel
                    // from being scaled up by orders of magnitude.
                    let floor = (var.mean_all()?.to_scalar::<f32>()? * 0.25).max(1e-6);
                    let var = var.clamp(floor, f32::MAX)?;
                    let bn = slot.bn_prefix();
                    stats.insert(format!("{bn}.running_mean"), mean.flatten_all()?);
                    stats.insert(format!("{bn}.running_var"), var);
                }
                fold(slot, &stats)
            },
            &map,
        )
    }

    /// The space this subnet belongs to.
    pub fn space(&self) -> &Space {
        &self.space
    }

    /// The arch this subnet runs.
    pub fn arch(&self) -> &Arch {
        &self.arch
    }

    /// The folded stem part (stem conv, and MobileNetV2's fixed first block).
    pub fn stem(&self) -> &FoldedStem {
        &self.stem
    }

    /// The choice blocks, in order.
    pub fn blocks(&self) -> &[SubnetBlock] {
        &self.blocks
    }

    /// The folded last conv.
    pub fn last(&self) -> &FoldedConv {
        &self.last
    }

    /// The classifier weight `[classes, last_channels]` (no bias).
    pub fn classifier(&self) -> &Tensor {
        &self.classifier
    }

    /// Logits `(b, classes)` of an input `(b, input_channels, input_size, input_size)`, eval mode.
    ///
    /// # Errors
    /// [`Error::InvalidTensor`] naming the expected shape when `x` has another one.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let s = &self.space;
        let ok = matches!(x.dims4(), Ok((_, c, h, w)) if c == s.input_channels && h == s.input_size && w == s.input_size);
        if !ok {
            return Err(Error::InvalidTensor {
                name: "input".into(),
                part: format!("subnet {} of space {}", self.arch, s.name),
                reason: format!(
                    "shape {:?}, expected (batch, {}, {}, {})",
                    x.dims(),
                    s.input_channels,
                    s.input_size,
                    s.input_size
                ),
            });
        }
        let mut h = self.stem.forward(&x.to_dtype(DType::F32)?)?;
        for b in &self.blocks {
            h = b.forward(&h)?;
        }
        let h = self.last.forward(&h)?.mean((2, 3))?;
        Ok(h.matmul(&self.classifier.t()?)?)
    }
}

/// The tensor `name`, as contiguous f32 on the CPU, checked against `shape`.
fn tensor(
    tensors: &BTreeMap<String, Tensor>,
    name: &str,
    part: &str,
    shape: &[usize],
) -> Result<Tensor> {
    let t = tensors.get(name).ok_or_else(|| Error::MissingTensor {
        name: name.to_string(),
        part: part.to_string(),
    })?;
    if t.dims() != shape {
        return Err(Error::InvalidTensor {
            name: name.to_string(),
            part: part.to_string(),
            reason: format!(
                "shape {:?}, expected {shape:?}; the weights come from another space or width multiplier",
                t.dims()
            ),
        });
    }
    Ok(t.to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .contiguous()?)
}

fn values(
    tensors: &BTreeMap<String, Tensor>,
    name: &str,
    part: &str,
    len: usize,
) -> Result<Vec<f32>> {
    Ok(tensor(tensors, name, part, &[len])?.to_vec1::<f32>()?)
}

/// Reads one conv and its BN and folds them.
fn fold(slot: &ConvSlot, tensors: &BTreeMap<String, Tensor>) -> Result<FoldedConv> {
    let spec = &slot.spec;
    let c = spec.out_channels;
    let part = &slot.part;
    let weight = tensor(
        tensors,
        &format!("{}.weight", slot.source),
        part,
        &spec.weight_shape(),
    )?;
    let bn = slot.bn_prefix();
    let mean = values(tensors, &format!("{bn}.running_mean"), part, c)?;
    let var_name = format!("{bn}.running_var");
    let var = values(tensors, &var_name, part, c)?;
    let optional = |field: &str, default: f32| -> Result<Vec<f32>> {
        let name = format!("{bn}.{field}");
        if tensors.contains_key(&name) {
            values(tensors, &name, part, c)
        } else {
            Ok(vec![default; c])
        }
    };
    let gamma = optional("weight", 1.0)?;
    let beta = optional("bias", 0.0)?;
    let mut scale = Vec::with_capacity(c);
    let mut bias = Vec::with_capacity(c);
    for o in 0..c {
        let v = f64::from(var[o]) + BN_EPS;
        if !(v.is_finite() && v > 0.0) {
            return Err(Error::InvalidTensor {
                name: var_name,
                part: part.clone(),
                reason: format!(
                    "channel {o} has running variance {}; calibrate BN again (or retrain) before exporting",
                    var[o]
                ),
            });
        }
        let s = f64::from(gamma[o]) / v.sqrt();
        scale.push(s);
        bias.push((f64::from(beta[o]) - f64::from(mean[o]) * s) as f32);
    }
    let mut w = weight.flatten_all()?.to_vec1::<f32>()?;
    let per_out = w.len() / c;
    for (o, chunk) in w.chunks_mut(per_out).enumerate() {
        for x in chunk {
            *x = (f64::from(*x) * scale[o]) as f32;
        }
    }
    Ok(FoldedConv {
        name: slot.node.clone(),
        spec: spec.clone(),
        weight: Tensor::from_vec(w, spec.weight_shape().to_vec(), &Device::Cpu)?,
        bias: Tensor::from_vec(bias, c, &Device::Cpu)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_arch() -> (Space, Arch) {
        let s = Space::tiny();
        let a = s.parse_arch("01230123012301230123").unwrap();
        (s, a)
    }

    #[test]
    fn missing_key_names_the_key_and_block() {
        let (s, a) = tiny_arch();
        let mut map = BTreeMap::new();
        // Only the stem: the first block's first conv is reported.
        let names = Subnet::parameter_names(&s, &a);
        for n in names.iter().filter(|n| n.starts_with("stem.")) {
            let shape: Vec<usize> = if n.ends_with("conv.weight") {
                vec![16, 1, 3, 3]
            } else {
                vec![16]
            };
            map.insert(
                n.clone(),
                Tensor::ones(shape, DType::F32, &Device::Cpu).unwrap(),
            );
        }
        let e = Subnet::from_tensors(&s, &a, &map).unwrap_err().to_string();
        assert!(
            e.contains("blocks.0.choice0.main.conv0.weight")
                && e.contains("block 0 (k3, stride 2)"),
            "{e}"
        );
    }

    #[test]
    fn bn_folding_matches_conv_then_bn() {
        // One 1×1 conv, 2 → 2 channels, on a 1×1 input: folded output = γ (Wx − μ)/√(σ²+ε) + β.
        let (s, a) = tiny_arch();
        let sub = Subnet::random(&s, &a, 3).unwrap();
        let slot = ConvSlot {
            source: "x.conv".into(),
            node: "x.conv".into(),
            part: "test".into(),
            spec: ConvSpec {
                name: "conv".into(),
                in_channels: 2,
                out_channels: 2,
                kernel: 1,
                stride: 1,
                groups: 1,
                in_size: 1,
                out_size: 1,
                act: Act::None,
            },
        };
        let dev = Device::Cpu;
        let mut map = BTreeMap::new();
        let put = |m: &mut BTreeMap<String, Tensor>, k: &str, v: Vec<f32>, sh: &[usize]| {
            m.insert(k.to_string(), Tensor::from_vec(v, sh, &dev).unwrap());
        };
        put(
            &mut map,
            "x.conv.weight",
            vec![1., 2., 3., 4.],
            &[2, 2, 1, 1],
        );
        put(&mut map, "x.bn.running_mean", vec![0.5, -1.], &[2]);
        put(&mut map, "x.bn.running_var", vec![4., 0.25], &[2]);
        put(&mut map, "x.bn.weight", vec![2., 3.], &[2]);
        put(&mut map, "x.bn.bias", vec![0.1, -0.2], &[2]);
        let f = fold(&slot, &map).unwrap();
        let x = Tensor::from_vec(vec![1f32, -1.], (1, 2, 1, 1), &dev).unwrap();
        let y = f.forward(&x).unwrap().flatten_all().unwrap();
        let y = y.to_vec1::<f32>().unwrap();
        let eps = BN_EPS;
        let e0 = 2. * ((1. - 2.) - 0.5) / (4. + eps).sqrt() + 0.1;
        let e1 = 3. * ((3. - 4.) + 1.) / (0.25 + eps).sqrt() - 0.2;
        assert!((f64::from(y[0]) - e0).abs() < 1e-5, "{y:?} vs {e0}");
        assert!((f64::from(y[1]) - e1).abs() < 1e-5, "{y:?} vs {e1}");
        assert_eq!(sub.blocks().len(), 20);
    }

    #[test]
    fn split_is_even_then_odd() {
        let x = Tensor::arange(0f32, 8., &Device::Cpu)
            .unwrap()
            .reshape((1, 8, 1, 1))
            .unwrap();
        let (e, o) = split_channels(&x).unwrap();
        assert_eq!(
            e.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            [0., 2., 4., 6.]
        );
        assert_eq!(
            o.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            [1., 3., 5., 7.]
        );
    }

    #[test]
    fn forward_gives_logits_and_checks_the_input() {
        let (s, a) = tiny_arch();
        let sub = Subnet::random(&s, &a, 7).unwrap();
        let x = Tensor::randn(0f32, 1., (2, 1, 28, 28), &Device::Cpu).unwrap();
        let y = sub.forward(&x).unwrap();
        assert_eq!(y.dims(), [2, 10]);
        let bad = Tensor::zeros((1, 3, 28, 28), DType::F32, &Device::Cpu).unwrap();
        let e = sub.forward(&bad).unwrap_err().to_string();
        assert!(e.contains("expected (batch, 1, 28, 28)"), "{e}");
    }
}
