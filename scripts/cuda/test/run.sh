#!/usr/bin/env bash
# Checks the indexing of the depthwise CUDA kernels without a GPU: extracts their source from
# kernels/src/dw_cuda.rs, compiles it as C++ with g++ (threads emulated serially) and compares with
# PyTorch (the bench venv of scripts/bench/train_step.sh). Optional: also `nvcc --ptx` it when nvcc is on PATH.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"; root="$here/../../.."
py="${SHIFTNAS_CACHE:-$root/.cache}/bench-venv/bin/python"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
python3 - "$root/kernels/src/dw_cuda.rs" "$tmp/dw.cu" <<'PY'
import sys
s = open(sys.argv[1]).read()
open(sys.argv[2], "w").write(s.split('const SRC: &str = r#"')[1].split('"#;')[0])
PY
if command -v nvcc >/dev/null; then nvcc --ptx -arch=compute_90 -o "$tmp/dw.ptx" "$tmp/dw.cu"; echo "nvcc --ptx: ok"; fi
g++ -O1 -shared -fPIC -x c++ -DDW_CU="\"$tmp/dw.cu\"" -o "$tmp/libh.so" "$here/dw_kernels_harness.cpp"
"$py" -W ignore "$here/dw_kernels_vs_torch.py" "$tmp/libh.so"
