//! BN calibration on the inference kernels: the same statistics as [`Supernet::calibrate_bn`]
//! (a training-mode forward of the path per batch, running statistics reset and then moved by
//! the calibration's momentum), computed with the channels-last convs of the folded path instead
//! of candle's autograd-ready ops.
//!
//! Per batch, each conv runs unfolded (the raw weight, no bias) on the whole batch, split over
//! the rayon threads; its per-channel mean and biased variance are two passes with f64 sums;
//! the output is normalised with them (`((x − mean) · invstd) · γ + β`, then the activation) in
//! place before the next conv reads it, as the candle training forward does. The running
//! statistics move PyTorch-style with the unbiased variance, in f64, and are written to the
//! supernet at the end.

use candle_core::{Device, Tensor};
use rayon::prelude::*;
use shiftnas_kernels::bn::BN_EPS;
use shiftnas_kernels::infer::{Activation, Moments, normalize_act};

use super::{Exec, Inference, Kind, Layer, Scratch, values, with_cpu_values};
use crate::arch::Arch;
use crate::error::{Error, Result};
use crate::subnet::{FoldedConv, Subnet};
use crate::supernet::{BnCalibration, Supernet};

/// Recomputes the BN running statistics of `arch`'s path from `batches` of images
/// `[b, c, h, w]` as [`Supernet::calibrate_bn`] does (same modes, same statistics up to f32
/// rounding: tests/inference.rs), on the CPU inference kernels.
///
/// # Errors
/// An arch that does not fit the space, a batch of the wrong shape, a batch with a single value
/// per channel at some layer, or no batches at all with a resetting `mode`.
pub fn calibrate_bn(
    supernet: &Supernet,
    arch: &Arch,
    batches: impl IntoIterator<Item = Result<Tensor>>,
    mode: BnCalibration,
) -> Result<()> {
    if mode == BnCalibration::None {
        return Ok(());
    }
    let mut tensors = supernet.arch_tensors(arch)?;
    // The structure with reset statistics: the stale ones may not even fold (a diverged run).
    for (name, t) in tensors.iter_mut() {
        if name.ends_with(".running_mean") {
            *t = t.zeros_like()?;
        } else if name.ends_with(".running_var") {
            *t = t.ones_like()?;
        }
    }
    let subnet = Subnet::from_tensors(supernet.space(), arch, &tensors)?;
    let mut net = Inference::from_subnet(&subnet)?;
    let convs = subnet
        .stem()
        .convs
        .iter()
        .chain(
            subnet
                .blocks()
                .iter()
                .flat_map(|b| b.main.iter().chain(&b.proj)),
        )
        .chain(std::iter::once(subnet.last()));
    let mut bns = Vec::new();
    for (l, c) in net.layers_mut().zip(convs) {
        let source = source_name(arch, &c.name);
        let raw = FoldedConv {
            weight: tensors[&format!("{source}.weight")].clone(),
            bias: Tensor::zeros(c.spec.out_channels, candle_core::DType::F32, &Device::Cpu)?,
            ..c.clone()
        };
        *l = Layer::of(&raw, l.id)?;
        bns.push(Bn::new(&source, &tensors, l.cout)?);
    }
    let mut exec = Calibrating {
        bns,
        momentum: 0.0,
        chunks: 4 * rayon::current_num_threads(),
    };
    // The whole batch's buffers, kept between candidates (fresh ones cost page faults).
    thread_local! {
        static BATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
    }
    BATCH.with(|s| run(&net, &mut exec, arch, batches, mode, &mut s.borrow_mut()))?;
    for bn in &exec.bns {
        let f32s = |v: &[f64]| {
            Tensor::from_vec(v.iter().map(|&x| x as f32).collect(), v.len(), &Device::Cpu)
        };
        supernet.set_tensor(&format!("{}.running_mean", bn.name), &f32s(&bn.mean)?)?;
        supernet.set_tensor(&format!("{}.running_var", bn.name), &f32s(&bn.var)?)?;
    }
    Ok(())
}

/// Runs every batch through `net` with `exec`, moving the running statistics by `mode`.
fn run(
    net: &Inference,
    exec: &mut Calibrating,
    arch: &Arch,
    batches: impl IntoIterator<Item = Result<Tensor>>,
    mode: BnCalibration,
    s: &mut Scratch,
) -> Result<()> {
    let mut k = 0usize;
    for batch in batches {
        let x = batch?;
        let b = net.batch_of(&x)?;
        net.check_images(x.elem_count(), b)?;
        if let Some(l) = net.layers().find(|l| b * l.out_size * l.out_size < 2) {
            return Err(Error::BadInput(format!(
                "BN calibration of arch {arch}: a batch of {b} images leaves one value per channel \
                 after conv {} ({}×{} pixels); use a larger batch",
                l.id, l.out_size, l.out_size
            )));
        }
        exec.momentum = match mode {
            BnCalibration::Exact => 1.0 / (k as f64 + 1.0),
            BnCalibration::ResetEma { momentum } => momentum,
            BnCalibration::None => unreachable!("returned above"),
        };
        with_cpu_values(&x, |v| {
            net.features(exec, v, b, s);
            Ok(())
        })?;
        k += 1;
    }
    if k == 0 {
        return Err(Error::BadInput(format!(
            "BN calibration of arch {arch} got no batches: pass at least one batch of images"
        )));
    }
    Ok(())
}

/// The supernet's name of a folded conv: `blocks.{i}.main.conv1` → `blocks.{i}.choice{g}.main.conv1`
/// with `g` the arch's gene at block `i` (stem and last names are the same in both).
fn source_name(arch: &Arch, node: &str) -> String {
    let mut parts = node.splitn(3, '.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("blocks"), Some(i), Some(rest)) => {
            let g = i
                .parse::<usize>()
                .ok()
                .and_then(|i| arch.genes().get(i).copied());
            format!("blocks.{i}.choice{}.{rest}", g.unwrap_or_default())
        }
        _ => node.to_string(),
    }
}

/// Images per parallel piece of a conv: small enough for their output to stay in cache until
/// its moments are taken.
const IMAGES_PER_PIECE: usize = 4;

/// One BN of the path: its name prefix, affine parameters and running statistics.
struct Bn {
    /// E.g. `blocks.3.choice1.main.bn0`.
    name: String,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    mean: Vec<f64>,
    var: Vec<f64>,
}

impl Bn {
    /// The BN after conv `source` (`….conv{j}` → `….bn{j}`), reset (mean 0, variance 1).
    fn new(
        source: &str,
        tensors: &std::collections::BTreeMap<String, Tensor>,
        c: usize,
    ) -> Result<Bn> {
        let name = match source.rsplit_once(".conv") {
            Some((head, idx)) => format!("{head}.bn{idx}"),
            None => format!("{source}.bn"),
        };
        let param = |field: &str, default: f32| -> Result<Vec<f32>> {
            match tensors.get(&format!("{name}.{field}")) {
                Some(t) => values(t),
                None => Ok(vec![default; c]),
            }
        };
        Ok(Bn {
            gamma: param("weight", 1.0)?,
            beta: param("bias", 0.0)?,
            name,
            mean: vec![0.0; c],
            var: vec![1.0; c],
        })
    }
}

/// The calibrating walk: each conv on the whole batch, then training-mode BN.
struct Calibrating {
    /// By [`Layer::id`].
    bns: Vec<Bn>,
    momentum: f64,
    /// Parallel pieces a conv is split into at least (with [`IMAGES_PER_PIECE`] at most).
    chunks: usize,
}

impl Exec for Calibrating {
    fn layer(&mut self, l: &Layer, x: &[f32], n: usize, out: &mut [f32], out_rs: usize) {
        let zeros = vec![0f32; l.cout];
        let none = Activation::None;
        // A few whole images per piece: the conv writes them, their moments are taken while
        // they are in cache. A 1×1 conv's rows may be wider than its output (a concat).
        let j = n.div_ceil(self.chunks).clamp(1, IMAGES_PER_PIECE);
        let px_out = l.out_size * l.out_size;
        let per_out = if l.kind == Kind::Pointwise {
            px_out * out_rs
        } else {
            px_out * l.cout
        };
        let c = l.cout;
        let parts: Vec<Moments> = x
            .par_chunks(j * l.in_len())
            .zip(out.par_chunks_mut(j * per_out))
            .map_init(Vec::new, |col, (x, o)| {
                let m = x.len() / l.in_len();
                l.conv(x, m, &zeros, none, o, out_rs, col);
                Moments::of(o, m * px_out, out_rs, c)
            })
            .collect();
        let all = parts
            .into_iter()
            .reduce(Moments::merge)
            .expect("a batch has images");
        let cnt = all.n as f64;
        let mean: Vec<f32> = all.mean.iter().map(|&m| m as f32).collect();
        let var: Vec<f64> = all.m2.iter().map(|s| s / cnt).collect();
        let invstd: Vec<f32> = var
            .iter()
            .map(|&v| (1.0 / (v + BN_EPS).sqrt()) as f32)
            .collect();
        let bn = &mut self.bns[l.id];
        let (gamma, beta, act) = (&bn.gamma, &bn.beta, l.act);
        out.par_chunks_mut(j * per_out).for_each(|o| {
            let rows = (o.len() - c) / out_rs + 1;
            normalize_act(o, rows, out_rs, &mean, &invstd, gamma, beta, act);
        });
        let m = self.momentum;
        let unbias = cnt / (cnt - 1.0);
        for ch in 0..c {
            bn.mean[ch] = (1.0 - m) * bn.mean[ch] + m * f64::from(mean[ch]);
            bn.var[ch] = (1.0 - m) * bn.var[ch] + m * var[ch] * unbias;
        }
    }
}
