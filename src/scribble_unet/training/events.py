"""What :meth:`~scribble_unet.training.trainer.Trainer.run` yields: typed, frozen event records."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..model.checkpoint import Checkpoint

FinishReason = Literal["steps", "time", "stopped"]


@dataclass(frozen=True)
class StepEvent:
    """One optimisation step done: ``loss`` of this step's batch, ``elapsed`` training seconds."""

    step: int
    loss: float
    elapsed: float


@dataclass(frozen=True)
class ValidationEvent:
    """Scores on the held-out strokes, per class name (``"background"`` included).

    ``n_pixels`` is the number of held-out pixels scored. A class with no held-out pixel that is never
    predicted on them has no entry.
    """

    step: int
    iou: dict[str, float]
    dice: dict[str, float]
    n_pixels: int = 0


@dataclass(frozen=True)
class CheckpointEvent:
    """The model was written to ``path`` (an intermediate checkpoint, ``training["finished"]`` False)."""

    step: int
    path: Path
    checkpoint: Checkpoint


@dataclass(frozen=True)
class FinishedEvent:
    """The run ended: ``reason`` is ``"steps"``, ``"time"`` or ``"stopped"``.

    ``checkpoint`` holds the final weights; ``path`` is where they were written (None without ``out``).
    """

    step: int
    reason: FinishReason
    checkpoint: Checkpoint
    path: Path | None = None


TrainEvent = StepEvent | ValidationEvent | CheckpointEvent | FinishedEvent
