#!/usr/bin/env python3
"""Does Supernet Shifting rank and pick better, and does a transferred supernet find as good an
arch? The paper's protocol (Zhang et al., CVPR 2024, "Boosting Order-Preserving and
Transferability for Neural Architecture Search") at CPU scale, with ground truth from several
retraining seeds and paired 95 % intervals over search seeds.

Stages (each skipped when its output exists; a killed command resumes with its `--resume`):

1. supernet: the target's supernet (`shiftnas train`).
2. source: a supernet of the same space on the other data set, for the transfer arm.
3. search, per search seed: `--shift off`, `accumulate` and `immediate` from the same supernet,
   and `--transfer-from` the source; each `--track`s the `ranked` archs (drawn as
   experiments/ceiling.py draws them, so a ceiling run's archs are their first ones): scores
   under the current weights before the first generation and after every one
   (track/gen-NNN.csv). A finished search's tracks and pick are copied to the results at once
   (track/<arm>-s<seed>/), so a run dir lost after them costs no search again (nor the
   supernets, when every search is there).
4. truth: the ranked archs retrained with every `truth_seeds` seed; their mean is the truth.
5. picks: each search's pick (lowest supernet error on its final front) retrained with the
   `pick_seeds`.
6. rank: `shiftnas rank --archs track/gen-NNN.csv --truth truth.csv --top-k K` per search and
   generation; per-seed tables of the final figures; `shiftnas rank --paired` on them.
7. report: docs/results/shifting-study/<preset>/ (raw CSVs, trajectory.svg, report.md,
   summary.json); smoke's in its run dir.

  python3 experiments/shifting_study.py --preset smoke     # minutes: every stage runs
  python3 experiments/shifting_study.py --preset fm-mbv2   # the study; rerun to continue

The binary is copied into experiments/runs/<preset>/bin/ on the first run, so a resumed run keeps
using it (`--binary` or $SHIFTNAS pick it; default target/release/shiftnas).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import random
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ceiling  # noqa: E402  (the truth stage is a ceiling run over the ranked archs)

ROOT = Path(__file__).resolve().parent.parent
FMNIST = os.environ.get("FMNIST_DIR", "/work/shared/datasets/fashion-mnist")
CIFAR = os.environ.get("CIFAR10_DIR", "/work/shared/datasets/cifar10")

# Every knob that sizes the study. `target` and `source`: a `--data` value and its flags.
PRESETS: dict[str, dict] = {
    # Minutes: every stage runs and the report is written. Numbers mean nothing.
    "smoke": dict(
        space="tiny", target=["builtin:fashion-mnist"],
        source=[f"cifar10:{CIFAR}", "--convert-channels", "--resize"],
        supernet_steps=30, source_steps=30, batch=16, lr=None, proxy_size=200, bn_images=64,
        ranked=5, draw="uniform", top_k=3, truth_seeds=[0, 1, 2], retrain_steps=6, retrain_batch=16,
        retrain_lr=None,
        search_seeds=[1, 2], pop=4, gens=2, max_flops=None,
        shift_lr=1e-3, shift_samples=32, shift_batch=16,
        immediate_steps=1, immediate_lr=1e-3,
        warmup_probe_steps=2, warmup_steps=3, warmup_batch=16, transfer_shift_lr=1e-2,
        pick_seeds=[0], retrain_bn_images=64, truth_from=None,
    ),
    # The study: Fashion-MNIST (60k) in `mbv2-tiny`; the ranked set spans the space. The truth
    # is the mean of 15 seeds: with 5 its ceiling was 0.68 (seed noise SD 0.48 points, true
    # spread 0.39); with 15 it is 0.81 (docs/results/ceiling.md). The transfer arm starts from
    # gray 28x28 CIFAR-10. 15 search seeds: in the first 5 the picks' accuracy differences
    # between arms spread by an SD of up to 0.88 points from seed to seed, and a paired 95 %
    # interval of +-0.5 points at that SD needs 15. Measured on 2-core VMs with --jobs 2:
    # supernets 2 x ~15 min, 60 searches x 2-5 min (off fastest, transfer with its warm-up
    # slowest; ~11 min a seed), truth 450 retrains (the first 30 come from the ceiling run) and
    # picks 60, ~75-100 s each: ~13-17 h in all. Shifting lr 1e-3, 10x the paper's 1e-4:
    # 8 generations of 16 candidates instead of 20 of 50.
    "fm-mbv2": dict(
        space="mbv2-tiny", target=[f"idx:{FMNIST}"],
        source=[f"cifar10:{CIFAR}", "--convert-channels", "--resize"],
        supernet_steps=4000, source_steps=4000, batch=64, lr=None, proxy_size=1000,
        bn_images=500,
        ranked=30, draw="spread", top_k=10, truth_seeds=list(range(15)), retrain_steps=1000,
        retrain_batch=64, retrain_lr=None,
        search_seeds=list(range(1, 16)), pop=16, gens=8, max_flops=None,
        shift_lr=1e-3, shift_samples=256, shift_batch=64,
        immediate_steps=2, immediate_lr=1e-3,
        # 1/5 of the supernet's 256,000 images: 128 candidates x 2 x 64 shifting, the rest warm-up.
        warmup_probe_steps=170, warmup_steps=374, warmup_batch=64, transfer_shift_lr=1e-2,
        pick_seeds=[0], retrain_bn_images=2000,
        truth_from="docs/results/ceiling/fm-mbv2-tiny-1000-spread/results.csv",
    ),
}
SHIFTS = ["off", "accumulate", "immediate"]
ARMS = SHIFTS + ["transfer"]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Study:
    def __init__(self, preset: str, binary: Path, jobs: int):
        self.name, self.k, self.jobs = preset, PRESETS[preset], jobs
        self.dir = ROOT / "experiments" / "runs" / f"study-{preset}"
        # Raw results and report: committed under docs/results/ (smoke's mean nothing: its run dir).
        self.out = (self.dir / "report" if preset == "smoke"
                    else ROOT / "docs" / "results" / "shifting-study" / preset)
        self.bin = self.dir / "bin" / "shiftnas"
        if not self.bin.exists():
            self.bin.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(binary, self.bin.with_suffix(".tmp"))
            self.bin.with_suffix(".tmp").replace(self.bin)

    def shiftnas(self, *args: str) -> dict:
        """Runs the frozen binary (as experiments/ceiling.py runs it); its last JSON line."""
        return ceiling.shiftnas(argparse.Namespace(binary=self.bin), *args)

    def rank(self, archs: Path, truth: Path) -> dict:
        """`shiftnas rank` of scored archs against a truth, in the study's space and top-k."""
        return self.shiftnas("rank", "--archs", str(archs), "--truth", str(truth),
                             "--space", self.k["space"], "--top-k", str(self.k["top_k"]))

    def truth_args(self) -> argparse.Namespace:
        """The truth stage as a ceiling run (experiments/ceiling.py) over the ranked archs."""
        k = self.k
        return argparse.Namespace(
            out=self.dir / "truth", binary=str(self.bin), data=k["target"][0], space=k["space"],
            archs=k["ranked"], draw=k["draw"], seeds=k["truth_seeds"], steps=k["retrain_steps"],
            batch=k["retrain_batch"], lr=k["retrain_lr"], bn_images=k["retrain_bn_images"],
            extra=k["target"][1:], jobs=self.jobs, top_k=k["top_k"])


def train(s: Study, name: str, data: list[str], steps: int) -> Path:
    run = s.dir / name
    k = s.k
    if (run / "checkpoint" / "supernet.safetensors").exists() and json.loads(
            (run / "checkpoint" / "state.json").read_text()).get("step") == steps:
        return run
    log(f"{name}: training {steps} steps")
    if (run / "config.toml").exists():
        s.shiftnas("train", "--resume", str(run))
    else:
        args = ["train", "--space", k["space"], "--data", *data, "--steps", str(steps),
                "--batch", str(k["batch"]), "--proxy-size", str(k["proxy_size"]), "--seed", "0",
                "--out", str(run)]
        s.shiftnas(*args, *(["--lr", str(k["lr"])] if k["lr"] else []))
    return run


def ranked(s: Study) -> list[str]:
    """The ranked archs, written to truth/ranked.txt (what every search tracks)."""
    a = s.truth_args()
    a.out.mkdir(parents=True, exist_ok=True)
    archs = ceiling.archs_of(a)
    (a.out / "ranked.txt").write_text("\n".join(archs) + "\n")
    return archs


def reuse(out: Path, *sources: Path | None) -> None:
    """Starts `out`/results.csv from the first existing source: retrains are keyed by (arch,
    seed), so any row of the same recipe counts, and a run dir lost after the raw results were
    committed costs no retrain again."""
    if not (out / "results.csv").exists():
        for src in sources:
            if src and src.exists():
                shutil.copy(src, out / "results.csv")
                return


def truth(s: Study) -> dict[str, float]:
    """arch -> mean retrained accuracy (%) over the truth seeds; writes truth.csv."""
    a = s.truth_args()
    a.out.mkdir(parents=True, exist_ok=True)
    # Retrains done before: this study's committed raw results, or a ceiling run with the same
    # recipe (it holds the first archs').
    reuse(a.out, s.out / "truth-results.csv", s.k["truth_from"] and ROOT / s.k["truth_from"])
    archs = ranked(s)
    log("truth: retraining the ranked archs")
    have = ceiling.retrain_missing(a, [(x, sd) for sd in a.seeds for x in archs])
    mean = {x: statistics.mean(have[(x, sd)] for sd in a.seeds) for x in archs}
    ceiling.report(a, archs)  # this truth's own ceiling: truth/ceiling.json
    (a.out / "truth.csv").write_text(
        "arch,accuracy\n" + "".join(f"{x},{v:.3f}\n" for x, v in mean.items()))
    return mean


def searched(s: Study, arm: str, seed: int) -> Path:
    """Where a finished search's raw results lie (in the committed results, so a run dir lost
    after them costs no search again): its tracked scores (gen-NNN.csv) and pick.json."""
    return s.out / "track" / f"{arm}-s{seed}"


def search(s: Study, arm: str, seed: int, supernet: Path | None, source: Path | None) -> Path:
    done = searched(s, arm, seed)
    if (done / "pick.json").exists():
        return done
    run = s.dir / f"search-{arm}-s{seed}"
    if (run / "pareto.json").exists():
        return save_search(run, done)
    k = s.k
    if (run / "config.toml").exists():
        args = ["search", "--resume", str(run)]
    else:
        args = ["search", "--data", *k["target"], "--space", k["space"], "--algorithm", "evolution",
                "--latency", "flops", "--pop", str(k["pop"]), "--gens", str(k["gens"]),
                "--seed", str(seed), "--bn-images", str(k["bn_images"]),
                "--proxy-size", str(k["proxy_size"]), "--split-seed", "0",
                "--track", str(s.dir / "truth" / "ranked.txt"), "--out", str(run)]
        if k["max_flops"]:
            args += ["--max-flops", f"{k['max_flops']:.0f}"]
        if arm == "transfer":
            args += ["--transfer-from", str(source), "--warmup-probe-steps",
                     str(k["warmup_probe_steps"]), "--warmup-steps", str(k["warmup_steps"]),
                     "--warmup-batch", str(k["warmup_batch"]),
                     "--transfer-shift-lr", str(k["transfer_shift_lr"]),
                     "--shift-steps", str(k["immediate_steps"]), "--shift-batch", str(k["batch"])]
        else:
            args += ["--supernet", str(supernet), "--shift", arm]
            if arm == "accumulate":
                args += ["--shift-lr", str(k["shift_lr"]), "--shift-samples",
                         str(k["shift_samples"]), "--shift-batch", str(k["shift_batch"])]
            if arm == "immediate":
                args += ["--shift-lr", str(k["immediate_lr"]), "--shift-steps",
                         str(k["immediate_steps"]), "--shift-batch", str(k["batch"])]
    log(f"search {arm} seed {seed}")
    s.shiftnas(*args)
    return save_search(run, done)


def save_search(run: Path, done: Path) -> Path:
    """Copies a search's tracked scores and its pick (the lowest supernet error on its final
    front, re-scored) to `done`, pick.json last: it marks the copy complete."""
    done.mkdir(parents=True, exist_ok=True)
    for f in (run / "track").glob("gen-*.csv"):
        shutil.copy(f, done / f.name)
    front = json.loads((run / "pareto.json").read_text())
    best = min(front, key=lambda r: (r["error"], r["flops"], r["arch"]))
    (done / "pick.tmp").write_text(json.dumps(best) + "\n")
    (done / "pick.tmp").replace(done / "pick.json")
    return done


def pick(done: Path) -> dict:
    """A finished search's answer (save_search)."""
    return json.loads((done / "pick.json").read_text())


def picks(s: Study, searches: dict[tuple[str, int], Path]) -> dict[tuple[str, int], float]:
    """(arm, search seed) -> the pick's mean retrained accuracy over the pick seeds."""
    a = s.truth_args()
    a.out = s.dir / "picks"
    a.out.mkdir(parents=True, exist_ok=True)
    reuse(a.out, s.out / "picks-results.csv")
    arch = {key: pick(done)["arch"] for key, done in sorted(searches.items())}
    log("picks: retraining each search's pick")
    have = ceiling.retrain_missing(a, [(x, sd) for x in arch.values() for sd in s.k["pick_seeds"]])
    return {key: statistics.mean(have[(x, sd)] for sd in s.k["pick_seeds"])
            for key, x in arch.items()}


def rank_generations(s: Study, done: Path) -> list[dict]:
    """`shiftnas rank` of the tracked scores of every generation against the truth."""
    out = []
    for f in sorted(done.glob("gen-*.csv")):
        r = s.rank(f, s.dir / "truth" / "truth.csv")
        r["generation"] = int(f.stem.split("-")[1])
        out.append(r)
    return out


def paired(s: Study, name: str, rows: dict[int, dict[str, float]], arms: list[str]) -> dict:
    """Writes `name`.csv (seed, one column per arm) and returns `shiftnas rank --paired` of it.
    A seed whose figure is undefined in some arm (τ-b of tied scores) is left out, and said."""
    path = s.out / f"{name}.csv"
    with path.open("w") as f:
        f.write(",".join(["seed", *arms]) + "\n")
        for seed, v in sorted(rows.items()):
            if any(v[a] is None for a in arms):
                log(f"{name}: seed {seed} left out, undefined in {[a for a in arms if v[a] is None]}")
                continue
            f.write(",".join([str(seed), *(f"{v[a]:.6g}" for a in arms)]) + "\n")
    r = s.shiftnas("rank", "--paired", str(path))
    r["paired"] = str(path.relative_to(ROOT))  # summary.json names files from the repo root
    return r


def svg_trajectory(path: Path, traj: dict[str, dict[int, list[float]]], label: str,
                   lo: float = -1.0, refs: list[tuple[float, str]] | None = None) -> None:
    """A figure per generation (y from `lo` to 1): each arm's seeds (thin) and mean (thick), and
    each of `refs` (value, name) as a dashed line."""
    colors = {"off": "#777777", "accumulate": "#1f77b4", "immediate": "#d62728",
              "transfer": "#2ca02c"}
    gens = max(len(v) for arm in traj.values() for v in arm.values())
    w, h, left, top, bottom, right = 640, 360, 60, 30, 50, 140
    pw, ph = w - left - right, h - top - bottom

    def x(g):
        return left + pw * g / max(gens - 1, 1)

    def y(t):
        return top + ph * (1 - (t - lo) / (1 - lo))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>']
    for t in [lo + (1 - lo) * i / 4 for i in range(5)]:
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(t):.1f}" y2="{y(t):.1f}" '
                   f'stroke="#ddd"/><text x="{left - 8}" y="{y(t) + 4:.1f}" '
                   f'text-anchor="end">{t:g}</text>')
    for g in range(gens):
        out.append(f'<text x="{x(g):.1f}" y="{top + ph + 18}" text-anchor="middle">{g}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{h - 8}" text-anchor="middle">generation '
               '(0: before the first)</text>')
    out.append(f'<text x="14" y="{top + ph / 2}" text-anchor="middle" '
               f'transform="rotate(-90 14 {top + ph / 2})">{label}</text>')
    for t, name in refs or []:
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(t):.1f}" y2="{y(t):.1f}" '
                   f'stroke="black" stroke-dasharray="5 4"/><text x="{left + 4}" '
                   f'y="{y(t) - 4:.1f}" font-size="10">{name}</text>')
    for i, (arm, seeds) in enumerate(traj.items()):
        c = colors.get(arm, "black")
        for v in seeds.values():
            pts = " ".join(f"{x(g):.1f},{y(t):.1f}" for g, t in enumerate(v) if t is not None)
            out.append(f'<polyline points="{pts}" fill="none" stroke="{c}" stroke-width="0.8" '
                       'stroke-opacity="0.45"/>')
        means = []
        for g in range(gens):
            vals = [v[g] for v in seeds.values() if g < len(v) and v[g] is not None]
            means.append(statistics.mean(vals) if vals else None)
        pts = " ".join(f"{x(g):.1f},{y(t):.1f}" for g, t in enumerate(means) if t is not None)
        out.append(f'<polyline points="{pts}" fill="none" stroke="{c}" stroke-width="2.5"/>')
        ly = top + 16 + 18 * i
        out.append(f'<line x1="{left + pw + 12}" x2="{left + pw + 36}" y1="{ly}" y2="{ly}" '
                   f'stroke="{c}" stroke-width="2.5"/><text x="{left + pw + 42}" y="{ly + 4}">'
                   f'{arm}</text>')
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")


def oracle(true_sd: float, noise_sd: float, m: int, n: int, k: int, draws: int = 4000) -> dict:
    """What a supernet that ranked by the archs' true values would score against an m-seed truth,
    under the normal model of truth-ceiling.json (n archs, true values N(0, true_sd²), each seed
    adds N(0, noise_sd²)): mean τ-b over all n, local τ-b within the truth's top-k and the share
    of the true top-k in the truth's, by simulation (fixed seed). None when the archs do not
    differ (true_sd 0): no order to find."""
    if true_sd <= 0:
        return None
    rng = random.Random(0)

    def tau(a: list[float], b: list[float]) -> float:  # no ties among continuous draws
        pairs = list(itertools.combinations(range(len(a)), 2))
        return sum(1 if (a[i] - a[j]) * (b[i] - b[j]) > 0 else -1 for i, j in pairs) / len(pairs)

    glob, local, hits = [], [], []
    for _ in range(draws):
        true = [rng.gauss(0, true_sd) for _ in range(n)]
        seen = [t + rng.gauss(0, noise_sd / m ** 0.5) for t in true]
        top = sorted(range(n), key=lambda i: -seen[i])[:k]
        glob.append(tau(true, seen))
        local.append(tau([true[i] for i in top], [seen[i] for i in top]))
        hits.append(len(set(top) & set(sorted(range(n), key=lambda i: -true[i])[:k])) / k)
    return {"tau_b": statistics.mean(glob), "local_tau_b": statistics.mean(local),
            "global": statistics.mean(hits)}


def fmt_diff(d: dict) -> str:
    return f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"


def order(final: dict, seeds: list[int]) -> tuple[dict, dict]:
    """Per search seed and arm: local τ-b and global top-k of the final generation."""
    return tuple({sd: {a: final[a, sd][m] for a in ARMS} for sd in seeds}
                 for m in ("local_tau_b", "global"))


def compare(local, glob, acc=None) -> list[tuple]:
    """(name, CSV, figures, arms): the shifting arms against SPOS; the transfer arm against the
    same search (immediate shifting) from the supernet trained on the target."""
    figures = ([("local", "local-tau", local), ("global", "global", glob)] if local else []
               ) + ([("pick", "pick-accuracy", acc)] if acc else [])
    return [(f"{pre}{name}", f"{pre}{file}", rows, arms)
            for pre, arms in [("", SHIFTS), ("transfer-", ["immediate", "transfer"])]
            for name, file, rows in figures]


def truth_jackknife(s: Study, seeds: list[int]) -> dict[int, dict]:
    """The order comparisons again against each truth that leaves one retraining seed out: how
    far the truth's own noise moves them (the paired intervals hold the truth fixed). Writes
    truth-jackknife/truth-without-S.csv (the truth stage's mean-without-S.csv) and the paired
    CSVs (…-without-S.csv) beside it."""
    (s.out / "truth-jackknife").mkdir(exist_ok=True)
    out = {}
    for left in s.k["truth_seeds"] if len(s.k["truth_seeds"]) > 2 else []:
        truth = s.out / "truth-jackknife" / f"truth-without-{left}.csv"
        shutil.copy(s.dir / "truth" / f"mean-without-{left}.csv", truth)
        final = {(arm, sd): s.rank(sorted(searched(s, arm, sd).glob("gen-*.csv"))[-1], truth)
                 for arm in ARMS for sd in seeds}
        out[left] = {name: paired(s, f"truth-jackknife/{file}-without-{left}", rows, arms)
                     for name, file, rows, arms in compare(*order(final, seeds))}
    return out


def report(s: Study, ranks, pick_acc, truth_mean) -> None:
    k, seeds = s.k, s.k["search_seeds"]
    s.out.mkdir(parents=True, exist_ok=True)
    # Raw results: the truth and the picks (every search's tracked scores are there already).
    for f, to in [("results.csv", "truth-results.csv"), ("ceiling.json", "truth-ceiling.json"),
                  ("truth.csv", "truth.csv"), ("ranked.txt", "ranked.txt")]:
        shutil.copy(s.dir / "truth" / f, s.out / to)
    ceil = json.loads((s.dir / "truth" / "ceiling.json").read_text())
    shutil.copy(s.dir / "picks" / "results.csv", s.out / "picks-results.csv")
    final = {key: r[-1] for key, r in ranks.items()}
    local, glob = order(final, seeds)
    acc = {sd: {a: pick_acc[a, sd] for a in ARMS} for sd in seeds}
    comparisons = compare(local, glob) + compare(None, None, acc)
    cmp = {name: paired(s, file, rows, arms) for name, file, rows, arms in comparisons}
    jack = truth_jackknife(s, seeds)
    # The truth's ceiling: what one seed scores against the mean of the others (measured), and
    # what a supernet ranking by the true values would score against this truth (modelled).
    loo = [v for p, v in ceil["pairs"].items() if p.endswith("mean-of-others")]
    best = oracle(ceil["true_sd"], ceil["noise_sd"], len(ceil["seeds"]), k["ranked"], k["top_k"])
    perfect = "perfect ranking (model)"
    for m, svg, label, lo, refs in [
            ("local_tau_b", "trajectory.svg", "local Kendall τ-b", -1.0,
             [(best["local_tau_b"], perfect)] if best else []),
            ("global", "trajectory-global.svg", "share of the top", 0.0,
             [(k["top_k"] / k["ranked"], "chance")] + ([(best["global"], perfect)] if best else []))]:
        svg_trajectory(s.out / svg, {a: {sd: [r[m] for r in ranks[a, sd]] for sd in seeds}
                                     for a in ARMS}, f"{label} (true top-{k['top_k']})", lo, refs)
    summary = dict(
        preset=s.name, knobs=k, final={f"{a}-s{sd}": final[a, sd] for a, sd in final},
        picks={f"{a}-s{sd}": v for (a, sd), v in pick_acc.items()}, paired=cmp,
        truth_jackknife=jack)
    rel = s.out.relative_to(ROOT)
    summary["oracle"] = best
    (s.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")

    def span(m: str) -> str:
        v = [p[m] for p in loo if p[m] is not None]
        return f"{min(v):.2f}–{max(v):.2f}" if v else "n/a"

    lines = [f"Preset `{s.name}`, {len(seeds)} search seeds, generated "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Truth: {k['ranked']} archs, "
             f"mean of {len(k['truth_seeds'])} retraining seeds ({min(truth_mean.values()):.2f}–"
             f"{max(truth_mean.values()):.2f} %); seed noise SD {ceil['noise_sd']:.2f} points "
             f"against the archs' true spread SD {ceil['true_sd']:.2f} (truth-ceiling.json).", "",
             "Its ceiling, over all archs (τ-b), within the true top-"
             f"{k['top_k']} (local τ-b) and as the top-{k['top_k']} overlap (global): one seed "
             f"against another τ-b {ceil['tau_b_mean']:.2f} ({ceil['tau_b_range'][0]:.2f}–"
             f"{ceil['tau_b_range'][1]:.2f}); one seed against the mean of the others τ-b "
             f"{span('tau_b')}, local {span('local_tau_b')}, global {span('global')}; "
             + (f"modelled, a supernet ranking by the true values against this "
                f"{len(ceil['seeds'])}-seed truth: τ-b {best['tau_b']:.2f} (95 % over the "
                f"archs drawn: {ceil['model_ceiling_95'][0]:.2f}–{ceil['model_ceiling_95'][1]:.2f}"
                f"), local "
                f"{best['local_tau_b']:.2f}, global {best['global']:.2f}." if best else
                "modelled: none, the seed noise explains all of the archs' spread."), "",
             "| figure (final generation) | " + " | ".join(ARMS) + " |", "|---" * 5 + "|"]
    tau = {sd: {a: final[a, sd]["tau_b"] for a in ARMS} for sd in seeds}
    for name, d in [("τ-b, all archs", tau), ("global top-k", glob), ("local τ-b", local),
                    ("pick's retrained acc %", acc)]:
        lines.append(f"| {name} | " + " | ".join(
            f"{statistics.mean(v):.3f}" if (v := [d[sd][a] for sd in seeds if d[sd][a] is not None])
            else "n/a" for a in ARMS) + " |")
    lines += ["", "| difference (mean [95 % interval]) | value | command |", "|---|---|---|"]
    for name, file, _, _ in comparisons:
        for d in cmp[name]["differences"]:
            lines.append(f"| {name.removeprefix('transfer-')}: {d['setting']} − "
                         f"{cmp[name]['base']} | {fmt_diff(d)} | "
                         f"`shiftnas rank --paired {rel}/{file}.csv` |")
    if jack:
        lines += ["", "The intervals above hold the truth fixed. The same differences against each "
                  "truth that leaves one retraining seed out (`shiftnas rank --paired "
                  f"{rel}/truth-jackknife/<figure>-without-<seed>.csv`), the range of their "
                  "means, and how many of their intervals exclude 0. No standard error is drawn "
                  "from them: a jackknife SE is not valid for figures that jump when the true "
                  "top-k's membership changes, as local τ-b and the overlap do.", "",
                  "| difference | " + " | ".join(f"without seed {t}" for t in jack)
                  + " | range | excluding 0 |", "|---" * (len(jack) + 3) + "|"]
        for name in jack[next(iter(jack))]:
            for i, d in enumerate(cmp[name]["differences"]):
                v = [j[name]["differences"][i] for j in jack.values()]
                means = [x["mean"] for x in v]
                clear = sum(x["low"] > 0 or x["high"] < 0 for x in v)
                lines.append(f"| {name.removeprefix('transfer-')}: {d['setting']} − "
                             f"{cmp[name]['base']} | " + " | ".join(map(fmt_diff, v))
                             + f" | {min(means):+.3f} to {max(means):+.3f} | "
                             f"{clear} of {len(v)} |")
    images = k["supernet_steps"] * k["batch"]
    transfer = ((k["warmup_probe_steps"] + k["warmup_steps"]) * k["warmup_batch"]
                + k["pop"] * k["gens"] * k["immediate_steps"] * k["batch"])
    lines += ["", f"Transfer arm: {transfer:,} target images (warm-up and shifting) against the "
              f"target supernet's {images:,} ({images / transfer:.1f}x less); the source supernet "
              "is trained once and reused.",
              "", "![local τ-b per generation](trajectory.svg)",
              "", "![global top-k overlap per generation](trajectory-global.svg)", ""]
    (s.out / "report.md").write_text("\n".join(lines) + "\n")
    log(f"report: {s.out / 'report.md'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=list(PRESETS), required=True)
    ap.add_argument("--binary", type=Path, default=Path(
        os.environ.get("SHIFTNAS", ROOT / "target" / "release" / "shiftnas")))
    ap.add_argument("--until", choices=["train", "search", "truth", "picks", "report"],
                    default="report")
    ap.add_argument("--jobs", type=int, default=1,
                    help="retrains (truth, picks) run at once, the cores shared among them; "
                    "2 on 2 cores: 1.5x the throughput [default: %(default)s]")
    a = ap.parse_args()
    s = Study(a.preset, a.binary, a.jobs)
    k = s.k
    keys = [(arm, sd) for sd in k["search_seeds"] for arm in ARMS]
    # The supernets only serve searches: none is trained when every search is done.
    supernet = source = None
    if a.until == "train" or any(not (searched(s, *key) / "pick.json").exists() for key in keys):
        supernet = train(s, "supernet", k["target"], k["supernet_steps"])
        source = (train(s, "source", k["source"], k["source_steps"]) / "checkpoint"
                  / "supernet.safetensors")
    if a.until == "train":
        return
    ranked(s)
    searches = {key: search(s, *key, supernet, source) for key in keys}
    if a.until == "search":
        return
    truth_mean = truth(s)
    if a.until == "truth":
        return
    pick_acc = picks(s, searches)
    if a.until == "picks":
        return
    ranks = {key: rank_generations(s, done) for key, done in searches.items()}
    report(s, ranks, pick_acc, truth_mean)


if __name__ == "__main__":
    main()
