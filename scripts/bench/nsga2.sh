#!/usr/bin/env bash
# NSGA-II on ZDT1-3: shiftnas (examples/nsga2_zdt.rs) vs pymoo, same problem/pop/gens/seed.
# pymoo lives in a throwaway venv ($SHIFTNAS_CACHE/bench-venv), never a project dependency.
# Usage: scripts/bench/nsga2.sh [pop] [gens] [seeds...]   (default 100 250 1 2 3)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cache="${SHIFTNAS_CACHE:-$root/.cache}"
venv="$cache/bench-venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import pymoo" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check pymoo
fi
pop="${1:-100}"; gens="${2:-250}"; shift 2 || true
seeds=("$@"); [ ${#seeds[@]} -eq 0 ] && seeds=(1 2 3)
cd "$root"
# NSGA2_PROFILE=dev reuses the shared, optimised dev build (opt-level 2) instead of a release build.
profile="${NSGA2_PROFILE:-release}"
cargo build -q --profile "$profile" -p shiftnas --example nsga2_zdt
dir="$profile"; [ "$profile" = dev ] && dir=debug
bin="${CARGO_TARGET_DIR:-$root/target}/$dir/examples/nsga2_zdt"
echo "pymoo $("$venv/bin/python" -c 'import pymoo; print(pymoo.__version__)'), pop $pop, gens $gens"
for p in zdt1 zdt2 zdt3; do
  for s in "${seeds[@]}"; do
    ours=$("$bin" --problem "$p" --pop "$pop" --gens "$gens" --seed "$s")
    theirs=$("$venv/bin/python" scripts/bench/nsga2_pymoo.py --problem "$p" --pop "$pop" --gens "$gens" --seed "$s")
    hv_o=$(sed -E 's/.* hv=([^ ]+).*/\1/' <<<"$ours"); ms_o=$(sed -E 's/.*ms_per_gen=([^ ]+).*/\1/' <<<"$ours")
    opt=$(sed -E 's/.*optimum_hv=([^ ]+).*/\1/' <<<"$ours")
    hv_p=$(sed -E 's/.* hv=([^ ]+).*/\1/' <<<"$theirs"); ms_p=$(sed -E 's/.*ms_per_gen=([^ ]+).*/\1/' <<<"$theirs")
    ratio=$(python3 -c "print(f'{$ms_p/$ms_o:.1f}')")
    echo "$p seed=$s  hv shiftnas=$hv_o pymoo=$hv_p optimum=$opt  ms/gen shiftnas=$ms_o pymoo=$ms_p  speedup=${ratio}x"
  done
done
