"""The controller: turns layer and camera events into core calls, and runs the long work in workers.

One :class:`Controller` per viewer (see :func:`controller_for`) is shared by the Data, Train,
Predict and Export widgets. It owns

* the image source and the project (scribble store on disk, class names, models);
* the paintable scribble layer, a :class:`~._project.WriteThroughWindow` onto the store that follows
  the camera on large images;
* the training worker (the core :class:`~scribble_unet.training.trainer.Trainer` generator in a
  napari ``thread_worker``), the live prediction worker and the export worker.

Layers are touched only in main-thread handlers. Widgets listen to the psygnal signals below and
never call the core themselves.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from psygnal import Signal

from ..errors import ScribbleUNetError
from ..image import ImageSource, open_image
from ..inference.live import DEFAULT_LIVE_TILE, LivePrediction
from ..scribbles.project import Project, ScribbleOverview, WriteThroughWindow

SCRIBBLE_WINDOW = 4096
"""Side of the full-resolution paintable window on images larger than this."""
SCRIBBLE_LAYER = "scribbles"
OVERVIEW_LAYER = "scribbles (overview)"
OVERVIEW_REFRESH_MS = 300
"""The overview layer is redrawn at most this often while strokes are written."""
PREDICTION_LAYER = "prediction"
STOP_TIMEOUT_S = 2.0

_CONTROLLERS: dict[int, Controller] = {}


def real_viewer(viewer: Any) -> Any:
    """The viewer behind napari's public proxy (plugin widgets receive a proxy)."""
    return getattr(viewer, "__wrapped__", viewer)


def controller_for(viewer: Any) -> Controller:
    """The controller of ``viewer``, created on first use and shared by every widget."""
    v = real_viewer(viewer)
    ctrl = _CONTROLLERS.get(id(v))
    if ctrl is None or ctrl.viewer is not v:
        ctrl = Controller(v)
        _CONTROLLERS[id(v)] = ctrl
        weakref.finalize(v, _CONTROLLERS.pop, id(v), None)
    return ctrl


def _notify_error(message: str) -> None:
    from napari.utils.notifications import show_error

    show_error(message)


def _notify_info(message: str) -> None:
    from napari.utils.notifications import show_info

    show_info(message)


def _start(worker: Any) -> None:
    """Start a worker, growing the thread pool if needed.

    Qt's global pool holds as many threads as cores (2 here); training, live prediction and an
    export must run side by side, so the pool is grown rather than queue one behind another.
    """
    from qtpy.QtCore import QThreadPool

    pool = QThreadPool.globalInstance()
    if pool.activeThreadCount() + 1 > pool.maxThreadCount():
        pool.setMaxThreadCount(pool.activeThreadCount() + 1)
    worker.start()


def _plain(e: BaseException) -> str:
    """A one-line, plain-words description of an error from a worker."""
    if isinstance(e, ScribbleUNetError):
        return str(e)
    if isinstance(e, MemoryError):
        return "out of memory; try a smaller model, batch or tile"
    if isinstance(e, OSError):
        return f"{e.strerror or e} ({e.filename})" if e.filename else str(e)
    return f"{type(e).__name__}: {e}"


class Controller:
    """State and actions of the scribble workflow for one viewer (see the module docstring)."""

    status = Signal(str)
    """A line for the widgets' status labels."""
    project_changed = Signal()
    train_event = Signal(object)
    """Each trainer event (step, validation, checkpoint, finished), on the main thread."""
    training_state = Signal(str)
    """``"running"``, ``"paused"`` or ``"idle"``."""
    checkpoint_changed = Signal(object)
    prediction_updated = Signal(int, int)
    """A live chunk ``(iy, ix)`` was computed and shown."""
    export_progress = Signal(int, int)
    export_state = Signal(str)
    """``"running"``, ``"cancelled"``, ``"done"`` or ``"failed"``."""

    def __init__(self, viewer: Any) -> None:
        self.viewer = viewer
        self.image_layer: Any = None
        self.source: ImageSource | None = None
        self.project: Project | None = None
        self.store: Any = None
        self.scribble_layer: Any = None
        self.checkpoint: Any = None
        self.checkpoint_path: Path | None = None
        self.live: LivePrediction | None = None
        self.prediction_layer: Any = None
        self.live_tile = DEFAULT_LIVE_TILE
        self.trainer: Any = None
        self._train_worker: Any = None
        self._train_done = threading.Event()
        self._train_done.set()
        self._live_worker: Any = None
        self._live_done = threading.Event()
        self._live_done.set()
        self._export_worker: Any = None
        self._export_cancel = threading.Event()
        self._export_done = threading.Event()
        self._export_done.set()
        self._closed = False
        self._stop_requested = False
        self._view_timer: Any = None
        self.overview: ScribbleOverview | None = None
        self.overview_layer: Any = None
        self._overview_timer: Any = None
        self.viewer.camera.events.center.connect(self._on_camera)
        self.viewer.camera.events.zoom.connect(self._on_camera)

    # ------------------------------------------------------------------ data
    def image_layers(self) -> list[Any]:
        from napari.layers import Image

        return [ly for ly in self.viewer.layers if isinstance(ly, Image)]

    def set_image_layer(self, layer: Any) -> None:
        """Use ``layer`` as the image to paint on, train on and predict."""
        if layer is self.image_layer:
            return
        self.image_layer = layer
        self.source = self._source_of(layer)
        if self.live is not None:
            self.live.stop()  # its worker returns after the chunk in flight; a new one starts for the new image
        self.live = None
        self.status.emit(f"image: {layer.name} ({self.source.shape_yx[0]} x {self.source.shape_yx[1]}, "
                         f"{self.source.n_channels} channel(s))")

    @staticmethod
    def _source_of(layer: Any) -> ImageSource:
        src = layer.metadata.get("scribble_unet_source") if layer.metadata else None
        if isinstance(src, ImageSource):
            return src
        data = layer.data[0] if layer.multiscale else layer.data
        if data.ndim == 3 and layer.rgb:
            return open_image(data, channel_axis=2, name=layer.name)
        if data.ndim != 2:
            raise ScribbleUNetError(
                f"layer {layer.name!r} has {data.ndim} axes; a 2D image (one channel, or RGB) is needed"
            )
        return open_image(data, name=layer.name)

    def open_project(self, folder: str | Path, class_names: list[str] | None = None) -> Project:
        """Open or create the project in ``folder`` for the current image and show its scribbles.

        Reopening a project restores its scribbles, class names and latest model (and so its
        live predictions).
        """
        if self.source is None:
            raise ScribbleUNetError("choose an image layer first")
        project = Project.open(folder)
        if class_names:
            project.class_names = [n for n in class_names if n]
        store = project.open_scribbles(self.source.shape_yx)
        project.image = self.image_layer.name if self.image_layer is not None else None
        project.save()
        self.project, self.store = project, store
        self._show_scribbles()
        self._ensure_prediction_layer()
        if self.scribble_layer is not None:
            self.viewer.layers.selection.active = self.scribble_layer
        ckpt_path = project.latest_checkpoint()
        if ckpt_path is not None:
            try:
                self.load_model(ckpt_path)
            except ScribbleUNetError as e:
                _notify_error(f"the project's model could not be loaded: {e}")
        self.project_changed.emit()
        self.status.emit(f"project: {project.folder}")
        return project

    def set_class_names(self, names: list[str]) -> None:
        names = [n.strip() for n in names if n.strip()]
        if not names:
            raise ScribbleUNetError("name at least one object class")
        if self.project is not None:
            self.project.class_names = names
            self.project.save()
        if self.scribble_layer is not None:
            self.scribble_layer.metadata["class_names"] = ["background", *names]
        if self.prediction_layer is not None and self.prediction_layer in self.viewer.layers:
            self._color_prediction()

    @property
    def class_names(self) -> list[str]:
        return list(self.project.class_names) if self.project else ["object"]

    def _show_scribbles(self) -> None:
        h, w = self.source.shape_yx  # type: ignore[union-attr]
        side = SCRIBBLE_WINDOW
        y0, x0 = self._window_origin((h // 2, w // 2)) if max(h, w) > side else (0, 0)
        window = WriteThroughWindow.load(self.store, y0, min(h, y0 + side), x0, min(w, x0 + side),
                                         on_write=self._on_scribble_write)
        if self.scribble_layer is not None and self.scribble_layer in self.viewer.layers:
            self.scribble_layer.data = window
            self.scribble_layer.translate = self._world((y0, x0))
        else:
            self.scribble_layer = self.viewer.add_labels(
                window, name=SCRIBBLE_LAYER, translate=self._world((y0, x0)), scale=self._scale(),
                metadata={"class_names": ["background", *self.class_names]}, opacity=0.8,
            )
            self.scribble_layer.brush_size = 5
            self.scribble_layer.selected_label = 2
        if max(h, w) > side:
            self._show_overview((y0, min(h, y0 + side), x0, min(w, x0 + side)))
        self._refresh_view()

    def _show_overview(self, window_box: tuple[int, int, int, int]) -> None:
        """Show every scribble in the store, read-only and max-pooled, where the window does not reach.

        Only for images larger than the paintable window; the layer sits right below the scribbles.
        """
        overview = ScribbleOverview(self.store, _n_levels(self.source.shape_yx))  # type: ignore[union-attr]
        overview.hidden = window_box
        self.overview = overview
        layer = self.overview_layer
        if layer is not None and layer in self.viewer.layers:
            layer.data = overview.levels()
        else:
            self.overview_layer = self.viewer.add_labels(
                overview.levels(), name=OVERVIEW_LAYER, multiscale=True, scale=self._scale(),
                translate=self._world((0.0, 0.0)), opacity=0.8, colormap=self.scribble_layer.colormap,
            )
            self._raise_scribbles()
            self.viewer.layers.selection.active = self.scribble_layer

    def _raise_scribbles(self) -> None:
        """Put the scribble overview, then the paintable scribbles, on top of every other layer."""
        layers = self.viewer.layers
        for layer in (self.overview_layer, self.scribble_layer):
            if layer is not None and layer in layers:
                layers.move(layers.index(layer), len(layers))

    def _schedule_overview_refresh(self) -> None:
        if self._overview_timer is None:
            from qtpy.QtCore import QTimer

            self._overview_timer = QTimer()
            self._overview_timer.setSingleShot(True)
            self._overview_timer.setInterval(OVERVIEW_REFRESH_MS)
            self._overview_timer.timeout.connect(self._refresh_overview)
        if not self._overview_timer.isActive():  # not restarted: redrawn while a stroke goes on, too
            self._overview_timer.start()

    def _refresh_overview(self) -> None:
        layer = self.overview_layer
        if self._closed or layer is None or layer not in self.viewer.layers:
            return
        _refresh_layer(layer)

    def _scale(self) -> tuple[float, float]:
        if self.image_layer is None:
            return (1.0, 1.0)
        s = self.image_layer.scale
        return float(s[-2]), float(s[-1])

    def _world(self, yx: tuple[float, float]) -> tuple[float, float]:
        sy, sx = self._scale()
        t = self.image_layer.translate if self.image_layer is not None else (0.0, 0.0)
        return yx[0] * sy + float(t[-2]), yx[1] * sx + float(t[-1])

    def _window_origin(self, centre: tuple[float, float]) -> tuple[int, int]:
        """Origin of a scribble window centred near ``centre``, on the store's chunk grid."""
        h, w = self.source.shape_yx  # type: ignore[union-attr]
        side, c = SCRIBBLE_WINDOW, 512
        y0 = int(np.clip(centre[0] - side / 2, 0, max(0, h - side))) // c * c
        x0 = int(np.clip(centre[1] - side / 2, 0, max(0, w - side))) // c * c
        return y0, x0

    def _on_scribble_write(self, region: tuple[int, int, int, int]) -> None:
        if self.trainer is not None:
            self.trainer.scribbles_changed(region)
        if self.overview is not None:
            self.overview.invalidate(region)
            self._schedule_overview_refresh()

    # ------------------------------------------------------------------ view tracking
    def visible_region(self) -> tuple[int, int, int, int] | None:
        """Full-resolution pixel box ``(y0, y1, x0, x1)`` of the image inside the canvas."""
        if self.source is None:
            return None
        cam = self.viewer.camera
        # napari >= 0.6 keeps the canvas size (height, width) on ``viewer.canvas``.
        canvas = getattr(getattr(self.viewer, "canvas", None), "size", None)
        if canvas is None:
            canvas = getattr(self.viewer, "_canvas_size", None)
        ch, cw = (tuple(canvas) if canvas is not None and min(canvas) > 1 else (1080, 1920))
        cy, cx = cam.center[-2], cam.center[-1]
        hy, hx = ch / cam.zoom / 2, cw / cam.zoom / 2
        sy, sx = self._scale()
        oy, ox = self._world((0.0, 0.0))
        h, w = self.source.shape_yx
        y0 = int(np.clip(np.floor((cy - hy - oy) / sy), 0, h))
        y1 = int(np.clip(np.ceil((cy + hy - oy) / sy), 0, h))
        x0 = int(np.clip(np.floor((cx - hx - ox) / sx), 0, w))
        x1 = int(np.clip(np.ceil((cx + hx - ox) / sx), 0, w))
        if y0 >= y1 or x0 >= x1:
            return None
        return y0, y1, x0, x1

    def _on_camera(self, event: Any = None) -> None:
        # Camera events come in bursts while panning; act once the camera rests for a moment.
        if self._view_timer is None:
            from qtpy.QtCore import QTimer

            self._view_timer = QTimer()
            self._view_timer.setSingleShot(True)
            self._view_timer.setInterval(120)
            self._view_timer.timeout.connect(self._refresh_view)
        self._view_timer.start()

    def _refresh_view(self) -> None:
        """Follow the camera: move the scribble window and ask for the visible prediction chunks."""
        if self._closed:
            return
        region = self.visible_region()
        if region is None:
            return
        y0, y1, x0, x1 = region
        layer = self.scribble_layer
        if layer is not None and isinstance(layer.data, WriteThroughWindow) and layer in self.viewer.layers:
            oy, ox = layer.data.origin
            wh, ww = layer.data.shape
            inside = oy <= y0 and y1 <= oy + wh and ox <= x0 and x1 <= ox + ww
            small = (y1 - y0) <= SCRIBBLE_WINDOW and (x1 - x0) <= SCRIBBLE_WINDOW
            if not inside and small:
                ny0, nx0 = self._window_origin(((y0 + y1) / 2, (x0 + x1) / 2))
                if (ny0, nx0) != (oy, ox):
                    h, w = self.source.shape_yx  # type: ignore[union-attr]
                    side = SCRIBBLE_WINDOW
                    layer.data = WriteThroughWindow.load(self.store, ny0, min(h, ny0 + side), nx0,
                                                         min(w, nx0 + side), on_write=self._on_scribble_write)
                    layer.translate = self._world((ny0, nx0))
                    if self.overview is not None:
                        self.overview.hidden = (ny0, min(h, ny0 + side), nx0, min(w, nx0 + side))
                        self._refresh_overview()
        if self.live is not None:
            # Zoomed far out, the view would span thousands of chunks: show what is cached instead.
            t = self.live_tile
            if (y1 - y0) * (x1 - x0) <= 64 * t * t:
                self.live.request(y0, y1, x0, x1)

    # ------------------------------------------------------------------ model and prediction
    def load_model(self, path: str | Path) -> None:
        from ..model.checkpoint import load_checkpoint

        self.set_checkpoint(load_checkpoint(path), Path(path))

    def set_checkpoint(self, checkpoint: Any, path: Path | None = None) -> None:
        """Predict with ``checkpoint`` from now on (the live view is recomputed chunk by chunk)."""
        if self.source is None:
            raise ScribbleUNetError("choose an image layer first")
        self.checkpoint, self.checkpoint_path = checkpoint, path
        self._ensure_prediction_layer()
        assert self.live is not None
        self.live.set_checkpoint(checkpoint)
        self._ensure_live_worker()
        self._refresh_view()
        self.checkpoint_changed.emit(checkpoint)

    def _ensure_prediction_layer(self) -> None:
        """The live prediction and its (still empty) layer, made once per image.

        Made when the project opens rather than at the first checkpoint: adding a layer takes
        0.3-0.7 s of the GUI thread, and a new checkpoint then only marks the cached chunks stale.
        """
        assert self.source is not None
        layer = self.prediction_layer
        live = self.live
        if live is not None and layer is not None and layer in self.viewer.layers and layer.metadata.get(
                "scribble_unet_live") is live:
            return
        if live is None:
            live = self.live = LivePrediction(self.source, tile=self.live_tile)
        n_levels = _n_levels(self.source.shape_yx)
        levels = live.levels(n_levels)
        data = levels if n_levels > 1 else levels[0]
        if layer is not None and layer in self.viewer.layers:
            layer.data = data
            layer.metadata["scribble_unet_live"] = live
            return
        self.prediction_layer = self.viewer.add_labels(
            data, name=PREDICTION_LAYER, multiscale=n_levels > 1, scale=self._scale(),
            translate=self._world((0.0, 0.0)), opacity=0.5, metadata={"scribble_unet_live": live},
        )
        self._color_prediction()
        # Keep the scribbles on top so that painting stays visible.
        self._raise_scribbles()

    def _color_prediction(self) -> None:
        """Colour class k as in exported label images, distinct from the scribbles' colours."""
        from napari.utils.colormaps import DirectLabelColormap

        from ..ome.ngff import class_colors

        colors = {k + 1: np.asarray(c, float) / 255 for k, c in enumerate(class_colors(len(self.class_names)))}
        colors[0] = np.zeros(4)
        colors[None] = np.array([1.0, 0.0, 1.0, 1.0])  # type: ignore[index]
        self.prediction_layer.colormap = DirectLabelColormap(color_dict=colors)

    def _ensure_live_worker(self) -> None:
        if self._live_worker is not None or self.live is None:
            return
        from napari.qt.threading import create_worker

        live = self.live
        done = self._live_done
        done.clear()

        def loop() -> Iterator[tuple[int, int]]:
            try:
                yield from live.run()
            finally:
                done.set()

        worker = create_worker(loop, _start_thread=False, _connect={
            "yielded": self._on_live_chunk, "errored": self._on_live_error,
        })
        worker.finished.connect(self._on_live_finished)
        self._live_worker = worker
        _start(worker)

    def _on_live_chunk(self, chunk: tuple[int, int]) -> None:
        if self._closed:
            return
        if self.prediction_layer is not None and self.prediction_layer in self.viewer.layers:
            _refresh_layer(self.prediction_layer)
        self.prediction_updated.emit(*chunk)

    def _on_live_error(self, e: BaseException) -> None:
        self._live_worker = None
        _notify_error(f"prediction stopped: {_plain(e)}")

    def _on_live_finished(self) -> None:
        self._live_worker = None
        # the image changed while the old worker was finishing: serve the new image's prediction
        if not self._closed and self.live is not None and self.live.running.is_set() is False:
            self._ensure_live_worker()

    # ------------------------------------------------------------------ training
    def start_training(self, model_config: Any, train_config: Any, init_path: str | Path | None = None) -> None:
        """Train in the background; checkpoints go to the project's ``models/`` and refresh the view."""
        from ..model.checkpoint import load_checkpoint
        from ..training.trainer import Trainer

        if self.is_training:
            raise ScribbleUNetError("training is already running")
        if self.source is None or self.store is None or self.project is None:
            raise ScribbleUNetError("choose an image and create or open a scribble project first")
        init = load_checkpoint(init_path) if init_path else None
        out = self.project.models_dir / "model.safetensors"
        source, store = self.source, self.store
        done = self._train_done
        done.clear()
        self._stop_requested = False
        self.trainer = None

        def loop() -> Iterator[Any]:
            try:
                # Building the trainer reads the whole label index and samples the image for its
                # normalisation: on a large image that takes a while, so it happens here too.
                trainer = Trainer(source, store, model_config, train_config, init=init, out=out)
                self.trainer = trainer
                if self._stop_requested:
                    trainer.stop()
                yield from trainer.run()
            finally:
                done.set()

        worker = create_worker_safe(loop, self._on_train_event, self._on_train_error)
        worker.finished.connect(self._on_train_finished)
        self._train_worker = worker
        _start(worker)
        self.training_state.emit("running")
        self.status.emit("training started")

    @property
    def is_training(self) -> bool:
        return self._train_worker is not None

    def pause_training(self) -> None:
        if self.trainer is not None and self.is_training:
            self.trainer.pause()
            self.training_state.emit("paused")

    def resume_training(self) -> None:
        if self.trainer is not None and self.is_training:
            self.trainer.resume()
            self.training_state.emit("running")

    def stop_training(self) -> None:
        self._stop_requested = True
        if self.trainer is not None:
            self.trainer.stop()

    def _on_train_event(self, event: Any) -> None:
        if self._closed:
            return
        from ..training.trainer import CheckpointEvent, FinishedEvent

        if isinstance(event, (CheckpointEvent, FinishedEvent)):
            path = getattr(event, "path", None)
            self.set_checkpoint(event.checkpoint, Path(path) if path else None)
            if self.project is not None and path:
                try:
                    self.project.model = str(Path(path).relative_to(self.project.folder))
                except ValueError:
                    self.project.model = str(path)
                self.project.save()
        if isinstance(event, FinishedEvent):
            self.status.emit(f"training finished after {event.step} steps ({event.reason})")
        self.train_event.emit(event)

    def _on_train_error(self, e: BaseException) -> None:
        self._train_worker = None
        self.training_state.emit("idle")
        _notify_error(f"training stopped: {_plain(e)}")

    def _on_train_finished(self) -> None:
        self._train_worker = None
        self.training_state.emit("idle")

    def save_model(self, path: str | Path) -> Path:
        """Save the current model (the last published checkpoint) to ``path``."""
        from ..model.checkpoint import save_checkpoint

        if self.checkpoint is None:
            raise ScribbleUNetError("there is no model yet; train first")
        out = save_checkpoint(path, self.checkpoint)
        _notify_info(f"model saved to {out}")
        return out

    # ------------------------------------------------------------------ export
    def start_export(self, out: str | Path, probabilities: bool = False, tile: int = 1024,
                     overwrite: bool = False) -> None:
        """Predict the whole image into ``out`` in the background; resumable, cancellable."""
        from ..export.to_zarr import predict_to_zarr

        if self.checkpoint is None or self.source is None:
            raise ScribbleUNetError("there is no model yet; train or load one first")
        if self._export_worker is not None:
            raise ScribbleUNetError("an export is already running")
        self._export_cancel = threading.Event()
        cancel, done = self._export_cancel, self._export_done
        done.clear()
        # The progress callback runs in the worker thread: hand it to the main thread via a Qt
        # signal (queued connection) before any widget sees it.
        relay = self._progress_relay()

        def job() -> Any:
            try:
                return predict_to_zarr(self.checkpoint, self.source, out, tile=tile, probabilities=probabilities,
                                       progress=relay.progress.emit, cancel=cancel,
                                       overwrite=overwrite, device="cpu")
            finally:
                done.set()

        from napari.qt.threading import create_worker

        worker = create_worker(job, _start_thread=False, _connect={
            "returned": self._on_export_returned, "errored": self._on_export_error,
        })
        self._export_worker = worker
        _start(worker)
        self.export_state.emit("running")

    def _progress_relay(self) -> Any:
        if getattr(self, "_relay", None) is None:
            from qtpy.QtCore import QObject, Slot
            from qtpy.QtCore import Signal as QtSignal

            target = self.export_progress

            class _Relay(QObject):
                progress = QtSignal(int, int)

                @Slot(int, int)
                def forward(self, done: int, total: int) -> None:
                    target.emit(done, total)

            # Created on the main thread, so the slot runs there (a queued connection).
            self._relay = _Relay()
            self._relay.progress.connect(self._relay.forward)
        return self._relay

    def cancel_export(self) -> None:
        self._export_cancel.set()

    def _on_export_returned(self, result: Any) -> None:
        self._export_worker = None
        if "cancelled" in result.notes:
            self.export_state.emit("cancelled")
            _notify_info(f"export cancelled after {result.computed + result.skipped} of {result.n_chunks} "
                         "chunks; export again to the same folder to resume")
        else:
            self.export_state.emit("done")
            _notify_info(f"exported the mask to {result.path}/labels/mask")

    def _on_export_error(self, e: BaseException) -> None:
        self._export_worker = None
        self.export_state.emit("failed")
        _notify_error(f"export failed: {_plain(e)}")

    # ------------------------------------------------------------------ shutdown
    def shutdown(self, timeout: float = STOP_TIMEOUT_S) -> bool:
        """Stop every worker and wait for them (at most ``timeout`` s in all); True if all stopped."""
        if self._closed:
            return True
        self._closed = True
        # Each loop checks its flag between steps/chunks and then returns; quitting a generator
        # worker instead would leave the generator suspended and its clean-up undone.
        self.stop_training()
        if self.live is not None:
            self.live.stop()
        self._export_cancel.set()
        for timer in (self._view_timer, self._overview_timer):
            if timer is not None:
                timer.stop()
        import time

        deadline = time.monotonic() + timeout
        ok = True
        for ev in (self._train_done, self._live_done, self._export_done):
            ok &= ev.wait(max(0.0, deadline - time.monotonic()))
        try:
            self.viewer.camera.events.center.disconnect(self._on_camera)
            self.viewer.camera.events.zoom.disconnect(self._on_camera)
        except Exception:  # the viewer may already be torn down
            pass
        if _CONTROLLERS.get(id(self.viewer)) is self:
            _CONTROLLERS.pop(id(self.viewer), None)
        return ok


def _refresh_layer(layer: Any) -> None:
    """Redraw ``layer`` from its (changed) data.

    napari (0.9) keeps the coarsest level of a 2D multiscale layer in a one-entry cache that
    ``refresh()`` does not clear, so a view at that level (now or after zooming out) would stay
    stale: clear it. The thumbnail is not redrawn, so that the coarsest level is read again only
    when it is displayed.
    """
    materializer = getattr(layer, "_level_materializer", None)
    if materializer is not None and hasattr(materializer, "cache_clear"):
        materializer.cache_clear()
    try:
        layer.refresh(thumbnail=False)
    except TypeError:  # a napari whose refresh() takes no keywords
        layer.refresh()


def _n_levels(shape_yx: tuple[int, int]) -> int:
    """Pyramid levels (factor 2 each) of a display layer: until the coarsest fits in 2048²."""
    n_levels, side = 1, max(shape_yx)
    while side > 2048:
        side = -(-side // 2)
        n_levels += 1
    return n_levels


def create_worker_safe(gen: Callable[[], Iterator[Any]], on_yield: Callable[[Any], None],
                       on_error: Callable[[BaseException], None]) -> Any:
    """A generator worker whose errors go to ``on_error`` (no traceback dialog)."""
    from napari.qt.threading import create_worker

    return create_worker(gen, _start_thread=False, _connect={"yielded": on_yield, "errored": on_error})
