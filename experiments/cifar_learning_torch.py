#!/usr/bin/env python3
"""Independent reference for the order-preserving study's CPU budget: how far does one spos-cifar
path get on CIFAR-10 in PyTorch with the recipe `shiftnas retrain` uses (SGD momentum 0.9, lr
decayed linearly to 0, label smoothing 0.1, weight decay 4e-5, padded crop + flip, the training
split's per-channel normalisation)? Prints the mean training loss every 20 steps and the test
top-1 on the first N records of test_batch.bin (BN in eval mode with its running statistics).

    /work/main/.cache/bench-venv/bin/python experiments/cifar_learning_torch.py \\
        --arch 01230123012301230123 --steps 120 --batch 32 --lr 0.05

The network is scripts/bench/supernet_torch.py's (PyTorch's BN, affine). Compare its loss curve with
`experiments/runs/<preset>/retrain/<arch>/log.jsonl`.
"""
import argparse, os, sys, time

import numpy as np
import torch
import torch.nn as nn

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(root, "scripts", "bench"))
from supernet_torch import Supernet  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("--arch", default="01230123012301230123")
ap.add_argument("--steps", type=int, default=120)
ap.add_argument("--batch", type=int, default=32)
ap.add_argument("--lr", type=float, default=0.05)
ap.add_argument("--test", type=int, default=1000)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--cifar", default=os.environ.get("CIFAR10_DIR", "/work/shared/datasets/cifar10"))
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)


def load(names):
    raw = b"".join(open(os.path.join(a.cifar, n), "rb").read() for n in names)
    r = np.frombuffer(raw, np.uint8).reshape(-1, 3073)
    return r[:, 1:].reshape(-1, 3, 32, 32), r[:, 0].astype(np.int64)


X, Y = load([f"data_batch_{i}.bin" for i in range(1, 6)])
Xt, Yt = load(["test_batch.bin"])
Xt, Yt = Xt[:a.test], Yt[:a.test]
mean = (X / 255.0).mean(axis=(0, 2, 3), keepdims=True)
std = (X / 255.0).std(axis=(0, 2, 3), keepdims=True)
norm = lambda x: torch.tensor(((x / 255.0) - mean) / std, dtype=torch.float32)  # noqa: E731

net = Supernet("spos-cifar")
arch = [int(c) for c in a.arch]
opt = torch.optim.SGD(net.parameters(), lr=a.lr, momentum=0.9, weight_decay=4e-5)
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / a.steps)
loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
rng = np.random.default_rng(a.seed)
perm = rng.permutation(len(X))
net.train()
total, t0 = 0.0, time.time()
for step in range(a.steps):
    idx = perm[(step * a.batch) % len(X):][:a.batch]
    xb = np.zeros((len(idx), 3, 40, 40), np.uint8)
    xb[:, :, 4:36, 4:36] = X[idx]
    out = np.empty((len(idx), 3, 32, 32), np.uint8)
    for j in range(len(idx)):
        dy, dx = rng.integers(0, 9, 2)
        img = xb[j, :, dy:dy + 32, dx:dx + 32]
        out[j] = img[:, :, ::-1] if rng.random() < 0.5 else img
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(net(norm(out), arch), torch.tensor(Y[idx]))
    loss.backward()
    opt.step()
    sched.step()
    total += loss.item()
    if (step + 1) % 20 == 0:
        print(f"step {step + 1} loss {total / 20:.4f} ({time.time() - t0:.0f} s)", flush=True)
        total = 0.0
net.eval()
with torch.no_grad():
    correct = sum((net(norm(Xt[i:i + 250]), arch).argmax(1) == torch.tensor(Yt[i:i + 250])).sum().item()
                  for i in range(0, len(Xt), 250))
print(f"test top-1 {100 * correct / len(Xt):.2f} % on {len(Xt)} images after {a.steps} steps of {a.batch}")
