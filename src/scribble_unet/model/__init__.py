"""The network and what travels with it: U-Net, normalisation, checkpoint files.

The U-Net's public names are re-exported here lazily (they import torch), so
``from scribble_unet.model import ModelConfig`` keeps working without making
:mod:`scribble_unet.model.normalize` pull in torch.
"""

from __future__ import annotations

from typing import Any

_UNET_NAMES = ("ModelConfig", "UNet", "build_model", "receptive_field", "required_halo")

__all__ = list(_UNET_NAMES)


def __getattr__(name: str) -> Any:
    if name in _UNET_NAMES:
        from . import unet

        return getattr(unet, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
