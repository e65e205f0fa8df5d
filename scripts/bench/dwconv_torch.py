#!/usr/bin/env python3
"""Times forward + backward of depthwise convs in PyTorch (CPU, NCHW) for the shapes given on
stdin as TSV lines `channels size k stride` (as printed by the Rust bench), with a fixed thread
count. Prints `channels size k stride torch_ms` (median ms) as TSV.

Usage: python dwconv_torch.py [--threads 2] [--batch 64] < shapes.tsv
"""
import argparse
import sys
import time

import torch


def bench(c, size, k, stride, batch, budget_s=0.5):
    x = torch.randn(batch, c, size, size, requires_grad=True)
    w = torch.randn(c, 1, k, k, requires_grad=True)

    def run():
        t = time.perf_counter()
        y = torch.nn.functional.conv2d(x, w, stride=stride, padding=k // 2, groups=c)
        y.sum().backward()
        x.grad = None
        w.grad = None
        return (time.perf_counter() - t) * 1e3

    run()
    times, start = [], time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < budget_s and len(times) < 200):
        times.append(run())
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"# torch {torch.__version__}, {a.threads} threads, batch {a.batch}")
    print("channels\tsize\tk\tstride\ttorch_ms")
    for line in sys.stdin:
        f = line.split()
        if not f or not f[0].isdigit():
            continue
        c, size, k, stride = map(int, f[:4])
        print(f"{c}\t{size}\t{k}\t{stride}\t{bench(c, size, k, stride, a.batch):.3f}", flush=True)


if __name__ == "__main__":
    main()
