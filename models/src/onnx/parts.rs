//! Parts of a subnet as standalone ONNX models, for latency block tables; and whole subnets
//! spliced from a bank of random subnets, so that measuring many archs needs no new weights.
//!
//! A [`Part`] is the stem conv, one choice block, or the head (last conv, pool, classifier). Its
//! model has the part's real input and output shapes (a block at position `i` takes
//! `(batch, in_channels, in_size, in_size)` of that position), the same nodes and folded weights
//! as in the whole-subnet export (the graph code is shared with [`model_proto`](super::model_proto)),
//! input [`INPUT_NAME`] and output [`PART_OUTPUT_NAME`] (the head keeps
//! [`OUTPUT_NAME`]). The metadata holds `space`, `arch` (of the subnet the part comes from),
//! `part` (`stem`, `block 7`, `head`), `choice` (blocks only, the digit), `input_shape`,
//! `output_shape`, `layout`, `version` and `flops` (multiply-adds of the part).
//!
//! A [`PartBank`] holds one random subnet per choice (`Arch::uniform(n, c)`), built once. Its
//! [`PartBank::export_arch`] splices any arch from those subnets' blocks: the result is the same
//! graph as exporting `Subnet::random` of that arch (other weight values, which do not change the
//! latency of a dense runtime), in milliseconds instead of the seconds `Subnet::random` spends
//! measuring BN statistics on a probe batch. Its parts are the very weights the spliced subnets
//! use, so a block table and the whole subnets it is fitted on measure the same tensors.
//!
//! ```
//! use shiftnas_models::{Arch, Space, onnx::{ExportOptions, Part, PartBank}};
//! let space = Space::tiny();
//! let bank = PartBank::random(&space, 0).unwrap();
//! let opts = ExportOptions::default();
//! let block = bank.export_block(3, 2, &opts).unwrap();
//! let head = bank.export_part(Part::Head, &opts).unwrap();
//! let arch = space.parse_arch("01230123012301230123").unwrap();
//! let whole = bank.export_arch(&arch, &opts).unwrap();
//! assert!(whole.len() > block.len() && whole.len() > head.len());
//! ```

use std::fmt;

use prost::Message;

use super::nodes::Graph;
use super::{
    ExportOptions, INPUT_NAME, Layers, OUTPUT_NAME, block_nodes, check_options, finish, head_nodes,
    json, layers_proto, pb, shape_json, stem_nodes,
};
use crate::arch::Arch;
use crate::cost::{self, block_cost, last_conv, stem_convs};
use crate::error::{Error, Result};
use crate::space::Space;
use crate::subnet::Subnet;

/// Name of the output of a stem or block model.
pub const PART_OUTPUT_NAME: &str = "output";

/// A part of a subnet exported on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    /// The stem conv (+ activation) and the family's fixed stem block: image → first block's
    /// input.
    Stem,
    /// The choice block at this position (0-based), with the subnet's choice there.
    Block(usize),
    /// Last conv, global average pool, flatten and classifier: last block's output → logits.
    Head,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Part::Stem => f.write_str("stem"),
            Part::Block(i) => write!(f, "block {i}"),
            Part::Head => f.write_str("head"),
        }
    }
}

impl Part {
    /// Input and output shape `(channels, size)` of the part in `space`.
    ///
    /// # Errors
    /// [`Error::BadInput`] for a block position outside the space.
    pub fn io(self, space: &Space) -> Result<((usize, usize), (usize, usize))> {
        let blocks = space.blocks();
        let n = space.input_size;
        let last = blocks
            .last()
            .map_or((space.stem_out_channels(), space.stem_out_size()), |b| {
                (b.out_channels, b.out_size)
            });
        Ok(match self {
            Part::Stem => (
                (space.input_channels, n),
                (space.stem_out_channels(), space.stem_out_size()),
            ),
            Part::Block(i) => {
                let b = blocks.get(i).ok_or_else(|| {
                    Error::BadInput(format!(
                        "block {i} does not exist: space {} has {} blocks (0 to {})",
                        space.name,
                        blocks.len(),
                        blocks.len().saturating_sub(1)
                    ))
                })?;
                ((b.in_channels, b.in_size), (b.out_channels, b.out_size))
            }
            Part::Head => (last, (space.classes, 1)),
        })
    }

    /// FLOPs (multiply-adds) of the part with `arch`'s choice (blocks), for one image.
    ///
    /// # Panics
    /// If `arch` does not fit `space` or the block does not exist (check with [`Part::io`]).
    pub fn flops(self, space: &Space, arch: &Arch) -> u64 {
        match self {
            Part::Stem => stem_convs(space).iter().map(|c| c.flops()).sum(),
            Part::Block(i) => block_cost(space, i, space.choice(arch, i)).flops,
            Part::Head => last_conv(space).flops() + cost::classifier_cost(space).flops,
        }
    }
}

/// The ONNX model of one part of `subnet` (see the module doc).
///
/// # Errors
/// A block position outside the space, options that do not fit the space (as
/// [`model_proto`](super::model_proto)), candle errors reading weights.
pub fn part_proto(subnet: &Subnet, part: Part, options: &ExportOptions) -> Result<pb::ModelProto> {
    let layers = Layers::of(subnet);
    check_options(&layers, options)?;
    let space = subnet.space();
    let ((c_in, s_in), (c_out, s_out)) = part.io(space)?;
    let mut g = Graph::default();
    let out = match part {
        Part::Stem => stem_nodes(&mut g, INPUT_NAME, subnet.stem())?,
        Part::Block(i) => block_nodes(&mut g, INPUT_NAME, &subnet.blocks()[i], options.split)?,
        Part::Head => head_nodes(&mut g, INPUT_NAME, &layers)?,
    };
    let input_dims = [options.batch, Some(c_in), Some(s_in), Some(s_in)];
    let (output_name, output_dims) = match part {
        Part::Head => (OUTPUT_NAME, vec![options.batch, Some(c_out)]),
        _ => {
            // The part's last node writes its value; rename it to the graph output.
            let last = g.nodes.last_mut().expect("a part has at least one node");
            debug_assert_eq!(last.output.first(), Some(&out));
            last.output = vec![PART_OUTPUT_NAME.into()];
            (
                PART_OUTPUT_NAME,
                vec![options.batch, Some(c_out), Some(s_out), Some(s_out)],
            )
        }
    };
    let arch = subnet.arch();
    let mut meta = vec![
        ("space", json(space)),
        ("arch", arch.to_string()),
        ("part", part.to_string()),
        ("input_shape", shape_json(&input_dims)),
        ("output_shape", shape_json(&output_dims)),
        ("layout", "NCHW".into()),
        ("version", env!("CARGO_PKG_VERSION").into()),
        ("flops", part.flops(space, arch).to_string()),
    ];
    if let Part::Block(i) = part {
        meta.push(("choice", arch.genes()[i].to_string()));
    }
    Ok(finish(
        format!("shiftnas {} {} {part}", space.name, arch),
        g,
        (INPUT_NAME, &input_dims),
        (output_name, &output_dims),
        meta,
    ))
}

/// The serialized ONNX model of one part of `subnet` (bytes of a `.onnx` file).
///
/// # Errors
/// As [`part_proto`].
pub fn export_part(subnet: &Subnet, part: Part, options: &ExportOptions) -> Result<Vec<u8>> {
    Ok(part_proto(subnet, part, options)?.encode_to_vec())
}

/// One random subnet per choice of a space, to export parts and splice whole subnets from.
#[derive(Debug, Clone)]
pub struct PartBank {
    subnets: Vec<Subnet>,
}

impl PartBank {
    /// `Subnet::random(space, Arch::uniform(blocks, c), seed + c)` for every choice `c`.
    ///
    /// # Errors
    /// An invalid space.
    pub fn random(space: &Space, seed: u64) -> Result<PartBank> {
        let n = space.num_blocks();
        let subnets = (0..space.choices.len())
            .map(|c| {
                Subnet::random(
                    space,
                    &Arch::uniform(n, c as u8),
                    seed.wrapping_add(c as u64),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        PartBank::new(subnets)
    }

    /// A bank over given subnets of one space; blocks are looked up in the first subnet that
    /// makes the wanted choice there, the stem and head come from the first subnet.
    ///
    /// # Errors
    /// [`Error::BadInput`] for no subnets or subnets of different spaces.
    pub fn new(subnets: Vec<Subnet>) -> Result<PartBank> {
        let Some(first) = subnets.first() else {
            return Err(Error::BadInput(
                "a part bank needs at least one subnet".into(),
            ));
        };
        if let Some(other) = subnets.iter().find(|s| s.space() != first.space()) {
            return Err(Error::BadInput(format!(
                "a part bank's subnets must share one space, got {} and {}",
                first.space().name,
                other.space().name
            )));
        }
        Ok(PartBank { subnets })
    }

    /// The space of the bank's subnets.
    pub fn space(&self) -> &Space {
        self.subnets[0].space()
    }

    /// The first subnet with choice `digit` at block `index`.
    ///
    /// # Errors
    /// [`Error::BadInput`] when the block does not exist or no subnet makes that choice there.
    pub fn subnet_with(&self, index: usize, digit: u8) -> Result<&Subnet> {
        let space = self.space();
        Part::Block(index).io(space)?;
        self.subnets
            .iter()
            .find(|s| s.arch().genes()[index] == digit)
            .ok_or_else(|| {
                Error::BadInput(format!(
                    "no subnet of the part bank has choice {digit} at block {index} \
                     (space {} has choices 0 to {})",
                    space.name,
                    space.choices.len().saturating_sub(1)
                ))
            })
    }

    /// The model of the stem, the head, or block `i` with the choice of the bank's first
    /// subnet (use [`PartBank::export_block`] to pick the choice).
    ///
    /// # Errors
    /// As [`part_proto`].
    pub fn export_part(&self, part: Part, options: &ExportOptions) -> Result<Vec<u8>> {
        export_part(&self.subnets[0], part, options)
    }

    /// The model of block `index` with choice `digit`.
    ///
    /// # Errors
    /// As [`PartBank::subnet_with`] and [`part_proto`].
    pub fn export_block(
        &self,
        index: usize,
        digit: u8,
        options: &ExportOptions,
    ) -> Result<Vec<u8>> {
        export_part(self.subnet_with(index, digit)?, Part::Block(index), options)
    }

    /// The whole-subnet model of `arch` (as [`export`](super::export)), its blocks taken from the
    /// bank.
    ///
    /// # Errors
    /// An arch that does not fit the space; otherwise as [`model_proto`](super::model_proto).
    pub fn export_arch(&self, arch: &Arch, options: &ExportOptions) -> Result<Vec<u8>> {
        let space = self.space();
        space.check_arch(arch)?;
        let first = &self.subnets[0];
        let blocks = arch
            .genes()
            .iter()
            .enumerate()
            .map(|(i, &d)| Ok(&self.subnet_with(i, d)?.blocks()[i]))
            .collect::<Result<Vec<_>>>()?;
        let layers = Layers {
            space,
            arch: arch.clone(),
            stem: first.stem(),
            blocks,
            last: first.last(),
            classifier: first.classifier(),
        };
        Ok(layers_proto(&layers, options)?.encode_to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::export;
    use pb::tensor_shape_proto::dimension::Value;

    fn dims(v: &pb::ValueInfoProto) -> Vec<i64> {
        let Some(pb::type_proto::Value::TensorType(t)) = v.r#type.as_ref().unwrap().value.as_ref()
        else {
            panic!("not a tensor")
        };
        t.shape
            .as_ref()
            .unwrap()
            .dim
            .iter()
            .map(|d| match d.value {
                Some(Value::DimValue(n)) => n,
                _ => -1,
            })
            .collect()
    }

    fn ops(bytes: &[u8]) -> Vec<String> {
        let m = pb::ModelProto::decode(bytes).unwrap();
        m.graph
            .unwrap()
            .node
            .iter()
            .map(|n| n.op_type.clone().unwrap())
            .collect()
    }

    #[test]
    fn parts_declare_their_real_shapes() {
        let space = Space::spos_cifar();
        let bank = PartBank::random(&space, 1).unwrap();
        let opts = ExportOptions::default();
        for b in space.blocks() {
            for d in 0..space.choices.len() as u8 {
                let m = pb::ModelProto::decode(
                    bank.export_block(b.index, d, &opts).unwrap().as_slice(),
                )
                .unwrap();
                let g = m.graph.unwrap();
                let (bi, bo) = (b.in_channels as i64, b.out_channels as i64);
                let (si, so) = (b.in_size as i64, b.out_size as i64);
                assert_eq!(dims(&g.input[0]), [1, bi, si, si], "block {}", b.index);
                assert_eq!(dims(&g.output[0]), [1, bo, so, so], "block {}", b.index);
                assert_eq!(g.output[0].name.as_deref(), Some(PART_OUTPUT_NAME));
                assert_eq!(g.node.last().unwrap().output, [PART_OUTPUT_NAME]);
                let choice = m
                    .metadata_props
                    .iter()
                    .find(|p| p.key.as_deref() == Some("shiftnas.choice"))
                    .and_then(|p| p.value.clone());
                assert_eq!(choice, Some(d.to_string()));
            }
        }
        let stem = pb::ModelProto::decode(bank.export_part(Part::Stem, &opts).unwrap().as_slice())
            .unwrap()
            .graph
            .unwrap();
        let first = space.blocks()[0];
        let (c, s) = (first.in_channels as i64, first.in_size as i64);
        assert_eq!(dims(&stem.output[0]), [1, c, s, s]);
        let head = pb::ModelProto::decode(bank.export_part(Part::Head, &opts).unwrap().as_slice())
            .unwrap()
            .graph
            .unwrap();
        let last = *space.blocks().last().unwrap();
        let (c, s) = (last.out_channels as i64, last.out_size as i64);
        assert_eq!(dims(&head.input[0]), [1, c, s, s]);
        assert_eq!(dims(&head.output[0]), [1, space.classes as i64]);
        assert_eq!(head.output[0].name.as_deref(), Some(OUTPUT_NAME));
    }

    /// MobileNetV2: the stem part ends after the fixed first block, blocks keep their residual
    /// `Add` as the output node, and part FLOPs sum to the arch's.
    #[test]
    fn mbv2_parts_have_the_stem_block_and_residuals() {
        let space = Space::mbv2_tiny();
        let bank = PartBank::random(&space, 2).unwrap();
        let opts = ExportOptions::default();
        let stem = pb::ModelProto::decode(bank.export_part(Part::Stem, &opts).unwrap().as_slice())
            .unwrap()
            .graph
            .unwrap();
        assert_eq!(dims(&stem.output[0]), [1, 8, 28, 28]);
        assert_eq!(ops(&bank.export_part(Part::Stem, &opts).unwrap()).len(), 5);
        let b1 = bank.export_block(1, 4, &opts).unwrap();
        assert_eq!(ops(&b1).last().map(String::as_str), Some("Add"));
        let b0 = bank.export_block(0, 4, &opts).unwrap();
        assert!(!ops(&b0).contains(&"Add".to_string()));
        let arch = space.parse_arch("0123450123450123450").unwrap();
        let parts: u64 = [Part::Stem, Part::Head]
            .into_iter()
            .chain((0..space.num_blocks()).map(Part::Block))
            .map(|p| p.flops(&space, &arch))
            .sum();
        assert_eq!(parts, cost::arch_flops(&space, &arch));
    }

    #[test]
    fn spliced_subnets_match_the_subnet_exporter() {
        let space = Space::tiny();
        let bank = PartBank::random(&space, 3).unwrap();
        let opts = ExportOptions::default();
        // The first subnet's own arch splices back to exactly its export.
        let a0 = Arch::uniform(space.num_blocks(), 0);
        assert_eq!(
            bank.export_arch(&a0, &opts).unwrap(),
            export(bank.subnet_with(0, 0).unwrap(), &opts).unwrap()
        );
        // A mixed arch has the same graph as a fresh random subnet of it.
        let arch = space.parse_arch("01230123012301230123").unwrap();
        let fresh = export(&Subnet::random(&space, &arch, 9).unwrap(), &opts).unwrap();
        assert_eq!(ops(&bank.export_arch(&arch, &opts).unwrap()), ops(&fresh));
        let m = pb::ModelProto::decode(bank.export_arch(&arch, &opts).unwrap().as_slice()).unwrap();
        let f = pb::ModelProto::decode(fresh.as_slice()).unwrap();
        let shapes = |m: &pb::ModelProto| -> Vec<(String, Vec<i64>)> {
            let mut v: Vec<_> = m
                .graph
                .as_ref()
                .unwrap()
                .initializer
                .iter()
                .map(|t| (t.name.clone().unwrap(), t.dims.clone()))
                .collect();
            v.sort();
            v
        };
        assert_eq!(shapes(&m), shapes(&f));
    }

    #[test]
    fn bad_positions_and_banks_are_named() {
        let space = Space::tiny();
        let sub = Subnet::random(&space, &Arch::uniform(space.num_blocks(), 1), 0).unwrap();
        let e = export_part(&sub, Part::Block(99), &ExportOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("block 99 does not exist"), "{e}");
        let bank = PartBank::new(vec![sub]).unwrap();
        let e = bank
            .export_block(2, 3, &ExportOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no subnet of the part bank has choice 3 at block 2"),
            "{e}"
        );
        assert!(PartBank::new(vec![]).is_err());
    }
}
