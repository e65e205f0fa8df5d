"""Times the agent's `bench` and the same loop written with onnxruntime's Python API.

Both sides: pin the process to --cores before creating the session (so ORT's intra-op threads
inherit the mask), intra_op_num_threads=--threads, inter-op 1, graph optimisation ALL,
session.intra_op.allow_spinning=1, the agent's seeded SplitMix64 input, --warmup untimed runs,
then timed runs until both --runs and --min-seconds are reached; P50 by numpy's linear percentile.
The Python side times `sess.run(None, {name: x})` with time.perf_counter_ns (that call also
converts the output to numpy, which is part of what a Python user pays). Repetitions alternate
agent / Python so drift hits both equally.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort

MASK = (1 << 64) - 1


def splitmix_input(n, seed):
    """The agent's `bench::random_input`: SplitMix64, top 24 bits → [-1, 1)."""
    out = np.empty(n, dtype=np.float32)
    state = seed
    for i in range(n):
        state = (state + 0x9E3779B97F4A7C15) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        z ^= z >> 31
        out[i] = np.float32((z >> 40) / float(1 << 24)) * np.float32(2.0) - np.float32(1.0)
    return out


def parse_cpus(s):
    cpus = set()
    for item in s.split(","):
        a, _, b = item.partition("-")
        cpus.update(range(int(a), int(b or a) + 1))
    return sorted(cpus)


def python_p50(model, args, x_cache):
    os.sched_setaffinity(0, parse_cpus(args.cores))
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "1")
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = tuple(inp.shape)
    if model not in x_cache:
        x_cache[model] = splitmix_input(int(np.prod(shape)), args.seed).reshape(shape)
    feed = {inp.name: x_cache[model]}
    for _ in range(args.warmup):
        sess.run(None, feed)
    samples = []
    start = time.perf_counter_ns()
    while len(samples) < args.runs or (time.perf_counter_ns() - start) / 1e9 < args.min_seconds:
        t = time.perf_counter_ns()
        sess.run(None, feed)
        samples.append((time.perf_counter_ns() - t) / 1e6)
    return float(np.percentile(samples, 50)), len(samples)


def agent_p50(model, args):
    out = subprocess.run(
        [args.agent, "bench", model, "--threads", str(args.threads), "--cores", args.cores,
         "--warmup", str(args.warmup), "--runs", str(args.runs), "--min-seconds", str(args.min_seconds),
         "--seed", str(args.seed), "--spin", "on", "--json"],
        check=True, capture_output=True, text=True, env={**os.environ})
    r = json.loads(out.stdout)
    assert r["backend"]["name"] == "ort", r["backend"]
    return r["p50_ms"], len(r["samples_ms"]), r["backend"]["version"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--agent", required=True)
    p.add_argument("--models", nargs="+", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cores", default="0")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--min-seconds", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    x_cache = {}
    print(f"onnxruntime {ort.__version__} (Python {sys.version.split()[0]}), threads {args.threads}, "
          f"cores {args.cores}, warmup {args.warmup}, runs >= {args.runs}, >= {args.min_seconds} s, {args.reps} reps")
    print(f"{'model':10} {'agent p50 ms (median; min-max)':34} {'python p50 ms (median; min-max)':34} {'ratio':>7}")
    for model in args.models:
        a, py = [], []
        for _ in range(args.reps):
            a.append(agent_p50(model, args)[0])
            py.append(python_p50(model, args, x_cache)[0])
        am, pm = float(np.median(a)), float(np.median(py))
        name = os.path.splitext(os.path.basename(model))[0]
        fmt = lambda v, m: f"{m:8.4f} ({min(v):.4f}-{max(v):.4f}, ±{(max(v) - min(v)) / 2 / m * 100:.1f}%)"
        print(f"{name:10} {fmt(a, am):34} {fmt(py, pm):34} {am / pm:7.3f}")


if __name__ == "__main__":
    main()
