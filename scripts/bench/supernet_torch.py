#!/usr/bin/env python3
"""PyTorch reference for shiftnas's SPOS ShuffleNetV2 supernet: the same network (SPOS wiring),
one fixed path (arch), the same training step (label-smoothed CE, SGD momentum 0.9, wd 4e-5,
only the path's weights updated), timed per training step and as eval throughput. Prints JSON.

A benchmark reference only: PyTorch is installed into a throwaway venv by scripts/bench/train_step.sh
(or is the GPU machine's own), never a shiftnas dependency. Presets mirror
models/src/space/presets.rs; keep them in sync.

    python3 supernet_torch.py --space spos-cifar --batch 64 --threads 2 --device cpu
"""

import argparse
import json
import math
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

SPOS_ARCH = "21012020202300003233"


def preset(name):
    """(input_size, input_channels, stem (k, s, ch), stages [(repeats, ch)], last_ch, classes)."""
    imagenet = dict(input_size=224, input_channels=3, stem=(3, 2, 16),
                    stages=[(4, 64), (4, 160), (8, 320), (4, 640)], last=1024, classes=1000)
    if name == "spos-imagenet":
        return imagenet
    if name == "spos-cifar":
        return dict(imagenet, input_size=32, stem=(3, 1, 16), classes=10)
    if name == "tiny":
        return dict(input_size=28, input_channels=1, stem=(3, 1, 16),
                    stages=[(4, 32), (4, 64), (8, 128), (4, 256)], last=512, classes=10)
    raise SystemExit(f"supernet_torch.py: unknown space {name!r}; known: spos-imagenet, spos-cifar, tiny")


def scale(ch, mult):
    return ch if mult == 1.0 else max(1, round(ch * mult / 4.0)) * 4


def bn(c):
    return nn.BatchNorm2d(c, affine=False)


def dw(c, k, s):
    return nn.Conv2d(c, c, k, s, k // 2, groups=c, bias=False)


def pw(i, o):
    return nn.Conv2d(i, o, 1, 1, 0, bias=False)


class Choice(nn.Module):
    """One candidate of a block: ShuffleNet k (choice 0/1/2 = k3/k5/k7) or Xception (3)."""

    def __init__(self, choice, inp, oup, stride):
        super().__init__()
        branch_in = inp // 2 if stride == 1 else inp
        mid, out = oup // 2, oup - branch_in
        self.stride = stride
        if choice < 3:
            k = (3, 5, 7)[choice]
            self.main = nn.Sequential(pw(branch_in, mid), bn(mid), nn.ReLU(inplace=True),
                                      dw(mid, k, stride), bn(mid),
                                      pw(mid, out), bn(out), nn.ReLU(inplace=True))
        else:
            k = 3
            self.main = nn.Sequential(dw(branch_in, 3, stride), bn(branch_in),
                                      pw(branch_in, mid), bn(mid), nn.ReLU(inplace=True),
                                      dw(mid, 3, 1), bn(mid), pw(mid, mid), bn(mid), nn.ReLU(inplace=True),
                                      dw(mid, 3, 1), bn(mid), pw(mid, out), bn(out), nn.ReLU(inplace=True))
        if stride == 2:
            self.proj = nn.Sequential(dw(inp, k, 2), bn(inp), pw(inp, inp), bn(inp), nn.ReLU(inplace=True))

    def forward(self, x):
        if self.stride == 1:
            # SPOS channel split: even channels pass through, odd channels enter the main branch.
            return torch.cat((x[:, 0::2], self.main(x[:, 1::2])), 1)
        return torch.cat((self.proj(x), self.main(x)), 1)


class Supernet(nn.Module):
    """All four choices per block; forward runs one arch (list of choice digits)."""

    def __init__(self, space, width_mult=1.0, classes=None):
        super().__init__()
        p = preset(space)
        k, s, c = p["stem"]
        c = scale(c, width_mult)
        self.input_size, self.input_channels = p["input_size"], p["input_channels"]
        self.classes = classes or p["classes"]
        self.stem = nn.Sequential(nn.Conv2d(self.input_channels, c, k, s, k // 2, bias=False), bn(c),
                                  nn.ReLU(inplace=True))
        self.blocks = nn.ModuleList()
        inp = c
        for repeats, ch in p["stages"]:
            oup = scale(ch, width_mult)
            for r in range(repeats):
                stride = 2 if r == 0 else 1
                self.blocks.append(nn.ModuleList(Choice(ci, inp, oup, stride) for ci in range(4)))
                inp = oup
        self.last = nn.Sequential(pw(inp, p["last"]), bn(p["last"]), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(0.1)
        self.fc = nn.Linear(p["last"], self.classes, bias=False)
        self._init()

    def _init(self):
        # SPOS init: convs N(0, 1/(in/groups)) as the std; first conv and linear N(0, 0.01).
        for name, m in self.named_modules():
            if isinstance(m, nn.Conv2d):
                std = 0.01 if name.startswith("stem") else 1.0 / m.weight.shape[1]
                nn.init.normal_(m.weight, 0.0, std)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)

    def forward(self, x, arch):
        x = self.stem(x)
        for block, choice in zip(self.blocks, arch):
            x = block[choice](x)
        x = self.last(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(self.dropout(x))


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, steps, warmup, device):
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--space", default="spos-cifar")
    ap.add_argument("--arch", default=SPOS_ARCH, help="one digit per block, 0-2 = ShuffleNet k3/k5/k7, 3 = Xception")
    ap.add_argument("--batch", type=int, default=64, help="training batch")
    ap.add_argument("--eval-batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10, help="timed training steps")
    ap.add_argument("--eval-steps", type=int, default=5, help="timed eval batches")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0 = PyTorch's default)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    ap.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 in convs/matmuls (off: exact fp32 like shiftnas)")
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-train", action="store_true")
    ap.add_argument("--no-eval", action="store_true")
    ap.add_argument("--score-bn-images", type=int, default=2000,
                    help="candidate score: BN calibration images (exact average, as shiftnas --bn exact)")
    ap.add_argument("--score-images", type=int, default=2500, help="candidate score: proxy images (0 = skip)")
    a = ap.parse_args()

    if a.threads > 0:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("supernet_torch.py: --device cuda but torch.cuda.is_available() is False")
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = a.tf32
        torch.backends.cuda.matmul.allow_tf32 = a.tf32
    torch.manual_seed(a.seed)
    net = Supernet(a.space)
    arch = [int(ch) for ch in a.arch]
    if len(arch) != len(net.blocks) or any(c not in (0, 1, 2, 3) for c in arch):
        raise SystemExit(f"supernet_torch.py: arch {a.arch!r} needs {len(net.blocks)} digits 0-3 for {a.space}")
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format
    net = net.to(device, memory_format=fmt)
    size, cin = net.input_size, net.input_channels

    # Weight decay on conv/linear weights only (the supernet's BN has no parameters); parameters
    # off the path get no gradient (None), so SGD skips them: no momentum, no decay.
    opt = torch.optim.SGD(net.parameters(), lr=a.lr, momentum=0.9, weight_decay=4e-5)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    gen = torch.Generator().manual_seed(a.seed)
    x = torch.randn(a.batch, cin, size, size, generator=gen).to(device).contiguous(memory_format=fmt)
    y = torch.randint(0, net.classes, (a.batch,), generator=gen).to(device)

    out = dict(impl="pytorch", torch=torch.__version__, space=a.space, arch=a.arch, device=str(device),
               threads=torch.get_num_threads(), channels_last=a.channels_last, tf32=a.tf32,
               batch=a.batch, eval_batch=a.eval_batch)
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)

    if not a.no_train:
        net.train()
        losses = []

        def step():
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(x, arch), y)
            loss.backward()
            opt.step()
            losses.append(loss.detach())

        t = timed(step, a.steps, a.warmup, device)
        ms = [v * 1e3 for v in t]
        out.update(train_steps=a.steps, train_ms_per_step=statistics.median(ms),
                   train_ms_mean=statistics.mean(ms), train_ms_min=min(ms),
                   train_images_per_s=a.batch / (statistics.median(ms) / 1e3),
                   last_loss=float(losses[-1]))
        if not math.isfinite(out["last_loss"]):
            raise SystemExit(f"supernet_torch.py: loss is {out['last_loss']}")

    if not a.no_eval:
        net.eval()
        xe = torch.randn(a.eval_batch, cin, size, size, generator=gen).to(device).contiguous(memory_format=fmt)
        with torch.no_grad():
            t = timed(lambda: net(xe, arch), a.eval_steps, max(1, a.warmup // 2), device)
        med = statistics.median(t)
        out.update(eval_steps=a.eval_steps, eval_ms_per_batch=med * 1e3, eval_images_per_s=a.eval_batch / med)

    if a.score_images > 0:
        # A whole candidate score: reset BN statistics, average them exactly (momentum=None is
        # PyTorch's cumulative average) over the calibration images, then the proxy forward; both in
        # batches of --eval-batch, no gradients.
        def batches(n):
            return [torch.randn(min(a.eval_batch, n - i), cin, size, size, generator=gen).to(device)
                    .contiguous(memory_format=fmt) for i in range(0, n, a.eval_batch)]
        xb, xp = batches(a.score_bn_images), batches(a.score_images)
        bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
        t0 = time.perf_counter()
        with torch.no_grad():
            for m in bns:
                m.reset_running_stats()
                m.momentum = None
            net.train()
            for x in xb:
                net(x, arch)
            net.eval()
            for x in xp:
                net(x, arch)
        sync(device)
        out.update(score_bn_images=a.score_bn_images, score_images=a.score_images,
                   score_s=time.perf_counter() - t0)

    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
