//! Transfer (`--transfer-from CKPT`): start a search from a supernet trained on another data set.
//!
//! The new supernet is built for the target space (its class count and input channels); every
//! conv/linear weight whose name and shape match the source checkpoint is copied (the feature
//! extractor), the rest keeps its fresh initialisation: the classifier when the class count
//! differs, the stem conv when the input channels differ (unless the data was converted with
//! `--convert-channels`). BN running statistics are not copied: scores recalibrate BN per arch
//! (`--bn exact|reset-ema`), and shifting (`immediate`) fine-tunes each path while searching.

use anyhow::{Context, Result};
use candle_core::Device;
use shiftnas_models::{Space, Supernet};

/// What [`transfer`] copied and what it left fresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferReport {
    /// Weights copied from the source.
    pub copied: Vec<String>,
    /// Weights left at their fresh initialisation (shape or name differs).
    pub fresh: Vec<String>,
}

/// A supernet for `space` initialised from the compatible weights of the checkpoint `source`.
///
/// # Errors
/// An unreadable checkpoint, or a source whose blocks do not match `space` at all (nothing copied
/// beyond stem and classifier).
pub fn transfer(
    source: &std::path::Path,
    space: &Space,
    device: &Device,
    seed: u64,
) -> Result<(Supernet, TransferReport)> {
    let (old, _) = Supernet::load(source, device)
        .with_context(|| format!("--transfer-from {}", source.display()))?;
    let net = Supernet::new(space, device, seed)?;
    let mut report = TransferReport {
        copied: Vec::new(),
        fresh: Vec::new(),
    };
    for (name, var) in net.trainable() {
        match old.tensor(&name) {
            Some(t) if t.dims() == var.as_tensor().dims() => {
                var.set(&t.to_device(device)?.copy()?)
                    .with_context(|| format!("copying {name}"))?;
                report.copied.push(name);
            }
            _ => report.fresh.push(name),
        }
    }
    anyhow::ensure!(
        report.copied.len() > 2,
        "--transfer-from {}: its space {} shares no block weights with space {}; transfer needs the same block layout",
        source.display(),
        old.space().name,
        space.name
    );
    Ok((net, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_features_and_replaces_classifier_and_stem() {
        let dir = tempfile::tempdir().unwrap();
        let src = Space::by_name("tiny").unwrap().with_classes(10);
        let path = dir.path().join("s.safetensors");
        let old = Supernet::new(&src, &Device::Cpu, 1).unwrap();
        old.save(&path, 5).unwrap();
        let mut target = src.clone().with_classes(3);
        target.input_channels = 3;
        let (net, rep) = transfer(&path, &target, &Device::Cpu, 2).unwrap();
        assert_eq!(net.space().classes, 3);
        assert!(
            rep.fresh.iter().any(|n| n.starts_with("classifier")),
            "{:?}",
            rep.fresh
        );
        assert!(
            rep.fresh.iter().any(|n| n.contains("stem")),
            "{:?}",
            rep.fresh
        );
        assert_eq!(rep.fresh.len(), 2, "{:?}", rep.fresh);
        for n in &rep.copied {
            let a = old
                .tensor(n)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let b = net
                .tensor(n)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            assert_eq!(a, b, "{n}");
        }
    }
}
