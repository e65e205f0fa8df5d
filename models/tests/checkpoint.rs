//! Supernet checkpoints: exact round trip, atomic writes, and clear refusals.

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use shiftnas_models::{Arch, Space, Supernet};

fn trained_net(space: &Space) -> Supernet {
    let net = Supernet::new(space, &Device::Cpu, 11).unwrap();
    let x = Tensor::randn(
        0f32,
        1.0,
        (4, space.input_channels, space.input_size, space.input_size),
        &Device::Cpu,
    )
    .unwrap();
    // Move some running statistics away from their initial values.
    net.forward_t(&x, &Arch::uniform(space.num_blocks(), 3), true)
        .unwrap();
    net
}

#[test]
fn round_trip_is_exact() {
    let space = Space::tiny();
    let net = trained_net(&space);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("supernet.safetensors");
    net.save(&path, 1234).unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "temp file left behind");
    for (loaded, step) in [
        Supernet::load(&path, &Device::Cpu).unwrap(),
        Supernet::load_for(&path, &space, &Device::Cpu).unwrap(),
    ] {
        assert_eq!(step, 1234);
        assert_eq!(loaded.space(), &space);
        let names: Vec<&str> = net.names().collect();
        assert_eq!(loaded.names().collect::<Vec<_>>(), names);
        for name in names {
            let a = net
                .tensor(name)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let b = loaded
                .tensor(name)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            assert_eq!(a, b, "{name}");
        }
    }
    let info = Supernet::checkpoint_info(&path).unwrap();
    assert_eq!((info.space.name.as_str(), info.step), ("tiny", 1234));
}

#[test]
fn other_space_is_refused_naming_both() {
    let space = Space::tiny();
    let net = Supernet::new(&space, &Device::Cpu, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.safetensors");
    net.save(&path, 5).unwrap();
    let other = Space::tiny().with_classes(100);
    let e = Supernet::load_for(&path, &other, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("a.safetensors"), "{e}");
    assert!(e.contains("classes: file 10, expected 100"), "{e}");
    assert!(e.contains("--space tiny"), "{e}");
}

#[test]
fn other_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.safetensors");
    let data = vec![0u8; 4];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1], &data).unwrap();
    let meta = HashMap::from([
        ("format".to_string(), "shiftnas-supernet".to_string()),
        ("format_version".to_string(), "2".to_string()),
        (
            "space".to_string(),
            serde_json::to_string(&Space::tiny()).unwrap(),
        ),
        ("step".to_string(), "0".to_string()),
    ]);
    let bytes = safetensors::serialize([("x", view)], Some(meta)).unwrap();
    std::fs::write(&path, bytes).unwrap();
    let e = Supernet::load(&path, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("v2.safetensors") && e.contains("format version 2"),
        "{e}"
    );
    std::fs::write(&path, b"not a checkpoint").unwrap();
    let e = Supernet::load(&path, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not a safetensors file"), "{e}");
}
