"""Train to the end in one call (a convenience for scripts)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ..model.checkpoint import Checkpoint
from ..model.unet import ModelConfig
from .events import FinishedEvent, TrainEvent
from .train_config import TrainConfig
from .trainer import Trainer


@dataclass
class TrainResult:
    """What :func:`train` returns: the final checkpoint and every event seen."""

    checkpoint: Checkpoint
    events: list[TrainEvent] = field(default_factory=list)


def train(
    image: Any,
    scribbles: Any,
    model_config: ModelConfig,
    config: TrainConfig,
    init: Checkpoint | None = None,
    out: str | os.PathLike[str] | None = None,
) -> TrainResult:
    """Run a :class:`Trainer` to the end and return the final checkpoint (a convenience for scripts)."""
    trainer = Trainer(image, scribbles, model_config, config, init=init, out=out)
    events: list[TrainEvent] = []
    for ev in trainer.run():
        events.append(ev)
        if isinstance(ev, FinishedEvent):
            return TrainResult(ev.checkpoint, events)
    raise RuntimeError("training ended without a FinishedEvent")  # pragma: no cover
