"""Where a new model's weights start: the built-in generalist, or random.

The generalist (``scribble_unet/data/generalist.safetensors``) is the default U-Net (depth 2, width 16,
BatchNorm, one input channel, one class) trained by ``benchmarks/pretrain/generalist.py`` on dense
hand-made masks of public microscopy images with permissive licences: the DSB 2018 stage-1 training set
(CC0), Usiigaci phase contrast (MIT) and AxonDeepSeg SEM (MIT); docs/quality.md lists them and what the
start is worth. Training then fine-tunes it on the user's strokes; the pixel forest and the prior
shift are fitted as for a model started from scratch.

A model whose architecture differs from the generalist's (another depth, width or normalisation, or
the filter bank) starts from random weights, and the run says so. An RGB (or any multi-channel) image
gets the generalist's first convolution spread evenly over its channels: each channel is normalised
on its own, so their mean is the grey image the generalist was trained on. With several object
classes the output layer starts new (the generalist has one logit).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

from ..model.checkpoint import Checkpoint, load_checkpoint
from ..model.unet import ModelConfig, UNet

GENERALIST_FILE = "generalist.safetensors"


def generalist_path() -> Path:
    """The generalist's file inside the installed package."""
    return Path(str(resources.files("scribble_unet.data") / GENERALIST_FILE))


@lru_cache(maxsize=1)
def load_generalist() -> Checkpoint:
    """The built-in generalist (read once per process)."""
    return load_checkpoint(generalist_path())


def generalist_misfit(config: ModelConfig) -> str | None:
    """Why a model of ``config`` cannot start from the generalist, or None when it can."""
    g = load_generalist().config
    differs = [f"{name} {getattr(config, name)} (generalist: {getattr(g, name)})"
               for name in ("depth", "width", "norm", "filter_bank") if getattr(config, name) != getattr(g, name)]
    return None if not differs else "the architecture differs: " + ", ".join(differs)


def start_from_generalist(model: UNet) -> str:
    """Copy the generalist's weights into ``model`` where they fit; returns how the model started."""
    reason = generalist_misfit(model.config)
    if reason is not None:
        return f"scratch ({reason})"
    own = model.state_dict()
    new_head = model.config.out_channels != load_generalist().config.out_channels
    state = {}
    for key, value in load_generalist().state_dict.items():
        if key.startswith("forest.") or (new_head and key.startswith("head.")):
            continue
        target = own[key]
        if value.ndim == 4 and value.shape[1] == 1 and target.shape[1] != 1:  # first convolution, C channels
            value = value.repeat(1, target.shape[1], 1, 1) / target.shape[1]
        state[key] = value
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith(("forest.", "head.")) for k in missing), (missing, unexpected)
    return "generalist (new output layer)" if new_head else "generalist"
