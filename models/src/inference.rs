//! The eval-mode network of one arch for scoring: BN folded into the convs, run on plain f32
//! buffers with the channels-last kernels of [`shiftnas_kernels::infer`] and no autograd graph.
//! Both families run: ShuffleNetV2 units (channel split, projection, concat) and MobileNetV2
//! inverted residuals (ReLU6, with and without the skip).
//!
//! Build one per candidate after its BN statistics are set ([`Inference::new`] folds them with the
//! same math as the ONNX export, [`Subnet::from_tensors`]); [`Inference::forward`] then gives the
//! logits [`Supernet::forward_t`] gives in eval mode, up to f32 rounding (a different summation
//! order: relative L2 error ~1e-6 on the logits, tests/inference.rs). [`calibrate_bn`] sets those
//! statistics with the same kernels (the unfolded convs in training-mode BN).
//!
//! A forward splits the batch into jobs of a few images that each run through the whole network
//! on one rayon thread: their activations stay in that core's L2 cache, and no op waits for the
//! others between layers.

mod calibrate;

pub use calibrate::calibrate_bn;

use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;
use shiftnas_kernels::infer::dense::DenseShape;
use shiftnas_kernels::infer::depthwise::{DwShape, taps_major};
use shiftnas_kernels::infer::pointwise::{Rows, transpose};
use shiftnas_kernels::infer::{
    Activation, copy_channels, dense_conv_nchw_in, depthwise_nhwc, pointwise_nhwc, pool_linear,
};

use crate::arch::Arch;
use crate::error::{Error, Result};
use crate::space::{BlockShape, Space, Wiring};
use crate::subnet::{FoldedConv, Subnet};
use crate::supernet::Supernet;

/// Images per rayon job when none is set: measured fastest of 4, 8, 16 and 32 on spos-cifar
/// (docs/benchmarks.md).
pub const IMAGES_PER_JOB: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The stem: dense k×k conv reading NCHW images.
    Dense,
    /// Depthwise k×k conv.
    Depthwise,
    /// 1×1 conv.
    Pointwise,
}

/// One folded conv: `act(conv(x) + bias)`.
#[derive(Debug, Clone)]
struct Layer {
    /// Position in the network (stem, blocks' main then projection convs, last conv).
    id: usize,
    kind: Kind,
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    in_size: usize,
    out_size: usize,
    act: Activation,
    /// Dense and pointwise: the folded OIHW weight transposed to `[cin·k·k, cout]`; depthwise:
    /// tap-major `[k·k, c]`.
    weight: Vec<f32>,
    bias: Vec<f32>,
}

fn values(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?)
}

impl Layer {
    fn of(c: &FoldedConv, id: usize) -> Result<Layer> {
        let s = &c.spec;
        let kind = if s.groups == 1 && s.kernel == 1 && s.stride == 1 {
            Kind::Pointwise
        } else if s.groups == 1 {
            Kind::Dense
        } else if s.groups == s.in_channels && s.in_channels == s.out_channels {
            Kind::Depthwise
        } else {
            return Err(Error::BadInput(format!(
                "inference path: conv {} has {} groups over {} channels; only dense, depthwise and 1×1 convs are supported",
                c.name, s.groups, s.in_channels
            )));
        };
        let mut weight = values(&c.weight)?;
        weight = match kind {
            Kind::Depthwise => taps_major(&weight, s.out_channels, s.kernel),
            _ => transpose(&weight, s.out_channels, weight.len() / s.out_channels),
        };
        Ok(Layer {
            id,
            kind,
            cin: s.in_channels,
            cout: s.out_channels,
            k: s.kernel,
            stride: s.stride,
            in_size: s.in_size,
            out_size: s.out_size,
            act: s.act.into(),
            weight,
            bias: values(&c.bias)?,
        })
    }

    /// Runs on `n` images `x` (NCHW for the stem, channels-last otherwise) with activation `act`,
    /// writing rows of `cout` values with row stride `out_rs` (only a 1×1 conv may write into a
    /// wider buffer); `col` is the stem's im2col scratch.
    #[allow(clippy::too_many_arguments)]
    fn conv(
        &self,
        x: &[f32],
        n: usize,
        bias: &[f32],
        act: Activation,
        out: &mut [f32],
        out_rs: usize,
        col: &mut Vec<f32>,
    ) {
        match self.kind {
            Kind::Pointwise => {
                let rows = n * self.in_size * self.in_size;
                let x = Rows {
                    data: x,
                    rs: self.cin,
                    cs: 1,
                };
                pointwise_nhwc(x, rows, self.cin, &self.weight, bias, act, out, out_rs);
            }
            Kind::Depthwise => {
                debug_assert_eq!(out_rs, self.cout);
                let s = DwShape {
                    batch: n,
                    h: self.in_size,
                    w: self.in_size,
                    c: self.cin,
                    k: self.k,
                    stride: self.stride,
                };
                depthwise_nhwc(x, s, &self.weight, bias, act, out);
            }
            Kind::Dense => {
                debug_assert_eq!(out_rs, self.cout);
                let s = DenseShape {
                    cin: self.cin,
                    h: self.in_size,
                    w: self.in_size,
                    k: self.k,
                    stride: self.stride,
                };
                dense_conv_nchw_in(x, n, s, &self.weight, bias, act, out, col);
            }
        }
    }

    /// Values per image of the input.
    fn in_len(&self) -> usize {
        self.in_size * self.in_size * self.cin
    }

    fn out_len(&self, n: usize) -> usize {
        n * self.out_size * self.out_size * self.cout
    }
}

/// How a walk through the network runs each conv: folded with its bias and activation (a
/// forward), or unfolded with batch statistics (BN calibration, [`calibrate_bn`]).
trait Exec {
    /// Runs `l` on `n` images `x` into `out` (rows of `l.cout` values, row stride `out_rs`).
    fn layer(&mut self, l: &Layer, x: &[f32], n: usize, out: &mut [f32], out_rs: usize);
}

/// The folded forward of one job: each conv with its bias and activation.
struct Folded<'a> {
    col: &'a mut Vec<f32>,
}

impl Exec for Folded<'_> {
    fn layer(&mut self, l: &Layer, x: &[f32], n: usize, out: &mut [f32], out_rs: usize) {
        l.conv(x, n, &l.bias, l.act, out, out_rs, self.col);
    }
}

/// One choice block: main branch and, in ShuffleNetV2 blocks at stride 2, the projection branch.
#[derive(Debug, Clone)]
struct Block {
    shape: BlockShape,
    wiring: Wiring,
    main: Vec<Layer>,
    proj: Vec<Layer>,
}

thread_local! {
    /// Each thread's buffers, kept between forwards and candidates: fresh multi-MiB buffers per
    /// job cost page faults that took longer than the convs.
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// Per-job buffers, reused across the layers and batches of one thread.
#[derive(Default)]
struct Scratch {
    cur: Vec<f32>,
    next: Vec<f32>,
    odd: Vec<f32>,
    chain: [Vec<f32>; 2],
    col: Vec<f32>,
}

/// The BN-folded eval-mode network of one arch on plain f32 buffers (see the module doc).
#[derive(Debug, Clone)]
pub struct Inference {
    space: Space,
    arch: Arch,
    /// The dense stem conv, then (MobileNetV2) the fixed first block's convs.
    stem: Vec<Layer>,
    blocks: Vec<Block>,
    last: Layer,
    /// `[classes, last_channels]`.
    classifier: Vec<f32>,
    images_per_job: usize,
}

impl Inference {
    /// Folds `arch`'s path of `supernet` with its current BN running statistics.
    ///
    /// # Errors
    /// An arch that does not fit the supernet's space, or a BN variance that is negative or not
    /// finite (a diverged run), naming the tensor.
    pub fn new(supernet: &Supernet, arch: &Arch) -> Result<Inference> {
        let subnet = Subnet::from_tensors(supernet.space(), arch, &supernet.arch_tensors(arch)?)?;
        Inference::from_subnet(&subnet)
    }

    /// The same network as a folded [`Subnet`].
    ///
    /// # Errors
    /// A stem that does not start with a dense conv, a block whose branches do not end in a 1×1
    /// conv, or a grouped conv that is neither dense nor depthwise (no space of either family
    /// has one).
    pub fn from_subnet(subnet: &Subnet) -> Result<Inference> {
        let space = subnet.space();
        let mut id = 0;
        let mut layer = |c: &FoldedConv| {
            id += 1;
            Layer::of(c, id - 1)
        };
        let stem: Vec<Layer> = subnet
            .stem()
            .convs
            .iter()
            .map(&mut layer)
            .collect::<Result<_>>()?;
        let stem_ok = stem.first().is_some_and(|l| l.kind == Kind::Dense)
            && stem[1..].iter().all(|l| l.kind != Kind::Dense);
        if !stem_ok {
            return Err(Error::BadInput(format!(
                "inference path: space {} needs a stem that starts with its only dense conv",
                space.name
            )));
        }
        let mut blocks = Vec::new();
        for b in subnet.blocks() {
            let main: Vec<Layer> = b.main.iter().map(&mut layer).collect::<Result<_>>()?;
            let proj: Vec<Layer> = b.proj.iter().map(&mut layer).collect::<Result<_>>()?;
            let ends_pw = |v: &[Layer]| v.last().is_some_and(|l| l.kind == Kind::Pointwise);
            let inner_ok = main.iter().chain(&proj).all(|l| l.kind != Kind::Dense);
            let proj_ok = match b.wiring {
                Wiring::Shuffle => b.shape.stride == 1 || ends_pw(&proj),
                Wiring::InvertedResidual { .. } => proj.is_empty(),
            };
            if !ends_pw(&main) || !proj_ok || !inner_ok {
                return Err(Error::BadInput(format!(
                    "inference path: {} must be depthwise and 1×1 convs with each branch ending in a 1×1 conv",
                    b.describe()
                )));
            }
            blocks.push(Block {
                shape: b.shape,
                wiring: b.wiring,
                main,
                proj,
            });
        }
        let last = layer(subnet.last())?;
        if last.kind != Kind::Pointwise {
            return Err(Error::BadInput(format!(
                "inference path: space {} needs a 1×1 last conv",
                space.name
            )));
        }
        Ok(Inference {
            space: space.clone(),
            arch: subnet.arch().clone(),
            stem,
            blocks,
            last,
            classifier: values(subnet.classifier())?,
            images_per_job: IMAGES_PER_JOB,
        })
    }

    /// Sets how many images one rayon job runs through the network (at least 1).
    pub fn with_images_per_job(mut self, n: usize) -> Inference {
        self.images_per_job = n.max(1);
        self
    }

    /// The arch this network runs.
    pub fn arch(&self) -> &Arch {
        &self.arch
    }

    /// Values per NCHW image, or an error naming the expected shape when `len` is not `batch`
    /// images.
    fn check_images(&self, len: usize, batch: usize) -> Result<usize> {
        let s = &self.space;
        let per_image = s.input_channels * s.input_size * s.input_size;
        if len != batch * per_image {
            return Err(Error::BadInput(format!(
                "inference of arch {} (space {}) expects {batch} images of [{}, {}, {}] ({} values), got {} values",
                self.arch,
                s.name,
                s.input_channels,
                s.input_size,
                s.input_size,
                batch * per_image,
                len
            )));
        }
        Ok(per_image)
    }

    /// Logits `[batch, classes]`, row-major, of `batch` NCHW images `[batch, input_channels,
    /// input_size, input_size]` given as one slice.
    ///
    /// # Errors
    /// [`Error::BadInput`] when `images` does not hold `batch` images of the space's shape.
    pub fn forward(&self, images: &[f32], batch: usize) -> Result<Vec<f32>> {
        let per_image = self.check_images(images.len(), batch)?;
        let classes = self.space.classes;
        let mut logits = vec![0f32; batch * classes];
        let job = self.images_per_job;
        images
            .par_chunks(job * per_image)
            .zip(logits.par_chunks_mut(job * classes))
            .for_each(|(x, out)| {
                SCRATCH.with(|s| {
                    let s = &mut *s.borrow_mut();
                    let n = x.len() / per_image;
                    let mut col = std::mem::take(&mut s.col);
                    self.features(&mut Folded { col: &mut col }, x, n, s);
                    s.col = col;
                    let l = &self.last;
                    let px = l.out_size * l.out_size;
                    pool_linear(&s.cur, n, px, l.cout, &self.classifier, out);
                });
            });
        Ok(logits)
    }

    /// [`Inference::forward`] on a tensor `[b, input_channels, input_size, input_size]` (any
    /// device and float dtype); logits `[b, classes]` f32 on the CPU.
    ///
    /// # Errors
    /// A wrong input shape, naming the expected one.
    pub fn forward_tensor(&self, x: &Tensor) -> Result<Tensor> {
        let b = self.batch_of(x)?;
        let logits = with_cpu_values(x, |v| self.forward(v, b))?;
        Ok(Tensor::from_vec(
            logits,
            (b, self.space.classes),
            &Device::Cpu,
        )?)
    }

    /// The batch size of an image tensor, or an error naming the expected shape.
    fn batch_of(&self, x: &Tensor) -> Result<usize> {
        match x.dims() {
            &[b, _, _, _] => Ok(b),
            d => Err(Error::BadInput(format!(
                "inference of arch {} expects images [batch, {}, {s}, {s}], got {d:?}",
                self.arch,
                self.space.input_channels,
                s = self.space.input_size
            ))),
        }
    }

    /// The stem, the blocks and the last conv on `n` images `x`, through `e`; the last conv's
    /// output ends in `s.cur`.
    fn features(&self, e: &mut impl Exec, x: &[f32], n: usize, s: &mut Scratch) {
        let (first, rest) = self
            .stem
            .split_first()
            .expect("from_subnet checked the stem");
        s.cur.resize(first.out_len(n), 0.0);
        e.layer(first, x, n, &mut s.cur, first.cout);
        for l in rest {
            s.next.resize(l.out_len(n), 0.0);
            e.layer(l, &s.cur, n, &mut s.next, l.cout);
            std::mem::swap(&mut s.cur, &mut s.next);
        }
        for b in &self.blocks {
            let sh = &b.shape;
            let (cin, cout) = (sh.in_channels, sh.out_channels);
            let rows_out = n * sh.out_size * sh.out_size;
            s.next.resize(rows_out * cout, 0.0);
            match (b.wiring, sh.stride) {
                (Wiring::InvertedResidual { residual }, _) => {
                    chain(e, &b.main, &s.cur, n, &mut s.next, cout, 0, &mut s.chain);
                    if residual {
                        for (o, &v) in s.next.iter_mut().zip(&s.cur) {
                            *o += v;
                        }
                    }
                }
                (Wiring::Shuffle, 1) => {
                    // SPOS channel shuffle: even channels pass through, odd ones feed the main
                    // branch.
                    let rows = n * sh.in_size * sh.in_size;
                    let half = cin / 2;
                    s.odd.resize(rows * half, 0.0);
                    copy_channels(&s.cur, cin, 1, 2, &mut s.odd, half, 0, rows, half);
                    chain(e, &b.main, &s.odd, n, &mut s.next, cout, half, &mut s.chain);
                    copy_channels(&s.cur, cin, 0, 2, &mut s.next, cout, 0, rows, half);
                }
                (Wiring::Shuffle, _) => {
                    let side = b.proj.last().map_or(0, |l| l.cout);
                    chain(e, &b.proj, &s.cur, n, &mut s.next, cout, 0, &mut s.chain);
                    chain(e, &b.main, &s.cur, n, &mut s.next, cout, side, &mut s.chain);
                }
            }
            std::mem::swap(&mut s.cur, &mut s.next);
        }
        let l = &self.last;
        s.next.resize(l.out_len(n), 0.0);
        e.layer(l, &s.cur, n, &mut s.next, l.cout);
        std::mem::swap(&mut s.cur, &mut s.next);
    }

    /// Every layer, in [`Layer::id`] order.
    fn layers(&self) -> impl Iterator<Item = &Layer> {
        self.stem
            .iter()
            .chain(
                self.blocks
                    .iter()
                    .flat_map(|b| b.main.iter().chain(&b.proj)),
            )
            .chain(std::iter::once(&self.last))
    }

    /// [`Inference::layers`], mutable.
    fn layers_mut(&mut self) -> impl Iterator<Item = &mut Layer> {
        self.stem
            .iter_mut()
            .chain(
                self.blocks
                    .iter_mut()
                    .flat_map(|b| b.main.iter_mut().chain(&mut b.proj)),
            )
            .chain(std::iter::once(&mut self.last))
    }
}

/// `f` on the values of `x` as contiguous f32 on the CPU.
fn with_cpu_values<T>(x: &Tensor, f: impl FnOnce(&[f32]) -> Result<T>) -> Result<T> {
    let x = x
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .contiguous()?;
    let (storage, layout) = x.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        unreachable!("moved to the CPU above")
    };
    let (start, end) = layout.contiguous_offsets().expect("made contiguous above");
    f(&cpu.as_slice::<f32>()?[start..end])
}

/// Runs `layers` on `x` through `e`; the last one (a 1×1 conv, or any conv when `off` is 0 and
/// `out_rs` its width) writes its rows into `out` at column `off` with row stride `out_rs`.
/// Intermediate results go to the two `bufs`.
#[allow(clippy::too_many_arguments)]
fn chain(
    e: &mut impl Exec,
    layers: &[Layer],
    x: &[f32],
    n: usize,
    out: &mut [f32],
    out_rs: usize,
    off: usize,
    bufs: &mut [Vec<f32>; 2],
) {
    let last = layers.len() - 1;
    for (i, l) in layers.iter().enumerate() {
        let (src, dst): (&[f32], &mut Vec<f32>) = {
            let [a, b] = &mut *bufs;
            match (i, i % 2) {
                (0, _) => (x, a),
                (_, 1) => (a, b),
                _ => (b, a),
            }
        };
        if i == last {
            e.layer(l, src, n, &mut out[off..], out_rs);
        } else {
            dst.resize(l.out_len(n), 0.0);
            e.layer(l, src, n, dst, l.cout);
        }
    }
}
