//! Finding and loading `librknnrt.so` with `dlopen`, and the version strings of the runtime and
//! of a `.rknn` file (for error messages and the backend's id).
//!
//! Search order (the first that loads wins; the error lists every path tried):
//! 1. `--rknn-lib PATH` (only this one when given),
//! 2. `$LIBRKNNRT_PATH`,
//! 3. `/usr/lib/librknnrt.so` (where Rockchip's board images and `rknpu2` install it).

use std::ffi::{CStr, CString, c_void};
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use super::ffi;

/// The default install path of the board runtime.
pub const DEFAULT_PATH: &str = "/usr/lib/librknnrt.so";

/// Candidate library paths in search order (existing or not, for the error message).
pub fn candidates(rknn_lib: Option<&Path>) -> Vec<PathBuf> {
    if let Some(p) = rknn_lib {
        return vec![p.to_path_buf()];
    }
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os("LIBRKNNRT_PATH").filter(|p| !p.is_empty()) {
        out.push(PathBuf::from(p));
    }
    out.push(PathBuf::from(DEFAULT_PATH));
    out
}

/// The RKNN entry points of one loaded library (the handle stays open while this lives).
pub struct Lib {
    handle: *mut c_void,
    /// The file that was loaded.
    pub path: PathBuf,
    /// The version string embedded in the file (`librknnrt version: …`), if found.
    pub file_version: Option<String>,
    pub init: ffi::InitFn,
    pub destroy: ffi::DestroyFn,
    pub query: ffi::QueryFn,
    /// Missing from single-core runtimes; needed only for `--npu-core-mask`.
    pub set_core_mask: Option<ffi::SetCoreMaskFn>,
    pub inputs_set: ffi::InputsSetFn,
    pub run: ffi::RunFn,
    pub outputs_get: ffi::OutputsGetFn,
    pub outputs_release: ffi::OutputsReleaseFn,
}

// SAFETY: the handle is only passed to dlclose once, on drop; the function pointers are plain
// code addresses, and the RKNN API is thread-safe per context (one context is used by one thread).
unsafe impl Send for Lib {}
// SAFETY: as above; `Lib` holds no interior mutability.
unsafe impl Sync for Lib {}

impl Drop for Lib {
    fn drop(&mut self) {
        // SAFETY: `handle` came from a successful dlopen and is closed exactly once.
        unsafe {
            libc::dlclose(self.handle);
        }
    }
}

fn dlerror() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated string owned by libc.
    unsafe {
        let e = libc::dlerror();
        if e.is_null() {
            "unknown dlopen error".into()
        } else {
            CStr::from_ptr(e).to_string_lossy().into_owned()
        }
    }
}

impl Lib {
    /// Loads `librknnrt.so` from the first candidate that loads (see the module doc).
    ///
    /// # Errors
    /// Lists every path tried and why each failed, and says how to point the agent at a library.
    pub fn load(rknn_lib: Option<&Path>) -> Result<Lib> {
        let mut tried = Vec::new();
        for c in candidates(rknn_lib) {
            if !c.is_file() {
                tried.push(format!("{} (not found)", c.display()));
                continue;
            }
            match Lib::open(&c) {
                Ok(lib) => return Ok(lib),
                Err(e) => tried.push(format!("{} ({e})", c.display())),
            }
        }
        bail!(
            "no RKNN runtime library could be loaded; tried:\n  {}\npass --rknn-lib PATH or set \
             LIBRKNNRT_PATH to the board's librknnrt.so (aarch64; Rockchip ships it in \
             rknn-toolkit2's rknpu2/runtime/Linux/librknn_api/aarch64/), or install it as {DEFAULT_PATH}",
            tried.join("\n  ")
        )
    }

    fn open(path: &Path) -> Result<Lib> {
        let c_path = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| anyhow::anyhow!("the path has a NUL byte"))?;
        // SAFETY: dlopen with a valid C string; the library's constructors run here.
        let handle = unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            bail!("{}", dlerror());
        }
        let sym = |name: &CStr| -> Option<*mut c_void> {
            // SAFETY: a valid handle and symbol name.
            let p = unsafe { libc::dlsym(handle, name.as_ptr()) };
            (!p.is_null()).then_some(p)
        };
        let mut missing = Vec::new();
        let mut need = |name: &CStr| {
            let p = sym(name);
            if p.is_none() {
                missing.push(name.to_string_lossy().into_owned());
            }
            p.unwrap_or(std::ptr::null_mut())
        };
        let syms = [
            need(c"rknn_init"),
            need(c"rknn_destroy"),
            need(c"rknn_query"),
            need(c"rknn_inputs_set"),
            need(c"rknn_run"),
            need(c"rknn_outputs_get"),
            need(c"rknn_outputs_release"),
        ];
        if !missing.is_empty() {
            // SAFETY: closing the handle opened above, once.
            unsafe { libc::dlclose(handle) };
            bail!(
                "not an RKNN runtime: symbol(s) {} missing",
                missing.join(", ")
            );
        }
        let set_core_mask = sym(c"rknn_set_core_mask");
        // SAFETY: each pointer is the named rknn_api.h function, whose C signature the fn types
        // in `ffi` declare.
        unsafe {
            Ok(Lib {
                handle,
                path: path.to_path_buf(),
                file_version: file_version(path),
                init: std::mem::transmute::<*mut c_void, ffi::InitFn>(syms[0]),
                destroy: std::mem::transmute::<*mut c_void, ffi::DestroyFn>(syms[1]),
                query: std::mem::transmute::<*mut c_void, ffi::QueryFn>(syms[2]),
                inputs_set: std::mem::transmute::<*mut c_void, ffi::InputsSetFn>(syms[3]),
                run: std::mem::transmute::<*mut c_void, ffi::RunFn>(syms[4]),
                outputs_get: std::mem::transmute::<*mut c_void, ffi::OutputsGetFn>(syms[5]),
                outputs_release: std::mem::transmute::<*mut c_void, ffi::OutputsReleaseFn>(syms[6]),
                set_core_mask: set_core_mask
                    .map(|p| std::mem::transmute::<*mut c_void, ffi::SetCoreMaskFn>(p)),
            })
        }
    }
}

/// The printable text after the first `needle` in `bytes`, up to a NUL, newline or other
/// unprintable byte (at most 80 bytes), trimmed; `None` if absent or empty.
fn text_after(bytes: &[u8], needle: &[u8]) -> Option<String> {
    let start = bytes.windows(needle.len()).position(|w| w == needle)? + needle.len();
    let rest = &bytes[start..];
    let end = rest
        .iter()
        .take(80)
        .position(|&b| !(0x20..0x7f).contains(&b))
        .unwrap_or(rest.len().min(80));
    let s = String::from_utf8_lossy(&rest[..end]).trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// The version string a Rockchip runtime library embeds (`librknnrt version: 2.3.2 (…)`, or
/// `librknn_api version: …` in the toolkit's x86 proxy), read from the file.
pub fn file_version(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    text_after(&bytes, b"librknnrt version: ")
        .or_else(|| text_after(&bytes, b"librknn_api version: "))
        .filter(|v| v.starts_with(|c: char| c.is_ascii_digit()))
}

/// What a `.rknn` file says about its origin: the rknn-toolkit2 version and target platform
/// recorded in its model JSON (`"version":"2.5.0"`, `"target_platform":["rk3588"]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelOrigin {
    /// rknn-toolkit2 version that built the file.
    pub toolkit: Option<String>,
    /// Target platform it was built for.
    pub platform: Option<String>,
}

impl ModelOrigin {
    /// Reads it from the model bytes (both `None` when the file is not a toolkit2 `.rknn`).
    pub fn of(model: &[u8]) -> ModelOrigin {
        let field = |key: &[u8]| {
            text_after(model, key).and_then(|s| s.split('"').next().map(str::to_string))
        };
        ModelOrigin {
            toolkit: field(b"\"version\":\"")
                .filter(|v| v.starts_with(|c: char| c.is_ascii_digit())),
            platform: field(b"\"target_platform\":[\""),
        }
    }
}

impl std::fmt::Display for ModelOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.toolkit, &self.platform) {
            (None, None) => {
                f.write_str("not recognisable as an rknn-toolkit2 file (no toolkit version in it)")
            }
            (t, p) => write!(
                f,
                "built by rknn-toolkit2 {} for {}",
                t.as_deref().unwrap_or("(unknown version)"),
                p.as_deref().unwrap_or("(unknown platform)")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_origin_reads_the_toolkit_json() {
        let mut m = b"RKNN\0\0\0\x06junk\0".to_vec();
        m.extend_from_slice(
            br#"{"norm_tensor_num":2,"ori_network_platform":"ONNX","output_num":1,"target_platform":["rk3568"],"version":"1.6.0","virtual_tensor":[]}"#,
        );
        let o = ModelOrigin::of(&m);
        assert_eq!(o.toolkit.as_deref(), Some("1.6.0"));
        assert_eq!(o.platform.as_deref(), Some("rk3568"));
        assert_eq!(o.to_string(), "built by rknn-toolkit2 1.6.0 for rk3568");
        assert_eq!(ModelOrigin::of(b"not a model"), ModelOrigin::default());
        assert!(
            ModelOrigin::default()
                .to_string()
                .starts_with("not recognisable")
        );
    }

    #[test]
    fn version_text_stops_at_unprintable_bytes() {
        let b = b"\xff\xfflibrknnrt version: 2.3.2 (429f97ae6b@2025-04-09T09:09:27)\0\x01rest";
        assert_eq!(
            text_after(b, b"librknnrt version: ").as_deref(),
            Some("2.3.2 (429f97ae6b@2025-04-09T09:09:27)")
        );
    }

    #[test]
    fn search_order_and_missing_paths_are_listed() {
        let only = candidates(Some(Path::new("/x/librknnrt.so")));
        assert_eq!(only, vec![PathBuf::from("/x/librknnrt.so")]);
        let err = Lib::load(Some(Path::new("/nonexistent/librknnrt.so")))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("/nonexistent/librknnrt.so (not found)"),
            "{err}"
        );
        assert!(err.contains("--rknn-lib"), "{err}");
    }
}
