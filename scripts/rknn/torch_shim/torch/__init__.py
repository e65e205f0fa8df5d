"""NOT PyTorch: shiftnas's stand-in so that rknn-toolkit2 runs without the real torch.

rknn-toolkit2 2.5.0 imports torch when `rknn.api` is imported (`torch.no_grad` as a decorator,
`torch.nn.Module` as a base class), and its graph optimiser calls a few tensor functions while it
rewrites a channel-shuffle `Reshape → Split → Reshape` into a gather (`torch.arange`, `.view`,
`torch.split`, `torch.cat` on small index arrays). Those few are provided here on numpy. The GDQ
quantiser (`quantized_algorithm='gdq'`) and `RKNN.load_pytorch` need the real torch and fail
with an error that says so, as does any other torch name. PyPI's torch 2.4.0 (the newest the toolkit
accepts) is the CUDA build, about 2.8 GB with its nvidia wheels, which is why scripts/rknn-env
installs this shim, into the private RKNN venv only. docs/npu.md says how to use a real torch.
"""

import numpy as _np

SHIFTNAS_TORCH_SHIM = True
__version__ = "0.0.0+shiftnas.shim"

_WHY = (
    "this is shiftnas's torch shim, not PyTorch (scripts/rknn/torch_shim); rknn-toolkit2 needs "
    "the real torch here (its GDQ quantiser and load_pytorch always do): set "
    "SHIFTNAS_RKNN_PYTHON to a Python 3.11 with torch<=2.4.0 and rknn-toolkit2 (docs/npu.md)"
)


class Tensor(_np.ndarray):
    """A numpy array with the torch tensor methods the toolkit calls on index arrays."""

    def view(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], type):  # numpy's dtype view
            return _np.ndarray.view(self, shape[0])
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return _np.reshape(self, shape).view(Tensor)

    def permute(self, *dims):
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        return _np.transpose(self, dims).view(Tensor)

    def contiguous(self):
        return self

    def numpy(self):
        return _np.asarray(self)


def arange(*args, **kwargs):
    kwargs.pop("dtype", None)
    return _np.arange(*args, **kwargs).view(Tensor)


def split(tensor, split_size_or_sections, dim=0):
    """torch.split: chunks of one size (an int) or of the given sizes (a list)."""
    n = tensor.shape[dim]
    if isinstance(split_size_or_sections, int):
        s = split_size_or_sections
        sizes = [s] * (n // s) + ([n % s] if n % s else [])
    else:
        sizes = list(split_size_or_sections)
    cuts = _np.cumsum(sizes)[:-1]
    return tuple(p.view(Tensor) for p in _np.split(_np.asarray(tensor), cuts, axis=dim))


def cat(tensors, dim=0):
    return _np.concatenate([_np.asarray(t) for t in tensors], axis=dim).view(Tensor)


class no_grad:
    """Works as `with torch.no_grad():` and as `@torch.no_grad()`; does nothing."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __call__(self, fn):
        return fn


def __getattr__(name):
    # Only reached for names this shim does not define.
    raise AttributeError(f"torch.{name}: {_WHY}")


from . import nn  # noqa: E402  (nn uses _WHY)
