"""Where the network runs: the one place that turns a device name into a torch device."""

from __future__ import annotations

import torch

from ..errors import ScribbleUNetError


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device for ``name``; explicit names must be available here.

    ``"auto"`` picks CUDA, then Apple MPS, then the CPU; ``"cpu"``, ``"cuda"``, ``"cuda:N"`` and
    ``"mps"`` are checked against this machine and this torch build (a plain-words
    :class:`~scribble_unet.errors.ScribbleUNetError` otherwise). ``str()`` of the result is the
    name to pass around (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``).
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if name not in ("cpu", "cuda", "mps") and not name.startswith("cuda:"):
        raise ScribbleUNetError(f"device must be auto, cpu, cuda, cuda:N or mps, got {name!r}")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ScribbleUNetError(f"device {name!r} was asked for, but no CUDA GPU is available (this torch "
                                    "build sees no CUDA GPU); use device auto or cpu")
        index = name.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise ScribbleUNetError(f"device {name!r} does not exist ({torch.cuda.device_count()} CUDA GPU(s))")
    if name == "mps" and not _mps_available():
        raise ScribbleUNetError("device 'mps' was asked for, but Apple MPS is not available here; use device "
                                "auto or cpu")
    return torch.device(name)
