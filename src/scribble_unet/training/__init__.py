"""Training from sparse scribbles, without Qt: label index, tile sampler, losses, trainer, simulator.

The public names below are imported lazily, so ``import scribble_unet.training`` does not import torch
until a torch-based name (the losses, the trainer) is used.

================================  ==========================================================
:class:`LabelIndex`               per-chunk coordinates of labelled pixels (``labels``)
:func:`split_strokes`             hold out whole strokes for validation (``labels``)
:class:`TileSampler`              tiles centred on labelled pixels, ``fg_share`` on objects
:class:`Augment`                  flips, rotations, intensity jitter, elastic deformation
:class:`Trainer`                  the event generator (``trainer``)
:class:`TrainConfig`              training options
:func:`simulate_scribbles`        scribbles from a dense mask (``simulate``)
================================  ==========================================================
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "LabelIndex": "labels",
    "StrokeSplit": "labels",
    "split_strokes": "labels",
    "stroke_components": "labels",
    "Augment": "sampler",
    "TileSampler": "sampler",
    "Tile": "sampler",
    "check_tile": "sampler",
    "field_of_view": "sampler",
    "LossConfig": "losses",
    "ScribbleLoss": "losses",
    "masked_bce_loss": "losses",
    "masked_ce_loss": "losses",
    "soft_dice_loss": "losses",
    "focal_loss": "losses",
    "pos_weight_from_counts": "losses",
    "class_weights_from_counts": "losses",
    "unet_weight_map": "losses",
    "TrainConfig": "train_config",
    "Trainer": "trainer",
    "TrainResult": "run",
    "train": "run",
    "StepEvent": "events",
    "ValidationEvent": "events",
    "CheckpointEvent": "events",
    "FinishedEvent": "events",
    "TrainEvent": "events",
    "config_for_init": "prepare",
    "resolve_device": "trainer",  # defined in scribble_unet.inference.device
    "simulate_scribbles": "simulate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
