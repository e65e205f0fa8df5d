"""`torch.nn` of the shim: a `Module` base class the toolkit can subclass at import time but that
cannot be instantiated (only the GDQ quantiser instantiates one)."""

from . import _WHY


class Module:
    def __init__(self, *args, **kwargs):
        raise RuntimeError(f"torch.nn.Module: {_WHY}")


def __getattr__(name):
    raise AttributeError(f"torch.nn.{name}: {_WHY}")
