"""The controller's project bookkeeping: history, model versions, continuing a model, corrections.

A mixin of :class:`~._controller.Controller` (kept apart so that the controller stays short): it
restores what a reopened project recorded (class names, the plot, the model in use), gives every
training run its own model file and records it, and turns corrections of the prediction into
scribbles.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ScribbleUNetError
from ..state import TrainingHistory, WorkflowState
from ..state.viewport import Box, centred_box
from ._notify import notify_info

CORRECTION_LAYER = "correction"
MAX_CORRECTION = 1024
"""Side of the largest patch of the prediction copied for correction (it is reviewed by eye)."""


class ProjectActions:
    """Project-related actions of the controller (a mixin; the controller provides the attributes)."""

    state: WorkflowState
    viewer: Any
    project: Any
    source: Any
    store: Any
    live: Any
    trainer: Any
    checkpoint: Any
    checkpoint_path: Path | None
    placement: Any
    scribbles: Any
    prediction: Any

    _pending_run: tuple[str, str | None] | None = None
    correction_layer: Any = None
    _correction: tuple[Box, np.ndarray] | None = None

    # ------------------------------------------------------------------ reopening
    def _restore_project(self) -> None:
        """Show what the open project recorded: its training history and its model versions."""
        status = self.state.training
        status.history = TrainingHistory.from_json(self.project.history)
        status.history_version += 1
        status.base_step = status.history.steps
        self._show_versions()

    def _show_versions(self) -> None:
        status = self.state.training
        project = self.project
        status.versions = tuple((v.file, v.label) for v in reversed(project.models)) if project else ()
        version = project.version_of(self.checkpoint_path) if project is not None else None
        if version is not None:
            status.model_file, status.model_label = version.file, version.label
        elif self.checkpoint is not None:
            steps = (self.checkpoint.training or {}).get("steps")
            name = self.checkpoint_path.name if self.checkpoint_path is not None else "in memory"
            status.model_file = str(self.checkpoint_path) if self.checkpoint_path else None
            status.model_label = f"{name}" + (f", {steps} steps" if steps is not None else "")
        else:
            status.model_file, status.model_label = None, ""

    @property
    def steps_of_current_model(self) -> int:
        """Steps that trained the model in use (over all runs, when the project recorded them)."""
        version = self.project.version_of(self.checkpoint_path) if self.project is not None else None
        if version is not None:
            return version.steps
        steps = (self.checkpoint.training or {}).get("steps") if self.checkpoint is not None else None
        return int(steps) if isinstance(steps, int) else 0

    def use_model(self, file: str) -> None:
        """Predict with (and continue from) the project's model version ``file``."""
        if self.project is None:
            raise ScribbleUNetError("open a project first")
        path = self.folder_file(file)
        self.load_model(path)  # type: ignore[attr-defined]
        self.project.model = self.project.check_model_path(file)
        self.project.save()
        self._show_versions()

    def folder_file(self, file: str) -> Path:
        return Path(self.project.folder) / self.project.check_model_path(file)

    # ------------------------------------------------------------------ runs
    def _begin_run(self, init: Any, model_config: Any, train_config: Any) -> Path:
        """The new model file of a run (nothing is overwritten); notes where its steps start and its settings."""
        assert self.project is not None
        self.project.run_config = {"model": model_config.model_dump(mode="json"),
                                   "train": train_config.model_dump(mode="json")}
        continues = init is not None
        init_file = None
        if continues and self.checkpoint is not None and init.token == self.checkpoint.token:
            version = self.project.version_of(self.checkpoint_path)
            init_file = version.file if version else (str(self.checkpoint_path) if self.checkpoint_path else "")
        self._pending_run = (datetime.now().isoformat(timespec="seconds"), init_file if continues else None)
        base = self.steps_of_current_model if continues and init_file is not None else 0
        status = self.state.training
        status.base_step, status.diameter = base, None
        return Path(self.project.new_model_path())

    def _record_event(self, event: Any) -> None:
        """Keep the history and the model versions of the project up to date with a training event."""
        from ..training.trainer import CheckpointEvent, FinishedEvent, StepEvent, ValidationEvent

        status = self.state.training
        history = status.history
        step = status.base_step + event.step
        if isinstance(event, StepEvent):
            if self._pending_run is not None:  # the first step: the run really started
                started, init = self._pending_run
                self._pending_run = None
                history.start_run(started, init)
                status.history_version += 1
                choice = getattr(self.trainer, "scale_choice", None)
                status.diameter = getattr(choice, "diameter", None)
            history.add_loss(step, event.loss)
        elif isinstance(event, ValidationEvent) and event.iou:
            objects = [v for k, v in event.iou.items() if k != "background"] or list(event.iou.values())
            history.add_iou(step, sum(objects) / len(objects))
        elif isinstance(event, (CheckpointEvent, FinishedEvent)) and self.project is not None:
            path = getattr(event, "path", None)
            model = None
            if path is not None:
                try:
                    model = self.project.record_model(path, step).file
                except ScribbleUNetError:
                    self.project.model = None  # a model outside the project is not recorded
            history.end_step(step, event.step, status.elapsed, model)
            self.project.history = history.to_json()
            self.project.save()

    # ------------------------------------------------------------------ corrections
    def begin_correction(self) -> Box:
        """Copy the prediction of the view (at most :data:`MAX_CORRECTION` px a side) into an editable layer.

        The user fixes it there with napari's brush, fill and eraser (0 is background);
        :meth:`apply_correction` turns the pixels they changed into scribbles.
        """
        live, scribbles = self.live, self.scribbles.layer
        if live is None or live.predictor is None:
            raise ScribbleUNetError("there is no prediction to correct yet; train a model first")
        region = self.visible_region()  # type: ignore[attr-defined]
        if region is None or scribbles is None or not self.scribbles.paintable:
            raise ScribbleUNetError("zoom in on the objects to correct (the view is larger than the paintable area)")
        oy, ox = scribbles.data.origin
        wh, ww = scribbles.data.shape
        box = centred_box(region, (oy, oy + wh, ox, ox + ww), MAX_CORRECTION)
        y0, y1, x0, x1 = box
        if y0 >= y1 or x0 >= x1:
            raise ScribbleUNetError("the view shows no part of the image")
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        grid = live.predictor.grid
        for chunk in grid.chunks_touching(y0, y1, x0, x1):
            hit = live.cache.get(chunk)
            part = hit[1] if hit is not None and hit[0] == live.token else live.predictor.mask(*chunk)
            cy0, cy1, cx0, cx1 = grid.chunk_bounds(*chunk)
            sy0, sy1, sx0, sx1 = max(y0, cy0), min(y1, cy1), max(x0, cx0), min(x1, cx1)
            mask[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = part[sy0 - cy0 : sy1 - cy0, sx0 - cx0 : sx1 - cx0]
        self.cancel_correction()
        layer = self.viewer.add_labels(mask.copy(), name=CORRECTION_LAYER, scale=self.placement.scale,
                                       translate=self.placement.world((y0, x0)), opacity=0.7)
        layer.colormap = self.prediction.layer.colormap if self.prediction.layer is not None else layer.colormap
        layer.brush_size = 5
        layer.selected_label = 1
        layer.mode = "paint"
        self.correction_layer, self._correction = layer, (box, mask)
        self.viewer.layers.selection.active = layer
        return box

    def apply_correction(self) -> int:
        """Write the pixels changed in the correction layer into the scribbles; returns how many.

        Class ``k`` becomes scribble value ``k + 1`` and 0 becomes background (1). The write goes
        through the scribble layer, so it reaches the store and the trainer, and Ctrl+Z on the
        scribble layer undoes it.
        """
        from ..classes import scribble_values

        layer, correction = self.correction_layer, self._correction
        if layer is None or correction is None or layer not in self.viewer.layers:
            raise ScribbleUNetError("there is no correction to apply; press 'Correct here' first")
        (y0, y1, x0, x1), before = correction
        scribbles = self.scribbles.layer
        oy, ox = scribbles.data.origin
        wh, ww = scribbles.data.shape
        if not (oy <= y0 and y1 <= oy + wh and ox <= x0 and x1 <= ox + ww):
            raise ScribbleUNetError("the view moved away from the correction; go back to it to apply it")
        after = np.asarray(layer.data)
        n_classes = len(self.state.session.class_names)
        if after.max(initial=0) > n_classes:
            raise ScribbleUNetError(f"the correction uses label {int(after.max())}, but there are only "
                                    f"{n_classes} object class(es); paint with 0 (background) to "
                                    f"{n_classes}")
        ys, xs = np.nonzero(after != before)
        if ys.size:
            values = scribble_values(after[ys, xs]).astype(np.uint8)
            scribbles.data_setitem((ys + y0 - oy, xs + x0 - ox), values)
        self.cancel_correction()
        if self.scribbles.layer is not None:
            self.viewer.layers.selection.active = self.scribbles.layer
        notify_info(f"{ys.size} corrected pixels added to the scribbles" if ys.size
                    else "nothing was changed in the correction layer; nothing added")
        return int(ys.size)

    def cancel_correction(self) -> None:
        layer = self.correction_layer
        if layer is not None and layer in self.viewer.layers:
            self.viewer.layers.remove(layer)
        self.correction_layer, self._correction = None, None
