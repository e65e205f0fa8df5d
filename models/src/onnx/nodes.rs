//! One function per ONNX node kind the exporter emits, on a small [`Graph`] builder.
//!
//! Each function appends its node(s) and initializers and returns the name of its output value;
//! value names equal node names (`blocks.7.main.conv1`), so a runtime's profile reads like the
//! parameter names.

use super::pb::{AttributeProto, NodeProto, TensorProto, attribute_proto, tensor_proto};
use crate::cost::Act;
use crate::error::Result;
use crate::subnet::FoldedConv;

/// How a stride-1 block splits its input into pass-through (even) and main (odd) channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SplitStyle {
    /// Two `Slice` nodes on the channel axis with step 2 (starts 0 and 1): one strided copy per
    /// half and no reshapes. The default: the fewest nodes (see `docs/export.md`).
    #[default]
    StridedSlice,
    /// `Reshape [b, c/2, 2, h, w]` → `Split` on axis 2 → a `Reshape` back per half, the layout of
    /// SPOS's own `channel_shuffle`.
    ReshapeSplit,
}

/// Nodes and initializers of a graph under construction.
#[derive(Debug, Default)]
pub struct Graph {
    /// Nodes in topological order.
    pub nodes: Vec<NodeProto>,
    /// Weights and constants.
    pub initializers: Vec<TensorProto>,
}

fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attribute_proto::AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attribute_proto::AttributeType::Ints as i32),
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn attr_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attribute_proto::AttributeType::Float as i32),
        f: Some(v),
        ..Default::default()
    }
}

impl Graph {
    fn node(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) {
        self.nodes.push(NodeProto {
            op_type: Some(op.into()),
            name: Some(name.into()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            attribute: attrs,
            ..Default::default()
        });
    }

    /// Adds an f32 initializer (little-endian raw data).
    pub fn float_init(&mut self, name: &str, dims: &[usize], data: &[f32]) {
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializers.push(TensorProto {
            name: Some(name.into()),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(tensor_proto::DataType::Float as i32),
            raw_data: Some(raw),
            ..Default::default()
        });
    }

    /// Adds an int64 initializer once (constants are shared by name).
    pub fn int_init(&mut self, name: &str, data: &[i64]) {
        if self
            .initializers
            .iter()
            .any(|t| t.name.as_deref() == Some(name))
        {
            return;
        }
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializers.push(TensorProto {
            name: Some(name.into()),
            dims: vec![data.len() as i64],
            data_type: Some(tensor_proto::DataType::Int64 as i32),
            raw_data: Some(raw),
            ..Default::default()
        });
    }
}

/// `Conv` (+ `Relu`, or `Clip` to [0, 6] for ReLU6, as the spec says) with the folded weight and
/// bias as initializers `{name}.weight`, `{name}.bias`.
///
/// # Errors
/// A candle error reading the weights.
pub fn conv(g: &mut Graph, input: &str, c: &FoldedConv) -> Result<String> {
    let s = &c.spec;
    let (w, b) = (format!("{}.weight", c.name), format!("{}.bias", c.name));
    g.float_init(
        &w,
        &s.weight_shape(),
        &c.weight.flatten_all()?.to_vec1::<f32>()?,
    );
    g.float_init(&b, &[s.out_channels], &c.bias.to_vec1::<f32>()?);
    let (k, p, st) = (s.kernel as i64, s.padding() as i64, s.stride as i64);
    g.node(
        "Conv",
        &c.name,
        &[input, &w, &b],
        &[&c.name],
        vec![
            attr_ints("kernel_shape", &[k, k]),
            attr_ints("pads", &[p, p, p, p]),
            attr_ints("strides", &[st, st]),
            attr_ints("dilations", &[1, 1]),
            attr_int("group", s.groups as i64),
        ],
    );
    Ok(match s.act {
        Act::None => c.name.clone(),
        Act::Relu => relu(g, &c.name, &format!("{}.relu", c.name)),
        Act::Relu6 => relu6(g, &c.name, &format!("{}.relu6", c.name)),
    })
}

/// ReLU6 as `Clip` with the scalar initializers `const.f0` (min 0) and `const.f6` (max 6).
pub fn relu6(g: &mut Graph, input: &str, name: &str) -> String {
    for (c, v) in [("const.f0", 0f32), ("const.f6", 6f32)] {
        if !g.initializers.iter().any(|t| t.name.as_deref() == Some(c)) {
            g.float_init(c, &[], &[v]);
        }
    }
    g.node(
        "Clip",
        name,
        &[input, "const.f0", "const.f6"],
        &[name],
        vec![],
    );
    name.to_string()
}

/// Element-wise `Add` (the residual of an inverted-residual block).
pub fn add(g: &mut Graph, a: &str, b: &str, name: &str) -> String {
    g.node("Add", name, &[a, b], &[name], vec![]);
    name.to_string()
}

/// `Relu`.
pub fn relu(g: &mut Graph, input: &str, name: &str) -> String {
    g.node("Relu", name, &[input], &[name], vec![]);
    name.to_string()
}

/// SPOS channel split of a `(b, channels, size, size)` value: `(even, odd)` channel halves.
pub fn channel_split(
    g: &mut Graph,
    input: &str,
    name: &str,
    channels: usize,
    size: usize,
    style: SplitStyle,
) -> (String, String) {
    let (even, odd) = (format!("{name}.even"), format!("{name}.odd"));
    match style {
        SplitStyle::StridedSlice => {
            g.int_init("const.zero", &[0]);
            g.int_init("const.one", &[1]);
            g.int_init("const.two", &[2]);
            g.int_init("const.end", &[i64::MAX]);
            for (out, start) in [(&even, "const.zero"), (&odd, "const.one")] {
                g.node(
                    "Slice",
                    out,
                    &[input, start, "const.end", "const.one", "const.two"],
                    &[out],
                    vec![],
                );
            }
        }
        SplitStyle::ReshapeSplit => {
            let (half, sz) = ((channels / 2) as i64, size as i64);
            let five = format!("const.shape5.{half}x{sz}");
            let four = format!("const.shape4.{half}x{sz}");
            g.int_init(&five, &[0, half, 2, sz, sz]);
            g.int_init(&four, &[0, half, sz, sz]);
            let grouped = format!("{name}.pairs");
            g.node("Reshape", &grouped, &[input, &five], &[&grouped], vec![]);
            let (e5, o5) = (format!("{name}.even5"), format!("{name}.odd5"));
            g.node(
                "Split",
                &format!("{name}.split"),
                &[&grouped],
                &[&e5, &o5],
                vec![attr_int("axis", 2)],
            );
            g.node("Reshape", &even, &[&e5, &four], &[&even], vec![]);
            g.node("Reshape", &odd, &[&o5, &four], &[&odd], vec![]);
        }
    }
    (even, odd)
}

/// `Concat` on the channel axis.
pub fn concat(g: &mut Graph, inputs: &[&str], name: &str) -> String {
    g.node("Concat", name, inputs, &[name], vec![attr_int("axis", 1)]);
    name.to_string()
}

/// `GlobalAveragePool`: `(b, c, h, w)` → `(b, c, 1, 1)`.
pub fn global_average_pool(g: &mut Graph, input: &str, name: &str) -> String {
    g.node("GlobalAveragePool", name, &[input], &[name], vec![]);
    name.to_string()
}

/// `Flatten` (axis 1): `(b, c, 1, 1)` → `(b, c)`.
pub fn flatten(g: &mut Graph, input: &str, name: &str) -> String {
    g.node(
        "Flatten",
        name,
        &[input],
        &[name],
        vec![attr_int("axis", 1)],
    );
    name.to_string()
}

/// Bias-free `Gemm` with `transB = 1`: `(b, in)` × `weight[out, in]ᵀ` → `(b, out)`, written to
/// `output`; the weight becomes the initializer `{name}.weight`.
pub fn gemm(
    g: &mut Graph,
    input: &str,
    name: &str,
    output: &str,
    weight: &[f32],
    (out, inp): (usize, usize),
) -> String {
    let w = format!("{name}.weight");
    g.float_init(&w, &[out, inp], weight);
    g.node(
        "Gemm",
        name,
        &[input, &w],
        &[output],
        vec![
            attr_float("alpha", 1.0),
            attr_float("beta", 1.0),
            attr_int("transB", 1),
        ],
    );
    output.to_string()
}
