"""The training history of a project: loss curve, IoU points, steps and seconds over all runs.

Qt-free and plain data, so that ``project.json`` can hold it (:meth:`TrainingHistory.to_json`) and a
reopened project shows the same plot. Steps count across runs: a run that continues a model goes
on from the steps that trained it (:attr:`TrainingHistory.steps`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

MAX_POINTS = 2000
"""Loss points kept; beyond this every other point is dropped (the curve keeps its shape)."""
EMA_WEIGHT = 0.9
"""Weight of the past in the smoothed loss (about the last 10 steps count)."""


def smoothed(points: list[tuple[int, float]], weight: float = EMA_WEIGHT) -> list[tuple[int, float]]:
    """Exponential moving average of ``(step, value)`` points, bias-corrected at the start.

    Examples
    --------
    >>> [round(v, 3) for _, v in smoothed([(1, 1.0), (2, 0.0), (3, 0.0)], 0.5)]
    [1.0, 0.333, 0.143]
    """
    out: list[tuple[int, float]] = []
    avg, norm = 0.0, 0.0
    for step, value in points:
        avg = weight * avg + (1 - weight) * value
        norm = weight * norm + (1 - weight)
        out.append((step, avg / norm))
    return out


def _pairs(value: Any) -> list[tuple[int, float]]:
    out = []
    for item in value if isinstance(value, list) else []:
        if (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], int)
                and isinstance(item[1], (int, float)) and math.isfinite(item[1])):
            out.append((int(item[0]), float(item[1])))
    return out


@dataclass
class TrainingHistory:
    """Raw loss per step (thinned to :data:`MAX_POINTS`), IoU on held-out strokes, runs, totals."""

    loss: list[tuple[int, float]] = field(default_factory=list)
    iou: list[tuple[int, float]] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    runs: list[dict[str, Any]] = field(default_factory=list)

    def start_run(self, started: str, init: str | None) -> int:
        """A run begins (``init``: the model it continues, None from scratch); returns its first step - 1."""
        if init is None:
            self.loss.clear()
            self.iou.clear()
            self.steps = 0
        self.runs.append({"started": started, "init": init, "steps": 0, "seconds": 0.0, "model": None})
        return self.steps

    def add_loss(self, step: int, value: float) -> None:
        if math.isfinite(value):
            self.loss.append((step, float(value)))
            if len(self.loss) > MAX_POINTS:
                self.loss = self.loss[::2]

    def add_iou(self, step: int, value: float) -> None:
        self.iou.append((step, float(value)))

    def end_step(self, step: int, run_steps: int, run_seconds: float, model: str | None = None) -> None:
        """Totals after ``step`` (counted over all runs); the current run did ``run_steps`` in ``run_seconds``."""
        if not self.runs:
            self.runs.append({"started": None, "init": None, "steps": 0, "seconds": 0.0, "model": None})
        run = self.runs[-1]
        self.seconds += run_seconds - run["seconds"]
        run.update(steps=run_steps, seconds=round(run_seconds, 2))
        if model is not None:
            run["model"] = model
        self.steps = step

    def to_json(self) -> dict[str, Any]:
        return {"loss": [[s, round(v, 6)] for s, v in self.loss], "iou": [[s, round(v, 4)] for s, v in self.iou],
                "steps": self.steps, "seconds": round(self.seconds, 2), "runs": self.runs[-50:]}

    @classmethod
    def from_json(cls, data: Any) -> TrainingHistory:
        """The history stored in ``project.json``; whatever is malformed is left out."""
        if not isinstance(data, dict):
            return cls()
        steps = data.get("steps")
        seconds = data.get("seconds")
        runs = [r for r in data.get("runs") or [] if isinstance(r, dict)] if isinstance(data.get("runs"), list) else []
        return cls(_pairs(data.get("loss")), _pairs(data.get("iou")),
                   steps if isinstance(steps, int) and steps >= 0 else 0,
                   float(seconds) if isinstance(seconds, (int, float)) and math.isfinite(seconds) else 0.0, runs)
