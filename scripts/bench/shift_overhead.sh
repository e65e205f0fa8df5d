#!/usr/bin/env bash
# Supernet Shifting overhead (issue 4): wall time of the same search with `--shift off` and with
# `--shift accumulate` (BN calibration shared with the shifting forward, the default), in one run,
# on CIFAR-10 with the paper's ratio of proxy to shift images (12,500 scored vs 640 shifted per
# candidate). Target: accumulate ≤ 1.10 × off.
#
# ALGORITHM `random` (the default) draws the same archs whatever their scores, so both searches
# score exactly the same archs (the script checks) and the ratio is the cost of shifting alone.
# With `nsga2` the shifted scores breed other archs, which take longer or shorter to score: the
# ratio then also measures that choice (docs/benchmarks.md, "Shifting overhead", "What limits it").
# The final front's re-score under the shifted weights is a fixed cost per search, |front| extra
# evaluations (`off` has none): the ratio without it is what a long search pays.
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
# Both searches run at once, taking turns on the machine (SIGSTOP/SIGCONT every 2 s): each one's
# time is the sum of its turns, so drifts in the speed of a shared machine hit both alike. (Their
# own --json time splits count the other's turns too, so the figures below use only the turns.)
echo "$ALGORITHM, pop $POP, gens $GENS, seed $SEED; load before: $(cat /proc/loadavg)"
python3 - "$W" "$S" "${SEARCH[@]}" <<'PY'
import signal, subprocess, sys, time
w, exe, search = sys.argv[1], sys.argv[2], sys.argv[3:]
arms = {"off": ["--shift", "off"], "accumulate": ["--shift", "accumulate"]}
procs, took = {}, {}
try:
    for name, flags in arms.items():
        out = open(f"{w}/{name}.json", "w")
        procs[name] = subprocess.Popen([exe, "-q", "--no-progress", "--json", *search,
                                        "--out", f"{w}/{name}", *flags], stdout=out)
        procs[name].send_signal(signal.SIGSTOP)
        took[name] = 0.0
    while procs:
        for name in list(procs):
            p = procs[name]
            p.send_signal(signal.SIGCONT)
            t0 = time.monotonic()
            try:
                p.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGSTOP)
            took[name] += time.monotonic() - t0
            if p.poll() is not None:
                if p.returncode != 0:
                    sys.exit(f"{name}: shiftnas search failed (exit {p.returncode})")
                del procs[name]
finally:
    # A failed arm or Ctrl-C must not leave the other one stopped for ever.
    for p in procs.values():
        p.kill()
for name, t in took.items():
    open(f"{w}/{name}.time", "w").write(f"{t:.1f}")
PY
echo "load after: $(cat /proc/loadavg)"
python3 - "$W" <<'PY'
import json, sys
w = sys.argv[1]
runs = ("off", "accumulate")
t = {n: float(open(f"{w}/{n}.time").read()) for n in runs}
done = {n: next(json.loads(l) for l in open(f"{w}/{n}.json") if '"done"' in l) for n in runs}
archs = {n: [json.loads(l)["arch"] for l in open(f"{w}/{n}/archive.jsonl")] for n in runs}
evals = len(archs["off"])
front = len(done["accumulate"]["front"])
# The re-score is |front| more evaluations of `off`'s kind (BN calibration and score; `off`
# itself needs none): without it, what shifting adds per evaluation.
print("run          time s  evaluations  re-scored  ratio")
for n in runs:
    rescored = front if n == "accumulate" else 0
    print(f"{n:<12} {t[n]:6.1f}  {len(archs[n]):11d}  {rescored:9d}  {t[n] / t['off']:5.3f}")
per_eval = (t["accumulate"] - front * t["off"] / evals) / t["off"]
print(f"without the re-score ({front} evaluations of off's kind): {per_eval:5.3f}")
same = archs["off"] == archs["accumulate"]
print(f"same archs scored in both searches: {'yes' if same else 'no'} ({evals} evaluations)")
PY
