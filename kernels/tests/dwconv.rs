//! The depthwise custom op against a naive loop nest, candle's grouped conv2d (forward and
//! backward) and central finite differences.

use candle_core::{Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shiftnas_kernels::dwconv::{depthwise_conv2d, dw_out_size, native_depthwise_conv2d};

/// One depthwise problem with its data, and a reference written as the textbook loop nest.
struct DwConvProblem {
    b: usize,
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    s: usize,
    x: Vec<f32>,
    wt: Vec<f32>,
}

impl DwConvProblem {
    fn new(b: usize, c: usize, h: usize, w: usize, k: usize, s: usize, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let x = (0..b * c * h * w)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let wt = (0..c * k * k)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        DwConvProblem {
            b,
            c,
            h,
            w,
            k,
            s,
            x,
            wt,
        }
    }

    fn out_hw(&self) -> (usize, usize) {
        (
            dw_out_size(self.h, self.k, self.s),
            dw_out_size(self.w, self.k, self.s),
        )
    }

    /// out[n,c,oy,ox] = Σ x[n,c,oy·s+ky−p, ox·s+kx−p] · w[c,ky,kx], zero outside the image.
    fn reference(&self, x: &[f32], wt: &[f32]) -> Vec<f64> {
        let (oh, ow) = self.out_hw();
        let p = (self.k / 2) as isize;
        let mut out = vec![0f64; self.b * self.c * oh * ow];
        for n in 0..self.b {
            for c in 0..self.c {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = 0f64;
                        for ky in 0..self.k {
                            for kx in 0..self.k {
                                let iy = (oy * self.s + ky) as isize - p;
                                let ix = (ox * self.s + kx) as isize - p;
                                if iy < 0
                                    || ix < 0
                                    || iy >= self.h as isize
                                    || ix >= self.w as isize
                                {
                                    continue;
                                }
                                let xi = ((n * self.c + c) * self.h + iy as usize) * self.w
                                    + ix as usize;
                                acc += x[xi] as f64 * wt[(c * self.k + ky) * self.k + kx] as f64;
                            }
                        }
                        out[((n * self.c + c) * oh + oy) * ow + ox] = acc;
                    }
                }
            }
        }
        out
    }

    /// A fixed random linear functional of the output: L = Σ out · r.
    fn probe(&self, seed: u64) -> Vec<f32> {
        let (oh, ow) = self.out_hw();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..self.b * self.c * oh * ow)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect()
    }

    fn loss_ref(&self, x: &[f32], wt: &[f32], r: &[f32]) -> f64 {
        self.reference(x, wt)
            .iter()
            .zip(r)
            .map(|(o, &r)| o * r as f64)
            .sum()
    }

    fn tensors(&self) -> (Var, Var) {
        let d = Device::Cpu;
        let x = Var::from_tensor(
            &Tensor::from_vec(self.x.clone(), (self.b, self.c, self.h, self.w), &d).unwrap(),
        )
        .unwrap();
        let w = Var::from_tensor(
            &Tensor::from_vec(self.wt.clone(), (self.c, 1, self.k, self.k), &d).unwrap(),
        )
        .unwrap();
        (x, w)
    }

    fn name(&self) -> String {
        format!(
            "b{} c{} {}x{} k{} s{}",
            self.b, self.c, self.h, self.w, self.k, self.s
        )
    }
}

fn max_abs_diff(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&a, &b)| (a as f64 - b).abs())
        .fold(0.0, f64::max)
}

fn problems() -> Vec<DwConvProblem> {
    let mut out = Vec::new();
    let mut seed = 1;
    for k in [3, 5, 7] {
        for s in [1, 2] {
            for (h, w) in [(8, 8), (7, 7), (6, 9), (3, 2), (2, 2), (1, 1)] {
                out.push(DwConvProblem::new(2, 3, h, w, k, s, seed));
                seed += 1;
            }
            // 19 channels: two 8-lane blocks and a tail, one 16-lane register and a tail; 9
            // images: two parts of the kernel gradient's sum.
            for (b, h, w) in [(2, 8, 8), (9, 5, 6), (2, 2, 2)] {
                out.push(DwConvProblem::new(b, 19, h, w, k, s, seed));
                seed += 1;
            }
        }
    }
    out
}

#[test]
fn forward_matches_loop_nest_and_candle_grouped_conv() {
    for p in problems() {
        let (x, w) = p.tensors();
        let ours = depthwise_conv2d(&x, &w, p.s).unwrap();
        let (oh, ow) = p.out_hw();
        assert_eq!(ours.dims(), &[p.b, p.c, oh, ow], "{}", p.name());
        let ours_v = ours.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let reference = p.reference(&p.x, &p.wt);
        let d = max_abs_diff(&ours_v, &reference);
        assert!(d < 1e-5, "{}: vs loop nest {d}", p.name());
        let native = native_depthwise_conv2d(&x, &w, p.s)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let native64: Vec<f64> = native.iter().map(|&v| v as f64).collect();
        let d = max_abs_diff(&ours_v, &native64);
        assert!(d < 1e-5, "{}: vs candle conv2d {d}", p.name());
    }
}

#[test]
fn non_contiguous_input_is_handled() {
    let p = DwConvProblem::new(2, 4, 5, 5, 3, 1, 99);
    let (x, w) = p.tensors();
    // A transposed view holding the same logical tensor after transposing back.
    let xt = x.transpose(2, 3).unwrap().contiguous().unwrap();
    let view = xt.transpose(2, 3).unwrap();
    assert!(!view.is_contiguous());
    let a = depthwise_conv2d(&view, &w, 1).unwrap();
    let b = depthwise_conv2d(&x, &w, 1).unwrap();
    let d = (a - b).unwrap().abs().unwrap().max_all().unwrap();
    assert_eq!(d.to_scalar::<f32>().unwrap(), 0.0);
}

#[test]
fn gradients_match_candle_backward_and_finite_differences() {
    let mut compared_with_candle = 0;
    for p in problems() {
        let (x, w) = p.tensors();
        let r = p.probe(1000);
        let (oh, ow) = p.out_hw();
        let rt = Tensor::from_vec(r.clone(), (p.b, p.c, oh, ow), &Device::Cpu).unwrap();

        let grads = depthwise_conv2d(&x, &w, p.s)
            .unwrap()
            .mul(&rt)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gx = grads
            .get(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let gw = grads
            .get(&w)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(grads.get(&x).unwrap().dims(), x.dims());
        assert_eq!(grads.get(&w).unwrap().dims(), w.dims());

        // candle's own backward for strided convs fails on some sizes (its conv_transpose yields
        // one column too many, e.g. 6x10 for a 6x9 input at stride 2): compare where it works.
        let native_grads = native_depthwise_conv2d(&x, &w, p.s)
            .unwrap()
            .mul(&rt)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward();
        match native_grads {
            Ok(ngrads) => {
                let to64 = |v: &Var| -> Vec<f64> {
                    let t = ngrads.get(v).unwrap().flatten_all().unwrap();
                    t.to_vec1::<f32>()
                        .unwrap()
                        .iter()
                        .map(|&v| v as f64)
                        .collect()
                };
                let d = max_abs_diff(&gx, &to64(&x));
                assert!(d < 1e-4, "{}: input grad vs candle {d}", p.name());
                let d = max_abs_diff(&gw, &to64(&w));
                assert!(d < 1e-4, "{}: weight grad vs candle {d}", p.name());
                compared_with_candle += 1;
            }
            Err(e) => {
                assert!(p.s == 2, "{}: candle backward failed: {e}", p.name());
            }
        }

        // Central differences of the f64 reference (exactly linear, so eps=1e-2 is exact up to
        // rounding).
        let eps = 1e-2f32;
        let mut fd_x = Vec::with_capacity(p.x.len());
        for i in 0..p.x.len() {
            let mut xp = p.x.clone();
            xp[i] += eps;
            let mut xm = p.x.clone();
            xm[i] -= eps;
            fd_x.push(
                (p.loss_ref(&xp, &p.wt, &r) - p.loss_ref(&xm, &p.wt, &r)) / (2.0 * eps as f64),
            );
        }
        let d = max_abs_diff(&gx, &fd_x);
        assert!(
            d < 1e-3,
            "{}: input grad vs finite differences {d}",
            p.name()
        );
        let mut fd_w = Vec::with_capacity(p.wt.len());
        for i in 0..p.wt.len() {
            let mut wp = p.wt.clone();
            wp[i] += eps;
            let mut wm = p.wt.clone();
            wm[i] -= eps;
            fd_w.push((p.loss_ref(&p.x, &wp, &r) - p.loss_ref(&p.x, &wm, &r)) / (2.0 * eps as f64));
        }
        let d = max_abs_diff(&gw, &fd_w);
        assert!(
            d < 1e-3,
            "{}: weight grad vs finite differences {d}",
            p.name()
        );
    }
    assert!(
        compared_with_candle >= 12,
        "only {compared_with_candle} compared with candle"
    );
}

#[test]
fn mismatched_weight_is_an_error() {
    let x = Tensor::zeros((1, 4, 5, 5), candle_core::DType::F32, &Device::Cpu).unwrap();
    let w = Tensor::zeros((3, 1, 3, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
    let e = depthwise_conv2d(&x, &w, 1).unwrap_err().to_string();
    assert!(e.contains("[4, 1, k, k]"), "{e}");
}
