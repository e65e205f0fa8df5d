#!/usr/bin/env bash
# The order-preserving study (see experiments/order_preserving.py for the stages and
# PRESETS for every budget knob). Builds shiftnas once per preset and freezes a copy in
# experiments/runs/<preset>/bin/, so a long or resumed run never picks up another build from the
# shared target dir; then runs the study. Rerun the same command to continue after a kill.
#
#   experiments/order_preserving.sh [--preset smoke|cpu-small|cpu-medium|gpu] [--until STAGE] [--rebuild]
#   nohup experiments/order_preserving.sh --preset cpu-small >> experiments/runs/cpu-small/log.txt 2>&1 &
#   experiments/order_preserving.sh --preset smoke --space mbv2-cifar --sampling fair --shift accumulate
#
# SHIFTNAS=/path/to/shiftnas skips the build. The gpu preset builds with `--features cuda`
# (scripts/cuda-env; docs/cuda.md) and runs with --compute cuda:0.
set -euo pipefail
cd "$(dirname "$0")/.."
preset=cpu-small rebuild=0 args=()
while (($#)); do
    case "$1" in
        --preset) preset="$2"; args+=("$1" "$2"); shift 2 ;;
        --preset=*) preset="${1#--preset=}"; args+=("$1"); shift ;;
        --rebuild) rebuild=1; shift ;;
        *) args+=("$1"); shift ;;
    esac
done
bin_dir="experiments/runs/$preset/bin"
frozen="$bin_dir/shiftnas"
if [[ -n "${SHIFTNAS:-}" ]]; then
    frozen="$SHIFTNAS"
elif [[ ! -x "$frozen" || $rebuild == 1 ]]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
    features=()
    if [[ $preset == gpu ]]; then
        # shellcheck disable=SC1091
        source scripts/cuda-env
        features=(--features cuda)
    fi
    # release: the fastest training (a dev build of the kernels is ~10 % slower; Cargo.toml)
    cargo build --release -p shiftnas "${features[@]}"
    built="$CARGO_TARGET_DIR/release/shiftnas"
    mkdir -p "$bin_dir"
    cp "$built" "$frozen.tmp" && mv "$frozen.tmp" "$frozen"
    git rev-parse HEAD > "$bin_dir/commit.txt" 2>/dev/null || true
fi
exec python3 experiments/order_preserving.py --binary "$frozen" "${args[@]}"
