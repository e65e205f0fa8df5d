# shellcheck shell=bash
# aarch64 cross-compilation and emulation for the board agent:
#   - the Rust target and Debian's cross gcc/glibc, so `cargo build --target aarch64-unknown-linux-gnu`
#     links with the linker named in .cargo/config.toml (scripts/build-agent-aarch64 --plain), and
#     binutils-aarch64-linux-gnu (aarch64-linux-gnu-readelf, for the glibc test);
#   - zig and cargo-zigbuild come from scripts/requirements-build.txt (scripts/setup-deps), for the
#     default glibc-2.28 build of scripts/build-agent-aarch64;
#   - qemu-user-static, to run that binary here (tests/tests/it/agent.rs);
#   - the aarch64 libonnxruntime.so from PyPI's onnxruntime wheel (same version as the x86 venv).
# Exports:
#   SHIFTNAS_ORT_AARCH64   path of the aarch64 libonnxruntime.so (empty if it could not be fetched)
#   SHIFTNAS_QEMU_AARCH64  path of qemu-aarch64-static (empty if missing)
#   SHIFTNAS_AARCH64_SYSROOT  the -L prefix for qemu (/usr/aarch64-linux-gnu)
# Set SHIFTNAS_SKIP_AARCH64=1 to skip all of it; the aarch64 tests then skip with a message
# (and fail under CI=true, where a wheel that cannot be downloaded also stops the setup).
if [ "${SHIFTNAS_SKIP_AARCH64:-}" != 1 ]; then
  if command -v rustup >/dev/null 2>&1 &&
    ! rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu; then
    echo "setup: rustup target add aarch64-unknown-linux-gnu" >&2
    rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1 ||
      setup_fail "rustup target add aarch64-unknown-linux-gnu failed; the aarch64 agent cannot be built"
  fi
  # Debian 12 has both qemu-user-static and qemu-user (same version); -static gives the
  # qemu-aarch64-static binary that also works inside a private mount namespace and for binfmt.
  apt_need gcc-aarch64-linux-gnu binutils-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static unzip

  _ort_ver="$(sed -n 's/^onnxruntime==//p' "$SHIFTNAS_ROOT/scripts/requirements-test.txt")"
  _ort_dir="$SHIFTNAS_CACHE/aarch64/onnxruntime-$_ort_ver"
  if ! ls "$_ort_dir"/libonnxruntime.so.* >/dev/null 2>&1; then
    echo "setup: fetching the aarch64 onnxruntime==$_ort_ver wheel" >&2
    mkdir -p "$_ort_dir/wheel"
    # All three platform tags: manylinux2014 alone picks an old wheel without the .so.
    if "$SHIFTNAS_PYTHON" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
      --platform manylinux_2_28_aarch64 --platform manylinux_2_27_aarch64 --platform manylinux2014_aarch64 \
      --python-version 311 "onnxruntime==$_ort_ver" -d "$_ort_dir/wheel" >&2; then
      unzip -q -o -j "$_ort_dir"/wheel/onnxruntime-*.whl 'onnxruntime/capi/libonnxruntime.so*' -d "$_ort_dir"
    else
      setup_fail "could not download the aarch64 onnxruntime==$_ort_ver wheel from PyPI into $_ort_dir;" \
        "the aarch64 agent tests skip without it (check the network and the pip output above)"
    fi
  fi
  SHIFTNAS_ORT_AARCH64="$(ls "$_ort_dir"/libonnxruntime.so.* 2>/dev/null | head -n1 || true)"
  SHIFTNAS_QEMU_AARCH64="$(command -v qemu-aarch64-static || true)"
  [ -n "$SHIFTNAS_ORT_AARCH64" ] || setup_fail "no aarch64 libonnxruntime.so in $_ort_dir" \
    "(the wheel has none); delete $_ort_dir and run the setup again"
  [ -n "$SHIFTNAS_QEMU_AARCH64" ] || setup_fail "qemu-aarch64-static is not on PATH; apt-get install qemu-user-static"
  SHIFTNAS_AARCH64_SYSROOT=/usr/aarch64-linux-gnu
  export SHIFTNAS_ORT_AARCH64 SHIFTNAS_QEMU_AARCH64 SHIFTNAS_AARCH64_SYSROOT
  unset _ort_ver _ort_dir
fi
