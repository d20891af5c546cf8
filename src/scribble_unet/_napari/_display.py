"""Filling a large image's display pyramid in a worker thread while the viewer stays responsive.

The reader (:mod:`._reader`) gives a large single-resolution image a
:class:`~scribble_unet.image.display.DisplayPyramid`; when the image is opened in a viewer, its
coarse levels are filled here by a :class:`~._workers.Job` (each image chunk read once, off the GUI
thread), and the layers showing it are redrawn on the main thread as the levels fill (every 0.5 s).
When the pass is over, the layer's contrast range becomes the image's full range, and its contrast
limits too if the user left them at the reader's estimate. Removing the layer (or closing the
viewer) stops the pass.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ..image.display import DisplayPyramid
from ._layers import refresh_layer
from ._workers import Job

PYRAMID_KEY = "scribble_unet_pyramid"
"""Layer metadata key of the display pyramid a layer shows."""
REDRAW_EVERY_S = 1.0
"""A zoomed-out layer is redrawn this often while its levels fill (a redraw takes 0.1-0.4 s here)."""
_JOBS: dict[int, tuple[Job[int, None], DisplayPyramid]] = {}


def display_pyramid(image: Any) -> DisplayPyramid:
    """A display pyramid of ``image``, filled in a worker when a viewer is open (else on demand)."""
    pyramid = DisplayPyramid(image)
    viewer = _current_viewer()
    if viewer is not None:
        start_filling(pyramid, viewer)
    return pyramid


def _current_viewer() -> Any:
    try:
        from napari import current_viewer

        return current_viewer()
    except Exception:  # no Qt application: the levels are filled on demand
        return None


def layers_showing(viewer: Any, pyramid: DisplayPyramid) -> list[Any]:
    """The layers of ``viewer`` whose data is ``pyramid``'s."""
    try:
        layers = list(viewer.layers)
    except Exception:  # a viewer being closed
        return []
    return [ly for ly in layers if ly.metadata.get(PYRAMID_KEY) is pyramid]


def start_filling(pyramid: DisplayPyramid, viewer: Any) -> Job[int, None]:
    """Fill ``pyramid`` in a worker; redraw the layers of ``viewer`` that show it as it fills."""
    job: Job[int, None] = Job("display pyramid")
    seen = {"shown": False}

    def redraw(_: int = 0) -> None:
        layers = layers_showing(viewer, pyramid)
        if layers:
            seen["shown"] = True
        elif seen["shown"]:  # the layer was removed (or the viewer closed): nothing to fill for
            pyramid.stop()
        for layer in layers:
            if getattr(layer, "data_level", 1) > 0:
                refresh_layer(layer)
            else:  # full resolution on screen: redrawing would show nothing new
                clear_coarsest(layer)

    def removed(event: Any) -> None:
        if getattr(event.value, "metadata", {}).get(PYRAMID_KEY) is pyramid and not layers_showing(viewer, pyramid):
            pyramid.stop()

    def finished() -> None:
        _JOBS.pop(id(pyramid), None)
        viewer.layers.events.removed.disconnect(removed)
        if pyramid.done.is_set():
            for layer in layers_showing(viewer, pyramid):
                full_contrast_range(layer, pyramid)
                clear_coarsest(layer)
                layer.refresh()  # the thumbnail too, once

    pyramid.background = True  # from now on a view never waits for the image
    viewer.layers.events.removed.connect(removed)
    job.start(lambda: pyramid.run(REDRAW_EVERY_S), on_yield=redraw, on_finish=finished)
    _JOBS[id(pyramid)] = (job, pyramid)
    return job


def clear_coarsest(layer: Any) -> None:
    """Drop napari's cached coarsest level of ``layer`` (it may be one that was still filling)."""
    materializer = getattr(layer, "_level_materializer", None)
    if materializer is not None and hasattr(materializer, "cache_clear"):
        materializer.cache_clear()


def full_contrast_range(layer: Any, pyramid: DisplayPyramid) -> None:
    """The image's whole range as ``layer``'s contrast range (and limits, if still the estimate)."""
    if pyramid.low is None or pyramid.high is None or pyramid.dtype == np.uint8:
        return
    lo, hi = pyramid.low, pyramid.high if pyramid.high > pyramid.low else pyramid.low + 1.0
    untouched = pyramid.estimate is not None and np.allclose(layer.contrast_limits, pyramid.estimate)
    old_lo, old_hi = layer.contrast_limits_range
    layer.contrast_limits_range = (min(lo, old_lo), max(hi, old_hi)) if not untouched else (lo, hi)
    if untouched:
        layer.contrast_limits = (lo, hi)


def stop_all(timeout: float = 2.0) -> bool:
    """Stop every pass and wait for their threads (True if all ended in ``timeout`` s)."""
    running = list(_JOBS.values())
    for _, pyramid in running:
        pyramid.stop()
    return all(job.wait(timeout) for job, _ in running)


WARM_UP_MODULES = ("dask.array", "distributed", "pandas")
"""Imported in the background when the widget opens: the first image open and the first Labels
layer would otherwise import them on the GUI thread (0.7, 0.2 and 0.3 s here; dask imports
``distributed`` at its first compute)."""


def warm_up(modules: tuple[str, ...] = WARM_UP_MODULES) -> threading.Thread:
    """Import ``modules`` in a daemon thread (a missing one is skipped)."""
    import importlib

    def run() -> None:
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:  # an optional package: the GUI thread imports (or lacks) it later
                continue

    thread = threading.Thread(target=run, name="scribble-unet-warm-up", daemon=True)
    thread.start()
    return thread
