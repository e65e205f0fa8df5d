#!/usr/bin/env bash
# Supernet training step, eval throughput and a whole candidate score on CPU, shiftnas vs PyTorch
# (NCHW and channels-last) on the same network, arch, batch and threads, in the same run
# (docs/benchmarks.md "Supernet training step (CPU)"). Prints the JSON lines and the ratios.
# shiftnas eval is reported twice: the candle supernet forward ("old") and the BN-folded inference
# path that scoring runs ("new"). A candidate score = exact BN calibration over --score-bn-images
# plus the proxy forward over --score-images, as a search pays per candidate.
#
#   scripts/bench/train_step.sh [--space spos-cifar] [--batch 64] [--eval-batch 256] [--threads 2] [--steps 10] [--rounds 3]
#                               [--score-bn-images 2000] [--score-images 2500] [--profile release|dev]
#
# Each round runs shiftnas, PyTorch NCHW and PyTorch channels-last one after the other; the ratio
# reported is the median over rounds of the per-round ratio (a shared VM's speed drifts by ±20 %
# within minutes, so single rounds disagree). Each round then scores a candidate on the
# quickstart's settings (space tiny, 512 BN calibration images, the 1,000-image proxy split, eval
# batch 250) in shiftnas and PyTorch channels-last: candidates per minute = 60 s / that score's time
# (scoring only: the search's shifting and latency measurement come on top).
#
# PyTorch goes into a throwaway venv $SHIFTNAS_CACHE/bench-venv (never a shiftnas dependency). On
# Linux x86-64 PyPI only has CUDA builds of torch, which cannot even be imported without their CUDA
# wheels (libtorch_cuda.so links cuDNN, cuBLAS, NCCL, ...), so this installs torch with its
# dependencies: ~3.8 GB, once.
set -euo pipefail
cd "$(dirname "$0")/../.."
space=spos-cifar batch=64 eval_batch=256 threads=2 steps=10 rounds=3 profile=release
score_bn=2000 score_images=2500
while [ $# -gt 0 ]; do
  case "$1" in
    --space) space=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --eval-batch) eval_batch=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --profile) profile=$2; shift 2 ;;
    --score-bn-images) score_bn=$2; shift 2 ;;
    --score-images) score_images=$2; shift 2 ;;
    *) echo "train_step.sh: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
SHIFTNAS_CACHE="${SHIFTNAS_CACHE:-$PWD/.cache}"
# PyTorch's OpenMP threads spin while waiting for work by default (OMP_WAIT_POLICY unset): the
# fastest setting on an idle machine, so the script leaves it as the caller's. On a machine shared
# with other jobs the spinning threads fell 7-10x below their idle speed; OMP_WAIT_POLICY=PASSIVE
# keeps such a comparison about the kernels (shiftnas's rayon workers sleep either way).
venv="$SHIFTNAS_CACHE/bench-venv"
torch_pin="torch==2.15.0"
if ! "$venv/bin/python" -c 'import torch' 2>/dev/null; then
  echo "train_step.sh: installing $torch_pin into $venv (~3.8 GB with its CUDA wheels)" >&2
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "$torch_pin" numpy
fi
cargo build -q --profile "$profile" -p shiftnas-models --example train_step
dir=$profile; [ "$profile" = dev ] && dir=debug
bin="${CARGO_TARGET_DIR:-target}/$dir/examples/train_step"
args=(--space "$space" --batch "$batch" --eval-batch "$eval_batch" --threads "$threads" --steps "$steps"
      --score-bn-images "$score_bn" --score-images "$score_images")
echo "load average before: $(cut -d" " -f1-3 /proc/loadavg) on $(nproc) cores; OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset}" >&2
quick=(--space tiny --threads "$threads" --no-train --no-eval --eval-batch 250 --score-bn-images 512
       --score-images 1000)
lines=() qs=()
for _ in $(seq "$rounds"); do
  ours=$("$bin" "${args[@]}" --json)
  theirs=$("$venv/bin/python" scripts/bench/supernet_torch.py "${args[@]}" --device cpu)
  theirs_cl=$("$venv/bin/python" scripts/bench/supernet_torch.py "${args[@]}" --device cpu --channels-last)
  qs_ours=$("$bin" "${quick[@]}" --json)
  qs_cl=$("$venv/bin/python" scripts/bench/supernet_torch.py "${quick[@]}" --device cpu --channels-last)
  echo "$ours"; echo "$theirs"; echo "$theirs_cl"; echo "$qs_ours"; echo "$qs_cl"
  lines+=("$ours" "$theirs" "$theirs_cl") qs+=("$qs_ours" "$qs_cl")
done
echo "load average after: $(cut -d" " -f1-3 /proc/loadavg)" >&2
QS="$(printf '%s\n' "${qs[@]}")" "$venv/bin/python" - "$profile" "${lines[@]}" <<'PY'
import json, os, statistics, sys
profile = sys.argv[1]
rows = [json.loads(a) for a in sys.argv[2:]]
qs = [json.loads(a) for a in os.environ["QS"].splitlines() if a]
rounds = [rows[i:i + 3] for i in range(0, len(rows), 3)]
s = rounds[0][0]
print(f"\n{s['space']} arch {s['arch']}, batch {s['batch']}, threads {s['threads']} "
      f"(torch {rounds[0][1]['torch']}, shiftnas profile {profile}), {len(rounds)} rounds")
print(f"{'round':8}{'shiftnas ms':>12}{'PyTorch ms':>12}{'NHWC ms':>10}{'ratio':>8}{'ratio NHWC':>12}"
      f"{'eval img/s ours/PyTorch/NHWC':>32}")
ratios, ratios_cl = [], []
for i, (o, p, pc) in enumerate(rounds, 1):
    r, rc = o['train_ms_per_step'] / p['train_ms_per_step'], o['train_ms_per_step'] / pc['train_ms_per_step']
    ratios.append(r); ratios_cl.append(rc)
    ev = f"{o['eval_images_per_s']:.0f} / {p['eval_images_per_s']:.0f} / {pc['eval_images_per_s']:.0f}"
    print(f"{i:<8}{o['train_ms_per_step']:>12.1f}{p['train_ms_per_step']:>12.1f}{pc['train_ms_per_step']:>10.1f}"
          f"{r:>8.2f}{rc:>12.2f}{ev:>32}")
print(f"median ratio shiftnas/PyTorch time per step: {statistics.median(ratios):.2f}x (NCHW), "
      f"{statistics.median(ratios_cl):.2f}x (channels-last); target <= 0.9x (channels-last)")
if 'score_fast_s' not in rounds[0][0] or 'score_s' not in rounds[0][2]:
    sys.exit(0)
print(f"\n{'round':8}{'eval img/s old':>15}{'new':>8}{'PyTorch':>9}{'NHWC':>8}{'new/NHWC':>10}"
      f"{'score s old':>13}{'new':>8}{'PyTorch':>9}{'NHWC':>8}{'NHWC/new':>10}")
ev_cl, sc_cl = [], []
for i, (o, p, pc) in enumerate(rounds, 1):
    e = o['eval_fast_images_per_s'] / pc['eval_images_per_s']
    c = pc['score_s'] / o['score_fast_s']
    ev_cl.append(e); sc_cl.append(c)
    print(f"{i:<8}{o['eval_images_per_s']:>15.0f}{o['eval_fast_images_per_s']:>8.0f}{p['eval_images_per_s']:>9.0f}"
          f"{pc['eval_images_per_s']:>8.0f}{e:>10.2f}{o['score_s']:>13.2f}{o['score_fast_s']:>8.2f}"
          f"{p['score_s']:>9.2f}{pc['score_s']:>8.2f}{c:>10.2f}")
print(f"median eval throughput, new path / PyTorch channels-last: {statistics.median(ev_cl):.2f}x "
      f"(target >= 1.0x); candidate score ({s['score_bn_images']} BN + {s['score_images']} proxy images), "
      f"PyTorch channels-last time / ours: {statistics.median(sc_cl):.2f}x")
print(f"\nquickstart scoring (space tiny, {qs[0]['score_bn_images']} BN + {qs[0]['score_images']} proxy "
      f"images, batch 250):\n{'round':8}{'score s ours':>14}{'NHWC':>8}{'candidates/min ours':>21}{'NHWC':>8}")
cpm, cpm_cl = [], []
for i in range(0, len(qs), 2):
    o, pc = qs[i], qs[i + 1]
    cpm.append(60 / o['score_fast_s']); cpm_cl.append(60 / pc['score_s'])
    print(f"{i // 2 + 1:<8}{o['score_fast_s']:>14.3f}{pc['score_s']:>8.3f}{cpm[-1]:>21.0f}{cpm_cl[-1]:>8.0f}")
print(f"median candidates per minute: {statistics.median(cpm):.0f} (PyTorch channels-last "
      f"{statistics.median(cpm_cl):.0f})")
PY
