//! ONNX export of a BN-folded [`Subnet`]: IR version 8, opset 17, default domain only.
//!
//! The graph takes `input` `(batch, C, H, W)` f32 in NCHW (batch fixed to
//! [`ExportOptions::batch`], 1 by default, or the symbolic dimension `batch`) and returns `logits`
//! `(batch, classes)`. It is `Conv`(+`Relu`, or `Clip` [0, 6] for ReLU6) for every folded conv,
//! per ShuffleNetV2 block the SPOS channel split ([`SplitStyle`]) and `Concat`, per
//! inverted-residual block an `Add` where it is residual, then `GlobalAveragePool`, `Flatten` and
//! a bias-free `Gemm`. Node and initializer names follow the parameter names without the choice
//! (`blocks.7.main.conv1`, `blocks.7.main.conv1.weight`).
//!
//! Metadata (`metadata_props`, keys `shiftnas.*`, values are strings, JSON where structured):
//! `space` (the [`Space`](crate::Space) as JSON), `arch`, `input_shape` (JSON array, `"batch"` for
//! a symbolic batch), `layout` (`NCHW`), `mean` and `std` (JSON arrays per channel, only when
//! known), `class_names` (JSON array, only when known), `version` (shiftnas), `flops`
//! (multiply-adds) and `params` (standalone subnet with affine BN, as [`cost::arch_cost`]).
//!
//! ```
//! use shiftnas_models::{Space, onnx, subnet::Subnet};
//! let space = Space::tiny();
//! let arch = space.parse_arch("01230123012301230123").unwrap();
//! let subnet = Subnet::random(&space, &arch, 0).unwrap();
//! let bytes = onnx::export(&subnet, &onnx::ExportOptions::default()).unwrap();
//! assert!(bytes.len() > 1000);
//! ```

pub mod nodes;
pub mod parts;
pub mod pb;

use candle_core::Tensor;
use prost::Message;

use nodes::Graph;
pub use nodes::SplitStyle;
pub use parts::{Part, PartBank, export_part, part_proto};

use crate::arch::Arch;
use crate::cost;
use crate::error::{Error, Result};
use crate::space::{Space, Wiring};
use crate::subnet::{FoldedConv, FoldedStem, Subnet, SubnetBlock};

/// ONNX IR version written.
pub const IR_VERSION: i64 = 8;
/// Opset of the default domain.
pub const OPSET: i64 = 17;
/// Name of the graph input.
pub const INPUT_NAME: &str = "input";
/// Name of the graph output.
pub const OUTPUT_NAME: &str = "logits";
/// Prefix of every metadata key.
pub const META_PREFIX: &str = "shiftnas.";

/// What the exported model carries besides the subnet.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportOptions {
    /// Fixed batch size, or `None` for a symbolic `batch` dimension.
    pub batch: Option<usize>,
    /// Per-channel input mean the model expects (after scaling pixels to [0, 1]), if known.
    pub mean: Option<Vec<f32>>,
    /// Per-channel input std, if known.
    pub std: Option<Vec<f32>>,
    /// Class names in logit order, if known.
    pub class_names: Option<Vec<String>>,
    /// How stride-1 blocks split channels.
    pub split: SplitStyle,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            batch: Some(1),
            mean: None,
            std: None,
            class_names: None,
            split: SplitStyle::default(),
        }
    }
}

fn export_error(layers: &Layers, reason: String) -> Error {
    Error::InvalidTensor {
        name: "export options".into(),
        part: layers.describe(),
        reason,
    }
}

pub(crate) fn value_info(name: &str, dims: &[Option<usize>]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{Dimension, dimension::Value};
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(n) => Value::DimValue(*n as i64),
                None => Value::DimParam("batch".into()),
            }),
            ..Default::default()
        })
        .collect();
    pb::ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: Some(pb::tensor_proto::DataType::Float as i32),
                shape: Some(pb::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The layers an export reads: one subnet's, or blocks spliced from several ([`parts`]).
pub(crate) struct Layers<'a> {
    pub(crate) space: &'a Space,
    pub(crate) arch: Arch,
    pub(crate) stem: &'a FoldedStem,
    pub(crate) blocks: Vec<&'a SubnetBlock>,
    pub(crate) last: &'a FoldedConv,
    pub(crate) classifier: &'a Tensor,
}

impl<'a> Layers<'a> {
    /// The layers of `subnet`.
    pub(crate) fn of(subnet: &'a Subnet) -> Layers<'a> {
        Layers {
            space: subnet.space(),
            arch: subnet.arch().clone(),
            stem: subnet.stem(),
            blocks: subnet.blocks().iter().collect(),
            last: subnet.last(),
            classifier: subnet.classifier(),
        }
    }

    /// `subnet 0123… of space tiny`: how errors name what is exported.
    pub(crate) fn describe(&self) -> String {
        format!("subnet {} of space {}", self.arch, self.space.name)
    }
}

/// Errors unless `mean`/`std`/`class_names` match the space's input channels and classes.
pub(crate) fn check_options(layers: &Layers, options: &ExportOptions) -> Result<()> {
    let space = layers.space;
    for (what, v) in [("mean", &options.mean), ("std", &options.std)] {
        if let Some(v) = v
            && v.len() != space.input_channels
        {
            return Err(export_error(
                layers,
                format!(
                    "{what} has {} values; the space has {} input channels",
                    v.len(),
                    space.input_channels
                ),
            ));
        }
    }
    if let Some(names) = &options.class_names
        && names.len() != space.classes
    {
        return Err(export_error(
            layers,
            format!("{} class names for {} classes", names.len(), space.classes),
        ));
    }
    Ok(())
}

/// One choice block from `x`. ShuffleNetV2: the SPOS split (stride 1) or a copy (stride 2), the
/// projection and main convs, and the `Concat`; inverted residual: the main convs and, where
/// residual, the `Add` of `x`. Returns the block's output value.
pub(crate) fn block_nodes(
    g: &mut Graph,
    x: &str,
    b: &SubnetBlock,
    split: SplitStyle,
) -> Result<String> {
    let i = b.shape.index;
    if let Wiring::InvertedResidual { residual } = b.wiring {
        let mut main = x.to_string();
        for c in &b.main {
            main = nodes::conv(g, &main, c)?;
        }
        return Ok(if residual {
            nodes::add(g, &main, x, &format!("blocks.{i}.add"))
        } else {
            main
        });
    }
    let (mut side, mut main) = if b.shape.stride == 1 {
        nodes::channel_split(
            g,
            x,
            &format!("blocks.{i}.split"),
            b.shape.in_channels,
            b.shape.in_size,
            split,
        )
    } else {
        (x.to_string(), x.to_string())
    };
    for c in &b.proj {
        side = nodes::conv(g, &side, c)?;
    }
    for c in &b.main {
        main = nodes::conv(g, &main, c)?;
    }
    Ok(nodes::concat(
        g,
        &[&side, &main],
        &format!("blocks.{i}.concat"),
    ))
}

/// The stem convs from `x`; returns the stem's output value.
pub(crate) fn stem_nodes(g: &mut Graph, x: &str, stem: &FoldedStem) -> Result<String> {
    let mut x = x.to_string();
    for c in &stem.convs {
        x = nodes::conv(g, &x, c)?;
    }
    Ok(x)
}

/// The head from `x`: last conv, `GlobalAveragePool`, `Flatten` and the classifier `Gemm`,
/// written to [`OUTPUT_NAME`].
pub(crate) fn head_nodes(g: &mut Graph, x: &str, layers: &Layers) -> Result<String> {
    let space = layers.space;
    let mut x = nodes::conv(g, x, layers.last)?;
    x = nodes::global_average_pool(g, &x, "pool");
    x = nodes::flatten(g, &x, "flatten");
    let w = layers.classifier.flatten_all()?.to_vec1::<f32>()?;
    Ok(nodes::gemm(
        g,
        &x,
        "classifier",
        OUTPUT_NAME,
        &w,
        (space.classes, space.last_channels),
    ))
}

/// `input_shape` metadata: a JSON array with `"batch"` for a symbolic batch.
pub(crate) fn shape_json(dims: &[Option<usize>]) -> String {
    json(
        &dims
            .iter()
            .map(|d| d.map_or(serde_json::json!("batch"), |n| serde_json::json!(n)))
            .collect::<Vec<_>>(),
    )
}

/// A model of graph `g` with one input and one output, opset [`OPSET`], and `meta` (keys
/// without [`META_PREFIX`]).
pub(crate) fn finish(
    name: String,
    g: Graph,
    input: (&str, &[Option<usize>]),
    output: (&str, &[Option<usize>]),
    meta: Vec<(&str, String)>,
) -> pb::ModelProto {
    let graph = pb::GraphProto {
        name: Some(name),
        node: g.nodes,
        initializer: g.initializers,
        input: vec![value_info(input.0, input.1)],
        output: vec![value_info(output.0, output.1)],
        ..Default::default()
    };
    pb::ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![pb::OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(OPSET),
        }],
        producer_name: Some("shiftnas".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        graph: Some(graph),
        metadata_props: meta
            .into_iter()
            .map(|(k, v)| pb::StringStringEntryProto {
                key: Some(format!("{META_PREFIX}{k}")),
                value: Some(v),
            })
            .collect(),
        ..Default::default()
    }
}

/// The ONNX model of `subnet` (see the module doc for its graph and metadata).
///
/// # Errors
/// [`Error::InvalidTensor`] when `mean`/`std`/`class_names` do not match the space's input
/// channels or classes; candle errors reading weights.
pub fn model_proto(subnet: &Subnet, options: &ExportOptions) -> Result<pb::ModelProto> {
    layers_proto(&Layers::of(subnet), options)
}

/// [`model_proto`] of any [`Layers`].
pub(crate) fn layers_proto(layers: &Layers, options: &ExportOptions) -> Result<pb::ModelProto> {
    check_options(layers, options)?;
    let space = layers.space;
    let mut g = Graph::default();
    let mut x = stem_nodes(&mut g, INPUT_NAME, layers.stem)?;
    for b in &layers.blocks {
        x = block_nodes(&mut g, &x, b, options.split)?;
    }
    head_nodes(&mut g, &x, layers)?;

    let n = space.input_size;
    let input_dims = [options.batch, Some(space.input_channels), Some(n), Some(n)];
    let cost = cost::arch_cost(space, &layers.arch);
    let mut meta = vec![
        ("space", json(space)),
        ("arch", layers.arch.to_string()),
        ("input_shape", shape_json(&input_dims)),
        ("layout", "NCHW".into()),
        ("version", env!("CARGO_PKG_VERSION").into()),
        ("flops", cost.flops.to_string()),
        ("params", cost.params.to_string()),
    ];
    if let Some(m) = &options.mean {
        meta.push(("mean", json(m)));
    }
    if let Some(s) = &options.std {
        meta.push(("std", json(s)));
    }
    if let Some(c) = &options.class_names {
        meta.push(("class_names", json(c)));
    }
    Ok(finish(
        format!("shiftnas {} {}", space.name, layers.arch),
        g,
        (INPUT_NAME, &input_dims),
        (OUTPUT_NAME, &[options.batch, Some(space.classes)]),
        meta,
    ))
}

/// The serialized ONNX model of `subnet` (bytes of a `.onnx` file).
///
/// # Errors
/// As [`model_proto`].
pub fn export(subnet: &Subnet, options: &ExportOptions) -> Result<Vec<u8>> {
    Ok(model_proto(subnet, options)?.encode_to_vec())
}

/// Compact JSON of plain data (space, numbers, strings) for a metadata value.
pub(crate) fn json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    // Serialising plain data without maps keyed by non-strings cannot fail.
    serde_json::to_string(v).expect("plain data serialises to JSON")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Space;

    #[test]
    fn metadata_and_names() {
        let space = Space::tiny();
        let arch = space.parse_arch("01230123012301230123").unwrap();
        let sub = Subnet::random(&space, &arch, 0).unwrap();
        let opts = ExportOptions {
            mean: Some(vec![0.286]),
            std: Some(vec![0.353]),
            ..Default::default()
        };
        let bytes = export(&sub, &opts).unwrap();
        let m = pb::ModelProto::decode(bytes.as_slice()).unwrap();
        let get = |k: &str| {
            m.metadata_props
                .iter()
                .find(|p| p.key.as_deref() == Some(&format!("shiftnas.{k}")))
                .and_then(|p| p.value.clone())
        };
        assert_eq!(get("arch").as_deref(), Some("01230123012301230123"));
        assert_eq!(get("input_shape").as_deref(), Some("[1,1,28,28]"));
        assert_eq!(get("mean").as_deref(), Some("[0.286]"));
        assert_eq!(
            get("flops").unwrap(),
            cost::arch_flops(&space, &arch).to_string()
        );
        let g = m.graph.unwrap();
        assert!(
            g.node
                .iter()
                .any(|n| n.name.as_deref() == Some("blocks.7.main.conv1"))
        );
        let bad = ExportOptions {
            class_names: Some(vec!["a".into()]),
            ..Default::default()
        };
        let e = export(&sub, &bad).unwrap_err().to_string();
        assert!(e.contains("1 class names for 10 classes"), "{e}");
    }
}
