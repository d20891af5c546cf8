"""Back from the working resolution: bilinear upsampling of probabilities, defined pixel by pixel.

A model trained at working resolution ``f`` (see :mod:`scribble_unet.image.binned`) predicts a
probability map ``P`` of ``ceil(Y / f) x ceil(X / f)`` pixels. Full-resolution pixel ``y`` takes the
value at the working-resolution position ``s = (y + 0.5) / f - 0.5`` (pixel centres aligned, as
``align_corners=False`` in torch), interpolated linearly between rows ``floor(s)`` and
``floor(s) + 1``, both clamped into the map; the same along X. Each output pixel depends on at most two
rows and two columns of ``P``, so a chunk needs the working-resolution rows :func:`needed_range` gives,
and a chunk computed from them equals the same pixels of the whole upsampled map bit for bit (the
arithmetic is the same, in the same order).
"""

from __future__ import annotations

import numpy as np


def _coords(a0: int, a1: int, factor: int, n_low: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = (np.arange(a0, a1, dtype=np.float64) + 0.5) / factor - 0.5
    i0 = np.floor(s)
    t = (s - i0).astype(np.float32)
    i0 = i0.astype(np.int64)
    return np.clip(i0, 0, n_low - 1), np.clip(i0 + 1, 0, n_low - 1), t


def needed_range(a0: int, a1: int, factor: int, n_low: int) -> tuple[int, int]:
    """Working-resolution rows ``[lo, hi)`` that full-resolution rows ``[a0, a1)`` interpolate from."""
    i0, i1, _ = _coords(a0, a1, factor, n_low)
    return int(i0.min()), int(i1.max()) + 1


def upsample(
    low: np.ndarray,
    factor: int,
    low_origin: tuple[int, int],
    low_shape: tuple[int, int],
    window: tuple[int, int, int, int],
) -> np.ndarray:
    """Full-resolution pixels ``window = (y0, y1, x0, x1)`` of the upsampled map.

    ``low`` is ``(C, h, w)``: the working-resolution map from row ``low_origin[0]`` and column
    ``low_origin[1]`` on (it must contain :func:`needed_range` of the window); ``low_shape`` is the
    size of the whole working-resolution map.
    """
    if factor == 1:
        y0, y1, x0, x1 = window
        oy, ox = low_origin
        return low[:, y0 - oy : y1 - oy, x0 - ox : x1 - ox]
    y0, y1, x0, x1 = window
    oy, ox = low_origin
    r0, r1, ty = _coords(y0, y1, factor, low_shape[0])
    c0, c1, tx = _coords(x0, x1, factor, low_shape[1])
    low = low.astype(np.float32, copy=False)
    rows = low[:, r0 - oy] * (1 - ty)[None, :, None] + low[:, r1 - oy] * ty[None, :, None]
    out = rows[:, :, c0 - ox] * (1 - tx)[None, None, :] + rows[:, :, c1 - ox] * tx[None, None, :]
    return out.astype(np.float32, copy=False)
