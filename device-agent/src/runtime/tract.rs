//! tract (pure Rust) as a fallback runtime, behind the `tract` feature: used only when no
//! `libonnxruntime.so` can be found, and always labelled `tract` in reports (~2.4× slower than
//! ORT on the same model, so its numbers are not comparable with ORT's).

use anyhow::{Context, Result};
use shiftnas_protocol::{Backend as BackendId, BackendName, TensorF32};
use tract_onnx::prelude::*;

use super::{Backend, Model, SessionOptions, check_len};

/// The tract-onnx version this agent was built against (workspace `tract-onnx = "0.23"`).
const TRACT_VERSION: &str = "0.23";

/// The tract runtime (single-threaded; `threads` is ignored and reported as requested).
pub struct TractBackend;

impl Backend for TractBackend {
    fn id(&self) -> BackendId {
        BackendId {
            name: BackendName::Tract,
            version: TRACT_VERSION.to_string(),
        }
    }

    fn open(&self, model: &[u8], _opts: SessionOptions) -> Result<Box<dyn Model>> {
        let typed = tract_onnx::onnx()
            .model_for_read(&mut std::io::Cursor::new(model))
            .map_err(|e| anyhow::anyhow!("tract could not read the model: {e}"))?
            .into_typed()
            .map_err(|e| anyhow::anyhow!("tract could not type the model: {e}"))?;
        anyhow::ensure!(
            typed.inputs.len() == 1,
            "the model has {} inputs; the agent measures single-input models",
            typed.inputs.len()
        );
        let name = typed.node(typed.inputs[0].node).name.clone();
        let fact = typed.input_fact(0).map_err(|e| anyhow::anyhow!("{e}"))?;
        let shape = fact
            .shape
            .as_concrete()
            .map(<[usize]>::to_vec)
            .with_context(|| {
                format!(
                    "input {name:?} has a dynamic shape; export the model with a fixed input shape"
                )
            })?;
        let plan = typed
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(|e| anyhow::anyhow!("tract could not optimise the model: {e}"))?;
        Ok(Box::new(TractModel {
            plan,
            name,
            shape,
            input: None,
        }))
    }
}

struct TractModel {
    plan: std::sync::Arc<TypedRunnableModel>,
    name: String,
    shape: Vec<usize>,
    input: Option<TValue>,
}

impl TractModel {
    fn outputs(&mut self) -> Result<TVec<TValue>> {
        let input = self.input.clone().context("no input set")?;
        self.plan
            .run(tvec!(input))
            .map_err(|e| anyhow::anyhow!("tract run failed: {e}"))
    }
}

impl Model for TractModel {
    fn input_name(&self) -> &str {
        &self.name
    }

    fn input_shape(&self) -> &[usize] {
        &self.shape
    }

    fn set_input(&mut self, data: Vec<f32>) -> Result<()> {
        check_len(&self.name, &self.shape, data.len())?;
        let t = tract_ndarray::ArrayD::from_shape_vec(tract_ndarray::IxDyn(&self.shape), data)?;
        self.input = Some(Tensor::from(t).into());
        Ok(())
    }

    fn run(&mut self) -> Result<()> {
        self.outputs().map(drop)
    }

    fn run_output(&mut self) -> Result<TensorF32> {
        let out = self.outputs()?;
        let first = out.first().context("the model has no output")?;
        let view = first
            .to_plain_array_view::<f32>()
            .map_err(|e| anyhow::anyhow!("first output is not float32: {e}"))?;
        Ok(TensorF32 {
            shape: view.shape().to_vec(),
            data: view.iter().copied().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::ort::OrtBackend;

    fn fixture(name: &str) -> Vec<u8> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/agent")
            .join(name);
        std::fs::read(p).unwrap()
    }

    #[test]
    fn tract_matches_ort_on_the_same_input() {
        let model = fixture("conv_m.onnx");
        let mut t = TractBackend
            .open(&model, SessionOptions::default())
            .unwrap();
        assert_eq!(
            (t.input_name(), t.input_shape()),
            ("input", &[1usize, 3, 32, 32][..])
        );
        t.set_input(crate::bench::random_input(3 * 32 * 32, 5))
            .unwrap();
        let yt = t.run_output().unwrap();
        assert_eq!(yt.shape, vec![1, 10]);
        assert_eq!(TractBackend.id().name, BackendName::Tract);
        let ort = match OrtBackend::load(None) {
            Ok(ort) => ort,
            // CI (CI=true) must not pass by skipping the comparison.
            Err(e) if matches!(std::env::var("CI").as_deref(), Ok("true" | "1")) => panic!(
                "no libonnxruntime.so for the ORT comparison: {e:#}; run `source scripts/setup-deps` \
                 (it exports ORT_DYLIB_PATH)"
            ),
            Err(_) => {
                eprintln!("skipped the ORT comparison: no libonnxruntime.so (set ORT_DYLIB_PATH)");
                return;
            }
        };
        let mut o = ort.open(&model, SessionOptions::default()).unwrap();
        o.set_input(crate::bench::random_input(3 * 32 * 32, 5))
            .unwrap();
        let yo = o.run_output().unwrap();
        for (a, b) in yt.data.iter().zip(&yo.data) {
            assert!(
                (a - b).abs() <= 1e-4 * b.abs().max(1.0),
                "tract {a} vs ort {b}"
            );
        }
        let err = TractBackend
            .open(&fixture("dynamic_batch.onnx"), SessionOptions::default())
            .err()
            .unwrap();
        assert!(format!("{err:#}").contains("dynamic shape"), "{err:#}");
    }
}
