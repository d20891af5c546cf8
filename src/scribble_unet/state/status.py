"""Evented status records of the viewer's work (psygnal evented dataclasses, enum states).

Each record is a dataclass with psygnal's ``SignalGroupDescriptor`` as ``events`` (what
``@psygnal.evented`` adds, spelled out so that type checkers see it): each field change emits
``record.events.<field>`` with the new value (only when the value changes). Workers never touch
these records: the controller updates them on the main thread from the events the workers
yield, so a widget's handler always runs on the main thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import ClassVar

from psygnal import SignalGroupDescriptor

from .history import TrainingHistory


class TrainingState(str, Enum):
    """Where training is."""

    IDLE = "idle"
    RUNNING = "running"
    PAUSED = "paused"


class ExportState(str, Enum):
    """Where the export is; the last three are how it ended."""

    IDLE = "idle"
    RUNNING = "running"
    CANCELLED = "cancelled"
    DONE = "done"
    FAILED = "failed"


@dataclass
class SessionStatus:
    """The image, the project and the class names the user works with, and a status line."""

    events: ClassVar[SignalGroupDescriptor] = SignalGroupDescriptor()

    image: str | None = None
    project: str | None = None
    class_names: tuple[str, ...] = ("object",)
    message: str = ""
    paintable: bool = True
    """False while the view is larger than the paintable scribble window (the brush is off)."""


@dataclass
class TrainingStatus:
    """Training progress.

    ``step`` changes on every training step (after ``loss`` and ``elapsed``), so listening to
    ``events.step`` sees every step; ``step`` and ``elapsed`` count this run, ``base_step`` is the
    steps of the model it continues (so the plot's step is ``base_step + step``). ``iou`` is
    ``(plot step, mean object IoU on held-out strokes)``. ``history`` holds every point of the
    project's plot; ``history_version`` changes whenever it is replaced or restarted (redraw it
    whole). ``diameter`` is the object size the run uses (given or estimated), ``model_label``
    names the model in use (save time and steps), ``versions`` the project's models ``(file, label)``.
    """

    events: ClassVar[SignalGroupDescriptor] = SignalGroupDescriptor()

    state: TrainingState = TrainingState.IDLE
    max_steps: int | None = None
    step: int = 0
    loss: float | None = None
    elapsed: float = 0.0
    iou: tuple[int, float] | None = None
    message: str = ""
    time_budget: float | None = None
    base_step: int = 0
    diameter: float | None = None
    history: TrainingHistory = field(default_factory=TrainingHistory)
    history_version: int = 0
    model_label: str = ""
    model_file: str | None = None
    versions: tuple[tuple[str, str], ...] = ()


@dataclass
class PredictionStatus:
    """The model the live prediction uses and how far it got in the field of view.

    ``computed`` grows by one per chunk computed (``last_chunk``, ``pending`` and
    ``computed_for_model`` are set just before); ``computed_for_model`` counts the chunks computed
    with the current model, ``pending`` those in view still waiting for it, ``missing`` those in
    view with no prediction at all. ``live_paused``: the user paused the live view;
    ``zoomed_out``: the view spans too many chunks to compute, only what is cached is shown;
    ``objects``: what the objects layer shows (and how exact it is).
    """

    events: ClassVar[SignalGroupDescriptor] = SignalGroupDescriptor()

    tile: int = 512
    model_token: str | None = None
    model_steps: int | None = None
    computed_for_model: int = 0
    pending: int = 0
    last_chunk: tuple[int, int] | None = None
    computed: int = 0
    live_paused: bool = False
    missing: int = 0
    zoomed_out: bool = False
    objects: str = ""


@dataclass
class ExportStatus:
    """Export progress in chunks; ``message`` says how the last export ended."""

    events: ClassVar[SignalGroupDescriptor] = SignalGroupDescriptor()

    state: ExportState = ExportState.IDLE
    done: int = 0
    total: int = 0
    message: str = ""


@dataclass
class WorkflowState:
    """Everything the widgets show, one record per part of the work."""

    session: SessionStatus = field(default_factory=SessionStatus)
    training: TrainingStatus = field(default_factory=TrainingStatus)
    prediction: PredictionStatus = field(default_factory=PredictionStatus)
    export: ExportStatus = field(default_factory=ExportStatus)
