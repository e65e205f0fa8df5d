#!/usr/bin/env bash
# Depthwise conv fwd+bwd: our candle custom op vs candle's grouped conv2d vs PyTorch (CPU, 2
# threads), for every depthwise shape of spos-cifar at batch 64. Prints one table with ratios.
# PyTorch comes from PyPI into a throwaway venv ($SHIFTNAS_CACHE/bench-venv), CPU use only:
# `pip install torch --no-deps` plus its small pure-Python deps (skips GBs of CUDA wheels).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cache="${SHIFTNAS_CACHE:-$root/.cache}"
threads="${THREADS:-2}"
venv="$cache/bench-venv"
# TORCH_PYTHON: a python whose `import torch` works on CPU (overrides the throwaway venv).
py="${TORCH_PYTHON:-$venv/bin/python}"
if [ -z "${TORCH_PYTHON:-}" ]; then
  if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
  if ! "$py" -c "import torch" 2>/dev/null; then
    echo "bench: installing torch (--no-deps) into $venv" >&2
    "$venv/bin/pip" install -q --disable-pip-version-check --no-deps torch
    "$venv/bin/pip" install -q --disable-pip-version-check typing_extensions sympy networkx \
      jinja2 filelock fsspec mpmath MarkupSafe numpy
  fi
fi
if ! "$py" -c "import torch" 2>"$cache/bench-torch-import.log"; then
  # Measured (torch 2.15.0): the PyPI Linux wheel preloads libcudart/libcublasLt at import even
  # for CPU use, so --no-deps is not enough. Give TORCH_PYTHON a full torch install instead.
  echo "bench: 'import torch' fails with $py (see $cache/bench-torch-import.log);" \
       "set TORCH_PYTHON to a python with a working torch. Timing candle only." >&2
  py=""
fi
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
export RAYON_NUM_THREADS="$threads" CANDLE_NUM_THREADS="$threads"
cargo run --release -q -p shiftnas-kernels --example bench_dwconv -- --batch 64 > "$tmp/candle.tsv"
if [ -n "$py" ]; then
  "$py" "$root/scripts/bench/dwconv_torch.py" --threads "$threads" --batch 64 \
    < "$tmp/candle.tsv" > "$tmp/torch.tsv"
else
  : > "$tmp/torch.tsv"
fi
python3 - "$tmp/candle.tsv" "$tmp/torch.tsv" <<'PY'
import sys
def rows(p):
    out = {}
    for l in open(p):
        f = l.rstrip("\n").split("\t")
        if f and f[0].isdigit():
            out[tuple(map(int, f[:4]))] = [float(v) for v in f[4:]]
        elif l.startswith("# torch"):
            print(l.rstrip())
    return out
c, t = rows(sys.argv[1]), rows(sys.argv[2])
print("| channels | size | k | stride | ours ms | candle conv2d ms | torch ms | candle/ours | ours/torch |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
so = sc = st = 0.0
for key in sorted(c):
    ours, cand = c[key][0], c[key][1]
    tor = t.get(key, [float("nan")])[0]
    so, sc, st = so + ours, sc + cand, st + tor
    print(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {ours:.3f} | {cand:.2f} | {tor:.3f} | {cand/ours:.1f}× | {ours/tor:.2f}× |")
print(f"| **total** | | | | {so:.2f} | {sc:.1f} | {st:.2f} | {sc/so:.1f}× | {so/st:.2f}× |")
PY
