"""Per-pixel uncertainty of a prediction, and the region a user should check next.

* :func:`uncertainty_from_probabilities` turns the ``(K, ...)`` object-class probabilities the
  predictor computes into one value per pixel in ``[0, 1]``: 0 where the network is sure, 1 where it
  cannot decide.

  - One class (K = 1, sigmoid): the probability margin ``1 - |2p - 1|`` (1 at p = 0.5, 0 at p = 0 or 1).
  - K > 1: the entropy of the K + 1 probabilities (background = ``1 - sum``) divided by ``log(K + 1)``,
    so that the uniform distribution gives 1.

* :func:`uncertainty_lazy` maps it chunk-wise over ``predict_lazy(...).probabilities``: one task per
  output chunk depending only on that chunk's probability task, so no new dependencies between chunks.
  Computing the mask and the uncertainty in ONE call runs the network once per chunk, because both
  arrays share the probability tasks of the same graph::

      pred = predict_lazy(checkpoint, image, tile=512)
      unc = uncertainty_lazy(pred.probabilities)
      mask, u = dask.compute(pred.mask[y0:y1, x0:x1], unc[y0:y1, x0:x1])

  (Two separate ``.compute()`` calls would run the network twice for the chunks they share.)

* :func:`most_uncertain_region` picks the window with the highest mean uncertainty that has not been
  painted yet, on low-resolution views of the uncertainty and of the scribbles: it drives a
  "next region to check" action. Regions proposed before can be excluded as a whole (``exclude``):
  painted pixels alone do not stop it, because strokes cover a few percent of a window and a region
  the network still finds hard after the user painted in it wins again (measured:
  ``benchmarks/next_region_efficiency.py``, docs/quality.md "Where to paint next: measured").
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np


def uncertainty_from_probabilities(prob: np.ndarray) -> np.ndarray:
    """Uncertainty ``(...)`` (float32, in [0, 1]) of object-class probabilities ``(K, ...)``.

    Examples
    --------
    >>> import numpy as np
    >>> uncertainty_from_probabilities(np.array([[0.0, 0.25, 0.5, 1.0]])).tolist()
    [0.0, 0.5, 1.0, 0.0]
    >>> u = uncertainty_from_probabilities(np.full((2, 1), 1 / 3))
    >>> bool(abs(u[0] - 1) < 1e-6)
    True
    """
    p = np.asarray(prob, dtype=np.float64)
    if p.ndim < 1 or p.shape[0] < 1:
        raise ValueError(f"probabilities must have a leading class axis of length >= 1, got shape {p.shape}")
    k = p.shape[0]
    if k == 1:
        return (1.0 - np.abs(2.0 * p[0] - 1.0)).clip(0.0, 1.0).astype(np.float32)
    # the K softmax outputs do not include background: add it back, then renormalise against rounding
    background = np.clip(1.0 - p.sum(axis=0, keepdims=True), 0.0, 1.0)
    full = np.clip(np.concatenate([background, p], axis=0), 0.0, 1.0)
    full /= np.maximum(full.sum(axis=0, keepdims=True), 1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(full > 0, full * np.log(full), 0.0)
    entropy = -terms.sum(axis=0) / np.log(k + 1)
    return entropy.clip(0.0, 1.0).astype(np.float32)


def uncertainty_lazy(probabilities: Any) -> Any:
    """Lazy uncertainty ``(Y, X)`` of a lazy ``(K, Y, X)`` probability array (a dask array).

    The result has the probabilities' Y/X chunks and one task per chunk, each depending only on the
    probability task of the same chunk.
    """
    import dask.array as da

    if probabilities.ndim != 3 or len(probabilities.chunks[0]) != 1:
        raise ValueError("probabilities must be a (K, Y, X) dask array with the class axis in one chunk")
    return da.map_blocks(uncertainty_from_probabilities, probabilities, drop_axis=0, dtype=np.float32,
                         meta=np.empty((0, 0), np.float32))


def most_uncertain_region(
    uncertainty_lowres: np.ndarray,
    painted_mask_lowres: np.ndarray | None,
    window: int | tuple[int, int],
    exclude: Iterable[tuple[int, int, int, int]] = (),
) -> tuple[int, int, int, int] | None:
    """The window ``(y0, y1, x0, x1)`` with the highest mean uncertainty not yet painted.

    Parameters
    ----------
    uncertainty_lowres
        ``(Y, X)`` uncertainty, usually of a coarse level of the prediction. Non-finite values (regions
        not predicted yet) count as 0.
    painted_mask_lowres
        ``(Y, X)`` truthy where the user has painted (any scribble value); painted pixels count as 0
        uncertainty (they are checked), so a window mostly painted scores low. ``None``: nothing painted.
    window
        Window side (or ``(height, width)``) in pixels of these arrays; clipped to the array's size.
    exclude
        Boxes ``(y0, y1, x0, x1)`` (half-open, these arrays' pixels, clipped to them) that count as
        checked as a whole, e.g. the regions proposed before: no uncertainty inside them counts.

    Returns
    -------
    The window in the arrays' pixel coordinates (half-open), the first in raster order among equal
    scores; ``None`` when no window has any unpainted uncertainty left.

    Examples
    --------
    >>> import numpy as np
    >>> u = np.zeros((6, 6)); u[3:5, 1:3] = 1.0
    >>> most_uncertain_region(u, None, 2)
    (3, 5, 1, 3)
    >>> most_uncertain_region(u, u > 0, 2) is None
    True
    >>> most_uncertain_region(u, None, 2, exclude=[(3, 5, 1, 3)]) is None
    True
    """
    u = np.asarray(uncertainty_lowres, dtype=np.float64)
    if u.ndim != 2 or u.size == 0:
        raise ValueError(f"uncertainty must be a non-empty 2D array, got shape {u.shape}")
    u = np.where(np.isfinite(u), u, 0.0)
    if painted_mask_lowres is not None:
        painted = np.asarray(painted_mask_lowres)
        if painted.shape != u.shape:
            raise ValueError(f"painted mask shape {painted.shape} differs from the uncertainty's {u.shape}")
        u = np.where(painted.astype(bool), 0.0, u)
    for box in exclude:
        y0, y1, x0, x1 = (int(v) for v in box)
        u[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = 0.0
    wy, wx = (window, window) if isinstance(window, (int, np.integer)) else window
    if wy < 1 or wx < 1:
        raise ValueError(f"window must be at least 1 px, got {window}")
    h, w = u.shape
    wy, wx = min(int(wy), h), min(int(wx), w)
    # summed-area table: the sum over every window in O(Y * X)
    sat = np.zeros((h + 1, w + 1))
    sat[1:, 1:] = u.cumsum(axis=0).cumsum(axis=1)
    sums = sat[wy:, wx:] - sat[:-wy, wx:] - sat[wy:, :-wx] + sat[:-wy, :-wx]
    # rounded so that windows equal up to the table's rounding tie, and the first in raster order wins
    sums = np.round(sums, 9)
    best = int(np.argmax(sums))
    y0, x0 = divmod(best, sums.shape[1])
    if sums.flat[best] <= 0:
        return None
    return y0, y0 + wy, x0, x0 + wx
