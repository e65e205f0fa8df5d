//! The part of Rockchip's `rknn_api.h` the agent calls, declared by hand from the header of RKNN
//! SDK 2.3.2 (`rknpu2/runtime/Linux/librknn_api/include/rknn_api.h` in airockchip/rknn-toolkit2),
//! for 64-bit targets (`rknn_context` is `uint32_t` only on 32-bit ARM). The stand-in library of
//! the tests (`tests/fixtures/rknn_standin/`) declares the same layouts in C and checks the sizes
//! the agent passes.

use std::ffi::{c_char, c_int, c_void};

/// `rknn_context` (`uint64_t` on aarch64 and x86-64).
pub type Context = u64;

/// `RKNN_FLAG_COLLECT_PERF_MASK`: per-layer timing for `RKNN_QUERY_PERF_DETAIL` (slows runs; the
/// agent does not set it: `RKNN_QUERY_PERF_RUN` needs no flag).
pub const FLAG_COLLECT_PERF_MASK: u32 = 0x8;

/// `rknn_query_cmd` values used here.
pub const QUERY_IN_OUT_NUM: c_int = 0;
/// Attributes of input tensor `index`.
pub const QUERY_INPUT_ATTR: c_int = 1;
/// Attributes of output tensor `index`.
pub const QUERY_OUTPUT_ATTR: c_int = 2;
/// NPU time of the last run, valid after `rknn_outputs_get`.
pub const QUERY_PERF_RUN: c_int = 4;
/// API and driver versions.
pub const QUERY_SDK_VERSION: c_int = 5;

/// `rknn_tensor_type::RKNN_TENSOR_FLOAT32`.
pub const TENSOR_FLOAT32: c_int = 0;
/// `rknn_tensor_format::RKNN_TENSOR_NCHW`.
pub const TENSOR_NCHW: c_int = 0;
/// `rknn_tensor_format::RKNN_TENSOR_NHWC`.
pub const TENSOR_NHWC: c_int = 1;

/// `RKNN_MAX_DIMS`.
pub const MAX_DIMS: usize = 16;
/// `RKNN_MAX_NAME_LEN`.
pub const MAX_NAME_LEN: usize = 256;

/// `rknn_input_output_num`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct InputOutputNum {
    pub n_input: u32,
    pub n_output: u32,
}

/// `rknn_tensor_attr` (376 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TensorAttr {
    pub index: u32,
    pub n_dims: u32,
    pub dims: [u32; MAX_DIMS],
    pub name: [c_char; MAX_NAME_LEN],
    pub n_elems: u32,
    pub size: u32,
    pub fmt: c_int,
    pub type_: c_int,
    pub qnt_type: c_int,
    pub fl: i8,
    pub zp: i32,
    pub scale: f32,
    pub w_stride: u32,
    pub size_with_stride: u32,
    pub pass_through: u8,
    pub h_stride: u32,
}

impl TensorAttr {
    /// A zeroed attribute asking for tensor `index`.
    pub fn for_index(index: u32) -> TensorAttr {
        // SAFETY: plain integers, floats and byte arrays: all-zero is a valid value.
        let mut a: TensorAttr = unsafe { std::mem::zeroed() };
        a.index = index;
        a
    }

    /// The dimensions the runtime reported (at most [`MAX_DIMS`]).
    pub fn dims(&self) -> &[u32] {
        &self.dims[..(self.n_dims as usize).min(MAX_DIMS)]
    }

    /// The tensor's name.
    pub fn name(&self) -> String {
        c_str(&self.name)
    }
}

/// `rknn_input` (32 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Input {
    pub index: u32,
    pub buf: *mut c_void,
    pub size: u32,
    pub pass_through: u8,
    pub type_: c_int,
    pub fmt: c_int,
}

/// `rknn_output` (24 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub want_float: u8,
    pub is_prealloc: u8,
    pub index: u32,
    pub buf: *mut c_void,
    pub size: u32,
}

/// `rknn_perf_run`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct PerfRun {
    /// Inference time in µs.
    pub run_duration: i64,
}

/// `rknn_sdk_version` (512 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SdkVersion {
    pub api_version: [c_char; 256],
    pub drv_version: [c_char; 256],
}

const _: () = {
    assert!(std::mem::size_of::<InputOutputNum>() == 8);
    assert!(std::mem::size_of::<TensorAttr>() == 376);
    assert!(std::mem::size_of::<Input>() == 32);
    assert!(std::mem::size_of::<Output>() == 24);
    assert!(std::mem::size_of::<PerfRun>() == 8);
    assert!(std::mem::size_of::<SdkVersion>() == 512);
};

/// A NUL-terminated C string in a fixed array (unterminated: the whole array).
pub fn c_str(a: &[c_char]) -> String {
    let bytes: Vec<u8> = a
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).trim().to_string()
}

/// `int rknn_init(rknn_context*, void* model, uint32_t size, uint32_t flag, rknn_init_extend*)`.
pub type InitFn = unsafe extern "C" fn(*mut Context, *mut c_void, u32, u32, *mut c_void) -> c_int;
/// `int rknn_destroy(rknn_context)`.
pub type DestroyFn = unsafe extern "C" fn(Context) -> c_int;
/// `int rknn_query(rknn_context, rknn_query_cmd, void* info, uint32_t size)`.
pub type QueryFn = unsafe extern "C" fn(Context, c_int, *mut c_void, u32) -> c_int;
/// `int rknn_set_core_mask(rknn_context, rknn_core_mask)`.
pub type SetCoreMaskFn = unsafe extern "C" fn(Context, c_int) -> c_int;
/// `int rknn_inputs_set(rknn_context, uint32_t n, rknn_input[])`.
pub type InputsSetFn = unsafe extern "C" fn(Context, u32, *mut Input) -> c_int;
/// `int rknn_run(rknn_context, rknn_run_extend*)`.
pub type RunFn = unsafe extern "C" fn(Context, *mut c_void) -> c_int;
/// `int rknn_outputs_get(rknn_context, uint32_t n, rknn_output[], rknn_output_extend*)`.
pub type OutputsGetFn = unsafe extern "C" fn(Context, u32, *mut Output, *mut c_void) -> c_int;
/// `int rknn_outputs_release(rknn_context, uint32_t n, rknn_output[])`.
pub type OutputsReleaseFn = unsafe extern "C" fn(Context, u32, *mut Output) -> c_int;

/// The name of an RKNN return code (`RKNN_SUCC`, `RKNN_ERR_*`), or `None` for an unknown one.
pub fn code_name(code: c_int) -> Option<&'static str> {
    Some(match code {
        0 => "RKNN_SUCC",
        -1 => "RKNN_ERR_FAIL",
        -2 => "RKNN_ERR_TIMEOUT",
        -3 => "RKNN_ERR_DEVICE_UNAVAILABLE",
        -4 => "RKNN_ERR_MALLOC_FAIL",
        -5 => "RKNN_ERR_PARAM_INVALID",
        -6 => "RKNN_ERR_MODEL_INVALID",
        -7 => "RKNN_ERR_CTX_INVALID",
        -8 => "RKNN_ERR_INPUT_INVALID",
        -9 => "RKNN_ERR_OUTPUT_INVALID",
        -10 => "RKNN_ERR_DEVICE_UNMATCH",
        // The header's spelling ("INCOMPATILE").
        -11 => "RKNN_ERR_INCOMPATILE_PRE_COMPILE_MODEL",
        -12 => "RKNN_ERR_INCOMPATILE_OPTIMIZATION_LEVEL_VERSION",
        -13 => "RKNN_ERR_TARGET_PLATFORM_UNMATCH",
        _ => return None,
    })
}

/// Whether a return code says the model and the runtime/driver/platform do not match.
pub fn is_version_mismatch(code: c_int) -> bool {
    matches!(code, -13..=-10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_header_code_has_its_name() {
        assert_eq!(code_name(-3), Some("RKNN_ERR_DEVICE_UNAVAILABLE"));
        assert_eq!(code_name(-13), Some("RKNN_ERR_TARGET_PLATFORM_UNMATCH"));
        assert!((-13..=0).all(|c| code_name(c).is_some()));
        assert_eq!(code_name(-14), None);
        assert!(is_version_mismatch(-10) && !is_version_mismatch(-6));
    }

    #[test]
    fn layouts_match_the_header() {
        // Offsets of the fields that follow padding in rknn_tensor_attr, rknn_input, rknn_output.
        assert_eq!(std::mem::offset_of!(TensorAttr, name), 72);
        assert_eq!(std::mem::offset_of!(TensorAttr, n_elems), 328);
        assert_eq!(std::mem::offset_of!(TensorAttr, zp), 352);
        assert_eq!(std::mem::offset_of!(TensorAttr, h_stride), 372);
        assert_eq!(std::mem::offset_of!(Input, buf), 8);
        assert_eq!(std::mem::offset_of!(Input, type_), 24);
        assert_eq!(std::mem::offset_of!(Output, buf), 8);
    }
}
