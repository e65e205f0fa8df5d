#!/usr/bin/env python3
"""The retraining ceiling: how well can any supernet rank archs against retrained accuracy?

Retrains the same archs with several seeds (`shiftnas retrain`, one recipe) and ranks each seed's
accuracies against every other seed's with `shiftnas rank`: retraining noise alone caps the
Kendall τ-b a supernet can reach against a single-seed truth at about the seeds' mutual τ-b.
Resumable: each finished retrain is one line of `results.csv` (and a run dir that `--resume`
continues after a kill); rerun the same command to go on, or with `--report-only` for the figures.

  python3 experiments/ceiling.py --out experiments/runs/ceiling/fm-tiny-1000 \\
      --data idx:/work/shared/datasets/fashion-mnist --space tiny --archs 10 --seeds 0 1 2 \\
      --steps 1000 --batch 64

Outputs in --out: `results.csv` (arch, seed, accuracy %, wall s), `seed-<s>.csv` (arch, accuracy:
`shiftnas rank` input), `mean-without-<s>.csv` (the other seeds' mean), `rank/*.json` (`shiftnas
rank` of one seed against another or against the others' mean) and `ceiling.json` (the summary).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def args_() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--binary", default=str(ROOT / "target/release/shiftnas"))
    p.add_argument("--data", required=True)
    p.add_argument("--space", default="tiny")
    p.add_argument("--archs", type=int, default=10, help="archs to retrain (arch seed 0)")
    p.add_argument("--draw", choices=["uniform", "spread"], default="uniform",
                   help="uniform: every choice equally likely; spread: arch i draws each block's "
                   "choice index from Binomial(choices - 1, p_i), p_i the i-th term of the base-2 "
                   "van der Corput sequence (0, 1/2, 1/4, 3/4, ...), so any first n archs run from "
                   "the smallest choices to the largest [default: %(default)s]")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--bn-images", type=int, default=2000)
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                   help="further `shiftnas retrain` flags (e.g. --convert-channels --resize)")
    p.add_argument("--jobs", type=int, default=1,
                   help="retrains run at once, the cores shared among them (two 1-thread retrains "
                   "on 2 cores: 1.5x the throughput of one on both) [default: %(default)s]")
    p.add_argument("--top-k", type=int, default=None,
                   help="the true top-k that `shiftnas rank` measures global and local order in "
                   "[default: rank's]")
    p.add_argument("--report-only", action="store_true")
    return p.parse_args()


def shiftnas(a: argparse.Namespace, *args: str, env: dict | None = None) -> dict:
    """Runs `a.binary`; its last JSON line. A command stopped by Ctrl-C (exit 130, its
    checkpoint written) or failing stops the script with one line: rerun it to continue."""
    run = subprocess.run([str(a.binary), "--json", "--no-progress", *args],
                         stdout=subprocess.PIPE, text=True, env=env)
    if run.returncode == 130:
        print(f"interrupted in `shiftnas {args[0]}`; rerun the same command to continue",
              file=sys.stderr, flush=True)
        sys.exit(130)
    if run.returncode != 0:
        sys.exit(f"`{a.binary} {' '.join(args)}` exited {run.returncode} (its messages above)")
    return json.loads(run.stdout.strip().splitlines()[-1])


def van_der_corput(i: int) -> float:
    """The i-th term of the base-2 van der Corput sequence: 0, 1/2, 1/4, 3/4, 1/8, ..."""
    x, f = 0.0, 0.5
    while i:
        x, i, f = x + f * (i & 1), i >> 1, f / 2
    return x


def archs_of(a: argparse.Namespace) -> list[str]:
    """`--archs` archs of the space drawn with seed 0 (`--draw`); the first n of a longer run are
    a shorter run's archs."""
    space = shiftnas(a, "space", "show", a.space)[0]
    blocks, n = sum(s["repeats"] for s in space["stages"]), len(space["choices"])
    rng = random.Random(0)
    if getattr(a, "draw", "uniform") == "uniform":
        return ["".join(str(rng.randrange(n)) for _ in range(blocks)) for _ in range(a.archs)]
    out = []
    for i in range(a.archs):
        p = van_der_corput(i)
        out.append("".join(str(sum(rng.random() < p for _ in range(n - 1)))
                           for _ in range(blocks)))
    return out


def done(out: Path) -> dict[tuple[str, int], float]:
    path = out / "results.csv"
    if not path.exists():
        return {}
    with path.open() as f:
        return {(r["arch"], int(r["seed"])): float(r["accuracy"]) for r in csv.DictReader(f)}


def append(out: Path, row: list) -> None:
    path = out / "results.csv"
    new = not path.exists()
    with path.open("a") as f:
        if new:
            f.write("arch,seed,accuracy,wall_s\n")
        f.write(",".join(str(v) for v in row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def retrain(a: argparse.Namespace, arch: str, seed: int, env: dict | None = None) -> float:
    run = a.out / "retrain" / f"{arch}-{seed}"
    if (run / "config.toml").exists():
        args = ["--resume", str(run)]
    else:
        args = ["--space", a.space, "--data", a.data, "--arch", arch, "--seed", str(seed),
                "--steps", str(a.steps), "--batch", str(a.batch), "--out", str(run), *a.extra]
        if a.lr is not None:
            args += ["--lr", str(a.lr)]
    res = shiftnas(a, "retrain", *args, "--bn-images", str(a.bn_images), env=env)
    return 100 * res["test"]["top1"]


def retrain_missing(a: argparse.Namespace, pairs: list[tuple[str, int]]) -> dict[tuple[str, int], float]:
    """Retrains each (arch, seed) of `pairs` not yet in `--out`'s results.csv, `a.jobs` at once
    (the cores shared among them), one line there as each finishes; returns every result there."""
    have = done(a.out)
    todo = [p for p in dict.fromkeys(pairs) if p not in have]
    jobs = max(1, a.jobs)
    env = None
    if jobs > 1:
        env = dict(os.environ, RAYON_NUM_THREADS=str(max(1, (os.cpu_count() or 1) // jobs)))

    failed = threading.Event()  # a failed or interrupted retrain starts no other

    def one(pair: tuple[str, int]) -> tuple[float, float]:
        if failed.is_set():
            raise RuntimeError("not started: another retrain failed")
        t0 = time.time()
        try:
            return retrain(a, *pair, env=env), time.time() - t0
        except BaseException:
            failed.set()
            raise

    pool = ThreadPoolExecutor(jobs)
    try:
        running = {pool.submit(one, p): p for p in todo}
        for i, job in enumerate(as_completed(running)):
            (x, s), (acc, wall) = running[job], job.result()
            have[(x, s)] = acc
            append(a.out, [x, s, f"{acc:.2f}", f"{wall:.0f}"])
            print(f"{i + 1}/{len(todo)} {x} seed {s}: {acc:.2f} % ({wall:.0f} s)",
                  file=sys.stderr, flush=True)
    finally:
        failed.set()
        pool.shutdown(cancel_futures=True)
    return have


def normal_model(acc: list[list[float]]) -> tuple[float, float]:
    """(seed noise, true spread) variances of accuracy = the arch's true value + seed noise, from
    each arch's accuracies over the same seeds: the between-arch variance of the seed means less
    the noise's share is the true spread (0 when the noise explains all of it)."""
    noise = statistics.mean(statistics.variance(v) for v in acc)
    true = statistics.variance([statistics.mean(v) for v in acc]) - noise / len(acc[0])
    return noise, max(true, 0.0)


def model_ceiling(noise: float, true: float, m: int) -> float:
    """τ-b of a ranking by the true values against an m-seed mean: (2/π)·asin(r), r² = true /
    (true + noise/m) (Greiner's relation)."""
    return 2 / math.pi * math.asin((true / (true + noise / m)) ** 0.5) if true > 0 else 0.0


def report(a: argparse.Namespace, archs: list[str]) -> dict:
    have = done(a.out)
    seeds = [s for s in a.seeds if all((x, s) in have for x in archs)]
    (a.out / "rank").mkdir(exist_ok=True)
    for s in seeds:
        with (a.out / f"seed-{s}.csv").open("w") as f:
            f.write("arch,accuracy\n" + "".join(f"{x},{have[(x, s)]}\n" for x in archs))
    pairs = {}
    top_k = ["--top-k", str(a.top_k)] if a.top_k else []
    for s, t in itertools.permutations(seeds, 2):
        r = shiftnas(a, "rank", "--archs", str(a.out / f"seed-{s}.csv"),
                     "--truth", str(a.out / f"seed-{t}.csv"), *top_k)
        (a.out / "rank" / f"{s}-vs-{t}.json").write_text(json.dumps(r, indent=1) + "\n")
        pairs[f"{s}-vs-{t}"] = r
    # Each seed against the mean of the others: the truth a study with one more seed would use.
    for s in seeds if len(seeds) > 2 else []:
        others = [t for t in seeds if t != s]
        with (a.out / f"mean-without-{s}.csv").open("w") as f:
            f.write("arch,accuracy\n" + "".join(
                f"{x},{statistics.mean(have[(x, t)] for t in others):.3f}\n" for x in archs))
        r = shiftnas(a, "rank", "--archs", str(a.out / f"seed-{s}.csv"),
                     "--truth", str(a.out / f"mean-without-{s}.csv"), *top_k)
        (a.out / "rank" / f"{s}-vs-mean-of-others.json").write_text(json.dumps(r, indent=1) + "\n")
        pairs[f"{s}-vs-mean-of-others"] = r
    acc = {x: [have[(x, s)] for s in seeds] for x in archs}
    summary = {
        "data": a.data, "space": a.space, "draw": a.draw, "archs": len(archs), "seeds": seeds,
        "steps": a.steps, "top_k": a.top_k,
        "batch": a.batch, "lr": a.lr, "bn_images": a.bn_images,
        "pairs": {k: {m: v.get(m) for m in ("tau_b", "spearman_rho", "global", "local_tau_b")}
                  for k, v in pairs.items()},
        "accuracy_range": [min(min(v) for v in acc.values()), max(max(v) for v in acc.values())],
    }
    taus = [v["tau_b"] for k, v in summary["pairs"].items() if "mean" not in k]
    if taus:
        summary["tau_b_mean"] = statistics.mean(taus)
        summary["tau_b_range"] = [min(taus), max(taus)]
    if len(seeds) > 1:
        noise, true = normal_model(list(acc.values()))
        summary["noise_sd"] = noise ** 0.5
        summary["true_sd"] = true ** 0.5
        summary["model_ceiling_vs_m_seed_mean"] = {
            m: model_ceiling(noise, true, m) for m in sorted({1, 2, 3, 5, 8, len(seeds)})}
        # How far the ceiling of this truth rests on which archs were drawn: a percentile
        # bootstrap over the archs (2,000 resamples, fixed seed).
        rng, values = random.Random(0), list(acc.values())
        boot = sorted(model_ceiling(*normal_model(rng.choices(values, k=len(values))), len(seeds))
                      for _ in range(2000))
        summary["model_ceiling_95"] = [boot[49], boot[1950]]
    (a.out / "ceiling.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def main() -> None:
    a = args_()
    a.out.mkdir(parents=True, exist_ok=True)
    archs = archs_of(a)
    if not a.report_only:
        retrain_missing(a, [(x, s) for s in a.seeds for x in archs])
    print(json.dumps(report(a, archs), indent=1))


if __name__ == "__main__":
    main()
