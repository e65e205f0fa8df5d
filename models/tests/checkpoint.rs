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

/// The file's tensors and metadata as the `safetensors` crate reads them, written back with
/// `metadata` instead (the crate's own writer: how files looked before checksums).
fn rewrite_with_metadata(bytes: &[u8], metadata: HashMap<String, String>) -> Vec<u8> {
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    safetensors::serialize(st.tensors(), Some(metadata)).unwrap()
}

fn metadata_of(bytes: &[u8]) -> HashMap<String, String> {
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).unwrap();
    meta.metadata().clone().unwrap()
}

#[test]
fn flipped_byte_in_tensor_data_is_refused_naming_the_tensor() {
    let space = Space::tiny();
    let net = trained_net(&space);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flip.safetensors");
    net.save(&path, 3).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    // Every tensor has its SHA-256 in the header, computed here independently.
    let md = metadata_of(&bytes);
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    for (name, view) in st.tensors() {
        let want = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(view.data()));
        assert_eq!(md.get(&format!("sha256:{name}")), Some(&want), "{name}");
    }
    // Flip one byte in the middle of one tensor's data (located with the safetensors parser).
    let (header_len, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let name = net.names().nth(3).unwrap().to_string();
    let info = meta.info(&name).unwrap();
    let (begin, end) = info.data_offsets;
    assert!(end > begin, "{name} is empty");
    bytes[8 + header_len + (begin + end) / 2] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    let Err(e) = Supernet::load(&path, &Device::Cpu) else {
        panic!("a corrupt tensor loaded");
    };
    let e = e.to_string();
    assert!(e.contains("flip.safetensors"), "{e}");
    assert!(e.contains(&format!("tensor {name}:")), "{e}");
    assert!(e.contains("checkpoint.old") && e.contains("retrain"), "{e}");
}

#[test]
fn saves_of_the_same_weights_are_byte_identical() {
    let space = Space::tiny();
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    // Two nets built the same way (same seed, same fixed input), each saved several times (a
    // map's order varies per instance).
    for copy in 0..2 {
        let net = Supernet::new(&space, &Device::Cpu, 11).unwrap();
        let n = 4 * space.input_channels * space.input_size * space.input_size;
        let x = Tensor::arange(0u32, n as u32, &Device::Cpu)
            .unwrap()
            .to_dtype(candle_core::DType::F32)
            .unwrap()
            .sin()
            .unwrap()
            .reshape((4, space.input_channels, space.input_size, space.input_size))
            .unwrap();
        net.forward_t(&x, &Arch::uniform(space.num_blocks(), 3), true)
            .unwrap();
        for i in 0..4 {
            let path = dir.path().join(format!("{copy}-{i}.safetensors"));
            net.save(&path, 77).unwrap();
            files.push(std::fs::read(&path).unwrap());
        }
    }
    for (i, f) in files.iter().enumerate() {
        assert!(f == &files[0], "save {i} differs from save 0");
    }
    // The header is padded to a multiple of 8 bytes, as the safetensors format recommends.
    let header_len = u64::from_le_bytes(files[0][..8].try_into().unwrap());
    assert_eq!(header_len % 8, 0);
}

#[test]
fn files_without_checksums_load_unverified_but_partial_ones_are_refused() {
    let space = Space::tiny();
    let net = trained_net(&space);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.safetensors");
    net.save(&path, 9).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let md = metadata_of(&bytes);
    let plain: HashMap<String, String> = md
        .iter()
        .filter(|(k, _)| !k.starts_with("sha256:"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(plain.len(), 4, "{plain:?}");
    // As written before checksums existed: loads, with the same weights.
    std::fs::write(&path, rewrite_with_metadata(&bytes, plain)).unwrap();
    let (loaded, step) = Supernet::load(&path, &Device::Cpu).unwrap();
    assert_eq!(step, 9);
    for name in net.names() {
        let a = net.tensor(name).unwrap().flatten_all().unwrap();
        let b = loaded.tensor(name).unwrap().flatten_all().unwrap();
        assert_eq!(
            a.to_vec1::<f32>().unwrap(),
            b.to_vec1::<f32>().unwrap(),
            "{name}"
        );
    }
    // One checksum missing among the others: the header is damaged.
    let name = net.names().next().unwrap().to_string();
    let mut partial = md.clone();
    partial.remove(&format!("sha256:{name}")).unwrap();
    std::fs::write(&path, rewrite_with_metadata(&bytes, partial)).unwrap();
    let Err(e) = Supernet::load(&path, &Device::Cpu) else {
        panic!("a file with a missing checksum loaded");
    };
    let e = e.to_string();
    assert!(
        e.contains("old.safetensors") && e.contains(&format!("tensor {name} has no checksum")),
        "{e}"
    );
}
