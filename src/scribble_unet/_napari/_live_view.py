"""The live view's extras on the main thread: batched redraws, the uncertainty and objects layers,
the pause control and "next region to check".

* Chunks arrive one by one from the live worker; redrawing a layer costs tens of ms of GUI time, so
  arrivals are batched: the prediction layer is redrawn at most every :data:`REDRAW_MS` ms, and the
  uncertainty layer (if shown) in a later turn of the event loop, so that no single turn does both.
* The uncertainty layer shows the cached uncertainty of the same chunks (computed with the mask
  from one network pass; quantised to ``0..255``).
* The objects layer labels the objects of the mask in the view, on a worker thread, at most every
  :data:`OBJECTS_EVERY_MS` ms: exact (the same labels as the whole-image
  :func:`~scribble_unet.inference.instances.instance_labels`, up to numbering) for every object
  that does not touch the view's edge; an object cut by the view's edge is cut there and not split.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import ScribbleUNetError
from ..inference.instances import SplitOptions, label_window
from ..inference.uncertainty import most_uncertain_region
from ..state.viewport import Box, n_levels, worth_predicting
from ._layers import Placement, camera, canvas_size, refresh_layer
from ._workers import Job

REDRAW_MS = 250
OBJECTS_EVERY_MS = 1000
UNCERTAINTY_LAYER = "uncertainty"
OBJECTS_LAYER = "objects"
MAX_OBJECTS_VIEW_PX = 4096 * 4096
"""Objects are labelled for views up to this many full-resolution pixels."""
NEXT_REGION_SIDE = 512
"""Side (full-resolution px) of the region "next region to check" looks for."""
NEXT_REGION_LOWRES = 1024
"""The search runs on a level of the cache whose longer side is at most this."""


def objects_in_view(live: Any, region: Box, shape: tuple[int, int], options: SplitOptions | None) -> np.ndarray:
    """Objects (int32, 1..n) of the cached mask in ``region``; uncomputed chunks count as background.

    Sides of the region inside the image are open: a region touching them continues outside the
    view, so it is not split (see :func:`~scribble_unet.inference.instances.label_window`).
    """
    y0, y1, x0, x1 = region
    mask = live.read(y0, y1, x0, x1)
    h, w = shape
    open_edges = (y0 > 0, y1 < h, x0 > 0, x1 < w)
    return label_window(mask, (0, y1 - y0, 0, x1 - x0), options, open_edges)


class LiveView:
    """Batched redraws and the extra layers of one controller's live prediction."""

    def __init__(self, controller: Any) -> None:
        self.ctrl = controller
        self.viewer = controller.viewer
        self.uncertainty_layer: Any = None
        self.objects_layer: Any = None
        self.show_objects = False
        self.split_objects = False
        self.object_diameter: float | None = None
        self.objects_job: Job[Any, None] = Job("objects")
        self._objects_dirty = False
        self._redraw_timer: Any = None
        self._objects_timer: Any = None
        self.redraws = 0
        self.proposed: list[Box] = []
        """Full-resolution regions "next region to check" went to, on the image ``_proposed_for``."""
        self._proposed_for: Any = None

    def _alive(self, layer: Any) -> bool:
        return layer is not None and layer in self.viewer.layers

    def _timer(self, ms: int, slot: Any) -> Any:
        from qtpy.QtCore import QTimer

        timer = QTimer()
        timer.setSingleShot(True)
        timer.setInterval(ms)
        timer.timeout.connect(slot)
        return timer

    # ------------------------------------------------------------------ redraws
    def chunk_arrived(self) -> None:
        """A chunk is in the cache: redraw soon (many arrivals, one redraw)."""
        if self._redraw_timer is None:
            self._redraw_timer = self._timer(REDRAW_MS, self.redraw)
        if not self._redraw_timer.isActive():
            self._redraw_timer.start()

    def redraw(self) -> None:
        if self.ctrl.closed:
            return
        from qtpy.QtCore import QTimer

        self.redraws += 1
        self.ctrl.prediction.refresh()
        if self._alive(self.uncertainty_layer) and self.uncertainty_layer.visible:
            QTimer.singleShot(0, self._redraw_uncertainty)
        if self.show_objects:
            self.objects_soon()

    def _redraw_uncertainty(self) -> None:
        if not self.ctrl.closed and self._alive(self.uncertainty_layer):
            refresh_layer(self.uncertainty_layer)

    def set_paused(self, paused: bool) -> None:
        """Pause (True) or resume the live view: paused, nothing is computed and training has the machine."""
        self.ctrl.scheduler.set_live_paused(paused)
        self.ctrl.state.prediction.live_paused = paused

    # ------------------------------------------------------------------ uncertainty
    def set_show_uncertainty(self, show: bool) -> None:
        """Show (adding it the first time) or hide the uncertainty layer."""
        live = self.ctrl.live
        if not show:
            if self._alive(self.uncertainty_layer):
                self.uncertainty_layer.visible = False
            return
        if live is None or self.ctrl.source is None:
            raise ScribbleUNetError("there is no prediction yet; train or load a model first")
        shape = self.ctrl.source.shape_yx
        levels_n = n_levels(shape)
        levels = live.levels(levels_n, "uncertainty")
        data = levels if levels_n > 1 else levels[0]
        layer = self.uncertainty_layer
        if self._alive(layer) and layer.metadata.get("scribble_unet_live") is live:
            layer.visible = True
            refresh_layer(layer)
            return
        if self._alive(layer):
            self.viewer.layers.remove(layer)
        placement: Placement = self.ctrl.placement
        self.uncertainty_layer = self.viewer.add_image(
            data, name=UNCERTAINTY_LAYER, multiscale=levels_n > 1, scale=placement.scale,
            translate=placement.world((0.0, 0.0)), colormap="magma", contrast_limits=(0, 255),
            opacity=0.6, blending="additive", metadata={"scribble_unet_live": live},
        )
        self.ctrl.scribbles.raise_to_top()

    def next_region(self) -> Box:
        """Move the camera to the most uncertain predicted region not yet painted; returns it.

        A region proposed before on the same image is not proposed again (strokes cover a few percent of
        it, and a hard place stays uncertain after a stroke); once every region has been proposed the
        list starts over.
        """
        ctrl = self.ctrl
        live, source = ctrl.live, ctrl.source
        if live is None or source is None or live.token is None:
            raise ScribbleUNetError("there is no prediction yet; train or load a model first")
        h, w = source.shape_yx
        level = max(0, math.ceil(math.log2(max(h, w) / NEXT_REGION_LOWRES)))
        f = 2**level
        u = np.asarray(live.levels(level + 1, "uncertainty")[level][:, :], np.float32) / 255
        painted = None
        if ctrl.store is not None:
            from ..scribbles.project import ScribbleOverview

            painted = ScribbleOverview(ctrl.store, level + 1).read(level, 0, u.shape[0], 0, u.shape[1]) > 0
        if self._proposed_for is not source:
            self.proposed, self._proposed_for = [], source
        side = max(1, NEXT_REGION_SIDE // f)
        before = [(b[0] // f, -(-b[1] // f), b[2] // f, -(-b[3] // f)) for b in self.proposed]
        box = most_uncertain_region(u, painted, side, exclude=before)
        if box is None and before:  # every uncertain region was proposed: start over
            self.proposed = []
            box = most_uncertain_region(u, painted, side)
        if box is None:
            raise ScribbleUNetError("nothing uncertain is left in what was predicted; pan elsewhere")
        y0, y1, x0, x1 = box
        full = (y0 * f, min(h, y1 * f), x0 * f, min(w, x1 * f))
        self.proposed.append(full)
        cam = camera(self.viewer)
        wy, wx = ctrl.placement.world(((full[0] + full[1]) / 2, (full[2] + full[3]) / 2))
        region = ctrl.visible_region()
        if region is None or not worth_predicting(region, ctrl.state.prediction.tile):
            ch, cw = canvas_size(self.viewer) or (1080, 1920)
            cam.zoom = min(ch, cw) / (2 * NEXT_REGION_SIDE * ctrl.placement.scale[0])
        cam.center = (wy, wx)
        return full

    # ------------------------------------------------------------------ objects
    def set_objects(self, show: bool, split: bool = False, diameter: float | None = None) -> None:
        """Show the objects of the mask in view (split touching ones if ``split``)."""
        if split and not diameter:
            raise ScribbleUNetError("splitting touching objects needs an object diameter")
        self.show_objects, self.split_objects, self.object_diameter = show, split, diameter
        if not show:
            if self._alive(self.objects_layer):
                self.objects_layer.visible = False
            self.ctrl.state.prediction.objects = ""
            return
        self._objects_dirty = True
        self._start_objects()

    def objects_soon(self) -> None:
        self._objects_dirty = True
        if self._objects_timer is None:
            self._objects_timer = self._timer(OBJECTS_EVERY_MS, self._start_objects)
        if not self._objects_timer.isActive():
            self._objects_timer.start()

    def _start_objects(self) -> None:
        ctrl = self.ctrl
        if ctrl.closed or not self.show_objects or self.objects_job.running or not self._objects_dirty:
            return
        live, source = ctrl.live, ctrl.source
        region = ctrl.visible_region()
        if live is None or source is None or region is None:
            return
        y0, y1, x0, x1 = region
        if (y1 - y0) * (x1 - x0) > MAX_OBJECTS_VIEW_PX:
            ctrl.state.prediction.objects = "objects: zoom in to see them"
            return
        self._objects_dirty = False
        options = SplitOptions(self.object_diameter) if self.split_objects and self.object_diameter else None
        shape = source.shape_yx

        def work() -> Any:
            yield region, objects_in_view(live, region, shape, options)

        self.objects_job.start(work, on_yield=self._show_objects, on_finish=self._objects_finished)

    def _objects_finished(self) -> None:
        if self._objects_dirty and not self.ctrl.closed:
            self.objects_soon()

    def _show_objects(self, result: tuple[Box, np.ndarray]) -> None:
        ctrl = self.ctrl
        if ctrl.closed or not self.show_objects:
            return
        (y0, _, x0, _), labels = result
        placement: Placement = ctrl.placement
        translate = placement.world((float(y0), float(x0)))
        if self._alive(self.objects_layer):
            self.objects_layer.data = labels
            self.objects_layer.translate = translate
            self.objects_layer.visible = True
        else:
            self.objects_layer = self.viewer.add_labels(labels, name=OBJECTS_LAYER, scale=placement.scale,
                                                        translate=translate, opacity=0.5)
            ctrl.scribbles.raise_to_top()
        split = "split" if self.split_objects else "not split"
        ctrl.state.prediction.objects = (
            f"objects: {int(labels.max())} in view ({split}); exact except those cut by the view's edge"
        )

    def close(self) -> None:
        for timer in (self._redraw_timer, self._objects_timer):
            if timer is not None:
                timer.stop()
