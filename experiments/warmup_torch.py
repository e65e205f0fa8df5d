#!/usr/bin/env python3
"""Why `shiftnas train` warms up on one path: the same supernet in PyTorch (scripts/bench/supernet_torch.py),
trained on the embedded Fashion-MNIST subset with SPOS uniform single-path sampling, barely learns in the
first few hundred steps; with the path warm-up it does. Prints the mean training loss every 20 steps.

    .cache/bench-venv/bin/python experiments/warmup_torch.py --steps 400 --warmup 0     # plain SPOS
    .cache/bench-venv/bin/python experiments/warmup_torch.py --steps 400 --warmup 200   # warm-up
    .cache/bench-venv/bin/python experiments/warmup_torch.py --steps 100 --fixed 00000000000000000000

Warm-up (as host/src/train/loop.rs `warmup_arch`): before step W each block runs k3 (choice 0) except
with probability step/W · 1/4, when it runs Xception (3); at step W the k5/k7 choices inherit k3's weights
(centre of the larger kernels, `Supernet::inherit_kernels`); then sampling is uniform. PyTorch comes from
scripts/bench/train_step.sh's venv.
"""
import argparse, gzip, os, random, sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(root, "scripts", "bench"))
from supernet_torch import Supernet  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("--steps", type=int, default=400)
ap.add_argument("--warmup", type=int, default=0)
ap.add_argument("--fixed", help="train this one arch instead of sampling")
ap.add_argument("--lr", type=float, default=0.05)
ap.add_argument("--batch", type=int, default=64)
ap.add_argument("--seed", type=int, default=0)
a = ap.parse_args()
torch.set_num_threads(1)
data = os.path.join(root, "host", "data", "fashion-mnist")
X = np.frombuffer(gzip.open(os.path.join(data, "train-images-idx3-ubyte.gz")).read(), np.uint8, offset=16)
Y = np.frombuffer(gzip.open(os.path.join(data, "train-labels-idx1-ubyte.gz")).read(), np.uint8, offset=8)
X = torch.tensor((X.reshape(-1, 1, 28, 28) / 255.0 - 0.2871) / 0.3542, dtype=torch.float32)
Y = torch.tensor(Y.astype(np.int64))
torch.manual_seed(a.seed)
rng = random.Random(a.seed + 1)
net = Supernet("tiny")
net.train()
blocks = len(net.blocks)
opt = torch.optim.SGD(net.parameters(), lr=a.lr, momentum=0.9, weight_decay=4e-5)
loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
perm = torch.randperm(len(X))
per_epoch = len(X) // a.batch
total = 0.0
for step in range(a.steps):
    start = (step % per_epoch) * a.batch
    idx = perm[start:start + a.batch]
    if a.fixed:
        arch = [int(c) for c in a.fixed]
    else:
        if step < a.warmup:
            arch = [3 if rng.random() < step / a.warmup / 4 else 0 for _ in range(blocks)]
        else:
            arch = [rng.randrange(4) for _ in range(blocks)]
        if a.warmup and step == a.warmup:
            with torch.no_grad():  # kernel inheritance: k5/k7 := k3, zero-padded
                for block in net.blocks:
                    k3 = dict(block[0].named_parameters())
                    for c in (1, 2):
                        for name, p in block[c].named_parameters():
                            pad = (p.shape[-1] - k3[name].shape[-1]) // 2
                            p.copy_(F.pad(k3[name], (pad, pad, pad, pad)))
                            opt.state.pop(p, None)
    opt.zero_grad(set_to_none=True)  # blocks off the path get no gradient: SGD skips them
    loss = loss_fn(net(X[idx], arch), Y[idx])
    loss.backward()
    opt.step()
    total += loss.item()
    if (step + 1) % 20 == 0:
        print(f"step {step + 1} loss {total / 20:.4f}", flush=True)
        total = 0.0
