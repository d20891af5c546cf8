"""Viewport geometry as pure functions: what the camera sees, where the paintable window goes.

Boxes are ``(y0, y1, x0, x1)`` in full-resolution image pixels, half-open. World coordinates are
image pixels times the layer's ``scale`` plus its ``translate`` (``origin``).
"""

from __future__ import annotations

import math

Box = tuple[int, int, int, int]

SCRIBBLE_WINDOW = 4096
"""Side of the full-resolution paintable window on images larger than this."""
WINDOW_GRID = 512
"""The window's origin lies on this grid (the scribble store's chunks)."""
DISPLAY_LEVEL_MAX = 2048
"""A display pyramid gets levels (factor 2 each) until its coarsest level fits in this side."""
MAX_LIVE_CHUNKS = 64
"""Zoomed out further than this many live chunks in view, only what is cached is shown."""
DEFAULT_CANVAS = (1080, 1920)
"""Canvas size assumed before the canvas has one."""


def _clip(v: float, lo: int, hi: int) -> int:
    return int(min(max(v, lo), hi))


def visible_region(center: tuple[float, float], zoom: float, canvas: tuple[int, int] | None,
                   scale: tuple[float, float], origin: tuple[float, float],
                   shape: tuple[int, int]) -> Box | None:
    """Full-resolution pixel box of an image of ``shape`` inside the canvas, or None if outside.

    Parameters
    ----------
    center, zoom
        The camera's centre (world y, x) and zoom (screen pixels per world unit).
    canvas
        The canvas size ``(height, width)`` in screen pixels; :data:`DEFAULT_CANVAS` if unknown.
    scale, origin
        The image layer's scale and world position of its pixel (0, 0).

    Examples
    --------
    >>> visible_region((50, 50), 1.0, (20, 40), (1.0, 1.0), (0.0, 0.0), (100, 100))
    (40, 60, 30, 70)
    """
    ch, cw = canvas if canvas is not None and min(canvas) > 1 else DEFAULT_CANVAS
    cy, cx = center
    hy, hx = ch / zoom / 2, cw / zoom / 2
    sy, sx = scale
    oy, ox = origin
    h, w = shape
    y0 = _clip(math.floor((cy - hy - oy) / sy), 0, h)
    y1 = _clip(math.ceil((cy + hy - oy) / sy), 0, h)
    x0 = _clip(math.floor((cx - hx - ox) / sx), 0, w)
    x1 = _clip(math.ceil((cx + hx - ox) / sx), 0, w)
    if y0 >= y1 or x0 >= x1:
        return None
    return y0, y1, x0, x1


def window_origin(centre: tuple[float, float], shape: tuple[int, int], side: int = SCRIBBLE_WINDOW,
                  grid: int = WINDOW_GRID) -> tuple[int, int]:
    """Origin of a ``side``-square window centred near ``centre``, inside the image, on ``grid``.

    Examples
    --------
    >>> window_origin((30000, 100), (65536, 65536))
    (27648, 0)
    """
    h, w = shape
    y0 = _clip(centre[0] - side / 2, 0, max(0, h - side)) // grid * grid
    x0 = _clip(centre[1] - side / 2, 0, max(0, w - side)) // grid * grid
    return y0, x0


def window_box(origin: tuple[int, int], shape: tuple[int, int], side: int = SCRIBBLE_WINDOW) -> Box:
    """The window at ``origin``, cut at the image's edges."""
    (y0, x0), (h, w) = origin, shape
    return y0, min(h, y0 + side), x0, min(w, x0 + side)


def needs_window(shape: tuple[int, int], side: int = SCRIBBLE_WINDOW) -> bool:
    """Whether an image is larger than one paintable window (and so gets a window and an overview)."""
    return max(shape) > side


def window_to_follow(window: Box, view: Box, shape: tuple[int, int],
                     side: int = SCRIBBLE_WINDOW) -> tuple[int, int] | None:
    """The window's new origin when ``view`` leaves it and fits in one window; else None.

    Zoomed out beyond one window's size, the window stays where it is (the overview draws).
    """
    wy0, wy1, wx0, wx1 = window
    y0, y1, x0, x1 = view
    inside = wy0 <= y0 and y1 <= wy1 and wx0 <= x0 and x1 <= wx1
    small = (y1 - y0) <= side and (x1 - x0) <= side
    if inside or not small:
        return None
    origin = window_origin(((y0 + y1) / 2, (x0 + x1) / 2), shape, side)
    return None if origin == (wy0, wx0) else origin


def worth_predicting(view: Box, tile: int, max_chunks: int = MAX_LIVE_CHUNKS) -> bool:
    """Whether the view is small enough to compute live (about ``max_chunks`` chunks of ``tile``)."""
    y0, y1, x0, x1 = view
    return (y1 - y0) * (x1 - x0) <= max_chunks * tile * tile


def n_levels(shape: tuple[int, int], coarsest: int = DISPLAY_LEVEL_MAX) -> int:
    """Pyramid levels (factor 2 each) of a display layer: until the coarsest fits in ``coarsest``².

    Examples
    --------
    >>> n_levels((512, 512)), n_levels((65536, 65536))
    (1, 6)
    """
    levels, side = 1, max(shape)
    while side > coarsest:
        side = -(-side // 2)
        levels += 1
    return levels


def can_paint(window: Box, view: Box) -> bool:
    """Whether a stroke anywhere in ``view`` lands in the paintable ``window`` (the view lies inside it).

    Zoomed out beyond one window, part of the view is outside it and a stroke there would be lost,
    so the brush is turned off until the user zooms in.

    Examples
    --------
    >>> can_paint((0, 4096, 0, 4096), (100, 900, 100, 1500)), can_paint((0, 4096, 0, 4096), (0, 8000, 0, 8000))
    (True, False)
    """
    wy0, wy1, wx0, wx1 = window
    y0, y1, x0, x1 = view
    return wy0 <= y0 and y1 <= wy1 and wx0 <= x0 and x1 <= wx1


def centred_box(view: Box, within: Box, side: int) -> Box:
    """The part of ``view`` inside ``within``, cut to at most ``side`` px around its centre (empty: y0 == y1).

    Examples
    --------
    >>> centred_box((0, 3000, 0, 100), (0, 4096, 0, 4096), 1024)
    (988, 2012, 0, 100)
    """
    y0, y1 = max(view[0], within[0]), min(view[1], within[1])
    x0, x1 = max(view[2], within[2]), min(view[3], within[3])
    if y1 - y0 > side:
        y0 = (y0 + y1) // 2 - side // 2
        y1 = y0 + side
    if x1 - x0 > side:
        x0 = (x0 + x1) // 2 - side // 2
        x1 = x0 + side
    return y0, max(y0, y1), x0, max(x0, x1)
