#!/usr/bin/env python3
"""The order-preserving study (docs/results/order-preserving.md), end to end, resumable.

Does Supernet Shifting (Zhang et al., CVPR 2024) make a SPOS supernet rank architectures more like
retraining from scratch does, and does a supernet trained on another data set transfer?

Stages (each writes under experiments/runs/<preset>/ and is skipped when its output exists; a stage
killed half-way is continued with the command's own `--resume`):

  data        CIFAR-10 with a class-balanced test subset of `test_images` (symlinks + one file)
  supernet    one spos-cifar supernet trained on CIFAR-10 (`shiftnas train`)
  source      a spos-cifar supernet trained on Fashion-MNIST (grayscale -> RGB, 28 -> 32 px)
  search      per seed: `--shift off` and `--shift accumulate` from the same checkpoint and seed,
              and the transfer arm (`--transfer-from` the Fashion-MNIST supernet)
  retrain     every distinct arch once (top archs of each search, each search's pick, a shared set
              of random archs): retrained.csv is the cache arch -> test accuracy
  score       the supernet's proxy error of every ranked arch before shifting (the trained
              supernet = what `--shift off` scores with) and after (the accumulate search's final
              weights), with `shiftnas eval`; cached per supernet in scores-*.csv
  rank        `shiftnas rank` per seed and supernet over the same arch set
  report      docs/results/order-preserving.md (only the block between the GENERATED markers is
              rewritten, so prose written around it survives a rerun)

Usage: experiments/order_preserving.sh [--preset smoke|cpu-small|cpu-medium|gpu] [--until STAGE] [--rebuild]
       [--space SPACE] [--sampling METHOD] [--shift off accumulate] [--transfer | --no-transfer]
(the .sh builds and freezes the binary, then runs this file).

Cells: the study above is the default cell (space spos-cifar, `--sampling uniform`, both shift modes,
the transfer arm on). `--space`, `--sampling` (any `shiftnas train --sampling`) and `--shift` pick
another (space x training method x shift mode) cell; it runs in experiments/runs/<preset>/
<space>-<sampling>/ with its own supernet, searches (one run dir per shift mode and seed), caches and
report, so cells resume independently. Cells of one space and method share their supernet: the shift
mode only changes the search. The transfer arm runs in the default cell only, unless `--transfer`. Every budget knob is in PRESETS.
CIFAR-10 is read from $CIFAR10_DIR (default /work/shared/datasets/cifar10, binary version).
Stop a background run with `kill -TERM <python pid>`: the running command checkpoints first.
"""

from __future__ import annotations

import argparse
import csv
import fcntl
import json
import math
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CIFAR_DIR = Path(os.environ.get("CIFAR10_DIR", "/work/shared/datasets/cifar10"))
DEFAULT_SPACE, DEFAULT_SAMPLING, SHIFT_MODES = "spos-cifar", "uniform", ["off", "accumulate"]
# The presets' `max_flops` is spos-cifar's cap; other spaces use these (about the median FLOPs of
# their uniform archs: mbv2-cifar runs from 72.8 M, all k3e3, to 171.8 M, all k7e6).
SPACE_MAX_FLOPS = {"mbv2-cifar": 120e6}

# ---------------------------------------------------------------------------------------------
# Budget knobs: everything that sizes the study, in one place.
# ---------------------------------------------------------------------------------------------
PRESETS: dict[str, dict] = {
    # Minutes: checks that every stage runs and the report is written. Numbers mean nothing.
    "smoke": dict(
        compute="cpu",
        test_images=500,  # class-balanced CIFAR-10 test subset scored by retrain (10000 = all)
        proxy_size=200,  # held-out training images every supernet score is measured on
        supernet_steps=12, supernet_batch=16, supernet_lr=None, warmup_steps=None,
        source_steps=8, source_batch=16,  # Fashion-MNIST supernet for the transfer arm
        algorithm="evolution", pop=4, gens=2, max_flops=27e6,
        bn_images=64,  # BN calibration images per supernet score (search and eval alike)
        shift_samples=32, shift_batch=16, shift_lr=1e-4,  # --shift accumulate
        # --transfer-from: each candidate's path is fine-tuned (shift immediate) before its score
        transfer_shift_steps=1, transfer_shift_batch=16, transfer_shift_lr=0.01,
        seeds=[1, 2, 3], transfer_seeds=[1, 2, 3],
        top_archs=2,  # top archs of each search (latest supernet score) that get retrained
        random_archs=3,  # random archs under the FLOPs cap, shared by every seed
        retrain_steps=6, retrain_batch=16, retrain_lr=None, retrain_bn_images=64, retrain_seed=0,
        top_k=2,  # size of the top sets in the global/local figures
        checkpoint_every=100,
    ),
    # What fits ~100 min of a busy 2-core CPU (see the report for the measured stage times).
    "cpu-small": dict(
        compute="cpu",
        test_images=1000,
        proxy_size=250,
        # lr 0.05 (SPOS's scaling gives 0.0156 at batch 32): measured on a 60-step retrain, 0.04
        # and 0.1 both reach loss 2.34 (0.1 overshoots to 3.5 first); short runs need the larger
        # rate to move at all.
        supernet_steps=300, supernet_batch=32, supernet_lr=0.05, warmup_steps=None,
        source_steps=150, source_batch=32,
        algorithm="evolution", pop=6, gens=3, max_flops=27e6,
        bn_images=128,
        shift_samples=64, shift_batch=32, shift_lr=1e-4,
        transfer_shift_steps=2, transfer_shift_batch=32, transfer_shift_lr=0.01,
        seeds=[1, 2, 3], transfer_seeds=[1, 2, 3],
        top_archs=2,
        random_archs=4,
        retrain_steps=120, retrain_batch=32, retrain_lr=0.05, retrain_bn_images=128, retrain_seed=0,
        top_k=3,
        checkpoint_every=50,
    ),
    # The study at a budget where supernet and retraining rise well above chance on 2 CPU cores
    # (~85 min idle, 133 min measured on a shared machine; see the report for the measured stage
    # times). Shifting uses lr 1.25e-3 (12.5x the paper's 1e-4), so that five generation steps move
    # the weights measurably. The report's run used 0.01 when the generation's step took the *mean*
    # of the 8 candidates' gradients; the step now sums them, and 0.01 / 8 is the same step.
    # Retraining at lr 0.1, batch 64 diverged (loss 6 at step 20); 0.05 at batch 32 learns.
    "cpu-medium": dict(
        compute="cpu",
        test_images=2000,
        proxy_size=1000,
        supernet_steps=2500, supernet_batch=64, supernet_lr=0.1, warmup_steps=None,
        source_steps=600, source_batch=64,
        algorithm="evolution", pop=8, gens=5, max_flops=27e6,
        bn_images=128,
        shift_samples=128, shift_batch=64, shift_lr=1.25e-3,
        transfer_shift_steps=2, transfer_shift_batch=64, transfer_shift_lr=0.01,
        seeds=[1, 2, 3], transfer_seeds=[1, 2, 3],
        top_archs=2,
        random_archs=5,
        retrain_steps=400, retrain_batch=32, retrain_lr=0.05, retrain_bn_images=256, retrain_seed=0,
        top_k=3,
        checkpoint_every=250,
    ),
    # The same study scaled up for one GPU (`--compute cuda:0`, a `--features cuda` build).
    # Estimate from docs/benchmarks.md's H200 figures (spos-cifar, NVRTC depthwise: 2,540 train and
    # 9,380 eval img/s): supernet ~17 min, source ~9 min, 3 x 3 searches ~50 min, ~45 archs
    # retrained at ~4.5 min each ~3.5 h: ~5 h in all.
    "gpu": dict(
        compute="cuda:0",
        test_images=10000,
        proxy_size=2500,
        supernet_steps=10000, supernet_batch=256, supernet_lr=None, warmup_steps=None,
        source_steps=5000, source_batch=256,
        algorithm="evolution", pop=50, gens=10, max_flops=27e6,
        bn_images=1000,
        shift_samples=640, shift_batch=150, shift_lr=1e-4,
        transfer_shift_steps=10, transfer_shift_batch=150, transfer_shift_lr=0.01,
        seeds=[1, 2, 3], transfer_seeds=[1, 2, 3],
        top_archs=5,
        random_archs=20,
        retrain_steps=2000, retrain_batch=256, retrain_lr=None, retrain_bn_images=2000,
        retrain_seed=0,
        top_k=5,
        checkpoint_every=500,
    ),
}
SUPERNET_SEED = 0  # seed of the supernets' init and of the proxy split every score uses
RANDOM_ARCH_SEED = 20240601

STAGES = ["data", "supernet", "source", "search", "retrain", "score", "rank", "report"]


# ---------------------------------------------------------------------------------------------
# Plumbing: logging, timed commands, stage markers.
# ---------------------------------------------------------------------------------------------
class Study:
    """One preset's run dir, binary and bookkeeping."""

    def __init__(self, preset: str, binary: Path, report: Path | None, space: str = DEFAULT_SPACE,
                 sampling: str = DEFAULT_SAMPLING, shifts: list[str] | None = None,
                 transfer: bool | None = None):
        self.name = preset
        self.k = PRESETS[preset]
        self.bin = binary
        self.space, self.sampling = space, sampling
        self.shifts = [m for m in SHIFT_MODES if m in (shifts or SHIFT_MODES)]
        default = (space, sampling) == (DEFAULT_SPACE, DEFAULT_SAMPLING)
        self.transfer = default if transfer is None else transfer
        self.max_flops = self.k["max_flops"] if space == DEFAULT_SPACE else SPACE_MAX_FLOPS[space]
        # The preset dir holds the data and the default cell; other cells get a dir of their own.
        self.root = ROOT / "experiments" / "runs" / preset
        self.dir = self.root if default else self.root / f"{space}-{sampling}"
        self.cell = f"{space} × {sampling} × {'/'.join(self.shifts)}"
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "state").mkdir(exist_ok=True)
        (self.dir / "logs").mkdir(exist_ok=True)
        self.report_path = report or (
            ROOT / "docs/results/order-preserving.md" if default and preset != "smoke"
            else self.dir / "order-preserving.md")
        self.child: subprocess.Popen | None = None

    # --- logging ---
    def log(self, msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)

    # --- markers: state/<stage>.json holds wall/CPU seconds summed over attempts ---
    def marker(self, stage: str) -> Path:
        return self.dir / "state" / f"{stage}.json"

    def done(self, stage: str) -> dict | None:
        p = self.marker(stage)
        if p.is_file():
            d = json.loads(p.read_text())
            if d.get("done"):
                return d
        return None

    def add_time(self, stage: str, wall: float, cpu: float, done: bool, **extra) -> None:
        p = self.marker(stage)
        d = json.loads(p.read_text()) if p.is_file() else {"wall_s": 0.0, "cpu_s": 0.0, "attempts": 0}
        d["wall_s"] += wall
        d["cpu_s"] += cpu
        d["attempts"] += 1
        d["done"] = done
        d["load_end"] = os.getloadavg()[0]
        d.update(extra)
        tmp = p.with_suffix(".tmp")
        tmp.write_text(json.dumps(d, indent=1))
        tmp.replace(p)

    # --- running the binary ---
    def run(self, stage: str, args: list[str], json_out: bool = False, ok=(0,)) -> tuple[int, str]:
        """Runs the binary with `args`, logs to logs/<stage>.log, records its wall and CPU time
        (user + system of the child: wall alone says little on a shared machine)."""
        cmd = [str(self.bin), "--no-progress", "--compute", self.k["compute"]]
        if json_out:
            cmd.append("--json")
        cmd += args
        logf = self.dir / "logs" / f"{stage}.log"
        with open(logf, "a") as lf:
            lf.write(f"\n$ {' '.join(cmd)}\n")
            lf.flush()
            t0 = time.time()
            self.child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=lf, text=True, cwd=ROOT)
            out = self.child.stdout.read()
            _, status, ru = os.wait4(self.child.pid, 0)
            rc = os.waitstatus_to_exitcode(status)
            self.child.returncode = rc
            self.child = None
            wall = time.time() - t0
            lf.write(out if not json_out else out[-4000:])
            lf.write(f"\n# exit {rc}, {wall:.1f} s wall, {ru.ru_utime + ru.ru_stime:.1f} s CPU\n")
        cpu = ru.ru_utime + ru.ru_stime
        if rc == 130 or rc < 0:
            self.add_time(stage, wall, cpu, False)
            raise KeyboardInterrupt(f"{stage} interrupted")
        if rc not in ok:
            self.add_time(stage, wall, cpu, False)
            raise SystemExit(f"{stage}: `{' '.join(cmd)}` exited {rc}; see {logf}")
        self._last = (wall, cpu)
        return rc, out

    def timed(self, stage: str, args: list[str], **kw) -> str:
        """Runs one stage's command and marks the stage done with its time."""
        _, out = self.run(stage, args, **kw)
        wall, cpu = self._last
        self.add_time(stage, wall, cpu, True)
        self.log(f"{stage}: done in {wall:.0f} s wall, {cpu:.0f} s CPU")
        return out

    def interrupt_child(self, *_):
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGINT)  # the commands checkpoint and exit 130


def has_checkpoint(run: Path) -> bool:
    """A complete checkpoint (state.json is written last) in `checkpoint/` or, mid-swap, in
    `checkpoint.old/`. `search` creates an empty `checkpoint/` before its first generation."""
    return any((run / d / "state.json").is_file() for d in ["checkpoint", "checkpoint.old"])


def fresh_or_resume(run: Path, new_args: list[str]) -> list[str]:
    """`--resume run` when a killed attempt left a checkpoint; else a new run (a dir without any
    checkpoint is removed: nothing in it can be continued)."""
    if run.is_dir() and has_checkpoint(run):
        return ["--resume", str(run)]
    if run.exists():
        shutil.rmtree(run)
    return new_args


# ---------------------------------------------------------------------------------------------
# Stages.
# ---------------------------------------------------------------------------------------------
def stage_data(s: Study) -> str:
    """CIFAR-10 spec: the original dir, or a copy whose test set is a class-balanced subset."""
    n = s.k["test_images"]
    if n >= 10000:
        return f"cifar10:{CIFAR_DIR}"
    out = s.root / f"data/cifar10-test{n}"
    if s.done("data"):
        return f"cifar10:{out}"
    out.mkdir(parents=True, exist_ok=True)
    for f in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["batches.meta.txt"]:
        link = out / f
        if not link.exists():
            link.symlink_to(CIFAR_DIR / f)
    rec = 3073
    data = (CIFAR_DIR / "test_batch.bin").read_bytes()
    per_class, taken, keep = n // 10, [0] * 10, []
    for i in range(len(data) // rec):
        label = data[i * rec]
        if taken[label] < per_class:
            taken[label] += 1
            keep.append(data[i * rec:(i + 1) * rec])
    tmp = out / "test_batch.bin.tmp"
    tmp.write_bytes(b"".join(keep))
    tmp.replace(out / "test_batch.bin")
    s.add_time("data", 0.0, 0.0, True)
    s.log(f"data: {len(keep)} test images ({per_class} per class) in {out}")
    return f"cifar10:{out}"


def stage_train(s: Study, stage: str, run: Path, data_args: list[str], steps: int, batch: int) -> None:
    if s.done(stage):
        return
    k = s.k
    new = ["--space", s.space, "--sampling", s.sampling, *data_args, "--steps", str(steps),
           "--batch", str(batch),
           "--proxy-size", str(k["proxy_size"]), "--seed", str(SUPERNET_SEED),
           "--checkpoint-every", str(k["checkpoint_every"]), "--out", str(run)]
    if k["supernet_lr"] is not None:
        new += ["--lr", str(k["supernet_lr"])]
    if k["warmup_steps"] is not None:
        new += ["--warmup-steps", str(k["warmup_steps"])]
    s.log(f"{stage}: training {run.name} ({steps} steps of {batch})")
    s.timed(stage, ["train", *fresh_or_resume(run, new)])


def search_args(s: Study, data: str, out: Path, seed: int) -> list[str]:
    k = s.k
    return ["--data", data, "--space", s.space, "--algorithm", k["algorithm"],
            "--pop", str(k["pop"]), "--gens", str(k["gens"]), "--seed", str(seed),
            "--bn-images", str(k["bn_images"]), "--proxy-size", str(k["proxy_size"]),
            "--split-seed", str(SUPERNET_SEED), "--max-flops", f"{s.max_flops:.0f}",
            "--out", str(out)]


def stage_search(s: Study, data: str) -> None:
    k = s.k
    sup, src = s.dir / "supernet", s.dir / "source"
    for seed in k["seeds"]:
        for mode in s.shifts:
            stage = f"search-{mode}-s{seed}"
            if s.done(stage):
                continue
            run = s.dir / stage
            new = ["--supernet", str(sup), "--shift", mode, "--shift-lr", str(k["shift_lr"]),
                   "--shift-samples",
                   str(k["shift_samples"]), "--shift-batch", str(k["shift_batch"]),
                   *search_args(s, data, run, seed)]
            s.log(f"{stage}: searching")
            s.timed(stage, ["search", *fresh_or_resume(run, new)])
    for seed in k["transfer_seeds"] if s.transfer else []:
        stage = f"search-transfer-s{seed}"
        if s.done(stage):
            continue
        run = s.dir / stage
        new = ["--transfer-from", str(src / "checkpoint" / "supernet.safetensors"),
               "--shift-steps", str(k["transfer_shift_steps"]),
               "--shift-batch", str(k["transfer_shift_batch"]),
               "--shift-lr", str(k["transfer_shift_lr"]), *search_args(s, data, run, seed)]
        s.log(f"{stage}: searching")
        s.timed(stage, ["search", *fresh_or_resume(run, new)])


def latest_scores(run: Path) -> dict[str, dict]:
    """arch -> its latest archive record (what `shiftnas rank --run` uses)."""
    out: dict[str, dict] = {}
    for line in (run / "archive.jsonl").read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            out[r["arch"]] = r
    return out


def top_archs(run: Path, n: int) -> list[str]:
    recs = sorted(latest_scores(run).values(), key=lambda r: (r["error"], r["flops"], r["arch"]))
    return [r["arch"] for r in recs[:n]]


def pick(run: Path) -> dict:
    """The search's answer: the lowest-error arch of pareto.json (re-scored under final weights)."""
    front = json.loads((run / "pareto.json").read_text())
    return min(front, key=lambda r: (r["error"], r["flops"], r["arch"]))


def random_archs(s: Study) -> list[str]:
    """`random_archs` uniform archs under the FLOPs cap, the same for every seed (cached)."""
    path = s.dir / "random_archs.txt"
    if path.is_file():
        return path.read_text().split()
    rng, out = random.Random(RANDOM_ARCH_SEED), []
    spaces = json.loads(subprocess.check_output([str(s.bin), "--json", "space", "show"]))
    sp = next(x for x in spaces if x["name"] == s.space)
    blocks = sum(st["repeats"] for st in sp["stages"])
    digits = "0123456789"[:len(sp["choices"])]
    while len(out) < s.k["random_archs"]:
        a = "".join(rng.choice(digits) for _ in range(blocks))
        if a in out:
            continue
        f = json.loads(subprocess.check_output(
            [str(s.bin), "--json", "space", "flops", "--space", s.space, "--arch", a]))["total"]["flops"]
        if f <= s.max_flops:
            out.append(a)
    path.write_text("\n".join(out) + "\n")
    return out


def rank_sets(s: Study) -> dict[int, list[str]]:
    """Per seed: the archs ranked (random, then the top archs and picks of both searches)."""
    rand = random_archs(s)
    sets = {}
    for seed in s.k["seeds"]:
        archs = list(rand)
        for mode in s.shifts:
            run = s.dir / f"search-{mode}-s{seed}"
            for a in [pick(run)["arch"], *top_archs(run, s.k["top_archs"])]:
                if a not in archs:
                    archs.append(a)
        sets[seed] = archs
    return sets


def retrain_queue(s: Study) -> list[str]:
    """Every distinct arch to retrain, the picks first (they matter to every table)."""
    k, q = s.k, []
    for seed in k["seeds"]:
        for mode in s.shifts:
            q.append(pick(s.dir / f"search-{mode}-s{seed}")["arch"])
    for seed in k["transfer_seeds"] if s.transfer else []:
        q.append(pick(s.dir / f"search-transfer-s{seed}")["arch"])
    for archs in rank_sets(s).values():
        q += archs
    seen, out = set(), []
    for a in q:
        if a not in seen:
            seen.add(a)
            out.append(a)
    return out


def read_csv(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    with open(path) as f:
        return {r["arch"]: r for r in csv.DictReader(f)}


def append_csv(path: Path, fields: list[str], row: dict) -> None:
    new = not path.is_file()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        if new:
            w.writeheader()
        w.writerow(row)
        f.flush()
        os.fsync(f.fileno())


RETRAIN_FIELDS = ["arch", "accuracy", "proxy_accuracy", "flops", "params", "steps", "wall_s", "cpu_s"]


def stage_retrain(s: Study) -> None:
    k = s.k
    cache = s.dir / "retrained.csv"
    have = read_csv(cache)
    queue = [a for a in retrain_queue(s) if a not in have]
    s.log(f"retrain: {len(have)} archs cached, {len(queue)} to go")
    for i, arch in enumerate(queue):
        run = s.dir / "retrain" / arch
        new = ["--supernet-run", str(s.dir / "supernet"), "--arch", arch,
               "--steps", str(k["retrain_steps"]), "--batch", str(k["retrain_batch"]),
               "--seed", str(k["retrain_seed"]), "--checkpoint-every", str(k["checkpoint_every"]),
               "--out", str(run)]
        if k["retrain_lr"] is not None:
            new += ["--lr", str(k["retrain_lr"])]
        # --bn-images is not stored in the run's config.toml: pass it on --resume too.
        args = ["retrain", *fresh_or_resume(run, new), "--bn-images", str(k["retrain_bn_images"])]
        _, out = s.run("retrain", args, json_out=True)
        wall, cpu = s._last
        done = json.loads(out.strip().splitlines()[-1])
        append_csv(cache, RETRAIN_FIELDS, dict(
            arch=arch, accuracy=f"{100 * done['test']['top1']:.2f}",
            proxy_accuracy=f"{100 * done['proxy']['top1']:.2f}" if done.get("proxy") else "",
            flops=done["flops"], params=done["params"], steps=done["steps"],
            wall_s=f"{wall:.1f}", cpu_s=f"{cpu:.1f}"))
        s.add_time("retrain", wall, cpu, False)
        s.log(f"retrain {i + 1}/{len(queue)}: {arch} test {100 * done['test']['top1']:.2f} % "
              f"({wall:.0f} s wall, {cpu:.0f} s CPU)")
    s.add_time("retrain", 0.0, 0.0, True)


def shifted_supernet(s: Study, seed: int) -> Path:
    """A run dir `shiftnas eval` reads: the supernet run's config.toml with the accumulate
    search's final (shifted) weights as its checkpoint."""
    d = s.dir / f"shifted-s{seed}"
    (d / "checkpoint").mkdir(parents=True, exist_ok=True)
    shutil.copy(s.dir / "supernet" / "config.toml", d / "config.toml")
    src = s.dir / f"search-accumulate-s{seed}" / "checkpoint" / "supernet.safetensors"
    link = d / "checkpoint" / "supernet.safetensors"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(src.resolve())
    return d


SCORE_FIELDS = ["arch", "error", "supernet_step"]


def score(s: Study, supernet: Path, cache: Path, archs: list[str]) -> None:
    have = read_csv(cache)
    for arch in archs:
        if arch in have:
            continue
        _, out = s.run("score", ["eval", "--supernet", str(supernet), "--arch", arch,
                                 "--bn-images", str(s.k["bn_images"])], json_out=True)
        wall, cpu = s._last
        s.add_time("score", wall, cpu, False)
        r = json.loads(out.strip().splitlines()[-1])
        append_csv(cache, SCORE_FIELDS, dict(arch=arch, error=f"{1 - r['top1']:.6f}",
                                              supernet_step=r["supernet_step"]))


def stage_score(s: Study) -> None:
    sets = rank_sets(s)
    everything = sorted({a for v in sets.values() for a in v})
    s.log(f"score: {len(everything)} archs under the trained supernet")
    score(s, s.dir / "supernet", s.dir / "scores-before.csv", everything)
    for seed, archs in sets.items() if "accumulate" in s.shifts else []:
        s.log(f"score: {len(archs)} archs under seed {seed}'s shifted supernet")
        score(s, shifted_supernet(s, seed), s.dir / f"scores-after-s{seed}.csv", archs)
    s.add_time("score", 0.0, 0.0, True)


def whens(s: Study) -> list[str]:
    """Which supernets score the ranked archs: the trained one, and the shifted one when the cell
    searches with `--shift accumulate`."""
    return ["before", "after"] if "accumulate" in s.shifts else ["before"]


def stage_rank(s: Study) -> None:
    sets, truth = rank_sets(s), read_csv(s.dir / "retrained.csv")
    rdir = s.dir / "rank"
    rdir.mkdir(exist_ok=True)
    for seed, archs in sets.items():
        t = rdir / f"truth-s{seed}.csv"
        with open(t, "w") as f:
            f.write("arch,accuracy\n" + "".join(f"{a},{truth[a]['accuracy']}\n" for a in archs))
        for when, cache in [("before", s.dir / "scores-before.csv"),
                            ("after", s.dir / f"scores-after-s{seed}.csv")][:len(whens(s))]:
            sc = read_csv(cache)
            p = rdir / f"scores-{when}-s{seed}.csv"
            with open(p, "w") as f:
                f.write("arch,error\n" + "".join(f"{a},{sc[a]['error']}\n" for a in archs))
            _, out = s.run("rank", ["rank", "--archs", str(p), "--truth", str(t), "--space", s.space,
                                    "--top-k", str(min(s.k["top_k"], len(archs)))], json_out=True)
            (rdir / f"rank-{when}-s{seed}.json").write_text(out)
    s.add_time("rank", 0.0, 0.0, True)


# ---------------------------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------------------------
def mean_sd(xs: list[float], fmt: str = "{:.2f}") -> str:
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not xs:
        return "n/a"
    if len(xs) == 1:
        return fmt.format(xs[0]) + " (n=1)"
    return (f"{fmt.format(statistics.mean(xs))} ± {fmt.format(statistics.stdev(xs))} "
            f"[{fmt.format(min(xs))}, {fmt.format(max(xs))}]")


def fnum(x, fmt="{:.3f}"):
    return "n/a" if x is None else fmt.format(x)


def cell_flags(s: Study) -> str:
    """The command-line flags that select `s`'s cell (empty for the default cell)."""
    if (s.space, s.sampling) == (DEFAULT_SPACE, DEFAULT_SAMPLING) and s.shifts == SHIFT_MODES:
        return ""
    return f" --space {s.space} --sampling {s.sampling} --shift {' '.join(s.shifts)}"


def write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    tmp.replace(path)


def table(head: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def load_json(p: Path):
    return json.loads(p.read_text()) if p.is_file() else None


def stage_report(s: Study) -> None:
    """Writes the tables from whatever has been collected so far (a partial run gives partial
    tables with `pending` marks, so `--report-only` can be used while the study runs)."""
    k, truth = s.k, read_csv(s.dir / "retrained.csv")
    seeds = k["seeds"]
    t = {p.stem: json.loads(p.read_text()) for p in (s.dir / "state").glob("*.json")}

    def wall(stage):
        return t.get(stage, {}).get("wall_s") if t.get(stage, {}).get("done") else None

    def acc_of(arch):
        return float(truth[arch]["accuracy"]) if arch in truth else None

    def pick_of(mode, sd):
        run = s.dir / f"search-{mode}-s{sd}"
        return pick(run) if (run / "pareto.json").is_file() else None

    complete = all(t.get(st, {}).get("done") for st in ["rank"])
    parts = [f"Preset `{s.name}`, cell {s.cell}, generated "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
             f"by `experiments/order_preserving.sh --preset {s.name}{cell_flags(s)}`"
             + ("" if complete else " **from a run still in progress: `pending` marks what "
                "was not measured yet**") +
             f". Mean ± sample SD [min, max] over search seeds {seeds}."]

    rk = {(w, sd): load_json(s.dir / "rank" / f"rank-{w}-s{sd}.json")
          for w in whens(s) for sd in seeds}
    parts.append("### Order preservation before and after shifting\n\n"
                 "Same arch set per seed (the shared random archs + the top archs and picks of "
                 "both searches), scored by the trained supernet (*before*: what `--shift off` "
                 "searches with) and by the accumulate search's final weights (*after*), ranked "
                 "against retrained test accuracy with `shiftnas rank` (global: share of the "
                 "supernet's top-k in the true top-k; local: Kendall τ-b within the true top-k).")
    rows = []
    for w in whens(s):
        got = [rk[w, sd] for sd in seeds if rk[w, sd]]
        if not got:
            rows.append([w] + ["pending"] * 7)
            continue
        rows.append([w, mean_sd([r["n"] for r in got], "{:.0f}"), got[0]["k"],
                     mean_sd([r["global"] for r in got], "{:.3f}"),
                     mean_sd([r["global_chance"] for r in got], "{:.3f}"),
                     mean_sd([r["local_tau_b"] for r in got], "{:.3f}"),
                     mean_sd([r["tau_b"] for r in got], "{:.3f}"),
                     mean_sd([r["spearman_rho"] for r in got], "{:.3f}")])
    parts.append(table(["supernet", "N", "k", "global", "chance", "local τ-b", "τ-b (all)",
                        "Spearman ρ (all)"], rows))
    rows = []
    for sd in seeds:
        b, a = rk["before", sd], rk.get(("after", sd))
        if not (b and (a or len(whens(s)) == 1)):
            rows.append([sd] + ["pending"] * 7)
            continue
        a = a or {}
        rows.append([sd, b["n"], fnum(b["global"]), fnum(a.get("global")),
                     fnum(b["local_tau_b"]), fnum(a.get("local_tau_b")), fnum(b["tau_b"]),
                     fnum(a.get("tau_b"))])
    parts.append("Per seed:\n\n" + table(["seed", "N", "global before", "global after",
                                          "local before", "local after", "τ-b before",
                                          "τ-b after"], rows))

    parts.append("### Each method's pick\n\nThe lowest supernet error on the search's final front "
                 "(re-scored under the final weights), retrained from scratch with the same recipe "
                 f"(supernet accuracy on the {k['proxy_size']}-image proxy split, retrained "
                 f"accuracy on {k['test_images']} class-balanced test images).")
    rows, per_seed, summary = [], [], {}
    arms = [("no shifting (`--shift off`)", "off", seeds),
            ("shifting (`--shift accumulate`)", "accumulate", seeds),
            ("transfer (Fashion-MNIST → CIFAR-10)", "transfer", k["transfer_seeds"])]
    for label, mode, sds in [a for a in arms if a[1] in s.shifts or (a[1] == "transfer"
                                                                      and s.transfer)]:
        picks = [(sd, pick_of(mode, sd)) for sd in sds]
        picks = [(sd, p) for sd, p in picks if p]
        if not picks:
            rows.append([label, "pending", "pending", "pending"])
            continue
        accs = [acc_of(p["arch"]) for _, p in picks]
        rows.append([label, mean_sd([100 * (1 - p["error"]) for _, p in picks]),
                     mean_sd(accs) if any(a is not None for a in accs) else "pending",
                     mean_sd([p["flops"] / 1e6 for _, p in picks])])
        summary[mode] = [dict(seed=sd, arch=p["arch"], supernet_error=p["error"],
                              flops=p["flops"], retrained_accuracy=a) for (sd, p), a in zip(picks, accs)]
        for (sd, p), a in zip(picks, accs):
            per_seed.append([mode, sd, f"`{p['arch']}`",
                             f"{100 * (1 - p['error']):.2f}",
                             "pending" if a is None else f"{a:.2f}", f"{p['flops'] / 1e6:.2f}"])
    parts.append(table(["method", "supernet proxy acc %", "retrained test acc %", "MFLOPs"], rows))
    parts.append("Per seed:\n\n" + table(["method", "seed", "pick", "supernet proxy acc %",
                                          "retrained test acc %", "MFLOPs"], per_seed))
    rfile = s.dir / "random_archs.txt"
    if rfile.is_file():
        ra = [acc_of(a) for a in rfile.read_text().split()]
        parts.append(f"Reference: the random archs under the FLOPs cap ({sum(a is not None for a in ra)}"
                     f" of {len(ra)} retrained) reach {mean_sd(ra)} % test accuracy.")

    transfer_parts = []
    transfer_parts.append("### Transfer vs training from scratch\n\nFrom scratch: train the CIFAR-10 "
                 "supernet, then search with `--shift accumulate`. Transfer: search CIFAR-10 with "
                 "`--transfer-from` the Fashion-MNIST supernet (every weight copied, the classifier "
                 "too as both have 10 classes; each candidate's path fine-tuned by `--shift "
                 f"immediate`, {k['transfer_shift_steps']} steps of {k['transfer_shift_batch']} "
                 f"images at lr {k['transfer_shift_lr']}, before its score). Wall seconds on this "
                 "machine, which was shared (CPU seconds in the stage table).")

    def arm(mode, sds, train_stage):
        walls = [wall(f"search-{mode}-s{sd}") for sd in sds]
        tw = wall(train_stage)
        accs = [acc_of(p["arch"]) for p in (pick_of(mode, sd) for sd in sds) if p]
        total = [w + (tw if mode == "accumulate" else 0) for w in walls
                 if w is not None and tw is not None]
        return [("pending" if tw is None else f"{tw:.0f}"),
                mean_sd(walls, "{:.0f}") if any(w is not None for w in walls) else "pending",
                mean_sd(total, "{:.0f}") if total else "pending",
                mean_sd(accs) if any(a is not None for a in accs) else "pending"]

    transfer_parts.append(table(["arm", "supernet training s", "search s", "time spent on CIFAR-10 s",
                        "pick's retrained test acc %"],
                       [["from scratch (CIFAR-10 supernet)", *arm("accumulate", seeds, "supernet")],
                        ["transfer (Fashion-MNIST supernet, reusable)",
                         *arm("transfer", k["transfer_seeds"], "source")]]))
    if s.transfer:
        parts += transfer_parts

    parts.append("### Setup and stage times\n\n" + table(
        ["knob", "value"], [[f"`{n}`", f"`{s.max_flops if n == 'max_flops' else v}`"]
                            for n, v in k.items()]))
    rows = [[st, f"{d.get('wall_s', 0):.0f}", f"{d.get('cpu_s', 0):.0f}", d.get("attempts", 0),
             "yes" if d.get("done") else "no", f"{d.get('load_end', 0):.1f}"]
            for st, d in sorted(t.items())]
    parts.append(table(["stage", "wall s", "CPU s", "commands run", "done", "load avg at end"],
                       rows))
    rt = [float(r["wall_s"]) for r in truth.values()]
    parts.append(f"{len(truth)} distinct archs retrained ({k['retrain_steps']} steps of "
                 f"{k['retrain_batch']}, {mean_sd(rt, '{:.0f}')} s wall each); machine: "
                 f"{os.cpu_count()} cores, space `{s.space}`, `--sampling {s.sampling}`, "
                 f"supernet seed {SUPERNET_SEED}, "
                 f"retrain seed {k['retrain_seed']}. Raw files: "
                 f"`{s.dir.relative_to(ROOT)}/` "
                 "(`retrained.csv`, `scores-*.csv`, `rank/*.json`, `state/*.json`, `logs/`).")
    generated = "\n\n".join(parts) + "\n"
    # The cell's numbers for tables across cells (small: commit it with the CSVs).
    write_json(s.dir / "summary.json", dict(
        preset=s.name, space=s.space, sampling=s.sampling, shifts=s.shifts, seeds=seeds,
        complete=complete, picks=summary,
        rank={f"{w}-s{sd}": rk[w, sd] for w in whens(s) for sd in seeds if rk[w, sd]},
        stages={st: dict(wall_s=d.get("wall_s"), cpu_s=d.get("cpu_s"), done=d.get("done"))
                for st, d in sorted(t.items())}))

    # One block per preset: a rerun rewrites its own preset's block and leaves the rest alone.
    begin = f"<!-- BEGIN GENERATED {s.name} (experiments/order_preserving.py) -->"
    end = f"<!-- END GENERATED {s.name} -->"
    block = begin + "\n\n" + generated + "\n" + end
    path = s.report_path
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text() if path.is_file() else HEADER + "\n" + DRAFT
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    if complete:
        s.add_time("report", 0.0, 0.0, True)
    s.log(f"report: {path}")


HEADER = """# The order-preserving study

Does Supernet Shifting (Zhang et al., CVPR 2024, "Boosting Order-Preserving and Transferability
for Neural Architecture Search") make a SPOS supernet rank architectures more like retraining does,
and is a supernet trained on other data a usable start for a search on CIFAR-10?

## How it was run

```sh
experiments/order_preserving.sh --preset cpu-small     # 63 min measured on 2 busy cores; rerun to resume
experiments/order_preserving.sh --preset gpu           # the same study scaled up, --compute cuda:0
experiments/order_preserving.sh --preset smoke         # minutes: checks every stage
python3 experiments/order_preserving.py --preset cpu-small --report-only   # tables so far
```

Every budget knob (steps, batch, proxy size, population, generations, archs retrained, retrain
steps, seeds, compute) is in `PRESETS` at the top of `experiments/order_preserving.py`; the values
used are listed under *Setup* below. The stages, each skipped when its output exists and continued
with the command's `--resume` when it was interrupted (outputs in `experiments/runs/<preset>/`):

1. **supernet**: one `spos-cifar` supernet trained on CIFAR-10 (`shiftnas train`, uniform SPOS
   sampling after the default path warm-up, a held-out proxy split of `proxy_size` images).
2. **source**: a `spos-cifar` supernet trained on the embedded Fashion-MNIST (grayscale → RGB,
   28 → 32 px: `--convert-channels --resize`).
3. **search**, per seed: SPOS's evolution under a FLOPs cap with `--shift off` and with `--shift
   accumulate` from the same checkpoint and seed; and the transfer arm, `--transfer-from` the
   Fashion-MNIST supernet on CIFAR-10 (which shifts with `immediate`: each candidate's path is
   fine-tuned before its score).
4. **retrain** (`shiftnas retrain`, one recipe for all): each search's pick (lowest supernet error
   on its final front), the top `top_archs` archs of each search by supernet error, and
   `random_archs` uniform archs under the same FLOPs cap shared by all seeds. Each distinct arch
   is retrained once (`retrained.csv` caches arch → accuracy) and scored on a class-balanced
   subset of `test_images` CIFAR-10 test images.
5. **score** (`shiftnas eval`): every ranked arch's proxy error under the trained supernet
   (*before* shifting: what `--shift off` searches with) and under each accumulate search's final
   weights (*after*), so both are ranked over the same archs at one set of weights each.
6. **rank** (`shiftnas rank --archs … --truth …`): global and local order preservation
   ([../rank.md](../rank.md)) per seed; the tables give mean ± sample SD [min, max] over seeds.

Each preset's run rewrites its own block between GENERATED markers (appended at the end the
first time); the rest of this page is not rewritten.
"""

DRAFT = """## What the numbers show

<!-- DRAFT: a first reading by the study's helper; the lead rewrites this section. -->

_Draft to be written from the tables above._
"""


def cells_table(preset: str) -> str:
    """One markdown row per (space, method, shift mode) cell of `preset` with a summary.json: the
    picks (supernet proxy accuracy, retrained test accuracy, MFLOPs) and how the supernet that
    mode searches with ranks the cell's archs (*before* shifting for `off`, *after* for
    `accumulate`)."""
    root = ROOT / "experiments" / "runs" / preset
    methods = ["uniform", "flops-binned", "fair", "greedy", "attentive-best", "attentive-worst"]
    cells = [json.loads(f.read_text()) for f in [root / "summary.json", *root.glob("*/summary.json")]
             if f.is_file()]
    cells.sort(key=lambda c: (c["space"], methods.index(c["sampling"])
                              if c["sampling"] in methods else len(methods), c["sampling"]))
    rows = []
    for c in cells:
        for mode in c["shifts"]:
            picks = c["picks"].get(mode, [])
            when = "after" if mode == "accumulate" else "before"
            rk = [r for key, r in c["rank"].items() if key.startswith(when + "-")]
            accs = [p["retrained_accuracy"] for p in picks if p["retrained_accuracy"] is not None]
            rows.append([c["space"], c["sampling"], mode, len(picks),
                         mean_sd([100 * (1 - p["supernet_error"]) for p in picks]),
                         mean_sd(accs), mean_sd([p["flops"] / 1e6 for p in picks]),
                         mean_sd([r["tau_b"] for r in rk], "{:.3f}"),
                         mean_sd([r["global"] for r in rk], "{:.3f}"),
                         "yes" if c["complete"] else "no"])
    return table(["space", "training", "shift", "seeds", "pick's supernet proxy acc %",
                  "pick's retrained test acc %", "pick's MFLOPs", "τ-b (all archs)",
                  "global top-k", "complete"], rows)


# ---------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=list(PRESETS), default="cpu-small")
    ap.add_argument("--until", choices=STAGES, default="report", help="stop after this stage")
    ap.add_argument("--binary", type=Path, default=Path(os.environ.get("SHIFTNAS", "shiftnas")))
    ap.add_argument("--space", default=DEFAULT_SPACE, choices=[DEFAULT_SPACE, *SPACE_MAX_FLOPS],
                    help="search space of the cell [default: %(default)s]")
    ap.add_argument("--sampling", default=DEFAULT_SAMPLING,
                    help="supernet training method of the cell (`shiftnas train --sampling`: "
                    "uniform = SPOS, fair = FairNAS, ...) [default: %(default)s]")
    ap.add_argument("--shift", nargs="+", choices=SHIFT_MODES, default=SHIFT_MODES,
                    help="search shift modes of the cell [default: both]")
    ap.add_argument("--transfer", action=argparse.BooleanOptionalAction, default=None,
                    help="run the Fashion-MNIST transfer arm [default: in the default cell only]")
    ap.add_argument("--report", type=Path, help="markdown report to (re)write "
                    "[default: docs/results/order-preserving.md; smoke and other cells: the "
                    "cell's run dir]")
    ap.add_argument("--knobs-changed", action="store_true",
                    help="accept knobs that differ from the run dir's knobs.json")
    ap.add_argument("--report-only", action="store_true",
                    help="only (re)write the report from what has been collected; runs nothing, "
                    "safe while the study runs")
    ap.add_argument("--cells-table", action="store_true",
                    help="print a markdown table of every cell of --preset run so far (from the "
                    "cells' summary.json) and exit")
    a = ap.parse_args()
    if a.cells_table:
        print(cells_table(a.preset))
        return
    s = Study(a.preset, a.binary, a.report, a.space, a.sampling, a.shift, a.transfer)
    if a.report_only:
        stage_report(s)
        return
    lock = open(s.dir / ".lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit(f"another order_preserving run holds {s.dir / '.lock'}; wait for it or stop it")
    def on_signal(signum, _frame):
        # SIGTERM: ask the running command to checkpoint and exit (it then exits 130 and so do
        # we). SIGINT from a terminal already reached the command (same process group): a second
        # one would make it exit without its checkpoint, so only stop here when none is running.
        if s.child is None:
            raise KeyboardInterrupt(signal.Signals(signum).name)
        if signum == signal.SIGTERM:
            s.interrupt_child()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    knobs = s.dir / "knobs.json"
    if knobs.is_file():
        old = json.loads(knobs.read_text())
        diff = sorted(n for n in set(old) | set(s.k) if old.get(n) != s.k.get(n))
        if diff and not a.knobs_changed:
            sys.exit(f"the {a.preset} knobs {diff} differ from those {s.dir} was run with "
                     f"({knobs}); results would mix: remove the stages they affect (run dirs and "
                     "state/*.json) and pass --knobs-changed, or use another preset")
    knobs.write_text(json.dumps(s.k, indent=1))
    s.log(f"preset {a.preset}, cell {s.cell}: {s.dir} (binary {s.bin}, "
          f"load {os.getloadavg()[0]:.1f})")
    upto = STAGES.index(a.until)
    try:
        data = stage_data(s)
        if upto >= 1:
            stage_train(s, "supernet", s.dir / "supernet", ["--data", data],
                        s.k["supernet_steps"], s.k["supernet_batch"])
        if upto >= 2 and s.transfer:
            stage_train(s, "source", s.dir / "source",
                        ["--data", "builtin:fashion-mnist", "--convert-channels", "--resize"],
                        s.k["source_steps"], s.k["source_batch"])
        for i, f in enumerate([stage_search, stage_retrain, stage_score, stage_rank, stage_report], 3):
            if upto >= i:
                f(s, data) if f is stage_search else f(s)
    except KeyboardInterrupt as e:
        s.log(f"stopped ({e or 'interrupted'}); run the same command again to continue")
        sys.exit(130)
    s.log("finished")


if __name__ == "__main__":
    main()
