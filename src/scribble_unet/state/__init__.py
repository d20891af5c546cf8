"""The viewer's work as plain, evented data: what is running, how far it got, what the camera sees.

Qt-free (no napari, no Qt): the napari layer's controller writes these records and its widgets
listen to their ``events``; tests and scripts read them without a display. Viewport geometry
(:mod:`.viewport`) is pure functions of numbers.
"""

from __future__ import annotations

from .history import TrainingHistory
from .status import (
    ExportState,
    ExportStatus,
    PredictionStatus,
    SessionStatus,
    TrainingState,
    TrainingStatus,
    WorkflowState,
)

__all__ = [
    "ExportState",
    "ExportStatus",
    "PredictionStatus",
    "SessionStatus",
    "TrainingHistory",
    "TrainingState",
    "TrainingStatus",
    "WorkflowState",
]
