"""The plugin's layers: the paintable scribble window, its overview, and the live prediction.

Main-thread only. These classes add, move and redraw layers; what goes where is decided by the
pure functions of :mod:`scribble_unet.state.viewport`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..classes import LabelScheme
from ..errors import ScribbleUNetError
from ..image import ImageSource, open_image
from ..scribbles.project import ScribbleOverview, WriteThroughWindow
from ..state.viewport import (
    Box,
    can_paint,
    n_levels,
    needs_window,
    window_box,
    window_origin,
    window_to_follow,
)

SCRIBBLE_LAYER = "scribbles"
OVERVIEW_LAYER = "scribbles (overview)"
PREDICTION_LAYER = "prediction"
OVERVIEW_REFRESH_MS = 300
"""The overview layer is redrawn at most this often while strokes are written."""
ZOOM_IN_HINT = "Zoomed out beyond the paintable area: zoom in to paint scribbles"


def text_overlay(viewer: Any) -> Any:
    """The canvas text overlay: ``viewer.canvas.overlays.text`` (napari >= 0.9), else ``viewer.text_overlay``."""
    overlays = getattr(getattr(viewer, "canvas", None), "overlays", None)
    text = getattr(overlays, "text", None) if overlays is not None else None
    return text if text is not None else getattr(viewer, "text_overlay", None)


def camera(viewer: Any) -> Any:
    """The viewer's camera: ``viewer.scene.camera`` (napari >= 0.9), else ``viewer.camera``."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def canvas_size(viewer: Any) -> tuple[int, int] | None:
    """The canvas size ``(height, width)`` in screen pixels, if the viewer knows it."""
    # napari >= 0.6 keeps the canvas size (height, width) on ``viewer.canvas``.
    size = getattr(getattr(viewer, "canvas", None), "size", None)
    if size is None:
        size = getattr(viewer, "_canvas_size", None)
    return (int(size[0]), int(size[1])) if size is not None else None


class Placement:
    """Where an image layer's pixels lie in world coordinates (its scale and translate, in y, x)."""

    def __init__(self, image_layer: Any = None) -> None:
        if image_layer is None:
            self.scale, self.origin = (1.0, 1.0), (0.0, 0.0)
        else:
            s, t = image_layer.scale, image_layer.translate
            self.scale = (float(s[-2]), float(s[-1]))
            self.origin = (float(t[-2]), float(t[-1]))

    def world(self, yx: tuple[float, float]) -> tuple[float, float]:
        return yx[0] * self.scale[0] + self.origin[0], yx[1] * self.scale[1] + self.origin[1]


def refresh_layer(layer: Any) -> None:
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


class ScribbleLayers:
    """The paintable scribble window onto the store and, on large images, the read-only overview.

    On images larger than :data:`~scribble_unet.state.viewport.SCRIBBLE_WINDOW` the paintable layer
    is a window that follows the camera (:meth:`follow`); the overview layer right below it shows
    every scribble in the store, max-pooled, where the window does not reach.
    """

    def __init__(self, viewer: Any, on_write: Callable[[Box], None]) -> None:
        self.viewer = viewer
        self.on_write = on_write
        self.layer: Any = None
        self.overview: ScribbleOverview | None = None
        self.overview_layer: Any = None
        self.store: Any = None
        self.shape: tuple[int, int] = (0, 0)
        self._timer: Any = None
        self._closed = False
        self.paintable = True
        self._mode_to_restore: str | None = None

    def _alive(self, layer: Any) -> bool:
        return layer is not None and layer in self.viewer.layers

    def show(self, store: Any, shape: tuple[int, int], placement: Placement, class_names: Sequence[str]) -> None:
        """Show ``store`` (scribbles of an image of ``shape``): the window at the image's centre."""
        self.store, self.shape = store, shape
        h, w = shape
        origin = window_origin((h // 2, w // 2), shape) if needs_window(shape) else (0, 0)
        box = window_box(origin, shape)
        window = self._window(box)
        if self._alive(self.layer):
            self.layer.data = window
            self.layer.translate = placement.world(origin)
        else:
            self.layer = self.viewer.add_labels(
                window, name=SCRIBBLE_LAYER, translate=placement.world(origin), scale=placement.scale,
                metadata={"class_names": LabelScheme(class_names).layer_names()}, opacity=0.8,
            )
            self.layer.brush_size = 5
            self.layer.selected_label = 2
        if needs_window(shape):
            self._show_overview(box, placement)

    def _window(self, box: Box) -> WriteThroughWindow:
        return WriteThroughWindow.load(self.store, *box, on_write=self.on_write)

    def _show_overview(self, window: Box, placement: Placement) -> None:
        overview = ScribbleOverview(self.store, n_levels(self.shape))
        overview.hidden = window
        self.overview = overview
        if self._alive(self.overview_layer):
            self.overview_layer.data = overview.levels()
        else:
            self.overview_layer = self.viewer.add_labels(
                overview.levels(), name=OVERVIEW_LAYER, multiscale=True, scale=placement.scale,
                translate=placement.world((0.0, 0.0)), opacity=0.8, colormap=self.layer.colormap,
            )
            self.raise_to_top()
            self.viewer.layers.selection.active = self.layer

    def raise_to_top(self) -> None:
        """Put the scribble overview, then the paintable scribbles, on top of every other layer."""
        layers = self.viewer.layers
        for layer in (self.overview_layer, self.layer):
            if self._alive(layer):
                layers.move(layers.index(layer), len(layers))

    def set_class_names(self, class_names: Sequence[str]) -> None:
        if self.layer is not None:
            self.layer.metadata["class_names"] = LabelScheme(class_names).layer_names()

    def follow(self, view: Box, placement: Placement) -> None:
        """Move the window to ``view`` when the view leaves it (and fits in one window)."""
        layer = self.layer
        if not (self._alive(layer) and isinstance(layer.data, WriteThroughWindow)):
            return
        oy, ox = layer.data.origin
        wh, ww = layer.data.shape
        box = (oy, oy + wh, ox, ox + ww)
        origin = window_to_follow(box, view, self.shape)
        if origin is not None:
            box = window_box(origin, self.shape)
            layer.data = self._window(box)
            layer.translate = placement.world(origin)
            if self.overview is not None:
                self.overview.hidden = box
                self.refresh_overview()
        self.set_paintable(can_paint(box, view))

    def guard(self, view: Box | None) -> None:
        """The camera just moved to ``view``: no brush where the window does not reach yet.

        :meth:`follow` moves the window only once the camera rests; until then a stroke outside the
        window would be dropped by napari, so the brush is off meanwhile and :meth:`set_paintable`
        gives it back (the same tool) once the window is there.
        """
        layer = self.layer
        if view is None or not (self.paintable and layer is not None and layer.editable
                                and isinstance(layer.data, WriteThroughWindow)):
            return
        oy, ox = layer.data.origin
        wh, ww = layer.data.shape
        if not can_paint((oy, oy + wh, ox, ox + ww), view) and self._alive(layer):
            self._mode_to_restore = str(layer.mode)
            layer.editable = False

    def set_paintable(self, paintable: bool) -> None:
        """Turn the brush on or off; off, a hint on the canvas asks the user to zoom in.

        Only where the view lies inside the window does every stroke reach the store, so the layer
        is made read-only (napari greys out its painting tools) rather than lose a stroke silently.
        """
        layer = self.layer
        if self._alive(layer) and layer.editable != paintable:
            layer.editable = paintable
        if paintable and self._mode_to_restore is not None and self._alive(layer):
            layer.mode = self._mode_to_restore  # the tool the camera move took away (see guard)
        self._mode_to_restore = None
        overlay = text_overlay(self.viewer)
        if overlay is not None and paintable != self.paintable:
            if not paintable:
                overlay.text = ZOOM_IN_HINT
                overlay.visible = True
            elif overlay.text == ZOOM_IN_HINT:
                overlay.visible = False
                overlay.text = ""
        self.paintable = paintable

    def invalidate(self, region: Box) -> None:
        """Strokes were written in ``region``: redraw the overview there, soon."""
        if self.overview is None:
            return
        self.overview.invalidate(region)
        if self._timer is None:
            from qtpy.QtCore import QTimer

            self._timer = QTimer()
            self._timer.setSingleShot(True)
            self._timer.setInterval(OVERVIEW_REFRESH_MS)
            self._timer.timeout.connect(self.refresh_overview)
        if not self._timer.isActive():  # not restarted: redrawn while a stroke goes on, too
            self._timer.start()

    def refresh_overview(self) -> None:
        if not self._closed and self._alive(self.overview_layer):
            refresh_layer(self.overview_layer)

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.stop()


class PredictionLayer:
    """The live prediction's layer: a (multiscale) view of its cached chunks, coloured by class."""

    def __init__(self, viewer: Any) -> None:
        self.viewer = viewer
        self.layer: Any = None

    def shows(self, live: Any) -> bool:
        layer = self.layer
        return (layer is not None and layer in self.viewer.layers
                and layer.metadata.get("scribble_unet_live") is live)

    def show(self, live: Any, shape: tuple[int, int], placement: Placement, class_names: Sequence[str]) -> bool:
        """Show ``live``'s chunks; True if a layer was added (the caller may restack layers)."""
        levels_n = n_levels(shape)
        levels = live.levels(levels_n)
        data = levels if levels_n > 1 else levels[0]
        if self.layer is not None and self.layer in self.viewer.layers:
            self.layer.data = data
            self.layer.metadata["scribble_unet_live"] = live
            return False
        self.layer = self.viewer.add_labels(
            data, name=PREDICTION_LAYER, multiscale=levels_n > 1, scale=placement.scale,
            translate=placement.world((0.0, 0.0)), opacity=0.5, metadata={"scribble_unet_live": live},
        )
        # computed, not painted: corrections go through "Correct here" in the Train tab
        self.layer.editable = False
        self.color(class_names)
        return True

    def color(self, class_names: Sequence[str]) -> None:
        """Colour class k as in exported label images, distinct from the scribbles' colours."""
        if self.layer is None or self.layer not in self.viewer.layers:
            return
        from napari.utils.colormaps import DirectLabelColormap

        colors: dict[int | None, np.ndarray] = {
            k: np.asarray(c, float) for k, c in LabelScheme(class_names).mask_colors().items()
        }
        colors[0] = np.zeros(4)
        colors[None] = np.array([1.0, 0.0, 1.0, 1.0])
        self.layer.colormap = DirectLabelColormap(color_dict=colors)

    def refresh(self) -> None:
        if self.layer is not None and self.layer in self.viewer.layers:
            refresh_layer(self.layer)


def real_viewer(viewer: Any) -> Any:
    """The viewer behind napari's public proxy (plugin widgets receive a proxy)."""
    return getattr(viewer, "__wrapped__", viewer)


def source_of(layer: Any) -> ImageSource:
    """The image source behind an image layer (the sample's own source if it carries one)."""
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
