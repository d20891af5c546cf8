"""How large are the objects? A scale estimate from the strokes, and the working resolution it implies.

The U-Net sees a fixed field of view (47 px at depth 2). Objects larger than most of it cannot be
judged from their inside: their middle looks like background. Rather than a deeper network
(several times slower per step on a CPU), the trainer works on the image binned by an integer factor
(:mod:`scribble_unet.image.binned`) chosen so that objects span at most about three quarters of the field of view.

The object size comes from the user (``object_diameter``, e.g. measured with a line in napari, as
Cellpose users do) or from the image under the object strokes: the scale-normalised Laplacian of
Gaussian ``sigma^2 LoG_sigma`` (Lindeberg 1998) is largest, in magnitude, at ``sigma = d / (2 sqrt 2)``
at the centre of a disc of diameter ``d``. Its mean over pixels sampled on the object strokes is
computed for sigmas from 1 to 64 px (half-octave steps, refined by a parabola), and the diameter
read off its peak. Only windows around at most ``n_samples`` stroke pixels are read, so the cost does
not depend on the image size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..inference.tiling import read_reflected
from ..model.normalize import Normalization

SIGMAS = tuple(float(2.0 ** (k / 2)) for k in range(13))  # 1 .. 64 px
MAX_SCALE = 8


@dataclass(frozen=True)
class ScaleChoice:
    """The working resolution chosen for a run and why."""

    scale: int
    diameter: float | None
    source: str  # "user", "estimated", "fixed", "initial model", "default"

    def describe(self) -> str:
        d = "unknown" if self.diameter is None else f"{self.diameter:.0f} px"
        how = {"user": "given", "estimated": "estimated from the strokes"}.get(self.source, self.source)
        return f"object diameter {d} ({how}); working resolution 1/{self.scale}"


def _log_kernel(sigma: float) -> np.ndarray:
    r = math.ceil(4 * sigma)
    y, x = np.mgrid[-r : r + 1, -r : r + 1].astype(np.float64)
    q = (x * x + y * y) / (2 * sigma * sigma)
    k = (q - 1.0) * np.exp(-q) / (math.pi * sigma * sigma)  # sigma^2 * LoG of a unit Gaussian
    k -= k.mean()  # zero sum: a constant image gives no response
    return k.astype(np.float32)


def log_profile(
    image: Any, normalization: Normalization, points: np.ndarray, sigmas: tuple[float, ...] = SIGMAS
) -> np.ndarray:
    """Mean scale-normalised LoG response at ``points`` ``(N, 2)`` (y, x) for each sigma."""
    kernels = [_log_kernel(s) for s in sigmas]
    r = max(k.shape[0] // 2 for k in kernels)
    h, w = image.shape_yx
    total = np.zeros(len(sigmas))
    for y, x in points:
        win = read_reflected(image.read, (h, w), int(y) - r, int(y) + r + 1, int(x) - r, int(x) + r + 1)
        lum = normalization.apply(win, nan_policy="zero").mean(axis=0)
        for i, k in enumerate(kernels):
            kr = k.shape[0] // 2
            total[i] += float(np.sum(lum[r - kr : r + kr + 1, r - kr : r + kr + 1] * k))
    return total / max(len(points), 1)


def estimate_diameter(
    image: Any,
    normalization: Normalization,
    object_points: np.ndarray,
    rng: np.random.Generator,
    n_samples: int = 48,
) -> float | None:
    """Object diameter (px) from the image at object-stroke pixels ``(N, 2)``; None without any."""
    if len(object_points) == 0:
        return None
    pick = rng.choice(len(object_points), size=min(n_samples, len(object_points)), replace=False)
    prof = np.abs(log_profile(image, normalization, object_points[np.sort(pick)]))
    i = int(np.argmax(prof))
    logs = np.log2(np.array(SIGMAS))
    best = logs[i]
    if 0 < i < len(SIGMAS) - 1:  # parabola through the peak and its neighbours, in log sigma
        a, b, c = prof[i - 1], prof[i], prof[i + 1]
        den = a - 2 * b + c
        if den < 0:
            best = logs[i] + 0.5 * (a - c) / den * (logs[1] - logs[0])
    return float(2 * math.sqrt(2) * 2.0**best)


SPAN = 0.75
"""Objects may span up to about this share of the field of view before the image is binned."""


def scale_for_diameter(diameter: float, field_of_view: int, shape_yx: tuple[int, int], min_side: int = 64) -> int:
    """Binning factor that brings objects of ``diameter`` px to at most about ``SPAN`` of the field of view.

    ``round(diameter / (SPAN * field_of_view))``, never below 1, at most :data:`MAX_SCALE`, and never so
    coarse that the working image is smaller than ``min_side`` px along its shorter side. Binning costs
    edge precision (the mask is upsampled from a coarser map) and helps once objects fill most of the field
    of view: on the development set at 1700 steps, this rule did better than binning only beyond the
    whole field of view on 5 of the 6 cases where the two differ (docs/quality.md), although binning 42 px
    nuclei by 2 lost 0.09 IoU over 3 seeds at 600 steps.
    """
    s = max(1, round(diameter / (SPAN * field_of_view)))
    limit = max(1, min(shape_yx) // min_side)
    return int(min(s, MAX_SCALE, limit))
