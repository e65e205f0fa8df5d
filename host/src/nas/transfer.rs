//! Transfer (`--transfer-from CKPT`): start a search from a supernet trained on another data set.
//!
//! The new supernet is built for the target space (its class count and input channels); every
//! conv weight whose name and shape match the source checkpoint is copied (the feature
//! extractor), the rest keeps its fresh initialisation. The classifier is always fresh: a source
//! class k means something else in the target data even when the class counts agree, unless the
//! caller says the classes are the same (`--same-classes`). The stem conv is copied when the input
//! channels match (also after `--convert-channels`) and fresh otherwise. BN running statistics are
//! not copied: the warm-up ([`super::warmup`]) and each score recalibrate them on the target data.

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

/// A supernet for `space` initialised from the compatible weights of the checkpoint `source`;
/// the classifier is copied only with `same_classes` (and equal class counts).
///
/// # Errors
/// An unreadable checkpoint, or a source whose blocks do not match `space` at all (nothing copied
/// beyond stem and classifier).
pub fn transfer(
    source: &std::path::Path,
    space: &Space,
    device: &Device,
    seed: u64,
    same_classes: bool,
) -> Result<(Supernet, TransferReport)> {
    let (old, _) = Supernet::load(source, device)
        .with_context(|| format!("--transfer-from {}", source.display()))?;
    let net = Supernet::new(space, device, seed)?;
    let mut report = TransferReport {
        copied: Vec::new(),
        fresh: Vec::new(),
    };
    anyhow::ensure!(
        !same_classes || old.space().classes == space.classes,
        "--same-classes: the source {} has {} classes, the data {}; drop --same-classes",
        source.display(),
        old.space().classes,
        space.classes
    );
    for (name, var) in net.trainable() {
        if is_classifier(&name) && !same_classes {
            report.fresh.push(name);
            continue;
        }
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

/// Whether the weight `name` belongs to the classifier (the head a target data set replaces).
pub fn is_classifier(name: &str) -> bool {
    name.starts_with("classifier")
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
        let (net, rep) = transfer(&path, &target, &Device::Cpu, 2, false).unwrap();
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

    /// Equal class counts: the classifier is still fresh (its classes mean other things in the
    /// target data) unless `same_classes`; the stem is copied when the channels match.
    #[test]
    fn same_class_count_gets_a_fresh_head_unless_told_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let space = Space::by_name("tiny").unwrap().with_classes(10);
        let path = dir.path().join("s.safetensors");
        let old = Supernet::new(&space, &Device::Cpu, 1).unwrap();
        old.save(&path, 5).unwrap();
        let (net, rep) = transfer(&path, &space, &Device::Cpu, 2, false).unwrap();
        assert_eq!(rep.fresh, vec!["classifier.weight".to_string()]);
        assert!(rep.copied.iter().any(|n| n.contains("stem")), "{rep:?}");
        let head = |n: &Supernet| {
            n.tensor("classifier.weight")
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        assert_ne!(head(&net), head(&old));
        let (kept, rep) = transfer(&path, &space, &Device::Cpu, 2, true).unwrap();
        assert!(rep.fresh.is_empty(), "{rep:?}");
        assert_eq!(head(&kept), head(&old));
        // --same-classes with another class count names the flag.
        let err = transfer(&path, &space.clone().with_classes(3), &Device::Cpu, 2, true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--same-classes"), "{err}");
    }
}
