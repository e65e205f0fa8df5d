#!/usr/bin/env bash
# Transfer benchmark (docs/benchmarks.md "Transfer between data sets"): both directions between
# Fashion-MNIST and CIFAR-10 (converted to grayscale 28x28 for the `tiny` space). For each target:
# a from-scratch supernet trained STEPS steps on it, searched; and the other data set's supernet
# (also STEPS steps) transferred with `search --transfer-from`, warmed up and searched; and, as a
# control, a new supernet trained on the target with only the transfer's warm-up images, searched
# with its shifting. Prints the best front member's proxy accuracy of each, the transfer's ratio
# to from-scratch (target >= 0.95), and the transfer's training images (warm-up + shifting)
# against the from-scratch training's STEPS x BATCH images (target <= 1/5).
#
#   scripts/bench/transfer.sh [--out DIR] [--fmnist DIR] [--cifar DIR] [--steps 600] [--pop 8] [--gens 3] [--warmup-lr 0.03] [--bin PATH]
#
# The transfer's warm-up takes what the 1/5 budget leaves after shifting: STEPS x BATCH / 5 images
# minus POP x GENS x 2 x 32 shifting images, in steps of 64 images, 5/16 of them head-only.
#
# Resumable: every step writes into DIR (default runs/bench-transfer) and is skipped when its
# result is there; a killed training or search resumes with --resume. --fmnist defaults to the
# embedded subset (builtin:fashion-mnist); pass the IDX folder for the full 60k set.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=runs/bench-transfer fmnist= cifar=/work/shared/datasets/cifar10 steps=600 pop=8 gens=3 bin=
warm_lr=0.03 warm_batch=64 shift_steps=2 shift_batch=32 shift_lr=1e-2
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --fmnist) fmnist=$2; shift 2 ;;
    --cifar) cifar=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --pop) pop=$2; shift 2 ;;
    --gens) gens=$2; shift 2 ;;
    --warmup-lr) warm_lr=$2; shift 2 ;;
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
# The warm-up's steps: the 1/5 budget less the shifting images, 5/16 of it head-only.
warm_total=$(( (steps * batch / 5 - pop * gens * shift_steps * shift_batch) / warm_batch ))
[ "$warm_total" -ge 2 ] || { echo "transfer.sh: --steps $steps leaves no warm-up in the 1/5 budget" >&2; exit 2; }
warm_probe=$(( warm_total * 5 / 16 ))
warm_ft=$(( warm_total - warm_probe ))
mkdir -p "$out"

# train NAME STEPS DATA...: a supernet trained STEPS steps (resumes a killed one).
train() {
  local name=$1 n=$2; shift 2
  local dir=$out/$name
  [ -f "$dir/checkpoint/supernet.safetensors" ] && grep -q "\"step\":$n," "$dir/log.jsonl" 2>/dev/null && return 0
  if [ -f "$dir/config.toml" ]; then
    "$bin" train --resume "$dir" --no-progress -q
  else
    "$bin" train --space tiny --steps "$n" --batch $batch --seed 0 --out "$dir" --no-progress -q "$@"
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
train src-fmnist "$steps" --data $fm_data
# shellcheck disable=SC2086
train src-cifar10 "$steps" --data $c10_data
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
# The control: a new supernet trained on the target with the transfer's images (its warm-up's
# steps), searched with the transfer's shifting. What the transfer adds is the difference.
short=(--shift immediate --shift-steps $shift_steps --shift-batch $shift_batch --shift-lr $shift_lr)
# shellcheck disable=SC2086
train short-cifar10 "$warm_total" --data $c10_data
# shellcheck disable=SC2086
search short-cifar10 --supernet "$out/short-cifar10" --data $c10_data "${short[@]}"
# shellcheck disable=SC2086
train short-fmnist "$warm_total" --data $fm_data
# shellcheck disable=SC2086
search short-fmnist --supernet "$out/short-fmnist" --data $fm_data "${short[@]}"

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
    short, _ = best(f"short-{target}")
    # Shifting: shift_steps x shift_batch images per evaluated candidate (pop x gens).
    images = rec["images"] + pop * gens * ss * sb
    print(json.dumps({"direction": f"{src} -> {target}", "scratch_best": round(s, 4),
        "transfer_best": round(t, 4), "ratio": round(t / s, 3), "target_ratio": 0.95,
        "scratch_at_transfer_images_best": round(short, 4),
        "warmup_before": round(rec["accuracy_before"], 4), "warmup_after": round(rec["accuracy_after"], 4),
        "transfer_images": images, "scratch_images": scratch_images,
        "compute_share": round(images / scratch_images, 3), "target_share": 0.2,
        "pass": t / s >= 0.95 and images * 5 <= scratch_images}))
PY
