//! Supernet checkpoints: every weight and running statistic as safetensors (f32), with a
//! `__metadata__` header `{"format": "shiftnas-supernet", "format_version": "1", "space": <Space
//! as JSON>, "step": "N", "sha256:<tensor>": <hex>, …}` (safetensors metadata values are strings).
//! Files are written atomically: a temporary file in the same folder, fsync, rename, fsync of the
//! folder.
//!
//! **Checksums.** Each tensor's stored bytes have their SHA-256 in the header
//! (`sha256:<tensor name>`), and loading refuses a tensor whose bytes no longer match, naming the
//! file and the tensor: a flipped bit would otherwise load as a silently broken network. Files
//! written before checksums existed hold no `sha256:` key at all; they load unverified, as before
//! (the format version is unchanged, and older builds ignore the extra keys). A file holding
//! checksums for some tensors but not for others is refused as damaged. Standalone (retrain)
//! checkpoints use the same writer and checks.
//!
//! **Byte-identical files.** The header is written by hand with the metadata keys sorted and the
//! tensors in name order, so the same weights, space and step always give the same bytes (the
//! `safetensors` crate's writer emits its metadata map in random order).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use safetensors::tensor::{Dtype, SafeTensors};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::space::Space;
use crate::supernet::Supernet;

/// The `format` metadata value of supernet checkpoints.
pub const FORMAT: &str = "shiftnas-supernet";
/// The `format_version` this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Prefix of the metadata keys holding each tensor's SHA-256 (`sha256:<tensor name>`, lowercase
/// hex of the tensor's stored little-endian bytes).
pub const CHECKSUM_PREFIX: &str = "sha256:";

fn ckpt_err(path: &Path, reason: String) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        reason,
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` atomically (temp file in the same folder, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| ckpt_err(path, "not a file path".into()))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io_err(path))?;
        // Makes the rename itself survive a power cut. Best effort: the new file is in place
        // already, and some file systems refuse to fsync a directory.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// What a checkpoint header says.
#[derive(Debug, Clone)]
pub struct CheckpointInfo {
    /// The space the supernet was built from.
    pub space: Space,
    /// The training step it was saved at.
    pub step: u64,
}

/// Reads the metadata header of a safetensors checkpoint and checks its `format` (`writer` names
/// the command that writes such files, for the error message) and `format_version`.
pub(crate) fn read_metadata(
    path: &Path,
    bytes: &[u8],
    format: &str,
    writer: &str,
) -> Result<HashMap<String, String>> {
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| {
        ckpt_err(
            path,
            format!("not a safetensors file ({e}); pass a checkpoint written by `{writer}`"),
        )
    })?;
    let md = meta.metadata().clone().unwrap_or_default();
    let get = |k: &str| {
        md.get(k).ok_or_else(|| {
            ckpt_err(
                path,
                format!("no {k:?} in the metadata header: not a {format} checkpoint"),
            )
        })
    };
    if get("format")? != format {
        return Err(ckpt_err(
            path,
            format!(
                "format {:?}, expected {format:?}: pass a checkpoint written by `{writer}` (another kind of file was given)",
                md["format"]
            ),
        ));
    }
    let version = get("format_version")?;
    if version.parse::<u32>().ok() != Some(FORMAT_VERSION) {
        return Err(ckpt_err(
            path,
            format!(
                "format version {version}, this build reads version {FORMAT_VERSION}: retrain, or use the shiftnas release that wrote it"
            ),
        ));
    }
    Ok(md)
}

/// A metadata value, or an error naming the key.
pub(crate) fn meta_value<'a>(
    path: &Path,
    md: &'a HashMap<String, String>,
    key: &str,
) -> Result<&'a String> {
    md.get(key).ok_or_else(|| {
        ckpt_err(
            path,
            format!("no {key:?} in the metadata header: the file is damaged or from an incompatible build"),
        )
    })
}

/// Reads and checks the metadata header of a supernet checkpoint.
fn read_info(path: &Path, bytes: &[u8]) -> Result<CheckpointInfo> {
    let md = read_metadata(path, bytes, FORMAT, "shiftnas train")?;
    let get = |k: &str| meta_value(path, &md, k);
    let space: Space = serde_json::from_str(get("space")?)
        .map_err(|e| ckpt_err(path, format!("unreadable space in the header: {e}")))?;
    let step = get("step")?
        .parse::<u64>()
        .map_err(|e| ckpt_err(path, format!("unreadable step in the header: {e}")))?;
    Ok(CheckpointInfo { space, step })
}

impl Supernet {
    /// Saves every weight and running statistic with `step` to `path`, atomically.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file.
    pub fn save(&self, path: impl AsRef<Path>, step: u64) -> Result<()> {
        let path = path.as_ref();
        let named = self.names().map(|n| {
            (
                n.to_string(),
                self.tensor(n).expect("names() lists existing tensors"),
            )
        });
        let space_json = serde_json::to_string(self.space())
            .map_err(|e| ckpt_err(path, format!("cannot serialise the space: {e}")))?;
        let meta = BTreeMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("format_version".to_string(), FORMAT_VERSION.to_string()),
            ("space".to_string(), space_json),
            ("step".to_string(), step.to_string()),
        ]);
        save_named(path, named, meta)
    }

    /// Reads only the header of a checkpoint (space and step).
    ///
    /// # Errors
    /// An unreadable file or header, another format or version.
    pub fn checkpoint_info(path: impl AsRef<Path>) -> Result<CheckpointInfo> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        read_info(path, &bytes)
    }

    /// Loads a checkpoint, building the supernet of the space stored in it. Returns it with the
    /// step it was saved at.
    ///
    /// # Errors
    /// An unreadable file, another format or version, missing or misshapen tensors, a tensor
    /// whose bytes do not match its checksum.
    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<(Supernet, u64)> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        let info = read_info(path, &bytes)?;
        let net = Supernet::new(&info.space, device, 0)?;
        fill(&net, path, &bytes)?;
        Ok((net, info.step))
    }

    /// As [`Supernet::load`], but fails unless the checkpoint was saved from `space`.
    ///
    /// # Errors
    /// As [`Supernet::load`], and [`Error::Checkpoint`] naming both spaces on a mismatch.
    pub fn load_for(
        path: impl AsRef<Path>,
        space: &Space,
        device: &Device,
    ) -> Result<(Supernet, u64)> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        let info = read_info(path, &bytes)?;
        if &info.space != space {
            let mut diffs = Vec::new();
            let a = serde_json::to_value(&info.space).unwrap_or_default();
            let b = serde_json::to_value(space).unwrap_or_default();
            if let (Some(a), Some(b)) = (a.as_object(), b.as_object()) {
                for (k, va) in a {
                    if b.get(k) != Some(va) {
                        diffs.push(format!(
                            "{k}: file {va}, expected {}",
                            b.get(k).unwrap_or(&serde_json::Value::Null)
                        ));
                    }
                }
            }
            return Err(ckpt_err(
                path,
                format!(
                    "was saved from space {:?} but space {:?} is expected ({}); pass the space the checkpoint was trained with (--space {}) or a checkpoint of space {:?}",
                    info.space.name,
                    space.name,
                    diffs.join("; "),
                    info.space.name,
                    space.name
                ),
            ));
        }
        let net = Supernet::new(space, device, 0)?;
        fill(&net, path, &bytes)?;
        Ok((net, info.step))
    }
}

/// Writes named tensors (as f32) with a metadata header and their checksums
/// ([`CHECKSUM_PREFIX`]) to `path`, atomically; the same inputs always give the same bytes.
pub(crate) fn save_named(
    path: &Path,
    named: impl IntoIterator<Item = (String, Tensor)>,
    mut meta: BTreeMap<String, String>,
) -> Result<()> {
    let mut data: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, t) in named {
        let t = t.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
        let bytes: Vec<u8> = t
            .flatten_all()?
            .to_vec1::<f32>()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        meta.insert(format!("{CHECKSUM_PREFIX}{name}"), sha256_hex(&bytes));
        data.push((name, t.dims().to_vec(), bytes));
    }
    let bytes = serialize_f32(path, &meta, data)?;
    write_atomic(path, &bytes)
}

/// `v` as compact JSON (a `BTreeMap` keeps its sorted order).
fn to_json<T: serde::Serialize + ?Sized>(path: &Path, v: &T) -> Result<String> {
    serde_json::to_string(v)
        .map_err(|e| ckpt_err(path, format!("cannot serialise the header: {e}")))
}

/// Lowercase hex SHA-256 of `bytes`.
fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A safetensors file of f32 tensors: the 8-byte little-endian header length, the JSON header
/// (`__metadata__` first with its keys sorted, then the tensors sorted by name, padded with
/// spaces to a multiple of 8 bytes as the format recommends), then the tensors' bytes in that
/// order. Unlike `safetensors::serialize`, whose metadata map comes out in random order, the
/// output depends only on the inputs.
fn serialize_f32(
    path: &Path,
    meta: &BTreeMap<String, String>,
    mut tensors: Vec<(String, Vec<usize>, Vec<u8>)>,
) -> Result<Vec<u8>> {
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let mut header = format!("{{\"__metadata__\":{}", to_json(path, meta)?);
    let mut offset = 0usize;
    for (name, shape, bytes) in &tensors {
        if shape.iter().product::<usize>() * 4 != bytes.len() {
            return Err(ckpt_err(
                path,
                format!(
                    "cannot serialise {name}: shape {shape:?} does not match its {} bytes",
                    bytes.len()
                ),
            ));
        }
        let end = offset + bytes.len();
        header.push_str(&format!(
            ",{}:{{\"dtype\":\"F32\",\"shape\":{},\"data_offsets\":[{offset},{end}]}}",
            to_json(path, name)?,
            to_json(path, shape)?
        ));
        offset = end;
    }
    header.push('}');
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut out = Vec::with_capacity(8 + header.len() + offset);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for (_, _, bytes) in &tensors {
        out.extend_from_slice(bytes);
    }
    Ok(out)
}

/// Copies every tensor of the file into `net`, checking that names and shapes match exactly.
fn fill(net: &Supernet, path: &Path, bytes: &[u8]) -> Result<()> {
    let expected: Vec<(String, Vec<usize>)> = net
        .names()
        .map(|n| {
            (
                n.to_string(),
                net.tensor(n).expect("listed").dims().to_vec(),
            )
        })
        .collect();
    fill_named(
        path,
        bytes,
        &expected,
        "the supernet of its space",
        |n, t| net.set_tensor(n, &t),
    )
}

/// What to do about a damaged checkpoint, for the error messages.
const DAMAGED: &str = "the file is damaged (disk or copy error): restore it from a copy, resume from \
the run's checkpoint.old/ if one is left, or retrain";

/// Reads every tensor of a checkpoint and hands it to `set`, after checking that the file holds
/// exactly the names and shapes of `expected` (sorted by name) and, when the file has checksums
/// (see the module docs), that every tensor's bytes match its SHA-256; `what` names the network.
pub(crate) fn fill_named(
    path: &Path,
    bytes: &[u8],
    expected: &[(String, Vec<usize>)],
    what: &str,
    mut set: impl FnMut(&str, Tensor) -> Result<()>,
) -> Result<()> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| ckpt_err(path, format!("corrupt safetensors data: {e}")))?;
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| ckpt_err(path, format!("corrupt safetensors header: {e}")))?;
    let md = header.metadata().clone().unwrap_or_default();
    let sums: HashMap<&str, &str> = md
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(CHECKSUM_PREFIX)?, v.as_str())))
        .collect();
    let mut file_names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    file_names.sort();
    let names: Vec<&String> = expected.iter().map(|(n, _)| n).collect();
    if file_names.iter().collect::<Vec<_>>() != names {
        let missing: Vec<_> = names
            .iter()
            .filter(|n| !file_names.contains(n))
            .take(5)
            .collect();
        let extra: Vec<_> = file_names
            .iter()
            .filter(|n| !names.contains(n))
            .take(5)
            .collect();
        return Err(ckpt_err(
            path,
            format!(
                "tensors do not match {what} (missing {missing:?}, unexpected {extra:?}): the file is damaged or from an incompatible build"
            ),
        ));
    }
    if let Some(stray) = sums.keys().find(|n| !names.iter().any(|m| m == *n)) {
        return Err(ckpt_err(
            path,
            format!("a checksum for tensor {stray}, which the file does not hold: {DAMAGED}"),
        ));
    }
    for (name, want) in expected {
        let view = st
            .tensor(name)
            .map_err(|e| ckpt_err(path, format!("tensor {name}: {e}")))?;
        if view.dtype() != Dtype::F32 || view.shape() != want.as_slice() {
            return Err(ckpt_err(
                path,
                format!(
                    "tensor {name} is {:?} {:?}, expected F32 {want:?}: the file is damaged or from an incompatible build",
                    view.dtype(),
                    view.shape()
                ),
            ));
        }
        if !sums.is_empty() {
            let Some(&stored) = sums.get(name.as_str()) else {
                return Err(ckpt_err(
                    path,
                    format!(
                        "tensor {name} has no checksum while other tensors have one: {DAMAGED}"
                    ),
                ));
            };
            let actual = sha256_hex(view.data());
            if actual != stored {
                return Err(ckpt_err(
                    path,
                    format!(
                        "tensor {name}: its data does not match the SHA-256 stored when it was saved ({stored}, data {actual}): {DAMAGED}"
                    ),
                ));
            }
        }
        let vals: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        set(name, Tensor::from_vec(vals, want.as_slice(), &Device::Cpu)?)?;
    }
    Ok(())
}

/// Writes named f32 tensors that belong to no network (an optimizer's momentum buffers) with the
/// same per-tensor checksums and byte-identical layout as a supernet checkpoint, atomically.
///
/// # Errors
/// Tensor conversion or I/O failures, naming the file.
pub fn save_tensors(path: &Path, named: impl IntoIterator<Item = (String, Tensor)>) -> Result<()> {
    save_named(path, named, BTreeMap::new())
}

/// Reads every tensor of a file written by [`save_tensors`] onto `device`, verifying each
/// tensor's checksum (a file without checksums loads unverified, as for supernets).
///
/// # Errors
/// A missing, malformed or damaged file, naming it and the tensor at fault.
pub fn load_tensors(path: &Path, device: &Device) -> Result<Vec<(String, Tensor)>> {
    let bytes = std::fs::read(path).map_err(|e| ckpt_err(path, format!("cannot read: {e}")))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| ckpt_err(path, format!("corrupt safetensors data: {e}")))?;
    let mut expected: Vec<(String, Vec<usize>)> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, view.shape().to_vec()))
        .collect();
    expected.sort();
    let mut out = Vec::with_capacity(expected.len());
    fill_named(path, &bytes, &expected, "its own tensor list", |name, t| {
        out.push((name.to_string(), t.to_device(device)?));
        Ok(())
    })?;
    Ok(out)
}
