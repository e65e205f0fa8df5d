//! SGD with momentum and weight decay, PyTorch semantics, updating only the sampled path.
//!
//! For each parameter `w` that has a gradient `g` in this step (`torch.optim.SGD`, dampening 0,
//! no Nesterov):
//!
//! ```text
//! d   = g + wd · w                 (wd only on conv/linear weights, see [`decays`])
//! buf = d                          on the parameter's first update, else  buf = μ · buf + d
//! w   = w − lr · buf
//! ```
//!
//! Parameters without a gradient this step (blocks the sampled arch did not use) are untouched:
//! no weight decay and no momentum (SPOS trains only the sampled path). Buffers are
//! detached copies, so the autograd graph never grows across steps. candle's own `SGD` has no
//! momentum, and `candle_nn::Optimizer::new` takes unnamed variables, so this optimizer has its
//! own small API keyed by parameter name; its state is saved by name in checkpoints.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use serde::{Deserialize, Serialize};

/// Hyper-parameters of [`Sgd`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SgdConfig {
    /// Learning rate (changed per step by the schedule).
    pub lr: f64,
    /// Momentum μ (SPOS: 0.9).
    pub momentum: f64,
    /// Weight decay on conv/linear weights (SPOS: 4e-5).
    pub weight_decay: f64,
}

/// Gradients of one step by parameter name, with the variables they belong to.
///
/// Built from a `GradStore` ([`Gradients::from_store`]); several can be summed ([`Gradients::add`])
/// for FairNAS steps or for shifting's accumulated losses.
#[derive(Debug, Clone, Default)]
pub struct Gradients {
    entries: BTreeMap<String, (Var, Tensor)>,
}

impl Gradients {
    /// The gradients `store` holds for `params` (those without one are left out).
    ///
    /// # Errors
    /// Detaching a gradient fails (never on CPU).
    pub fn from_store(params: &[(String, Var)], store: &GradStore) -> Result<Gradients> {
        let mut entries = BTreeMap::new();
        for (name, var) in params {
            if let Some(g) = store.get(var.as_tensor()) {
                entries.insert(name.clone(), (var.clone(), g.detach()));
            }
        }
        Ok(Gradients { entries })
    }

    /// Adds `other` in place (summing where both have a gradient).
    ///
    /// # Errors
    /// Shape mismatch between two gradients of the same name.
    pub fn add(&mut self, other: Gradients) -> Result<()> {
        for (name, (var, g)) in other.entries {
            match self.entries.get_mut(&name) {
                Some((_, mine)) => {
                    *mine = mine
                        .add(&g)
                        .with_context(|| format!("summing gradients of {name}"))?
                }
                None => {
                    self.entries.insert(name, (var, g));
                }
            }
        }
        Ok(())
    }

    /// Multiplies every gradient by `factor` (e.g. 1/N to average N accumulated losses).
    ///
    /// # Errors
    /// Tensor arithmetic failures.
    pub fn scale(&mut self, factor: f64) -> Result<()> {
        for (_, g) in self.entries.values_mut() {
            *g = g.affine(factor, 0.0)?;
        }
        Ok(())
    }

    /// Names of the parameters that have a gradient, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// The gradient of `name`, if any.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.entries.get(name).map(|(_, g)| g)
    }

    /// Number of parameters with a gradient.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no parameter has a gradient.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Whether weight decay applies to the parameter `name`: conv and linear weights (names ending in
/// `weight`), but not BN scales γ (`….bn{j}.weight`, `stem.bn.weight`) nor biases (SPOS retraining
/// decays no BN parameters).
pub fn decays(name: &str) -> bool {
    let Some(owner) = name.strip_suffix("weight") else {
        return false;
    };
    let layer = owner.trim_end_matches('.').rsplit('.').next().unwrap_or("");
    !layer.starts_with("bn")
}

/// SGD with momentum and decoupled-from-unsampled-paths weight decay (see the module doc).
#[derive(Debug, Clone)]
pub struct Sgd {
    config: SgdConfig,
    buffers: BTreeMap<String, Tensor>,
}

impl Sgd {
    /// An optimizer with empty momentum buffers.
    pub fn new(config: SgdConfig) -> Sgd {
        Sgd {
            config,
            buffers: BTreeMap::new(),
        }
    }

    /// The current learning rate.
    pub fn lr(&self) -> f64 {
        self.config.lr
    }

    /// Sets the learning rate (the schedule calls this before each step).
    pub fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    /// The hyper-parameters.
    pub fn config(&self) -> SgdConfig {
        self.config
    }

    /// Updates every parameter in `grads`; returns how many were updated.
    ///
    /// # Errors
    /// Shape mismatches or tensor failures, naming the parameter.
    pub fn step(&mut self, grads: &Gradients) -> Result<usize> {
        let SgdConfig {
            lr,
            momentum,
            weight_decay,
        } = self.config;
        for (name, (var, g)) in &grads.entries {
            let w = var.as_detached_tensor();
            let d = if weight_decay != 0.0 && decays(name) {
                (g + w.affine(weight_decay, 0.0)?)?
            } else {
                g.clone()
            };
            let buf = match self.buffers.get(name) {
                Some(b) if momentum != 0.0 => (b.affine(momentum, 0.0)? + d)?,
                _ => d,
            }
            .detach();
            let new_w = (w - buf.affine(lr, 0.0)?)
                .with_context(|| format!("updating {name}"))?
                .detach();
            var.set(&new_w)
                .with_context(|| format!("writing updated {name}"))?;
            if momentum != 0.0 {
                self.buffers.insert(name.clone(), buf);
            }
        }
        Ok(grads.len())
    }

    /// Drops the momentum buffers of `names` (their weights were overwritten).
    pub fn forget(&mut self, names: &[String]) {
        for n in names {
            self.buffers.remove(n);
        }
    }

    /// The momentum buffer of `name`, if that parameter was ever updated.
    pub fn buffer(&self, name: &str) -> Option<&Tensor> {
        self.buffers.get(name)
    }

    /// Writes the momentum buffers as safetensors (keyed by parameter name), atomically.
    ///
    /// # Errors
    /// I/O errors naming the path.
    pub fn save_buffers(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("safetensors.tmp");
        let map: std::collections::HashMap<&str, Tensor> = self
            .buffers
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        candle_core::safetensors::save(&map, &tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        // Durable before the rename, like every other checkpoint file (`write_atomic`).
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("syncing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
    }

    /// Reads momentum buffers saved by [`Sgd::save_buffers`].
    ///
    /// # Errors
    /// A missing or malformed file, naming it.
    pub fn load_buffers(&mut self, path: &Path, device: &Device) -> Result<()> {
        if !path.is_file() {
            bail!(
                "{} is missing; the checkpoint is incomplete (the optimizer state is needed to resume exactly)",
                path.display()
            );
        }
        let map = candle_core::safetensors::load(path, device)
            .with_context(|| format!("reading optimizer state {}", path.display()))?;
        self.buffers = map.into_iter().collect();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grads(entries: &[(&str, &Var, &[f32])]) -> Gradients {
        let mut g = Gradients::default();
        for (n, v, vals) in entries {
            let t = Tensor::new(*vals, &Device::Cpu).unwrap();
            g.entries.insert(n.to_string(), ((*v).clone(), t));
        }
        g
    }

    fn vals(v: &Var) -> Vec<f32> {
        v.as_tensor().to_vec1().unwrap()
    }

    /// Expected values by hand with PyTorch's formulas (lr 0.1, μ 0.9, wd 0.01):
    /// a = [1, -2], g1 = [0.5, 0.5]: d = [0.51, 0.48], buf = d, a = [0.949, -2.048].
    /// Step 2, g2 = [1, 0]: d = [1 + 0.00949, -0.02048] = [1.00949, -0.02048];
    /// buf = 0.9·[0.51, 0.48] + d = [1.46849, 0.41152]; a = [0.802151, -2.089152].
    /// b = [3] gets g only in step 2 (step 1 leaves it alone): d = 0.5 + 0.03 = 0.53, buf = 0.53,
    /// b = 3 − 0.053 = 2.947. (The update rule of `torch.optim.SGD(lr=.1, momentum=.9,
    /// weight_decay=.01)`, whose step skips parameters whose `.grad` is None, as b in step 1.)
    #[test]
    fn sgd_matches_pytorch_semantics_and_skips_unsampled() {
        let a = Var::new(&[1f32, -2.0], &Device::Cpu).unwrap();
        let b = Var::new(&[3f32], &Device::Cpu).unwrap();
        let mut sgd = Sgd::new(SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 0.01,
        });
        assert_eq!(
            sgd.step(&grads(&[("a.weight", &a, &[0.5, 0.5])])).unwrap(),
            1
        );
        let close = |x: Vec<f32>, y: &[f32]| {
            assert!(
                x.iter().zip(y).all(|(p, q)| (p - q).abs() < 1e-6),
                "{x:?} vs {y:?}"
            )
        };
        close(vals(&a), &[0.949, -2.048]);
        close(vals(&b), &[3.0]);
        assert!(sgd.buffer("b.weight").is_none());
        sgd.step(&grads(&[
            ("a.weight", &a, &[1.0, 0.0]),
            ("b.weight", &b, &[0.5]),
        ]))
        .unwrap();
        close(vals(&a), &[0.802151, -2.089152]);
        close(vals(&b), &[2.947]);
        close(
            sgd.buffer("a.weight").unwrap().to_vec1().unwrap(),
            &[1.46849, 0.41152],
        );
    }

    #[test]
    fn weight_decay_skips_bn_parameters_and_biases() {
        for n in [
            "stem.conv.weight",
            "blocks.3.choice1.main.conv2.weight",
            "classifier.weight",
            "a.weight",
        ] {
            assert!(decays(n), "{n}");
        }
        for n in [
            "stem.bn.weight",
            "last.bn.bias",
            "blocks.3.choice1.main.bn2.weight",
            "blocks.3.choice1.proj.bn0.weight",
            "blocks.3.choice1.main.bn2.bias",
            "stem.bn.running_var",
        ] {
            assert!(!decays(n), "{n}");
        }
        // A BN γ with a gradient of 0 is left alone by the decay; a conv weight shrinks.
        let g = Var::new(&[2f32], &Device::Cpu).unwrap();
        let w = Var::new(&[2f32], &Device::Cpu).unwrap();
        let mut sgd = Sgd::new(SgdConfig {
            lr: 0.5,
            momentum: 0.0,
            weight_decay: 0.1,
        });
        sgd.step(&grads(&[
            ("last.bn.weight", &g, &[0.0]),
            ("last.conv.weight", &w, &[0.0]),
        ]))
        .unwrap();
        assert_eq!((vals(&g), vals(&w)), (vec![2.0], vec![1.9]));
    }

    #[test]
    fn buffers_round_trip_and_sum_of_gradients() {
        let a = Var::new(&[1f32, 2.0], &Device::Cpu).unwrap();
        let mut g = grads(&[("a.weight", &a, &[1.0, 2.0])]);
        g.add(grads(&[("a.weight", &a, &[0.5, 0.5])])).unwrap();
        g.scale(2.0).unwrap();
        assert_eq!(
            g.get("a.weight").unwrap().to_vec1::<f32>().unwrap(),
            [3.0, 5.0]
        );
        let mut sgd = Sgd::new(SgdConfig {
            lr: 0.5,
            momentum: 0.9,
            weight_decay: 0.0,
        });
        sgd.step(&g).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("opt.safetensors");
        sgd.save_buffers(&p).unwrap();
        let mut back = Sgd::new(sgd.config());
        back.load_buffers(&p, &Device::Cpu).unwrap();
        assert_eq!(
            back.buffer("a.weight").unwrap().to_vec1::<f32>().unwrap(),
            sgd.buffer("a.weight").unwrap().to_vec1::<f32>().unwrap()
        );
        let err = back
            .load_buffers(&dir.path().join("nope"), &Device::Cpu)
            .unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn gradients_from_a_real_backward_leave_out_unused_params() {
        let a = Var::new(&[2f32], &Device::Cpu).unwrap();
        let b = Var::new(&[5f32], &Device::Cpu).unwrap();
        let loss = a.as_tensor().sqr().unwrap().sum_all().unwrap();
        let store = loss.backward().unwrap();
        let params = vec![("a.weight".to_string(), a), ("b.weight".to_string(), b)];
        let g = Gradients::from_store(&params, &store).unwrap();
        assert_eq!(g.names().collect::<Vec<_>>(), ["a.weight"]);
        assert_eq!(g.get("a.weight").unwrap().to_vec1::<f32>().unwrap(), [4.0]);
    }
}
