//! The eval-mode network of one arch for scoring: BN folded into the convs, run on plain f32
//! buffers with the channels-last kernels of [`shiftnas_kernels::infer`] and no autograd graph.
//!
//! Build one per candidate after its BN statistics are set ([`Inference::new`] folds them with the
//! same math as the ONNX export, [`Subnet::from_tensors`]); [`Inference::forward`] then gives the
//! logits [`Supernet::forward_t`] gives in eval mode, up to f32 rounding (a different summation
//! order: relative L2 error ~1e-6 on the logits, tests/inference.rs).
//!
//! A forward splits the batch into jobs of a few images that each run through the whole network
//! on one rayon thread: their activations stay in that core's L2 cache, and no op waits for the
//! others between layers.

use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;
use shiftnas_kernels::infer::dense::DenseShape;
use shiftnas_kernels::infer::depthwise::{DwShape, taps_major};
use shiftnas_kernels::infer::pointwise::{Rows, transpose};
use shiftnas_kernels::infer::{
    copy_channels, dense_conv_nchw_in, depthwise_nhwc, pointwise_nhwc, pool_linear,
};

use crate::arch::Arch;
use crate::cost::Act;
use crate::error::{Error, Result};
use crate::space::{BlockShape, Family, Space};
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

/// One folded conv: `relu?(conv(x) + bias)`.
#[derive(Debug, Clone)]
struct Layer {
    kind: Kind,
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    in_size: usize,
    out_size: usize,
    relu: bool,
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
    fn of(c: &FoldedConv) -> Result<Layer> {
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
            kind,
            cin: s.in_channels,
            cout: s.out_channels,
            k: s.kernel,
            stride: s.stride,
            in_size: s.in_size,
            out_size: s.out_size,
            relu: match s.act {
                Act::None => false,
                Act::Relu => true,
                Act::Relu6 => {
                    return Err(Error::BadInput(format!(
                        "inference path: conv {} uses ReLU6, which it does not run yet",
                        c.name
                    )));
                }
            },
            weight,
            bias: values(&c.bias)?,
        })
    }

    /// Runs on `n` channels-last images `x`, writing rows of `cout` values with row stride
    /// `out_rs` (only a 1×1 conv may write into a wider buffer).
    fn apply(&self, x: &[f32], n: usize, out: &mut [f32], out_rs: usize) {
        match self.kind {
            Kind::Pointwise => {
                let rows = n * self.in_size * self.in_size;
                let x = Rows {
                    data: x,
                    rs: self.cin,
                    cs: 1,
                };
                pointwise_nhwc(
                    x,
                    rows,
                    self.cin,
                    &self.weight,
                    &self.bias,
                    self.relu,
                    out,
                    out_rs,
                );
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
                depthwise_nhwc(x, s, &self.weight, &self.bias, self.relu, out);
            }
            Kind::Dense => unreachable!("the stem runs through Inference::run"),
        }
    }

    fn out_len(&self, n: usize) -> usize {
        n * self.out_size * self.out_size * self.cout
    }
}

/// One choice block: main branch and, at stride 2, the projection branch.
#[derive(Debug, Clone)]
struct Block {
    shape: BlockShape,
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
    stem: Layer,
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
    /// A block whose branches do not end in a 1×1 conv, or a grouped conv that is neither dense
    /// nor depthwise (no SPOS space has either).
    pub fn from_subnet(subnet: &Subnet) -> Result<Inference> {
        let space = subnet.space();
        let ([stem], Family::ShufflenetV2) = (subnet.stem().convs.as_slice(), space.family) else {
            return Err(Error::BadInput(format!(
                "inference path: space {} is not a ShuffleNetV2 space with a one-conv stem; \
                 only those run folded (the supernet's forward scores the others)",
                space.name
            )));
        };
        let stem = Layer::of(stem)?;
        let last = Layer::of(subnet.last())?;
        if stem.kind != Kind::Dense || last.kind != Kind::Pointwise {
            return Err(Error::BadInput(format!(
                "inference path: space {} needs a dense stem conv and a 1×1 last conv",
                subnet.space().name
            )));
        }
        let mut blocks = Vec::new();
        for b in subnet.blocks() {
            let main: Vec<Layer> = b.main.iter().map(Layer::of).collect::<Result<_>>()?;
            let proj: Vec<Layer> = b.proj.iter().map(Layer::of).collect::<Result<_>>()?;
            let ends_pw = |v: &[Layer]| v.last().is_some_and(|l| l.kind == Kind::Pointwise);
            let inner_ok = main.iter().chain(&proj).all(|l| l.kind != Kind::Dense);
            if !ends_pw(&main) || (b.shape.stride != 1 && !ends_pw(&proj)) || !inner_ok {
                return Err(Error::BadInput(format!(
                    "inference path: {} must be depthwise and 1×1 convs with each branch ending in a 1×1 conv",
                    b.describe()
                )));
            }
            blocks.push(Block {
                shape: b.shape,
                main,
                proj,
            });
        }
        Ok(Inference {
            space: subnet.space().clone(),
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

    /// Logits `[batch, classes]`, row-major, of `batch` NCHW images `[batch, input_channels,
    /// input_size, input_size]` given as one slice.
    ///
    /// # Errors
    /// [`Error::BadInput`] when `images` does not hold `batch` images of the space's shape.
    pub fn forward(&self, images: &[f32], batch: usize) -> Result<Vec<f32>> {
        let s = &self.space;
        let per_image = s.input_channels * s.input_size * s.input_size;
        if images.len() != batch * per_image {
            return Err(Error::BadInput(format!(
                "inference of arch {} (space {}) expects {batch} images of [{}, {}, {}] ({} values), got {} values",
                self.arch,
                s.name,
                s.input_channels,
                s.input_size,
                s.input_size,
                batch * per_image,
                images.len()
            )));
        }
        let classes = s.classes;
        let mut logits = vec![0f32; batch * classes];
        let job = self.images_per_job;
        images
            .par_chunks(job * per_image)
            .zip(logits.par_chunks_mut(job * classes))
            .for_each(|(x, out)| {
                SCRATCH.with(|s| self.run(x, x.len() / per_image, out, &mut s.borrow_mut()));
            });
        Ok(logits)
    }

    /// [`Inference::forward`] on a tensor `[b, input_channels, input_size, input_size]` (any
    /// device and float dtype); logits `[b, classes]` f32 on the CPU.
    ///
    /// # Errors
    /// A wrong input shape, naming the expected one.
    pub fn forward_tensor(&self, x: &Tensor) -> Result<Tensor> {
        let b = match x.dims() {
            &[b, _, _, _] => b,
            d => {
                return Err(Error::BadInput(format!(
                    "inference of arch {} expects images [batch, {}, {s}, {s}], got {d:?}",
                    self.arch,
                    self.space.input_channels,
                    s = self.space.input_size
                )));
            }
        };
        let x = x
            .to_device(&Device::Cpu)?
            .to_dtype(DType::F32)?
            .contiguous()?;
        let (storage, layout) = x.storage_and_layout();
        let candle_core::Storage::Cpu(cpu) = &*storage else {
            unreachable!("moved to the CPU above")
        };
        let (start, end) = layout.contiguous_offsets().expect("made contiguous above");
        let logits = self.forward(&cpu.as_slice::<f32>()?[start..end], b)?;
        Ok(Tensor::from_vec(
            logits,
            (b, self.space.classes),
            &Device::Cpu,
        )?)
    }

    /// The whole network on `n` images of one job.
    fn run(&self, x: &[f32], n: usize, logits: &mut [f32], s: &mut Scratch) {
        let st = &self.stem;
        s.cur.resize(st.out_len(n), 0.0);
        let shape = DenseShape {
            cin: st.cin,
            h: st.in_size,
            w: st.in_size,
            k: st.k,
            stride: st.stride,
        };
        dense_conv_nchw_in(
            x, n, shape, &st.weight, &st.bias, st.relu, &mut s.cur, &mut s.col,
        );
        for b in &self.blocks {
            let sh = &b.shape;
            let (cin, cout) = (sh.in_channels, sh.out_channels);
            let rows_out = n * sh.out_size * sh.out_size;
            s.next.resize(rows_out * cout, 0.0);
            if sh.stride == 1 {
                // SPOS channel shuffle: even channels pass through, odd ones feed the main branch.
                let rows = n * sh.in_size * sh.in_size;
                let half = cin / 2;
                s.odd.resize(rows * half, 0.0);
                copy_channels(&s.cur, cin, 1, 2, &mut s.odd, half, 0, rows, half);
                chain(&b.main, &s.odd, n, &mut s.next, cout, half, &mut s.chain);
                copy_channels(&s.cur, cin, 0, 2, &mut s.next, cout, 0, rows, half);
            } else {
                let side = b.proj.last().map_or(0, |l| l.cout);
                chain(&b.proj, &s.cur, n, &mut s.next, cout, 0, &mut s.chain);
                chain(&b.main, &s.cur, n, &mut s.next, cout, side, &mut s.chain);
            }
            std::mem::swap(&mut s.cur, &mut s.next);
        }
        let l = &self.last;
        s.next.resize(l.out_len(n), 0.0);
        l.apply(&s.cur, n, &mut s.next, l.cout);
        let px = l.out_size * l.out_size;
        pool_linear(&s.next, n, px, l.cout, &self.classifier, logits);
    }
}

/// Runs `layers` on `x`; the last one (a 1×1 conv) writes its rows into `out` at column `off`
/// with row stride `out_rs`. Intermediate results go to the two `bufs`.
fn chain(
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
            l.apply(src, n, &mut out[off..], out_rs);
        } else {
            dst.resize(l.out_len(n), 0.0);
            l.apply(src, n, dst, l.cout);
        }
    }
}
