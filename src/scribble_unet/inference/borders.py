"""Mask borders on image edges: a seeded watershed, limited in reach so that tiles stay exact.

Strokes lie inside objects and in open background; between them is a band nobody painted, where the
network is unsure and its 0.5 contour falls wherever the context puts it (often a ring of background
around each object: fat masks). The image itself says where the border is: on the ridge of its gradient.
So the mask is made in two steps:

1. pixels whose most probable class has probability at least :data:`CONFIDENT` keep that class: they are
   the seeds (markers);
2. every other pixel takes the class of the seed region whose flood reaches it first when the gradient
   magnitude of the image (Gaussian derivatives, sigma :data:`GRADIENT_SIGMA` px) is flooded from the
   seeds: a seeded watershed (Meyer's flooding), after Beucher and Meyer's marker-controlled watershed.

A watershed is global: a flood can travel any distance. Here paths are at most :data:`REACH` steps long.
The flood is computed as REACH rounds of a synchronous (Jacobi) update in which every unsure pixel takes,
among its four neighbours, the one the flood reached first, ordered by (flood level, steps taken on that
level, class); the level of a pixel is the larger of its parent's level and its own gradient. After ``n``
rounds a pixel depends only on pixels at most ``n`` steps away, so a chunk computed from a window
``REACH + 1`` px wider equals the whole-image result bit for bit. With an unlimited reach it gives
exactly scikit-image's ``watershed(gradient, markers)`` (its ties fall the same way: earlier arrival,
then the lower class). A pixel no flood reaches within REACH steps keeps its most probable class.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .probabilities import probabilities_to_mask, with_background

CONFIDENT = 0.9
"""Probability of the most probable class from which a pixel is a seed and keeps its class."""
REACH = 16
"""Longest flood path (4-connected steps, full-resolution px); a chunk needs this much more context."""
GRADIENT_SIGMA = 1.0
"""Scale (px) of the Gaussian derivatives of the gradient magnitude."""
GRADIENT_HALO = int(4 * GRADIENT_SIGMA + 0.5) + 1
"""Image context (px) the gradient magnitude of a pixel depends on (scipy's truncation at 4 sigma)."""
HALO = REACH + 1 + GRADIENT_HALO
"""Image context a mask pixel needs beyond the probabilities' own context."""

_CLASS_BITS = 16
_STEP_BITS = 16
_INF = np.iinfo(np.int64).max


def gradient_magnitude(image: np.ndarray) -> np.ndarray:
    """``(Y, X)`` float32 gradient magnitude of a normalised ``(C, Y, X)`` image (channels summed in
    quadrature). Pixels closer than :data:`GRADIENT_HALO` to the array's edge are approximate; callers
    pass that much more image and crop."""
    img = np.asarray(image, dtype=np.float32)
    total = np.zeros(img.shape[1:], np.float32)
    for c in img:
        total += ndi.gaussian_gradient_magnitude(c, GRADIENT_SIGMA, mode="nearest") ** 2
    return np.sqrt(total, out=total)


def snap_to_edges(prob: np.ndarray, gradient: np.ndarray, confident: float = CONFIDENT,
                  reach: int = REACH) -> np.ndarray:
    """Mask (0 background, k class k) of ``prob`` ``(K, Y, X)`` with its unsure pixels flooded from the
    confident ones over ``gradient`` ``(Y, X)``; see the module docstring.

    The array's edge is a wall: the flood does not wrap or reflect. A pixel's result depends only on
    pixels at most ``reach`` 4-connected steps away.
    """
    if prob.ndim != 3 or prob.shape[1:] != gradient.shape:
        raise ValueError(f"probabilities {prob.shape} and gradient {gradient.shape} do not match")
    prob = prob.astype(np.float32, copy=False)
    best = probabilities_to_mask(prob)  # the plain mask: what unreached pixels keep
    top = np.take_along_axis(with_background(prob), best[None].astype(np.intp), axis=0)[0]
    unsure = ~(top >= confident)
    if reach <= 0 or not unsure.any() or unsure.all():
        return best
    h, w = gradient.shape
    # Keys on a padded grid (the padding never holds a flood): level bits | steps on the level | class.
    # Gradient magnitudes are >= 0, so their float32 bit patterns sort as the values do.
    levels = np.maximum(np.nan_to_num(np.asarray(gradient, np.float32), nan=0.0, posinf=0.0), 0)
    level_bits = np.ascontiguousarray(levels, np.float32).view(np.int32).astype(np.int64)
    key = np.full((h + 2, w + 2), _INF, np.int64)
    inner = key[1:-1, 1:-1]
    seeds = ~unsure
    inner[seeds] = (level_bits[seeds] << (_CLASS_BITS + _STEP_BITS)) | best[seeds]
    flat = key.ravel()
    yy, xx = np.nonzero(unsure)
    at = (yy + 1) * (w + 2) + (xx + 1)
    neighbours = (at - (w + 2), at + (w + 2), at - 1, at + 1)
    own = level_bits[yy, xx] << (_CLASS_BITS + _STEP_BITS)
    step = np.int64(1) << _CLASS_BITS
    class_mask = (np.int64(1) << _CLASS_BITS) - 1
    level_mask = ~((np.int64(1) << (_CLASS_BITS + _STEP_BITS)) - 1)
    current = flat[at]
    for _ in range(int(reach)):
        parent = np.minimum(np.minimum(flat[neighbours[0]], flat[neighbours[1]]),
                            np.minimum(flat[neighbours[2]], flat[neighbours[3]]))
        reached = parent != _INF
        rises = own > (parent & level_mask)
        new = np.where(rises, own | (parent & class_mask), parent + step)
        new[~reached] = _INF
        if np.array_equal(new, current):
            break
        flat[at] = new
        current = new
    out = best.copy()
    hit = current != _INF
    out[yy[hit], xx[hit]] = (current[hit] & class_mask).astype(out.dtype)
    return out
