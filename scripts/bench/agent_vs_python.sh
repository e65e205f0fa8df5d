#!/usr/bin/env bash
# Agent vs onnxruntime's Python API: the same latency loop (threads, pinning, spinning, input,
# warm-up, runs, min-seconds) on three models of different sizes, 5 interleaved repetitions each;
# prints each side's P50 per repetition, the median ratio agent/Python and the spread.
# Usage: scripts/bench/agent_vs_python.sh [--threads N] [--cores LIST] [--reps 5]
# Target (docs/benchmarks.md): agent P50 within 2 % of Python's.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/setup-deps
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build -q -p shiftnas-agent
models="$(mktemp -d)"
trap 'rm -rf "$models"' EXIT
"$SHIFTNAS_PYTHON" tests/fixtures/agent/make_models.py --bench "$models"
"$SHIFTNAS_PYTHON" scripts/bench/agent_vs_python.py --agent "$CARGO_TARGET_DIR/debug/shiftnas-agent" \
  --models "$models"/bench_s.onnx "$models"/bench_m.onnx "$models"/bench_l.onnx "$@"
