#!/usr/bin/env bash
# Generates link-only stub libraries for the CUDA libraries that cudarc links but that we do not
# install on a machine without a GPU: the driver (libcuda, never on PyPI) and cuBLAS/cuBLASLt/
# cuRAND/NVRTC (570 MB of wheels we would only link against). Each stub exports every symbol name
# cudarc's bindings load, as a no-op function, under the real library's soname, so the binary's
# DT_NEEDED entries name the real libraries and the real ones are used at run time.
#
# usage: gen-stubs.sh CUDARC_SRC_DIR OUT_DIR
# The stubs must never be found at run time: OUT_DIR is only for the linker (-L), never for
# LD_LIBRARY_PATH. Calling a stub would return garbage; the real driver/libraries must be loaded.
set -euo pipefail
src="${1:?usage: gen-stubs.sh CUDARC_SRC_DIR OUT_DIR}"
out="${2:?usage: gen-stubs.sh CUDARC_SRC_DIR OUT_DIR}"
[ -d "$src/src/driver/sys" ] || { echo "gen-stubs: $src is not a cudarc source tree (no src/driver/sys)" >&2; exit 1; }
command -v gcc >/dev/null || { echo "gen-stubs: gcc not found (apt-get install gcc)" >&2; exit 1; }
mkdir -p "$out"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# name  cudarc-module  soname
while read -r lib module soname; do
  c="$tmp/$lib.c"
  {
    echo "/* Link stub for $soname generated from cudarc's $module bindings. Never load at run time. */"
    grep -ohE 'load::<_F>\("[A-Za-z_][A-Za-z0-9_]*"\)' "$src/src/$module/sys/"*.rs \
      | sed -E 's/.*\("([A-Za-z0-9_]+)"\)/\1/' | sort -u \
      | sed -E 's/^(.*)$/void \1(void) {}/'
  } > "$c"
  n=$(grep -c '^void ' "$c" || true)
  [ "$n" -gt 0 ] || { echo "gen-stubs: no symbols found for $lib in $src/src/$module/sys" >&2; exit 1; }
  gcc -shared -fPIC -o "$out/$soname" -Wl,-soname,"$soname" "$c"
  ln -sf "$soname" "$out/$lib.so"
done <<'LIBS'
libcuda driver libcuda.so.1
libcublas cublas libcublas.so.13
libcublasLt cublaslt libcublasLt.so.13
libcurand curand libcurand.so.10
libnvrtc nvrtc libnvrtc.so.13
LIBS
