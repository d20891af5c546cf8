"""The controller: turns intents and camera events into core calls, runs the long work in jobs.

One :class:`Controller` per Scribble U-Net widget (the widget makes it; nothing else shares it).
It owns the image source and the project, the layers (:mod:`._layers`), the model and three jobs
(:mod:`._workers`: training, live prediction, export). What the widgets show is in
:attr:`Controller.state`, the Qt-free :class:`~scribble_unet.state.WorkflowState`, which the
controller updates on the main thread; widgets listen to it and call the public methods here.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from ..errors import ScribbleUNetError
from ..image import ImageSource
from ..inference.live import DEFAULT_LIVE_TILE, LivePrediction
from ..inference.schedule import MachineScheduler
from ..scribbles.project import Project, ScribbleOverview
from ..state import ExportState, TrainingState, WorkflowState
from ..state.viewport import Box, visible_region, worth_predicting
from . import _gc
from ._layers import (
    Placement,
    PredictionLayer,
    ScribbleLayers,
    camera,
    canvas_size,
    real_viewer,
    source_of,
)
from ._live_view import LiveView
from ._notify import notify_error, notify_info, plain
from ._project_actions import ProjectActions
from ._workers import Job, Progress, callback_events, stop_timer, training_events

STOP_TIMEOUT_S = 2.0
CAMERA_REST_MS = 120
"""Camera events come in bursts while panning; the view is followed once it rests this long."""


class Controller(ProjectActions):
    """State and actions of the scribble workflow in one viewer (see the module docstring)."""

    def __init__(self, viewer: Any) -> None:
        self.viewer = real_viewer(viewer)
        self.state = WorkflowState()
        self.state.prediction.tile = DEFAULT_LIVE_TILE
        self.image_layer: Any = None
        self.placement = Placement()
        self.source: ImageSource | None = None
        self.project: Project | None = None
        self.store: Any = None
        self.checkpoint: Any = None
        self.checkpoint_path: Path | None = None
        self.live: LivePrediction | None = None
        self.trainer: Any = None
        self.scheduler = MachineScheduler()
        self.scribbles = ScribbleLayers(self.viewer, self._on_scribble_write)
        self.prediction = PredictionLayer(self.viewer)
        self.live_view = LiveView(self)
        self.training_job: Job[Any, None] = Job("training")
        self.live_job: Job[tuple[int, int], None] = Job("live prediction")
        self.export_job: Job[Progress, Any] = Job("export")
        self._export_cancel = threading.Event()
        self._stop_requested = False
        self.closed = False
        self._view_timer: Any = None
        cam = camera(self.viewer)
        cam.events.center.connect(self._on_camera)
        cam.events.zoom.connect(self._on_camera)

    # ------------------------------------------------------------------ what the tests and scripts read
    @property
    def scribble_layer(self) -> Any:
        return self.scribbles.layer

    @property
    def overview_layer(self) -> Any:
        return self.scribbles.overview_layer

    @property
    def overview(self) -> ScribbleOverview | None:
        return self.scribbles.overview

    @property
    def prediction_layer(self) -> Any:
        return self.prediction.layer

    @property
    def class_names(self) -> list[str]:
        return list(self.project.class_names) if self.project else ["object"]

    @property
    def is_training(self) -> bool:
        return self.training_job.running

    def _say(self, message: str) -> None:
        self.state.session.message = message

    # ------------------------------------------------------------------ data
    def image_layers(self) -> list[Any]:
        from napari.layers import Image

        return [ly for ly in self.viewer.layers if isinstance(ly, Image)]

    def set_image_layer(self, layer: Any) -> None:
        """Use ``layer`` as the image to paint on, train on and predict."""
        if layer is self.image_layer:
            return
        source = source_of(layer)
        self.image_layer, self.source, self.placement = layer, source, Placement(layer)
        if self.live is not None:
            self.live.stop()  # its worker returns after the chunk in flight; a new one starts for the new image
        self.live = None
        self.state.session.image = layer.name
        h, w = source.shape_yx
        self._say(f"image: {layer.name} ({h} x {w}, {source.n_channels} channel(s))")

    def open_project(self, folder: str | Path, class_names: list[str] | None = None) -> Project:
        """Open or create the project in ``folder`` for the current image and show its scribbles.

        Reopening a project restores its scribbles, class names, training history and latest model
        (and so its live predictions); ``class_names`` name the classes of a new project only.
        """
        if self.source is None:
            raise ScribbleUNetError("choose an image layer first")
        project = Project.open(folder)
        if class_names and project.is_new:
            project.class_names = [n for n in class_names if n]
        store = project.open_scribbles(self.source.shape_yx)
        project.image = self.image_layer.name if self.image_layer is not None else None
        project.save()
        self.project, self.store = project, store
        self.scribbles.show(store, self.source.shape_yx, self.placement, self.class_names)
        self.refresh_view()
        self._ensure_prediction_layer()
        if self.scribble_layer is not None:
            self.viewer.layers.selection.active = self.scribble_layer
        ckpt_path = project.latest_checkpoint()
        if ckpt_path is not None:
            try:
                self.load_model(ckpt_path)
            except ScribbleUNetError as e:
                notify_error(f"the project's model could not be loaded: {e}")
        self.state.session.project = str(project.folder)
        self.state.session.class_names = tuple(self.class_names)
        self.scribbles.set_class_names(self.class_names)
        self.prediction.color(self.class_names)
        self._restore_project()
        self._say(f"project: {project.folder}")
        return project

    def set_class_names(self, names: list[str]) -> None:
        names = [n.strip() for n in names if n.strip()]
        if not names:
            raise ScribbleUNetError("name at least one object class")
        if self.project is not None:
            self.project.class_names = names
            self.project.save()
        self.scribbles.set_class_names(names)
        self.prediction.color(self.class_names)
        self.state.session.class_names = tuple(self.class_names)

    def _on_scribble_write(self, region: Box) -> None:
        self.scheduler.interacted()
        if self.trainer is not None:
            self.trainer.scribbles_changed(region)
        self.scribbles.invalidate(region)

    # ------------------------------------------------------------------ view tracking
    def visible_region(self) -> Box | None:
        """Full-resolution pixel box ``(y0, y1, x0, x1)`` of the image inside the canvas."""
        if self.source is None:
            return None
        cam = camera(self.viewer)
        return visible_region((cam.center[-2], cam.center[-1]), cam.zoom, canvas_size(self.viewer),
                              self.placement.scale, self.placement.world((0.0, 0.0)), self.source.shape_yx)

    def _on_camera(self, event: Any = None) -> None:
        self.scheduler.interacted()
        self.scribbles.guard(self.visible_region())  # the brush waits for the window (see refresh_view)
        if self._view_timer is None:
            from qtpy.QtCore import QTimer

            self._view_timer = QTimer()
            self._view_timer.setSingleShot(True)
            self._view_timer.setInterval(CAMERA_REST_MS)
            self._view_timer.timeout.connect(self.refresh_view)
        self._view_timer.start()

    def refresh_view(self) -> None:
        """Follow the camera: move the scribble window and ask for the visible prediction chunks."""
        if self.closed:
            return
        region = self.visible_region()
        if region is None:
            return
        self.scribbles.follow(region, self.placement)
        self.state.session.paintable = self.scribbles.paintable
        # Zoomed far out, the view would span thousands of chunks: show what is cached instead,
        # and compute nothing (not even the last small view, which is off screen now).
        zoomed_out = self.state.prediction.zoomed_out = not worth_predicting(region, self.state.prediction.tile)
        if self.live is not None:
            self.live.clear_request() if zoomed_out else self.live.request(*region)
            self._show_prediction_status()

    # ------------------------------------------------------------------ model and prediction
    def load_model(self, path: str | Path) -> None:
        from ..model.checkpoint import load_checkpoint

        self.set_checkpoint(load_checkpoint(path), Path(path))

    def set_checkpoint(self, checkpoint: Any, path: Path | None = None) -> None:
        """Predict with ``checkpoint`` from now on (the live view is recomputed chunk by chunk)."""
        if self.source is None:
            raise ScribbleUNetError("choose an image layer first")
        self.checkpoint, self.checkpoint_path = checkpoint, path
        live = self._ensure_prediction_layer()
        live.set_checkpoint(checkpoint)
        self._ensure_live_worker()
        self.refresh_view()
        version = self.project.version_of(path) if self.project is not None else None  # steps of all runs
        steps = version.steps if version is not None else (checkpoint.training or {}).get("steps")
        self._show_prediction_status(model_steps=steps, model_token=checkpoint.token)

    def set_live_tile(self, tile: int) -> None:
        """Compute live chunks of ``tile`` px from now on (the cached ones are recomputed)."""
        self.state.prediction.tile = int(tile)
        if self.live is not None:
            self.live.tile = int(tile)
            if self.checkpoint is not None:
                self.live.set_checkpoint(self.checkpoint)
                self.refresh_view()

    def _show_prediction_status(self, **fields: Any) -> None:
        status = self.state.prediction
        if self.live is not None:
            status.pending = self.live.pending()
            status.missing = self.live.missing()
            status.computed_for_model = self.live.computed_for_token
        for name, value in fields.items():
            setattr(status, name, value)
        if self.live is not None:
            status.computed = self.live.computed

    def _ensure_prediction_layer(self) -> LivePrediction:
        """The live prediction and its (still empty) layer, made once per image.

        Made when the project opens rather than at the first checkpoint: adding a layer takes
        0.3-0.7 s of the GUI thread, and a new checkpoint then only marks the cached chunks stale.
        """
        assert self.source is not None
        if self.live is None:
            self.live = LivePrediction(self.source, tile=self.state.prediction.tile, scheduler=self.scheduler)
        if not self.prediction.shows(self.live):
            added = self.prediction.show(self.live, self.source.shape_yx, self.placement, self.class_names)
            if added:
                self.scribbles.raise_to_top()  # painting stays visible
        return self.live

    def _ensure_live_worker(self) -> None:
        live = self.live
        if self.live_job.running or live is None:
            return
        self.live_job.start(live.run, on_yield=self._on_live_chunk, on_finish=self._on_live_finished,
                            on_error=lambda e: notify_error(f"prediction stopped: {plain(e)}"))

    def _on_live_chunk(self, chunk: tuple[int, int]) -> None:
        if self.closed:
            return
        self.live_view.chunk_arrived()  # redrawn in batches: a redraw costs tens of ms of GUI time
        self._show_prediction_status(last_chunk=chunk)

    def _on_live_finished(self) -> None:
        # the image changed while the old worker was finishing: serve the new image's prediction
        if not self.closed and self.live is not None and self.live.running.is_set() is False:
            self._ensure_live_worker()

    # ------------------------------------------------------------------ training
    def start_training(self, model_config: Any, train_config: Any, init_path: Any = None) -> None:
        """Train in the background; checkpoints go to a new file in the project's ``models/``.

        ``init_path``: a model file or a checkpoint to continue (None: a new model).
        """
        from ..model.checkpoint import load_checkpoint
        from ..training.trainer import Trainer

        if self.is_training:
            raise ScribbleUNetError("training is already running")
        if self.source is None or self.store is None or self.project is None:
            raise ScribbleUNetError("choose an image and create or open a scribble project first")
        init = load_checkpoint(init_path) if isinstance(init_path, (str, Path)) and init_path else init_path
        out = self._begin_run(init, model_config, train_config)
        self.state.training.time_budget = train_config.time_budget
        source, store = self.source, self.store
        self._stop_requested = False
        self.trainer = None

        def build() -> Trainer:
            return Trainer(source, store, model_config, train_config, init=init, out=out)

        def publish(trainer: Trainer) -> None:
            self.trainer = trainer
            self.scheduler.attach_trainer(trainer)
            if self._stop_requested:
                trainer.stop()

        status = self.state.training
        status.loss, status.iou, status.max_steps, status.message = None, None, train_config.steps, ""
        status.step = 0
        _gc.hold(self)  # no full collection of the old heap on the GUI thread while the run is under way
        self.training_job.start(lambda: training_events(build, publish), on_yield=self._on_train_event,
                                on_error=self._on_train_error, on_finish=self._on_train_finished)
        status.state = TrainingState.RUNNING
        self._say("training started")

    def pause_training(self) -> None:
        if self.trainer is not None and self.is_training:
            self.scheduler.set_user_paused(True)
            self.state.training.state = TrainingState.PAUSED

    def resume_training(self) -> None:
        if self.trainer is not None and self.is_training:
            self.scheduler.set_user_paused(False)
            self.state.training.state = TrainingState.RUNNING

    def stop_training(self) -> None:
        self._stop_requested = True
        if self.trainer is not None:
            self.trainer.stop()

    def _on_train_event(self, event: Any) -> None:
        if self.closed:
            return
        from ..training.trainer import CheckpointEvent, FinishedEvent, StepEvent, ValidationEvent

        status = self.state.training
        self._record_event(event)
        if isinstance(event, StepEvent):
            status.loss, status.elapsed = event.loss, event.elapsed
            status.step = event.step
        elif isinstance(event, ValidationEvent) and event.iou:
            objects = [v for k, v in event.iou.items() if k != "background"] or list(event.iou.values())
            status.iou = (status.base_step + event.step, sum(objects) / len(objects))
        if isinstance(event, (CheckpointEvent, FinishedEvent)):
            path = getattr(event, "path", None)
            self.set_checkpoint(event.checkpoint, Path(path) if path else None)
            self._show_versions()
        if isinstance(event, FinishedEvent):
            why = {"steps": "step limit reached", "time": "time budget used", "stopped": "stopped"}
            status.elapsed = getattr(self.trainer, "elapsed", status.elapsed)  # the run's whole time, for the bar
            status.message = f"Finished: {event.step} steps ({why.get(event.reason, event.reason)})"
            self._say(f"Training finished: {event.step} steps ({why.get(event.reason, event.reason)})")

    def _on_train_error(self, e: BaseException) -> None:
        self.state.training.state = TrainingState.IDLE
        notify_error(f"training stopped: {plain(e)}")

    def _on_train_finished(self) -> None:
        _gc.release(self)
        self.scheduler.attach_trainer(None)
        self.state.training.state = TrainingState.IDLE

    def save_model(self, path: str | Path) -> Path:
        """Save the current model (the last published checkpoint) to ``path``."""
        from ..model.checkpoint import save_checkpoint

        if self.checkpoint is None:
            raise ScribbleUNetError("there is no model yet; train first")
        out = save_checkpoint(path, self.checkpoint)
        notify_info(f"model saved to {out}")
        return Path(out)

    # ------------------------------------------------------------------ export
    def start_export(self, out: str | Path, probabilities: bool = False, tile: int = 1024,
                     overwrite: bool = False) -> None:
        """Predict the whole image into ``out`` in the background; resumable, cancellable."""
        from ..export.to_zarr import predict_to_zarr

        if self.checkpoint is None or self.source is None:
            raise ScribbleUNetError("there is no model yet; train or load one first")
        if self.export_job.running:
            raise ScribbleUNetError("an export is already running")
        self._export_cancel = cancel = threading.Event()
        self.state.export.done, self.state.export.total = 0, 0
        checkpoint, source = self.checkpoint, self.source

        def run(progress: Any) -> Any:
            return predict_to_zarr(checkpoint, source, out, tile=tile, probabilities=probabilities,
                                   progress=progress, cancel=cancel, overwrite=overwrite, device="cpu")

        self.export_job.start(lambda: callback_events(run), on_yield=self._on_export_progress,
                              on_return=self._on_export_returned, on_error=self._on_export_error)
        self.state.export.state = ExportState.RUNNING

    def cancel_export(self) -> None:
        self._export_cancel.set()

    def _on_export_progress(self, p: Progress) -> None:
        status = self.state.export
        status.total = p.total
        status.done = p.done

    def _on_export_returned(self, result: Any) -> None:
        if "cancelled" in result.notes:
            self.state.export.state = ExportState.CANCELLED
            notify_info(f"export cancelled after {result.computed + result.skipped} of {result.n_chunks} "
                        "chunks; export again to the same folder to resume")
        else:
            self.state.export.state = ExportState.DONE
            notify_info(f"exported the mask to {result.path}/labels/mask")

    def _on_export_error(self, e: BaseException) -> None:
        self.state.export.state = ExportState.FAILED
        notify_error(f"export failed: {plain(e)}")

    # ------------------------------------------------------------------ shutdown
    def shutdown(self, timeout: float = STOP_TIMEOUT_S) -> bool:
        """Stop every job and wait for them (at most ``timeout`` s in all); True if all stopped."""
        if self.closed:
            return True
        self.closed = True
        # Each loop checks its flag between steps/chunks and then returns; quitting a generator
        # worker instead would leave the generator suspended and its clean-up undone.
        self.stop_training()
        if self.live is not None:
            self.live.stop()
        self._export_cancel.set()
        stop_timer(self._view_timer)
        self.live_view.close()
        self.scribbles.close()
        deadline = time.monotonic() + timeout
        ok = True
        for job in (self.training_job, self.live_job, self.export_job, self.live_view.objects_job):
            ok &= job.wait(deadline - time.monotonic())
        _gc.release(self)
        try:
            cam = camera(self.viewer)
            cam.events.center.disconnect(self._on_camera)
            cam.events.zoom.disconnect(self._on_camera)
        except Exception:  # the viewer may already be torn down
            pass
        return ok
