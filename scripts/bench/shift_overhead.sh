#!/usr/bin/env bash
# Supernet Shifting overhead (issue 4): wall time of the same search with `--shift off` and with
# `--shift accumulate` (BN calibration shared with the shifting forward, the default), in one run,
# on CIFAR-10 with the paper's ratio of proxy to shift images (12,500 scored vs 640 shifted per
# candidate). Target: accumulate ≤ 1.10 × off.
#
# ALGORITHM `random` (the default) draws the same archs whatever their scores, so both searches
# score exactly the same archs (the script checks) and the ratio is the cost of shifting alone.
# With `nsga2` the shifted scores breed other archs, which take longer or shorter to score: the
# ratio then also measures that choice (docs/benchmarks.md, "Session 8 reading").
# The final front's re-score under the shifted weights is a fixed cost per search, |front| extra
# evaluations (`off` has none): the ratio without it is what a long search pays per evaluation.
#
# The supernet is a `tiny` one (CIFAR converted to 28×28 gray) trained for a few steps by this
# script: timing does not depend on how well it is trained. Both searches calibrate BN over 640
# images (--bn-images 640 = the shift samples), so `off` and `accumulate` do the same BN work.
# Usage: scripts/bench/shift_overhead.sh [CIFAR10_DIR] [POP] [GENS] [SEED] [ALGORITHM]
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA="${1:-/work/shared/datasets/cifar10}"
POP="${2:-10}"
GENS="${3:-2}"
SEED="${4:-1}"
ALGORITHM="${5:-random}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build -q --release -p shiftnas
W="$(mktemp -d)"; trap 'rm -rf "$W"' EXIT
# A copy: with a target dir shared between worktrees another build may replace the binary.
S="$W/shiftnas"; cp "$CARGO_TARGET_DIR/release/shiftnas" "$S"
COMMON=(--space tiny --data "cifar10:$DATA" --convert-channels --resize --proxy-size 12500)
"$S" -q --no-progress train "${COMMON[@]}" --steps 20 --batch 64 --warmup-steps 0 --seed 0 \
    --out "$W/train"
SEARCH=(search --supernet "$W/train" "${COMMON[@]}" --algorithm "$ALGORITHM" --latency flops
        --pop "$POP" --gens "$GENS" --seed "$SEED" --split-seed 0 --bn exact --bn-images 640
        --shift-samples 640 --shift-batch 128 --eval-batch 250)
run() { # name, extra flags...
    local name="$1"; shift
    local t0 t1
    t0=$(date +%s.%N)
    "$S" -q --no-progress --json "${SEARCH[@]}" --out "$W/$name" "$@" > "$W/$name.json"
    t1=$(date +%s.%N)
    python3 -c "print(f'{$t1 - $t0:.1f}')" > "$W/$name.time"
    echo "$name: $(cat "$W/$name.time") s, $(wc -l < "$W/$name/archive.jsonl") evaluations" >&2
}
echo "$ALGORITHM, pop $POP, gens $GENS, seed $SEED; load before: $(cat /proc/loadavg)"
run off --shift off
run accumulate --shift accumulate
echo "load after: $(cat /proc/loadavg)"
python3 - "$W" <<'PY'
import json, sys
w = sys.argv[1]
runs = ("off", "accumulate")
t = {n: float(open(f"{w}/{n}.time").read()) for n in runs}
# The search's own split of its time (the `done` line of --json).
sec = {n: next(json.loads(l)["seconds"] for l in open(f"{w}/{n}.json") if '"done"' in l) for n in runs}
archs = {n: [json.loads(l)["arch"] for l in open(f"{w}/{n}/archive.jsonl")] for n in runs}
print("run          wall s  scoring  shifting  latency  re-score  ratio  ratio w/o re-score")
for n in runs:
    s = sec[n]
    ratio = t[n] / t["off"]
    without = (t[n] - s["rescore"]) / (t["off"] - sec["off"]["rescore"])
    print(f"{n:<12} {t[n]:6.1f}  {s['scoring']:7.1f}  {s['shifting']:8.1f}  {s['latency']:7.1f}  "
          f"{s['rescore']:8.1f}  {ratio:5.3f}  {without:5.3f}")
same = archs["off"] == archs["accumulate"]
print(f"same archs scored in both searches: {'yes' if same else 'no'} ({len(archs['off'])} evaluations)")
PY
