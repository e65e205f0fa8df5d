"""Compares the emulated depthwise CUDA kernels (dw_kernels_harness.cpp) with PyTorch conv2d(groups=C) forward and gradients."""
import ctypes, torch, torch.nn.functional as F
import sys
lib = ctypes.CDLL(sys.argv[1])
P = ctypes.POINTER(ctypes.c_float)
def ptr(t): return ctypes.cast(t.data_ptr(), P)
torch.manual_seed(0)
worst = 0
for (B,C,H,W,K,S) in [(2,3,8,8,3,1),(2,3,7,9,5,1),(1,4,6,5,7,1),(2,3,8,8,3,2),(2,2,7,7,5,2),(1,3,9,6,7,2),(2,2,1,1,3,2)]:
    x = torch.randn(B,C,H,W, requires_grad=True); w = torch.randn(C,1,K,K, requires_grad=True)
    y = F.conv2d(x, w, stride=S, padding=K//2, groups=C)
    g = torch.randn_like(y); (y*g).sum().backward()
    OH, OW = y.shape[2], y.shape[3]
    yo = torch.zeros_like(y); lib.run(0, ptr(x.detach()), ptr(w.detach()), ptr(yo), B,C,H,W,K,S,OH,OW, 2, 5)
    gxo = torch.zeros_like(x); lib.run(1, ptr(g.contiguous()), ptr(w.detach()), ptr(gxo), B,C,H,W,K,S,OH,OW, 3, 7)
    gwo = torch.zeros_like(w); lib.run(2, ptr(x.detach()), ptr(g.contiguous()), ptr(gwo), B,C,H,W,K,S,OH,OW, C*K*K, 1)
    for name, a, r in (("fwd", yo, y.detach()), ("gx", gxo, x.grad), ("gw", gwo, w.grad)):
        e = ((a-r).abs().max() / r.abs().max().clamp_min(1e-6)).item(); worst = max(worst, e)
        assert e < 1e-5, (name, B,C,H,W,K,S, e)
print("kernels match torch, worst rel", worst)
