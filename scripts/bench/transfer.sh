#!/usr/bin/env bash
# Transfer benchmark (docs/benchmarks.md "Transfer between data sets"): both directions between
# Fashion-MNIST and CIFAR-10 (converted to grayscale 28x28 for the `tiny` space). For each target:
# a from-scratch supernet trained STEPS steps on it, searched; and the other data set's supernet
# (also STEPS steps) transferred with `search --transfer-from`, warmed up and searched. Prints
# the best front member's proxy accuracy of both, their ratio (target >= 0.95), and the transfer's
# training images (warm-up + shifting) against the from-scratch training's STEPS x BATCH images
# (target <= 1/5).
#
#   scripts/bench/transfer.sh [--out DIR] [--fmnist DIR] [--cifar DIR] [--steps 600] [--pop 8] [--gens 3] [--bin PATH]
#
# Resumable: every step writes into DIR (default runs/bench-transfer) and is skipped when its
# result is there; a killed training or search resumes with --resume. --fmnist defaults to the
# embedded subset (builtin:fashion-mnist); pass the IDX folder for the full 60k set.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=runs/bench-transfer fmnist= cifar=/work/shared/datasets/cifar10 steps=600 pop=8 gens=3 bin=
warm_probe=30 warm_ft=66 warm_lr=0.03 warm_batch=64 shift_steps=2 shift_batch=32 shift_lr=1e-2
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --fmnist) fmnist=$2; shift 2 ;;
    --cifar) cifar=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --pop) pop=$2; shift 2 ;;
    --gens) gens=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    *) echo "transfer.sh: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
if [ -z "$bin" ]; then
  cargo build --release -p shiftnas --bin shiftnas
  bin=${CARGO_TARGET_DIR:-target}/release/shiftnas
fi
fm_data="builtin:fashion-mnist"
[ -n "$fmnist" ] && fm_data="idx:$fmnist"
c10_data="cifar10:$cifar --convert-channels --resize"
batch=64
mkdir -p "$out"

# train NAME DATA...: a supernet trained $steps steps (resumes a killed one).
train() {
  local name=$1; shift
  local dir=$out/$name
  [ -f "$dir/checkpoint/supernet.safetensors" ] && grep -q "\"step\":$steps," "$dir/log.jsonl" 2>/dev/null && return 0
  if [ -f "$dir/config.toml" ]; then
    "$bin" train --resume "$dir" --no-progress -q
  else
    "$bin" train --space tiny --steps "$steps" --batch $batch --seed 0 --out "$dir" --no-progress -q "$@"
  fi
}

# search NAME FLAGS...: a search whose last JSON line lands in $out/NAME.json.
search() {
  local name=$1; shift
  local dir=$out/search-$name
  [ -f "$out/$name.json" ] && return 0
  if [ -f "$dir/config.toml" ]; then
    "$bin" search --resume "$dir" --json --no-progress > "$out/$name.out"
  else
    "$bin" search --json --no-progress --out "$dir" --pop "$pop" --gens "$gens" --latency flops \
      --proxy-size 500 --bn-images 500 --split-seed 0 "$@" > "$out/$name.out"
  fi
  tail -1 "$out/$name.out" > "$out/$name.json"
}

# shellcheck disable=SC2086
train src-fmnist --data $fm_data
# shellcheck disable=SC2086
train src-cifar10 --data $c10_data
warm=(--warmup-probe-steps $warm_probe --warmup-steps $warm_ft --warmup-lr $warm_lr --warmup-batch $warm_batch
  --shift-steps $shift_steps --shift-batch $shift_batch --transfer-shift-lr $shift_lr)
# shellcheck disable=SC2086
search scratch-cifar10 --supernet "$out/src-cifar10" --data $c10_data
# shellcheck disable=SC2086
search fmnist-to-cifar10 --transfer-from "$out/src-fmnist" --data $c10_data "${warm[@]}"
# shellcheck disable=SC2086
search scratch-fmnist --supernet "$out/src-fmnist" --data $fm_data
# shellcheck disable=SC2086
search cifar10-to-fmnist --transfer-from "$out/src-cifar10" --data $fm_data "${warm[@]}"

python3 - "$out" "$steps" "$batch" "$pop" "$gens" "$shift_steps" "$shift_batch" <<'PY'
import json, sys
out, steps, batch, pop, gens, ss, sb = sys.argv[1], *map(int, sys.argv[2:])
def best(name):
    d = json.load(open(f"{out}/{name}.json"))
    return max(1 - r["error"] for r in d["front"]), d.get("transfer")
scratch_images = steps * batch
for target, src in [("cifar10", "fmnist"), ("fmnist", "cifar10")]:
    s, _ = best(f"scratch-{target}")
    t, rec = best(f"{src}-to-{target}")
    # Shifting: shift_steps x shift_batch images per evaluated candidate (pop x gens).
    images = rec["images"] + pop * gens * ss * sb
    print(json.dumps({"direction": f"{src} -> {target}", "scratch_best": round(s, 4),
        "transfer_best": round(t, 4), "ratio": round(t / s, 3), "target_ratio": 0.95,
        "warmup_before": round(rec["accuracy_before"], 4), "warmup_after": round(rec["accuracy_after"], 4),
        "transfer_images": images, "scratch_images": scratch_images,
        "compute_share": round(images / scratch_images, 3), "target_share": 0.2,
        "pass": t / s >= 0.95 and images * 5 <= scratch_images}))
PY
